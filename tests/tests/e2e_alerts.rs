//! Alerting end to end: real containers → collector (logs, Docker stats) → tansu →
//! aggregator (rollups → alert rules → notifier → a local webhook receiver; autoscaling →
//! moto's ECS API; audit trail).
//!
//! A container burns CPU and another logs 5xx access lines with correlation IDs. Two rules
//! (`cpu_utilization` and `http_5xx_rate` over the rollups) go to firing; the webhook
//! receives Alertmanager's payload version 4, checked field by field, with the error
//! alert's sample lines linking to their correlation views; the CPU alert's step policy
//! raises the ECS service's desired count once (the cooldown holds further scale-outs).
//! When the load stops, resolved notifications arrive.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sightline_tests::docker::{self, RunOpts};
use sightline_tests::moto::Moto;
use sightline_tests::webhook::WebhookServer;
use sightline_tests::{api, bin, free_port, run_id, wait_for, Broker, Env, Proc};

const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The first notification for `alertname` with `status` (`firing`/`resolved`).
fn find(hook: &WebhookServer, alertname: &str, status: &str) -> Option<Value> {
    hook.received()
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| v["status"] == status && v["groupLabels"]["alertname"] == alertname)
}

fn logs(dir: &std::path::Path) -> String {
    ["collector", "aggregator"]
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default();
            let tail: Vec<_> = text.lines().rev().take(40).collect();
            format!(
                "--- {n}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

#[test]
fn rules_fire_notify_scale_and_resolve_on_real_containers() {
    let Some(env) = Env::get() else { return };
    let Some(moto) = Moto::start(1) else { return };
    let run = run_id();
    let burner_svc = format!("burner-{run}");
    let web_svc = format!("web-{run}");
    moto.create_service("e2e", &burner_svc, 1);
    assert_eq!(moto.desired_count("e2e", &burner_svc), 1);
    let hook = WebhookServer::start();

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&env, dir.path());
    let topic = format!("alerts-{run}");
    let port = free_port();
    let external = format!("http://127.0.0.1:{port}");
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        format!(
            r#"groups:
  - name: e2e
    interval: 2s
    rules:
      - alert: HighCpu
        expr: cpu_utilization{{service="{burner_svc}"}} > 50
        for: 4s
        labels:
          severity: page
          scale_policy: burner-scale
        annotations:
          summary: "{{{{ $labels.service }}}} is burning CPU"
      - alert: HighErrorRate
        expr: http_5xx_rate{{service="{web_svc}"}} > 0.5
        labels:
          severity: page
        annotations:
          summary: "{{{{ $labels.service }}}} answers 5xx"
"#
        ),
    )
    .unwrap();
    let aggregator_config = dir.path().join("aggregator.toml");
    std::fs::write(
        &aggregator_config,
        format!(
            r#"data_dir = "{data}"
listen = "127.0.0.1:{port}"
commit_interval_ms = 200

[api]
enable_lifecycle = true             # POST /-/reload

[kafka]
brokers = "{brokers}"
topic = "{topic}"
group_id = "agg-{run}"

[rollups]
lateness = "10s"
flush_interval = "5s"

[rules]
rule_files = ["{rules}"]
lookback_ms = "30s"
log_samples = 3

[notify.route]
receiver = "oncall"
group_by = ["alertname", "service"]
group_wait = "1s"
group_interval = "2s"
repeat_interval = "1h"

[[notify.receivers]]
name = "oncall"

[[notify.receivers.webhook_configs]]
url = "{hook}/alertmanager"

[autoscale]
interval = "1h"

[autoscale.ecs]
cluster = "e2e"
region = "us-east-1"
endpoint_url = "{moto}"
access_key_id = "testing"
secret_access_key = "testing"

[[autoscale.policies]]
name = "burner-scale"
service = "{burner_svc}"
provider = "ecs"
min_capacity = 1
max_capacity = 5
scale_out_cooldown = "10m"

[autoscale.policies.step_scaling]
adjustments = [{{ lower_bound = 0.0, change_in_capacity = 2 }}]
"#,
            data = dir.path().join("aggregator-data").display(),
            brokers = broker.addr,
            rules = rules.display(),
            hook = hook.url,
            moto = moto.endpoint,
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin("sightline-aggregator"));
    cmd.arg("--config").arg(&aggregator_config);
    let aggregator = Proc::spawn("aggregator", cmd, dir.path());
    wait_for(Duration::from_secs(60), || api::get(&external, "/healthz"))
        .unwrap_or_else(|| panic!("aggregator API did not come up\n{}", logs(dir.path())));

    let collector_config = dir.path().join("collector.toml");
    std::fs::write(
        &collector_config,
        format!(
            r#"data_dir = "{data}"
host = "alerts-host"

[docker]
containers_dir = "/var/lib/docker/containers"
poll_interval_ms = 50

[kafka]
brokers = "{brokers}"
topic = "{topic}"
partitions = 2

[batch]
linger_ms = 50

[docker_engine.stats]
interval_ms = 1000
"#,
            data = dir.path().join("collector-data").display(),
            brokers = broker.addr,
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin("sightline-collector"));
    cmd.arg("--config").arg(&collector_config);
    let _collector = Proc::spawn("collector", cmd, dir.path());

    // The load: CPU until /stop exists, then idle; 5xx lines until /stop, then 200s.
    let burner = docker::run(RunOpts {
        name: &burner_svc,
        labels: vec![format!("com.docker.compose.service={burner_svc}")],
        script: "while [ ! -f /stop ]; do :; done; while :; do sleep 1; done",
        ..Default::default()
    });
    let web_script = format!(
        r#"i=0
while [ ! -f /stop ]; do i=$((i+1)); echo "{{\"level\":\"error\",\"msg\":\"payment failed\",\"status\":503,\"duration_ms\":12,\"correlation_id\":\"{run}-req-$i\"}}"; sleep 0.2; done
while :; do i=$((i+1)); echo "{{\"level\":\"info\",\"msg\":\"paid\",\"status\":200,\"duration_ms\":5,\"correlation_id\":\"{run}-ok-$i\"}}"; sleep 0.2; done"#
    );
    let web = docker::run(RunOpts {
        name: &web_svc,
        labels: vec![format!("com.docker.compose.service={web_svc}")],
        script: &web_script,
        ..Default::default()
    });

    // ── Firing: the CPU alert, field by field (Alertmanager webhook payload v4).
    let cpu = wait_for(Duration::from_secs(120), || {
        find(&hook, "HighCpu", "firing")
    })
    .unwrap_or_else(|| panic!("no firing HighCpu notification\n{}", logs(dir.path())));
    let cpu_labels = labels(&[
        ("alertname", "HighCpu"),
        ("scale_policy", "burner-scale"),
        ("service", &burner_svc),
        ("severity", "page"),
    ]);
    let summary = labels(&[("summary", &format!("{burner_svc} is burning CPU"))]);
    assert_eq!(cpu["version"], "4");
    assert_eq!(cpu["receiver"], "oncall");
    assert_eq!(cpu["status"], "firing");
    assert_eq!(
        cpu["groupKey"],
        format!("{{}}:{{alertname=\"HighCpu\", service=\"{burner_svc}\"}}")
    );
    assert_eq!(
        cpu["groupLabels"],
        labels(&[("alertname", "HighCpu"), ("service", &burner_svc)])
    );
    assert_eq!(cpu["commonLabels"], cpu_labels);
    assert_eq!(cpu["commonAnnotations"], summary);
    assert_eq!(cpu["externalURL"], external);
    assert_eq!(cpu["truncatedAlerts"], 0);
    let alerts = cpu["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{cpu}");
    let a = &alerts[0];
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"], cpu_labels);
    assert_eq!(a["annotations"], summary);
    assert_eq!(a["endsAt"], GO_ZERO_TIME);
    assert!(a["startsAt"].as_str().unwrap().starts_with("20"), "{a}");
    assert_eq!(
        a["generatorURL"],
        format!("{external}/api/v1/rules?group=e2e&alert=HighCpu")
    );
    let fp = a["fingerprint"].as_str().unwrap().to_string();
    assert!(
        fp.len() == 16 && fp.chars().all(|c| c.is_ascii_hexdigit()),
        "{fp}"
    );
    assert!(a["value"].as_f64().unwrap() > 50.0, "{a}");

    // ── Firing: the error-rate alert, with sample lines and their correlation links.
    let err = wait_for(Duration::from_secs(60), || {
        find(&hook, "HighErrorRate", "firing")
    })
    .unwrap_or_else(|| panic!("no firing HighErrorRate notification\n{}", logs(dir.path())));
    let err_labels = labels(&[
        ("alertname", "HighErrorRate"),
        ("service", &web_svc),
        ("severity", "page"),
    ]);
    assert_eq!(err["commonLabels"], err_labels);
    assert_eq!(
        err["commonAnnotations"],
        labels(&[("summary", &format!("{web_svc} answers 5xx"))])
    );
    let e = &err["alerts"][0];
    assert_eq!(e["labels"], err_labels);
    assert_eq!(
        e["value"].as_f64(),
        Some(1.0),
        "every request was a 503: {e}"
    );
    let samples = e["samples"].as_array().unwrap();
    assert!(!samples.is_empty() && samples.len() <= 3, "{e}");
    for s in samples {
        let id = s["correlationId"].as_str().unwrap();
        assert!(id.starts_with(&format!("{run}-req-")), "{s}");
        assert_eq!(s["service"], web_svc.as_str());
        assert_eq!(
            s["correlationURL"],
            format!("{external}/api/v1/correlations/{id}")
        );
        assert!(
            s["message"].as_str().unwrap().contains("payment failed"),
            "{s}"
        );
        // The link leads to the request's story: exactly that one line.
        let msgs = api::correlation_messages(&external, id).unwrap();
        assert_eq!(msgs.len(), 1, "{id}: {msgs:?}");
        assert_eq!(msgs[0], s["message"].as_str().unwrap());
    }

    // ── The alerts API shows both alerts firing, with the rule's group.
    let (status, firing) = api::get(&external, "/api/v1/alerts?state=firing").unwrap();
    assert_eq!(status, 200);
    let mut names: Vec<(String, String)> = firing["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["state"], "firing");
            assert_eq!(a["group"], "e2e");
            (
                a["alert"].as_str().unwrap().to_string(),
                a["labels"]["service"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("HighCpu".to_string(), burner_svc.clone()),
            ("HighErrorRate".to_string(), web_svc.clone())
        ]
    );
    let (status, bad) = api::get(&external, "/api/v1/alerts?state=sleeping").unwrap();
    assert_eq!(status, 400, "{bad}");

    // ── Scaling: the step policy took the ECS service from 1 to 1 + 2 tasks, once.
    let desired = wait_for(Duration::from_secs(30), || {
        Some(moto.desired_count("e2e", &burner_svc)).filter(|d| *d != 1)
    });
    assert_eq!(desired, Some(3), "{}", logs(dir.path()));
    // Further firing evaluations are held by the scale-out cooldown.
    let (_, page) = wait_for(Duration::from_secs(30), || {
        api::get(&external, &format!("/api/v1/scaling?service={burner_svc}")).filter(|(_, p)| {
            p["decisions"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["skip_reason"] == "scale_out_cooldown"))
        })
    })
    .expect("no decision held by the cooldown");
    assert_eq!(moto.desired_count("e2e", &burner_svc), 3);
    let decisions = page["decisions"].as_array().unwrap();
    let updated: Vec<&Value> = decisions
        .iter()
        .filter(|d| d["outcome"] == "updated")
        .collect();
    assert_eq!(updated.len(), 1, "{page}");
    assert_eq!(updated[0]["policy"], "burner-scale");
    assert_eq!(updated[0]["current_desired"], 1);
    assert_eq!(updated[0]["desired"], 3);

    // ── Resolved: stop the load; both alerts resolve and are notified.
    for c in [&burner, &web] {
        let out = Command::new("docker")
            .args(["exec", &c.id, "sh", "-c", ": > /stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let resolved = wait_for(Duration::from_secs(120), || {
        find(&hook, "HighCpu", "resolved")
    })
    .unwrap_or_else(|| panic!("no resolved HighCpu notification\n{}", logs(dir.path())));
    assert_eq!(resolved["version"], "4");
    assert_eq!(resolved["groupKey"], cpu["groupKey"]);
    assert_eq!(resolved["commonLabels"], cpu_labels);
    let r = &resolved["alerts"][0];
    assert_eq!(r["status"], "resolved");
    assert_eq!(r["fingerprint"], fp.as_str());
    assert_eq!(r["startsAt"], a["startsAt"]);
    assert_ne!(r["endsAt"], GO_ZERO_TIME);
    assert!(r["endsAt"].as_str() > r["startsAt"].as_str(), "{r}");
    assert_eq!(r["samples"], json!([]));
    wait_for(Duration::from_secs(120), || {
        find(&hook, "HighErrorRate", "resolved")
    })
    .unwrap_or_else(|| {
        panic!(
            "no resolved HighErrorRate notification\n{}",
            logs(dir.path())
        )
    });

    // Every POST went to the configured path, and each delivery is in the audit trail
    // (one record per attempt; the receiver answered every one with 200).
    let (_, audit) = wait_for(Duration::from_secs(30), || {
        let posts = hook.received().len() as u64;
        api::get(&external, "/api/v1/audit?action=alert.notify&limit=100")
            .filter(|(_, p)| p["total"].as_u64() == Some(posts))
    })
    .expect("notifications and audit records do not match");
    assert!(hook.received().iter().all(|(p, _)| p == "/alertmanager"));
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] == "200"),
        "{audit}"
    );
    let (_, scaled) = api::get(
        &external,
        "/api/v1/audit?action=scaling.update_desired_count",
    )
    .unwrap();
    assert_eq!(scaled["total"], 1, "{scaled}");
    assert_eq!(scaled["events"][0]["service"], burner_svc.as_str());

    // ── Reloads: a broken rule file is refused with its position and the rules stay;
    // a good one is taken, by POST /-/reload and by SIGHUP.
    let good = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(&rules, good.replace("for: 4s", "for: 4 seconds")).unwrap();
    let (status, body) = post(&format!("{external}/-/reload"));
    assert_eq!(status, 400, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("rules.yml:7:"), "{reason}");
    let (_, listed) = api::get(&external, "/api/v1/rules").unwrap();
    assert_eq!(listed["rules"].as_array().unwrap().len(), 2, "{listed}");
    std::fs::write(
        &rules,
        format!(
            "{good}      - alert: Down\n        expr: running_task_count{{service=\"{web_svc}\"}} < 1\n"
        ),
    )
    .unwrap();
    let (status, body) = post(&format!("{external}/-/reload"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"reloaded": true, "rules": 3}));
    std::fs::write(&rules, good).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &aggregator.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let after = wait_for(Duration::from_secs(10), || {
        api::get(&external, "/api/v1/rules?group=e2e")
            .filter(|(_, b)| b["rules"].as_array().is_some_and(|r| r.len() == 2))
    });
    assert!(
        after.is_some(),
        "SIGHUP did not reload the rules\n{}",
        logs(dir.path())
    );
    let (_, one) = api::get(&external, "/api/v1/rules?alert=HighCpu").unwrap();
    assert_eq!(one["rules"].as_array().unwrap().len(), 1, "{one}");
    assert!(one["rules"][0]["last_evaluation_ms"].is_i64(), "{one}");
    assert_eq!(one["rules"][0]["last_error"], Value::Null);
}

/// `POST url` with an empty body: status and JSON body.
fn post(url: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.post(url).send_empty().unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap())
}
