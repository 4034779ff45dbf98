//! The collector across a real Docker engine restart, on a private `dockerd` of the test's own
//! (so the machine's engine and the other tests' containers are never touched):
//!
//! 1. a container with `--restart always` logs steadily; the collector tails its json-file
//!    log and follows the engine's events and stats;
//! 2. the engine is stopped as a service manager does (SIGTERM: it stops the container);
//!    while it is down the collector is killed (SIGKILL) and started again, so it starts
//!    with no engine to talk to;
//! 3. the engine starts again and restarts the container (its second boot appends to the
//!    same log file); a new container logs and exits.
//!
//! Every line in both containers' json-file logs, as Docker wrote them on disk, is in Kafka
//! exactly once; the events after the restart (`start` of the restarted container; `create`,
//! `start`, `die` with exit code 0 of the new one) are on the audit topic; stats samples of
//! the restarted container resume.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sightline_model::decode_logs;
use sightline_model::metric::names;
use sightline_tests::docker::{build_image, IMAGE};
use sightline_tests::dockerd::PrivateEngine;
use sightline_tests::kafka::{audit_events, container_metrics, read_all};
use sightline_tests::{bin, free_port, run_id, scrape, wait_for, Broker, Env, Proc};

/// Lines the steady container writes in its second boot: 20 every 0.1 s, so about 7 s'
/// worth. Its first boot logs at that pace until the engine stops it.
const LINES_PER_BOOT: usize = 1400;
/// Lines the container started after the restart writes before it exits.
const BURST_LINES: usize = 300;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The messages of a container's json-file log as Docker wrote it (`log` without its
/// newline), in file order; a last line the engine is still writing is left out.
fn lines_on_disk(engine: &PrivateEngine, id: &str) -> Vec<String> {
    let path = engine
        .containers_dir()
        .join(id)
        .join(format!("{id}-json.log"));
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json-file line");
            v["log"]
                .as_str()
                .expect("log field")
                .trim_end_matches('\n')
                .to_string()
        })
        .collect()
}

/// Log messages on the topic, per container ID.
fn lines_in_kafka(brokers: &str, topic: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for payload in read_all(
        brokers,
        topic,
        Duration::from_secs(2),
        Duration::from_secs(30),
    ) {
        for e in decode_logs(&payload).expect("OTLP LogsData") {
            if let Some(c) = &e.container {
                out.entry(c.id.clone()).or_default().push(e.message);
            }
        }
    }
    out
}

/// The host's network interfaces, but containers' veth ends.
fn host_interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| !n.starts_with("veth"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn tail(dir: &std::path::Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(40).collect();
    format!(
        "--- {name}.log (last 40 lines)\n{}",
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

#[test]
fn engine_restart_loses_no_line_and_events_and_stats_resume() {
    let Some(env) = Env::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let interfaces = host_interfaces();
    let Some(mut engine) = PrivateEngine::start(dir.path()) else {
        return;
    };
    build_image(Some(&engine.host()));
    let run = run_id();
    let broker = Broker::start(&env, dir.path());
    let port = free_port();
    let (logs_topic, audit_topic, metrics_topic) = (
        format!("logs-{run}"),
        format!("audit-{run}"),
        format!("metrics-{run}"),
    );
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
host = "restart-host"

[docker]
containers_dir = "{containers}"
poll_interval_ms = 50

[kafka]
brokers = "{brokers}"
topic = "{logs_topic}"
audit_topic = "{audit_topic}"
metrics_topic = "{metrics_topic}"
partitions = 2

[batch]
linger_ms = 50

[docker_engine]
socket = "{socket}"
max_backoff_ms = 1000

[docker_engine.stats]
interval_ms = 2000

[telemetry]
listen = "127.0.0.1:{port}"
"#,
            data = dir.path().join("collector-data").display(),
            containers = engine.containers_dir().display(),
            brokers = broker.addr,
            socket = engine.socket().display(),
        ),
    )
    .unwrap();
    let start_collector = || {
        let mut cmd = Command::new(bin("sightline-collector"));
        cmd.args(["--config", config.to_str().unwrap()]);
        let p = Proc::spawn("collector", cmd, dir.path());
        wait_for(Duration::from_secs(60), || scrape(port)).expect("collector serves /metrics");
        p
    };
    let mut collector = start_collector();
    // The event stream is followed from start-up on: give it a moment to connect.
    std::thread::sleep(Duration::from_secs(1));

    // 1. A steady logger that the engine restarts; its boot number lives on a volume.
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let script = format!(
        r#"b=$(cat /state/boot 2>/dev/null || echo 0); b=$((b+1)); echo $b > /state/boot; i=0; while [ $b -lt 2 ] || [ $i -lt {LINES_PER_BOOT} ]; do echo "boot $b line $i x-correlation-id={run}"; i=$((i+1)); if [ $((i % 20)) -eq 0 ]; then sleep 0.1; fi; done; while :; do sleep 1; done"#
    );
    let steady = engine.docker(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--stop-timeout",
        "1",
        "--log-driver",
        "json-file",
        "--name",
        &format!("steady-{run}"),
        "--label",
        "com.docker.compose.service=steady",
        "-v",
        &format!("{}:/state", state.display()),
        IMAGE,
        &script,
    ]);
    // Before the restart, the collector follows it all: lines, its start event, its stats.
    let before = wait_for(Duration::from_secs(60), || {
        let lines = lines_in_kafka(&broker.addr, &logs_topic);
        let started = audit_events(&broker.addr, &audit_topic)
            .iter()
            .any(|e| e.actor.id == steady && e.action == "container.start");
        let sampled = !container_metrics(&broker.addr, &metrics_topic, &steady).is_empty();
        (lines.get(&steady).is_some_and(|l| !l.is_empty()) && started && sampled).then_some(())
    });
    assert!(
        before.is_some(),
        "lines, start event and stats of the steady container before the restart\n{}",
        tail(dir.path(), "collector")
    );

    // 2. The engine goes down mid-stream; the collector restarts while it is down.
    engine.stop();
    let boot1 = lines_on_disk(&engine, &steady).len();
    assert!(boot1 > 0, "the first boot logged");
    std::thread::sleep(Duration::from_secs(2));
    collector.kill9();
    collector = start_collector();
    std::thread::sleep(Duration::from_secs(2));

    // 3. The engine is back: it restarts the steady container; a new one logs and exits.
    let before_up = now_ns();
    engine.up();
    let burst = engine.docker(&[
        "run",
        "-d",
        "--log-driver",
        "json-file",
        "--name",
        &format!("burst-{run}"),
        "--label",
        "com.docker.compose.service=burst",
        IMAGE,
        &format!(
            r#"i=0; while [ $i -lt {BURST_LINES} ]; do echo "burst line $i x-correlation-id={run}"; i=$((i+1)); done"#
        ),
    ]);
    assert_eq!(engine.docker(&["wait", &burst]), "0");
    let last = format!("boot 2 line {} x-correlation-id={run}", LINES_PER_BOOT - 1);
    wait_for(Duration::from_secs(60), || {
        lines_on_disk(&engine, &steady)
            .contains(&last)
            .then_some(())
    })
    .expect("the engine restarted the steady container and it wrote its second boot");

    // Every line on disk is in Kafka exactly once.
    let want_steady = lines_on_disk(&engine, &steady);
    let want_burst = lines_on_disk(&engine, &burst);
    assert_eq!(want_steady.len(), boot1 + LINES_PER_BOOT);
    assert_eq!(want_burst.len(), BURST_LINES);
    let done = wait_for(Duration::from_secs(90), || {
        let got = lines_in_kafka(&broker.addr, &logs_topic);
        let n = |id: &str| got.get(id).map_or(0, Vec::len);
        (n(&steady) >= want_steady.len() && n(&burst) >= want_burst.len()).then_some(())
    });
    if done.is_none() {
        let got = lines_in_kafka(&broker.addr, &logs_topic);
        panic!(
            "steady: {} of {} lines, burst: {} of {}\n{}\n{}",
            got.get(&steady).map_or(0, Vec::len),
            want_steady.len(),
            got.get(&burst).map_or(0, Vec::len),
            want_burst.len(),
            tail(dir.path(), "collector"),
            tail(dir.path(), "dockerd"),
        );
    }
    // Let a duplicate, if any, arrive before judging.
    std::thread::sleep(Duration::from_secs(2));
    let got = lines_in_kafka(&broker.addr, &logs_topic);
    for (id, want) in [(&steady, &want_steady), (&burst, &want_burst)] {
        let mut got = got.get(id).cloned().unwrap_or_default();
        let mut want = want.clone();
        got.sort();
        want.sort();
        assert_eq!(got.len(), want.len(), "container {id}: exactly once");
        assert_eq!(got, want, "container {id}: the lines Docker wrote");
    }

    // Events after the restart.
    let events = audit_events(&broker.addr, &audit_topic);
    let find = |actor: &str, action: &str, after: u64| {
        events
            .iter()
            .find(|e| e.actor.id == actor && e.action == action && e.time_ns >= after)
    };
    assert!(
        find(&steady, "container.start", before_up).is_some(),
        "the engine's restart of the steady container is an audit event: {:?}\n{}",
        events
            .iter()
            .filter(|e| e.actor.id == steady)
            .map(|e| (e.action.as_str(), e.time_ns))
            .collect::<Vec<_>>(),
        tail(dir.path(), "collector")
    );
    assert!(
        find(&burst, "container.create", before_up).is_some(),
        "create"
    );
    assert!(
        find(&burst, "container.start", before_up).is_some(),
        "start"
    );
    let die = find(&burst, "container.die", before_up).expect("die");
    assert_eq!(
        die.attributes.get("exit_code").map(String::as_str),
        Some("0")
    );
    assert_eq!(
        die.resource.service, "burst",
        "service from the compose label"
    );

    // Stats resume for the restarted container.
    let samples = wait_for(Duration::from_secs(60), || {
        let m = container_metrics(&broker.addr, &metrics_topic, &steady);
        m.iter()
            .any(|b| b.time_ns > before_up && b.value(names::MEMORY_USAGE_TOTAL).is_some())
            .then_some(m)
    })
    .expect("stats samples of the steady container after the engine restart");
    assert!(
        samples.iter().any(|b| b.time_ns < before_up),
        "and before it"
    );

    assert!(
        collector.terminate(Duration::from_secs(30)),
        "collector exits cleanly on SIGTERM\n{}",
        tail(dir.path(), "collector")
    );
    // The private engine left the machine's network alone (its bridge `docker0` included).
    drop(engine);
    assert_eq!(host_interfaces(), interfaces, "host network interfaces");
}
