//! The collector against librdkafka's in-process mock cluster: a fake Docker containers
//! directory written in Docker's exact json-file format, rotation, split lines, a restart
//! from the checkpoint, and exact counts of what reached the topic.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::start;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use sightline_collector::config::{CollectorConfig, PatternConfig};
use sightline_model::LogEvent;

const TOPIC: &str = "logs-test";

struct FakeContainer {
    dir: PathBuf,
    log: PathBuf,
}

impl FakeContainer {
    fn new(root: &Path, id: &str, name: &str, service: &str) -> Self {
        let labels = format!(r#"{{"com.docker.compose.service":"{service}"}}"#);
        let log = common::fake_container(root, id, name, &labels);
        let dir = log.parent().unwrap().to_path_buf();
        FakeContainer { dir, log }
    }

    /// Appends one application line the way dockerd does, splitting at 16 KiB.
    fn write(&self, stream: &str, text: &str) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let line = format!("{text}\n");
        let bytes = line.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let mut end = (start + 16 * 1024).min(bytes.len());
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            let piece = &line[start..end];
            let framed = serde_json::json!({"log": piece, "stream": stream, "time": "2026-11-21T05:00:00.123456789Z"});
            writeln!(f, "{framed}").unwrap();
            start = end;
        }
    }

    /// Docker's rotation: shift `.N` to `.N+1`, rename the live file to `.1`, start a new one.
    fn rotate(&self) {
        for i in (1..5).rev() {
            let from = format!("{}.{i}", self.log.display());
            if Path::new(&from).exists() {
                fs::rename(&from, format!("{}.{}", self.log.display(), i + 1)).unwrap();
            }
        }
        fs::rename(&self.log, format!("{}.1", self.log.display())).unwrap();
        File::create(&self.log).unwrap();
    }
}

fn config(root: &Path, data: &Path, brokers: &str) -> CollectorConfig {
    let mut cfg = common::config(root, data, brokers, TOPIC);
    cfg.batch.linger_ms = 20;
    cfg.correlation.patterns = vec![PatternConfig {
        regex: r"order-\d+".into(),
    }];
    cfg.validate().unwrap();
    cfg
}

struct Reader {
    consumer: BaseConsumer,
    events: Vec<(i32, LogEvent)>,
}

impl Reader {
    fn new(brokers: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "test-reader")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        Reader {
            consumer,
            events: Vec::new(),
        }
    }

    /// Polls until `n` events have arrived in total (or 30 s pass), then 300 ms more to catch
    /// anything extra.
    fn until(&mut self, n: usize) -> Vec<LogEvent> {
        common::poll_events(
            &self.consumer,
            &mut self.events,
            n,
            Duration::from_millis(300),
        );
        self.events.iter().map(|(_, e)| e.clone()).collect()
    }
}

fn messages_for(events: &[LogEvent], id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.correlation_ids.iter().any(|c| c == id))
        .map(|e| e.message.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tails_rotates_reassembles_and_resumes_exactly() {
    let cluster = common::cluster(TOPIC, 3);
    let brokers = cluster.bootstrap_servers();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let web = FakeContainer::new(root.path(), "aaaa1111", "web-1", "web");
    let db = FakeContainer::new(root.path(), "bbbb2222", "db-1", "db");

    // Lines before the collector starts, then while it runs.
    for i in 0..50 {
        web.write(
            "stdout",
            &format!(
                r#"{{"level":"info","correlation_id":"req-{}","msg":"web {i}"}}"#,
                i % 5
            ),
        );
    }
    let (stop, handle, stats) = start(config(root.path(), data.path(), &brokers)).await;
    let big = "x".repeat(40 * 1024);
    for i in 0..50 {
        db.write("stderr", &format!("ERROR order-{} failed {i}", i % 5));
    }
    db.write("stdout", &format!("x-correlation-id=req-big {big}"));
    web.rotate();
    for i in 50..100 {
        web.write(
            "stdout",
            &format!(
                r#"{{"level":"warn","correlation_id":"req-{}","msg":"web {i}"}}"#,
                i % 5
            ),
        );
    }

    let mut reader = Reader::new(&brokers);
    let events = reader.until(151);
    assert_eq!(
        events.len(),
        151,
        "exactly the lines written, no duplicates"
    );
    let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 151);
    let req0 = messages_for(&events, "req-0");
    let expected: Vec<String> = (0..100)
        .filter(|i| i % 5 == 0)
        .map(|i| {
            let lvl = if i < 50 { "info" } else { "warn" };
            format!(r#"{{"level":"{lvl}","correlation_id":"req-0","msg":"web {i}"}}"#)
        })
        .collect();
    assert_eq!(req0, expected, "in order across the rotation");
    let order3 = messages_for(&events, "order-3");
    assert_eq!(order3.len(), 10);
    assert!(order3.iter().all(|m| m.starts_with("ERROR order-3 failed")));
    let big_ev = events
        .iter()
        .find(|e| e.correlation_id() == Some("req-big"))
        .unwrap();
    assert_eq!(
        big_ev.message,
        format!("x-correlation-id=req-big {big}"),
        "16 KiB pieces joined"
    );
    let db_ev = events.iter().find(|e| e.service == "db").unwrap();
    assert_eq!(db_ev.stream, "stderr");
    assert_eq!(db_ev.level, Some(sightline_model::Level::Error));
    assert_eq!(db_ev.host, "test-host");
    assert_eq!(db_ev.timestamp_ns, 1_795_237_200_123_456_789);

    // Graceful stop writes the checkpoint; a restart reads only new lines.
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert_eq!(stats.snapshot().events_sent, 151);
    for i in 0..7 {
        web.write(
            "stdout",
            &format!("after restart x-correlation-id=req-new {i}"),
        );
    }
    let (stop, handle, _) = start(config(root.path(), data.path(), &brokers)).await;
    let events = reader.until(158);
    assert_eq!(events.len(), 158, "no line re-sent after a clean restart");
    assert_eq!(messages_for(&events, "req-new").len(), 7);

    // A removed container is finished and its checkpoint dropped.
    fs::remove_dir_all(&db.dir).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    let cps: serde_json::Value =
        serde_json::from_slice(&fs::read(data.path().join("checkpoints.json")).unwrap()).unwrap();
    let keys: Vec<_> = cps["files"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["aaaa1111"]);
    let web_size = fs::metadata(&web.log).unwrap().len();
    assert_eq!(cps["files"]["aaaa1111"]["offset"].as_u64(), Some(web_size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_shipped_marked_never_dropped() {
    let cluster = common::cluster(TOPIC, 2);
    let brokers = cluster.bootstrap_servers();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let c = FakeContainer::new(root.path(), "cccc3333", "junk-1", "junk");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&c.log)
        .unwrap();
    f.write_all(b"{\"log\":\"fine\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-21T05:00:00Z\"}\n")
        .unwrap();
    f.write_all(b"{\"log\":\"truncated json\n").unwrap();
    f.write_all(b"\xff\xfe\x00\x00 binary junk\n").unwrap();
    f.write_all(
        b"{\"log\":\"nul \\u0000 inside\\n\",\"stream\":\"stdout\",\"time\":\"not a time\"}\n",
    )
    .unwrap();
    let huge = "y".repeat(1024 * 1024);
    writeln!(f, "{}", serde_json::json!({"log": format!("{huge}\n"), "stream": "stdout", "time": "2026-11-21T05:00:00Z"})).unwrap();
    drop(f);
    let (stop, handle, _) = start(config(root.path(), data.path(), &brokers)).await;
    let mut reader = Reader::new(&brokers);
    let events = reader.until(8);
    stop.send(true).unwrap();
    handle.await.unwrap();
    // 1 fine + 2 malformed + 1 with NUL + the 1 MiB line cut into 4 parts of 256 KiB.
    assert_eq!(events.len(), 8);
    let errors: Vec<_> = events.iter().filter(|e| e.parse_error.is_some()).collect();
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().any(|e| e.message.contains("binary junk")));
    assert!(events.iter().any(|e| e.message == "nul \0 inside"));
    let parts: Vec<_> = events
        .iter()
        .filter(|e| e.attributes.contains_key("sightline.split_part"))
        .collect();
    assert_eq!(parts.len(), 4);
    assert_eq!(
        parts.iter().map(|e| e.message.len()).sum::<usize>(),
        huge.len()
    );
    let _ = HashMap::<(), ()>::new();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rotations_while_stopped_lose_nothing() {
    let cluster = common::cluster(TOPIC, 2);
    let brokers = cluster.bootstrap_servers();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let c = FakeContainer::new(root.path(), "dddd4444", "api-1", "api");
    let mut cfg = config(root.path(), data.path(), &brokers);
    // Small reads, so reads end at many places (some exactly on a newline).
    cfg.docker.read_buffer_bytes = 4096;
    let line = |i: usize| {
        format!(
            "x-correlation-id=rot-{} line {i} {}",
            i % 3,
            "p".repeat(i % 97)
        )
    };
    for i in 0..300 {
        c.write("stdout", &line(i));
    }
    let (stop, handle, _) = start(cfg.clone()).await;
    let mut reader = Reader::new(&brokers);
    assert_eq!(reader.until(300).len(), 300);
    stop.send(true).unwrap();
    handle.await.unwrap();
    // While stopped: more lines in file A, then A -> .1 -> .2 and B -> .1, then C live.
    for i in 300..400 {
        c.write("stdout", &line(i));
    }
    c.rotate();
    for i in 400..700 {
        c.write("stdout", &line(i));
    }
    c.rotate();
    for i in 700..900 {
        c.write("stdout", &line(i));
    }
    let (stop, handle, _) = start(cfg.clone()).await;
    // And one more rotation while it runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.rotate();
    for i in 900..1000 {
        c.write("stdout", &line(i));
    }
    let events = reader.until(1000);
    stop.send(true).unwrap();
    handle.await.unwrap();
    let mut got: Vec<String> = events.iter().map(|e| e.message.clone()).collect();
    let mut want: Vec<String> = (0..1000).map(line).collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), 1000, "every line once");
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_stack_traces_and_masks_secrets() {
    let cluster = common::cluster(TOPIC, 1);
    let brokers = cluster.bootstrap_servers();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = FakeContainer::new(root.path(), "cccc3333", "app-1", "app");
    let mut cfg = config(root.path(), data.path(), &brokers);
    cfg.multiline = toml::from_str("mode = \"auto\"\nflush_timeout_ms = 200").unwrap();
    cfg.redaction = toml::from_str("builtin = [\"password\", \"aws_access_key_id\"]").unwrap();
    cfg.validate().unwrap();
    let trace = [
        "2026-11-21 08:00:00 ERROR order-7 request failed",
        "java.lang.IllegalStateException: stock below zero",
        "\tat com.shop.Inventory.take(Inventory.java:42)",
        "\tat com.shop.Checkout.run(Checkout.java:17)",
        "Caused by: java.sql.SQLException: deadlock",
        "\t... 12 more",
    ];
    for l in trace {
        app.write("stderr", l);
    }
    app.write("stdout", "login ok user=alice password=hunter2 order-8");
    app.write("stdout", "key AKIAIOSFODNN7EXAMPLE used by order-9");
    let (stop, handle, stats) = start(cfg).await;
    let mut reader = Reader::new(&brokers);
    let events = reader.until(4);
    stop.send(true).unwrap();
    handle.await.unwrap();
    // The log line before the exception stands alone (Fluent Bit's java rule starts a
    // record at the exception line); the exception and its frames are one event.
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!(messages_for(&events, "order-7"), vec![trace[0].to_string()]);
    let joined = events
        .iter()
        .find(|e| e.message.starts_with("java.lang"))
        .unwrap();
    assert_eq!(joined.message, trace[1..].join("\n"));
    assert_eq!(joined.attributes["sightline.multiline.lines"], "5");
    assert_eq!(joined.stream, "stderr");
    let login = &messages_for(&events, "order-8")[0];
    assert!(!login.contains("hunter2"), "{login}");
    assert!(
        login.starts_with("login ok user=alice password="),
        "{login}"
    );
    let key = &messages_for(&events, "order-9")[0];
    assert!(!key.contains("AKIAIOSFODNN7EXAMPLE"), "{key}");
    assert_eq!(stats.snapshot().redactions, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_flushes_records_held_by_multiline() {
    let cluster = common::cluster(TOPIC, 1);
    let brokers = cluster.bootstrap_servers();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = FakeContainer::new(root.path(), "dddd4444", "app-2", "app");
    let mut cfg = config(root.path(), data.path(), &brokers);
    // The last record of a file is held until the next start line or the timeout.
    cfg.multiline =
        toml::from_str("mode = \"custom\"\nstart_pattern = '^START'\nflush_timeout_ms = 60000")
            .unwrap();
    cfg.validate().unwrap();
    let (stop, handle, _stats) = start(cfg).await;
    app.write("stdout", "START order-1 first");
    app.write("stdout", "  detail of order-1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.rotate();
    app.write("stdout", "START order-2 second");
    app.write("stdout", "  detail of order-2");
    app.write("stdout", "START order-3 third");
    let mut reader = Reader::new(&brokers);
    let events = reader.until(2);
    stop.send(true).unwrap();
    handle.await.unwrap();
    // order-1's record was held when its file was rotated away: it still arrives, whole.
    assert_eq!(
        messages_for(&events, "order-1"),
        vec!["START order-1 first\n  detail of order-1".to_string()]
    );
    assert_eq!(
        messages_for(&events, "order-2"),
        vec!["START order-2 second\n  detail of order-2".to_string()]
    );
}
