//! Real containers → collector (Docker Engine API: events and stats) → tansu: the metric
//! and audit topics hold what happened, read back and decoded.
//!
//! - a container that burns CPU shows > 50 % CPU (`docker stats`' formula);
//! - a container that holds 64 MiB in a shell variable shows > 48 MiB of memory used;
//! - `docker exec` gives `exec_create`/`exec_start` audit events carrying the command;
//! - `docker kill` gives `kill` with signal 9, then `die` with exit code 137;
//! - `/metrics` counts the audit events and metric points Kafka acknowledged.

use std::process::Command;
use std::time::Duration;

use sightline_model::metric::names;
use sightline_model::{AuditEvent, MetricBatch};
use sightline_tests::docker::{self, RunOpts};
use sightline_tests::kafka::{audit_events, container_metrics};
use sightline_tests::{bin, free_port, run_id, scrape, wait_for, Broker, Env, Proc};

fn metrics_of(brokers: &str, container: &str) -> Vec<MetricBatch> {
    container_metrics(brokers, "sightline.metrics", container)
}

fn audit_of(brokers: &str, actor: &str) -> Vec<AuditEvent> {
    audit_events(brokers, "sightline.audit")
        .into_iter()
        .filter(|e| e.actor.id == actor)
        .collect()
}

fn counter(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn stats_and_events_reach_kafka() {
    let Some(env) = Env::get() else { return };
    let run = run_id();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&env, dir.path());
    let port = free_port();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
host = "engine-host"

[docker]
containers_dir = "/var/lib/docker/containers"

[kafka]
brokers = "{brokers}"
topic = "logs-{run}"
partitions = 2

[docker_engine.stats]
interval_ms = 1000

[telemetry]
listen = "127.0.0.1:{port}"
"#,
            data = dir.path().join("data").display(),
            brokers = broker.addr,
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin("sightline-collector"));
    cmd.args(["--config", config.to_str().unwrap()]);
    let _collector = Proc::spawn("collector", cmd, dir.path());
    wait_for(Duration::from_secs(60), || scrape(port)).expect("collector serves /metrics");
    // The event stream is followed from start-up on: give it a moment to connect.
    std::thread::sleep(Duration::from_secs(1));

    let burner = docker::run(RunOpts {
        name: &format!("burn-{run}"),
        labels: vec!["com.docker.compose.service=burner".into()],
        script: "while :; do :; done",
        ..Default::default()
    });
    let hog = docker::run(RunOpts {
        name: &format!("hog-{run}"),
        // Not `…; sleep 600`: the shell would exec the last command and free the variable.
        script: "x=$(head -c 67108864 /dev/zero | tr '\\000' a); while :; do sleep 1; done",
        ..Default::default()
    });
    let marker = format!("audit-{run}");
    let out = Command::new("docker")
        .args(["exec", &burner.id, "sh", "-c", &format!("echo {marker}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker exec failed: {out:?}");

    // Stats: CPU of the burner, memory of the hog.
    let cpu = wait_for(Duration::from_secs(60), || {
        metrics_of(&broker.addr, &burner.id)
            .iter()
            .filter_map(|b| b.value(names::CPU_UTILIZATION))
            .find(|v| *v > 50.0)
    });
    assert!(cpu.is_some(), "no CPU sample above 50 % for the burner");
    let burner_batches = metrics_of(&broker.addr, &burner.id);
    let b = &burner_batches[0];
    assert_eq!(
        b.resource.service, "burner",
        "service from the compose label"
    );
    assert_eq!(b.resource.host, "engine-host");
    assert_eq!(
        b.resource.container.as_ref().unwrap().name,
        format!("burn-{run}")
    );
    let mem = wait_for(Duration::from_secs(60), || {
        metrics_of(&broker.addr, &hog.id)
            .iter()
            .filter_map(|b| b.value(names::MEMORY_USAGE_TOTAL))
            .find(|v| *v > 48.0 * 1024.0 * 1024.0)
    });
    assert!(mem.is_some(), "no memory sample above 48 MiB for the hog");

    // Events: exec with its command, then kill and die.
    let out = Command::new("docker")
        .args(["kill", &burner.id])
        .output()
        .unwrap();
    assert!(out.status.success());
    let events = wait_for(Duration::from_secs(60), || {
        let evs = audit_of(&broker.addr, &burner.id);
        let has = |a: &str| evs.iter().any(|e| e.action == a);
        (has("container.exec_start") && has("container.kill") && has("container.die"))
            .then_some(evs)
    })
    .expect("exec_start, kill and die audit events for the burner");
    let exec = events
        .iter()
        .find(|e| e.action == "container.exec_start")
        .unwrap();
    assert_eq!(
        exec.attributes.get("exec.command").map(String::as_str),
        Some(format!("sh -c echo {marker}").as_str())
    );
    assert!(events.iter().any(|e| e.action == "container.exec_create"));
    let kill = events
        .iter()
        .find(|e| e.action == "container.kill")
        .unwrap();
    assert_eq!(kill.attributes.get("signal").map(String::as_str), Some("9"));
    let die = events.iter().find(|e| e.action == "container.die").unwrap();
    assert_eq!(die.outcome.as_deref(), Some("137"));
    assert_eq!(
        die.attributes.get("exit_code").map(String::as_str),
        Some("137")
    );
    assert_eq!(die.resource.service, "burner");
    assert_eq!(die.resource.host, "engine-host");
    let start = events
        .iter()
        .find(|e| e.action == "container.start")
        .expect("start event");
    assert!(start.time_ns <= exec.time_ns && exec.time_ns <= kill.time_ns);
    assert!(kill.time_ns <= die.time_ns);

    // Self-telemetry saw them acknowledged.
    let text = scrape(port).expect("/metrics");
    assert!(
        counter(
            &text,
            "sightline_collector_events_sent_total{source=\"docker_events\"} "
        ) >= events.len() as u64,
        "{text}"
    );
    assert!(
        counter(
            &text,
            "sightline_collector_events_sent_total{source=\"docker_stats\"} "
        ) > 0,
        "{text}"
    );
    drop(hog);
}
