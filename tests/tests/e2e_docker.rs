//! Real containers → collector → tansu → aggregator → query API.
//!
//! Each test runs its own broker, collector and aggregator processes, and uses names and
//! correlation IDs unique to the run, so collectors tailing the whole Docker host do not
//! disturb each other's counts.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use regex::Regex;
use sightline_tests::docker::{self, RunOpts};
use sightline_tests::{api, bin, free_port, run_id, scrape_value, wait_for, Broker, Env, Proc};

fn containers_dir() -> String {
    std::env::var("SIGHTLINE_DOCKER_CONTAINERS_DIR")
        .unwrap_or_else(|_| "/var/lib/docker/containers".into())
}

struct Stack {
    dir: tempfile::TempDir,
    broker: Broker,
    proxy: Option<sightline_tests::proxy::Proxy>,
    topic: String,
    api: String,
    listen: String,
    collector: Option<Proc>,
    aggregator: Option<Proc>,
    collector_config: PathBuf,
}

impl Stack {
    fn new(env: &Env, run: &str, extra_collector_toml: &str) -> Stack {
        Self::build(env, run, extra_collector_toml, false)
    }

    /// Like [`Stack::new`], with the broker behind a proxy the test can pause.
    fn proxied(env: &Env, run: &str, extra_collector_toml: &str) -> Stack {
        Self::build(env, run, extra_collector_toml, true)
    }

    fn build(env: &Env, run: &str, extra_collector_toml: &str, proxied: bool) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let (broker, proxy) = if proxied {
            let (b, p) = Broker::start_behind_proxy(env, dir.path());
            (b, Some(p))
        } else {
            (Broker::start(env, dir.path()), None)
        };
        let topic = format!("e2e-{run}");
        let collector_config = dir.path().join("collector.toml");
        std::fs::write(
            &collector_config,
            format!(
                r#"data_dir = "{data}"
host = "e2e-host"

[docker]
containers_dir = "{containers}"
poll_interval_ms = 50

[kafka]
brokers = "{brokers}"
topic = "{topic}"
partitions = 3

[batch]
linger_ms = 50

{extra_collector_toml}
"#,
                data = dir.path().join("collector-data").display(),
                containers = containers_dir(),
                brokers = broker.addr,
            ),
        )
        .unwrap();
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut s = Stack {
            api: format!("http://{listen}"),
            listen,
            dir,
            broker,
            proxy,
            topic,
            collector: None,
            aggregator: None,
            collector_config,
        };
        s.start_aggregator();
        s.start_collector();
        s
    }

    fn start_collector(&mut self) {
        let mut cmd = Command::new(bin("sightline-collector"));
        cmd.arg("--config").arg(&self.collector_config);
        self.collector = Some(Proc::spawn("collector", cmd, self.dir.path()));
    }

    fn start_aggregator(&mut self) {
        let mut cmd = Command::new(bin("sightline-aggregator"));
        cmd.args(["--brokers", &self.broker.addr, "--topic", &self.topic])
            .args(["--group-id", &format!("{}-agg", self.topic)])
            .arg("--data-dir")
            .arg(self.dir.path().join("aggregator-data"))
            .args(["--listen", &self.listen]);
        self.aggregator = Some(Proc::spawn("aggregator", cmd, self.dir.path()));
        let api = self.api.clone();
        wait_for(Duration::from_secs(60), || api::get(&api, "/healthz"))
            .expect("aggregator API did not come up");
    }

    fn logs(&self) -> String {
        ["collector", "aggregator", "tansu"]
            .iter()
            .map(|n| {
                let p = self.dir.path().join(format!("{n}.log"));
                let text = std::fs::read_to_string(p).unwrap_or_default();
                let tail: Vec<_> = text.lines().rev().take(30).collect();
                format!(
                    "--- {n} (last 30 lines)\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the correlation lookup returns `expected.len()` events, then asserts the
    /// exact messages (order as returned, or sorted when `ordered` is false).
    fn assert_correlation(&self, id: &str, expected: &[String], ordered: bool) {
        let got = wait_for(Duration::from_secs(90), || {
            api::correlation_messages(&self.api, id).filter(|m| m.len() >= expected.len())
        });
        if got.is_none() {
            let now = api::correlation_messages(&self.api, id).map(|m| m.len());
            panic!(
                "correlation {id}: wanted {} events, have {now:?}\n{}",
                expected.len(),
                self.logs()
            );
        }
        // Let any duplicate show up before judging.
        std::thread::sleep(Duration::from_millis(1500));
        let mut got = api::correlation_messages(&self.api, id).unwrap();
        let mut want = expected.to_vec();
        if !ordered {
            got.sort();
            want.sort();
        }
        assert_eq!(got, want, "correlation {id}");
    }
}

#[test]
fn three_services_share_correlation_ids() {
    let Some(env) = Env::get() else { return };
    let run = run_id();
    let stack = Stack::new(&env, &run, "");
    let services = ["frontend", "checkout", "payments", "notifier"].map(|s| format!("{s}-{run}"));
    let requests = 4;
    // frontend: JSON lines; checkout: text lines; payments: text with a 20,000-byte line
    // that Docker splits at 16 KiB; notifier: stderr. Docker copies stdout and stderr
    // independently, so lines of one container on two streams have no defined order: each
    // container writes to one stream only, and the containers run one after the other.
    let scripts = [
        format!(
            r#"for r in $(seq 0 {last}); do for k in 1 2 3; do echo "{{\"level\":\"info\",\"correlation_id\":\"{run}-req-$r\",\"hop\":0,\"msg\":\"frontend step $k\"}}"; done; done"#,
            last = requests - 1
        ),
        format!(
            r#"for r in $(seq 0 {last}); do echo "INFO x-correlation-id={run}-req-$r hop=1 checkout reserved stock"; echo "WARN x-correlation-id={run}-req-$r hop=1 checkout slow inventory"; done"#,
            last = requests - 1
        ),
        format!(
            r#"pad=$(head -c 20000 /dev/zero | tr '\0' x); for r in $(seq 0 {last}); do echo "ERROR x-correlation-id={run}-req-$r hop=2 payments declined $pad"; echo "INFO x-correlation-id={run}-req-$r hop=2 payments done"; done"#,
            last = requests - 1
        ),
        format!(
            r#"for r in $(seq 0 {last}); do echo "ERROR x-correlation-id={run}-req-$r hop=3 notifier could not send receipt" >&2; done"#,
            last = requests - 1
        ),
    ];
    let mut containers = Vec::new();
    for (svc, script) in services.iter().zip(&scripts) {
        let c = docker::run(RunOpts {
            name: svc,
            labels: vec![format!("com.docker.compose.service={svc}")],
            script,
            ..Default::default()
        });
        assert_eq!(c.wait(), 0, "{svc} exited with an error");
        containers.push(c);
    }
    let pad = "x".repeat(20_000);
    for r in 0..requests {
        let id = format!("{run}-req-{r}");
        let mut expected: Vec<String> = (1..=3)
            .map(|k| format!(r#"{{"level":"info","correlation_id":"{id}","hop":0,"msg":"frontend step {k}"}}"#))
            .collect();
        expected.push(format!(
            "INFO x-correlation-id={id} hop=1 checkout reserved stock"
        ));
        expected.push(format!(
            "WARN x-correlation-id={id} hop=1 checkout slow inventory"
        ));
        expected.push(format!(
            "ERROR x-correlation-id={id} hop=2 payments declined {pad}"
        ));
        expected.push(format!("INFO x-correlation-id={id} hop=2 payments done"));
        expected.push(format!(
            "ERROR x-correlation-id={id} hop=3 notifier could not send receipt"
        ));
        stack.assert_correlation(&id, &expected, true);
        let (_, body) = api::get(&stack.api, &format!("/api/v1/correlations/{id}")).unwrap();
        let got_services: Vec<String> = body["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            got_services,
            services.to_vec(),
            "services along the request path"
        );
        let levels: Vec<&str> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["level"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            levels,
            ["info", "info", "info", "info", "warn", "error", "info", "error"]
        );
        let streams: Vec<&str> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["stream"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(streams[..7], ["stdout"; 7]);
        assert_eq!(streams[7], "stderr");
    }
}

#[test]
fn hdfs_block_ids_match_grep() {
    let Some(env) = Env::get() else { return };
    let run = run_id();
    let hdfs = sightline_tests::repo_root().join("../shared/data/loghub/HDFS_2k.log");
    let hdfs = hdfs
        .canonicalize()
        .expect("../shared/data/loghub/HDFS_2k.log");
    let stack = Stack::new(
        &env,
        &run,
        "[correlation]\ndefault_patterns = false\n\n[[correlation.patterns]]\nregex = 'blk_-?[0-9]+'\n",
    );
    let name = format!("hdfs-{run}");
    let c = docker::run(RunOpts {
        name: &name,
        labels: vec![format!("com.docker.compose.service={name}")],
        mounts: vec![(hdfs.as_path(), "/data/HDFS_2k.log")],
        script: "cat /data/HDFS_2k.log",
    });
    assert_eq!(c.wait(), 0);
    let text = std::fs::read_to_string(&hdfs).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let ids: std::collections::BTreeSet<&str> = Regex::new(r"blk_-?[0-9]+")
        .unwrap()
        .find_iter(&text)
        .map(|m| m.as_str())
        .collect();
    // A deterministic sample: every 60th block ID plus the most frequent one.
    let mut sample: Vec<&str> = ids.iter().copied().step_by(60).collect();
    sample.push("blk_-8775602795571523802");
    assert!(sample.len() >= 10);
    for id in sample {
        // `grep -w`: the ID as a whole token.
        let re = Regex::new(&format!(
            r"(^|[^0-9A-Za-z_-]){}($|[^0-9])",
            regex::escape(id)
        ))
        .unwrap();
        let expected: Vec<String> = lines
            .iter()
            .filter(|l| re.is_match(l))
            .map(|l| l.to_string())
            .collect();
        assert!(!expected.is_empty());
        stack.assert_correlation(id, &expected, false);
    }
}

/// A shell script that prints `n` lines, `line <i> x-correlation-id=<run>-k<i % ids> payload`,
/// pausing `pause` seconds after every 100.
fn steady_script(run: &str, n: usize, ids: usize, pause: &str) -> String {
    format!(
        r#"i=0; while [ $i -lt {n} ]; do echo "line $i x-correlation-id={run}-k$((i % {ids})) payload"; i=$((i+1)); if [ $((i % 100)) -eq 0 ]; then sleep {pause}; fi; done"#
    )
}

/// Every line of [`steady_script`] is found exactly once under its correlation ID.
fn assert_every_line_once(stack: &Stack, run: &str, n: usize, ids: usize) {
    for k in 0..ids {
        let id = format!("{run}-k{k}");
        let expected: Vec<String> = (0..n)
            .filter(|i| i % ids == k)
            .map(|i| format!("line {i} x-correlation-id={id} payload"))
            .collect();
        stack.assert_correlation(&id, &expected, false);
    }
}

#[test]
fn sigkill_restarts_keep_every_line_exactly_once() {
    let Some(env) = Env::get() else { return };
    let run = run_id();
    let mut stack = Stack::new(&env, &run, "");
    let name = format!("steady-{run}");
    let (n, ids) = (6000, 20);
    // About 6 s of steady logging: 100 lines, then a 0.1 s pause.
    let script = steady_script(&run, n, ids, "0.1");
    let c = docker::run(RunOpts {
        name: &name,
        labels: vec![format!("com.docker.compose.service={name}")],
        script: &script,
        ..Default::default()
    });
    std::thread::sleep(Duration::from_millis(1500));
    stack.collector.as_mut().unwrap().kill9();
    std::thread::sleep(Duration::from_millis(500));
    stack.aggregator.as_mut().unwrap().kill9();
    std::thread::sleep(Duration::from_millis(1000));
    stack.start_collector();
    stack.start_aggregator();
    std::thread::sleep(Duration::from_millis(1500));
    stack.collector.as_mut().unwrap().kill9();
    stack.start_collector();
    assert_eq!(c.wait(), 0);
    assert_every_line_once(&stack, &run, n, ids);
}

#[test]
fn broker_outage_spools_and_delivers_exactly_once() {
    let Some(env) = Env::get() else { return };
    let run = run_id();
    let metrics_port = free_port();
    // Kafka's message timeout (5 s) is far shorter than the outage (15 s).
    let extra = format!(
        r#"[kafka.client]
"message.timeout.ms" = "5000"

[spool]
spill_after_ms = 1000

[telemetry]
listen = "127.0.0.1:{metrics_port}"
"#
    );
    let stack = Stack::proxied(&env, &run, &extra);
    wait_for(Duration::from_secs(60), || {
        scrape_value(metrics_port, "sightline_collector_spooling")
    })
    .expect("collector /metrics");
    let name = format!("outage-{run}");
    let (n, ids) = (6000, 20);
    // About 12 s of steady logging: 100 lines, then a 0.2 s pause.
    let script = steady_script(&run, n, ids, "0.2");
    let c = docker::run(RunOpts {
        name: &name,
        labels: vec![format!("com.docker.compose.service={name}")],
        script: &script,
        ..Default::default()
    });
    std::thread::sleep(Duration::from_secs(2));
    let proxy = stack.proxy.as_ref().unwrap();
    proxy.pause();
    std::thread::sleep(Duration::from_secs(15));
    // While Kafka was unreachable, the lines went to the disk spool.
    let spooled = scrape_value(metrics_port, "sightline_collector_events_spooled_total").unwrap();
    assert!(
        spooled > 0.0,
        "nothing spooled during the outage\n{}",
        stack.logs()
    );
    assert_eq!(
        scrape_value(metrics_port, "sightline_collector_spooling"),
        Some(1.0)
    );
    proxy.resume();
    assert_eq!(c.wait(), 0);
    assert_every_line_once(&stack, &run, n, ids);
    // The spool drained and the sink produces directly again.
    let drained = wait_for(Duration::from_secs(60), || {
        (scrape_value(metrics_port, "sightline_collector_spool_bytes") == Some(0.0)
            && scrape_value(metrics_port, "sightline_collector_spooling") == Some(0.0))
        .then_some(())
    });
    assert!(drained.is_some(), "spool not drained\n{}", stack.logs());
}
