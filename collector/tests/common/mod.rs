//! Setup shared by the collector's integration tests: a fake Docker containers directory,
//! librdkafka's mock cluster, the collector started on a task, and a topic read back.

// Each test binary compiles this module but uses only some of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sightline_collector::config::CollectorConfig;
use sightline_collector::stats::Stats;
use sightline_model::{decode_logs, LogEvent};
use tokio::sync::watch;

/// Writes container `id`'s directory under `root` with its `config.v2.json` (name `/<name>`,
/// image busybox, `labels` a JSON object) and returns the path of its json-file log.
pub fn fake_container(root: &Path, id: &str, name: &str, labels: &str) -> PathBuf {
    let dir = root.join(id);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("config.v2.json"),
        format!(
            r#"{{"ID":"{id}","Name":"/{name}","Config":{{"Image":"busybox","Labels":{labels}}}}}"#
        ),
    )
    .unwrap();
    dir.join(format!("{id}-json.log"))
}

/// Appends each text to the json-file `log` as one stdout line (the text put in unescaped)
/// stamped 2026-11-21T05:00:00Z.
pub fn append_stdout(log: &Path, texts: impl IntoIterator<Item = String>) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    for text in texts {
        writeln!(
            f,
            r#"{{"log":"{text}\n","stream":"stdout","time":"2026-11-21T05:00:00Z"}}"#
        )
        .unwrap();
    }
}

/// A one-broker mock cluster holding `topic` with `partitions` partitions.
pub fn cluster(topic: &str, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(topic, partitions, 1).unwrap();
    cluster
}

/// A collector config (not yet validated) tailing `root` quickly, keeping its state in
/// `data` and shipping to `topic` on `brokers`, with the Docker engine API off so this
/// host's real containers stay out of it.
pub fn config(root: &Path, data: &Path, brokers: &str, topic: &str) -> CollectorConfig {
    let mut cfg = CollectorConfig::default();
    cfg.docker.containers_dir = root.to_path_buf();
    cfg.docker.poll_interval_ms = 20;
    cfg.docker.discovery_interval_ms = 50;
    cfg.data_dir = data.to_path_buf();
    cfg.kafka.brokers = brokers.to_string();
    cfg.kafka.topic = topic.into();
    cfg.host = Some("test-host".into());
    cfg.docker_engine.enabled = Some(false);
    cfg
}

/// Starts `sightline_collector::run` on a task: the shutdown sender, the task and its stats.
pub async fn start(
    cfg: CollectorConfig,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>, Arc<Stats>) {
    let (tx, rx) = watch::channel(false);
    let stats = Arc::new(Stats::default());
    let s = stats.clone();
    let h = tokio::spawn(async move { sightline_collector::run(cfg, s, rx).await.unwrap() });
    (tx, h, stats)
}

/// Waits until `f` holds, checking every 20 ms; fails the test after `timeout`.
pub async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `consumer` into `out` (each event with its partition) until `out` holds `n`
/// events (or 30 s pass), then `extra` more to catch anything beyond.
pub fn poll_events(
    consumer: &BaseConsumer,
    out: &mut Vec<(i32, LogEvent)>,
    n: usize,
    extra: Duration,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut extra_until: Option<Instant> = None;
    loop {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let events = decode_logs(m.payload().unwrap()).unwrap();
            out.extend(events.into_iter().map(|e| (m.partition(), e)));
        }
        if out.len() >= n && extra_until.is_none() {
            extra_until = Some(Instant::now() + extra);
        }
        if extra_until.is_some_and(|t| Instant::now() > t) || Instant::now() > deadline {
            return;
        }
    }
}

/// Every event in `topic` (partitions `0..partitions`, read from the beginning by a consumer
/// of `group` that commits nothing) with its partition, in partition order: polls until `n`
/// came (or 30 s), then 500 ms more to catch anything extra. Blocks.
pub fn read_topic(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    n: usize,
) -> Vec<(i32, LogEvent)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    poll_events(&consumer, &mut out, n, Duration::from_millis(500));
    out
}

/// The number `i` of an event whose message starts `line <i> `.
pub fn line(e: &LogEvent) -> usize {
    e.message
        .strip_prefix("line ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// A string map from literal pairs.
pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
