//! The collector started while Kafka is down (librdkafka's mock cluster with its broker
//! down): it reads at once; what it reads waits (in memory without a spool, on disk with
//! one) and reaches Kafka exactly once, in order per key, in the partition the topic's *real*
//! partition count gives (3, not the configured 6), once the broker is up. A shutdown during
//! the outage is prompt and loses nothing.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sightline_collector::checkpoint::CheckpointStore;
use sightline_collector::config::CollectorConfig;
use sightline_collector::stats::Stats;
use sightline_model::kafka::partition_for_key;
use sightline_model::{decode_logs, LogEvent};
use tokio::sync::watch;

const TOPIC: &str = "down-test";
const PARTITIONS: i32 = 3;
const ID: &str = "d0d0000000000000000000000000000000000000000000000000000000000001";

fn container(root: &Path) -> PathBuf {
    let dir = root.join(ID);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("config.v2.json"),
        format!(r#"{{"ID":"{ID}","Name":"/down","Config":{{"Image":"busybox","Labels":{{}}}}}}"#),
    )
    .unwrap();
    dir.join(format!("{ID}-json.log"))
}

/// Lines `from..to`, line `i` with correlation ID `k<i % 7>`.
fn write_lines(log: &Path, from: usize, to: usize) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    for i in from..to {
        writeln!(
            f,
            r#"{{"log":"line {i} x-correlation-id=k{} payload\n","stream":"stdout","time":"2026-11-21T05:00:00Z"}}"#,
            i % 7
        )
        .unwrap();
    }
}

fn config(root: &Path, data: &Path, brokers: &str, spool: bool) -> CollectorConfig {
    let mut cfg = CollectorConfig::default();
    cfg.docker.containers_dir = root.to_path_buf();
    cfg.docker.poll_interval_ms = 20;
    cfg.docker.discovery_interval_ms = 50;
    cfg.data_dir = data.to_path_buf();
    cfg.kafka.brokers = brokers.to_string();
    cfg.kafka.topic = TOPIC.into();
    cfg.kafka.partitions = 6; // the topic has 3: the collector must use what the broker says
    cfg.host = Some("test-host".into());
    cfg.docker_engine.enabled = Some(false);
    cfg.batch.linger_ms = 20;
    cfg.spool.enabled = spool;
    cfg.validate().unwrap();
    cfg
}

/// A cluster whose one broker holds the topic (3 partitions) and is down.
fn cluster_down() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    cluster.broker_down(1).unwrap();
    cluster
}

async fn start(
    cfg: CollectorConfig,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>, Arc<Stats>) {
    let (tx, rx) = watch::channel(false);
    let stats = Arc::new(Stats::default());
    let s = stats.clone();
    let h = tokio::spawn(async move { sightline_collector::run(cfg, s, rx).await.unwrap() });
    (tx, h, stats)
}

async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every event in the topic with its partition, in partition order: polls until `n` came
/// (or 30 s), then 500 ms more to catch anything extra.
fn read_topic(brokers: &str, n: usize) -> Vec<(i32, LogEvent)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "down-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut extra_until: Option<Instant> = None;
    let mut out = Vec::new();
    loop {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let events = decode_logs(m.payload().unwrap()).unwrap();
            out.extend(events.into_iter().map(|e| (m.partition(), e)));
        }
        if out.len() >= n && extra_until.is_none() {
            extra_until = Some(Instant::now() + Duration::from_millis(500));
        }
        if extra_until.is_some_and(|t| Instant::now() > t) || Instant::now() > deadline {
            return out;
        }
    }
}

/// Lines `0..n` each exactly once, each in its key's partition, in order per key.
fn assert_every_line_once(events: &[(i32, LogEvent)], n: usize) {
    let line = |e: &LogEvent| -> usize {
        e.message
            .strip_prefix("line ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    let mut lines: Vec<usize> = events.iter().map(|(_, e)| line(e)).collect();
    lines.sort_unstable();
    assert_eq!(lines, (0..n).collect::<Vec<_>>(), "each line exactly once");
    let mut per_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (p, e) in events {
        let key = e.correlation_id().unwrap();
        assert_eq!(*p, partition_for_key(key.as_bytes(), PARTITIONS), "{key}");
        per_key.entry(key).or_default().push(line(e));
    }
    for (key, lines) in per_key {
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "{key}: {lines:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spool_lines_wait_in_memory_and_go_to_the_real_partitions() {
    let cluster = cluster_down();
    let brokers = cluster.bootstrap_servers();
    let (root, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = container(root.path());
    write_lines(&log, 0, 300);
    let (stop, handle, stats) = start(config(root.path(), data.path(), &brokers, false)).await;
    until(
        "the lines read during the outage",
        Duration::from_secs(10),
        || stats.snapshot().events_read >= 300,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats.snapshot().events_sent, 0);
    cluster.broker_up(1).unwrap();
    write_lines(&log, 300, 400);
    let b = brokers.clone();
    let events = tokio::task::spawn_blocking(move || read_topic(&b, 400))
        .await
        .unwrap();
    assert_every_line_once(&events, 400);
    stop.send(true).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_the_outage_is_prompt_and_loses_nothing() {
    for spool in [false, true] {
        let cluster = cluster_down();
        let brokers = cluster.bootstrap_servers();
        let (root, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let log = container(root.path());
        write_lines(&log, 0, 200);
        let cfg = config(root.path(), data.path(), &brokers, spool);
        let (stop, handle, stats) = start(cfg.clone()).await;
        until("the lines read", Duration::from_secs(10), || {
            stats.snapshot().events_read >= 200
        })
        .await;
        if spool {
            until("the lines spooled", Duration::from_secs(10), || {
                stats.spool_state().1 >= 200
            })
            .await;
        }
        let t = Instant::now();
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("prompt shutdown")
            .unwrap();
        eprintln!("spool {spool}: shutdown took {:?}", t.elapsed());
        // The checkpoint moved only past what is durable: in the spool, or nothing.
        let saved = CheckpointStore::open(data.path()).unwrap().load().unwrap();
        let offset = saved.get(ID).map_or(0, |c| c.offset);
        let size = fs::metadata(&log).unwrap().len();
        assert_eq!(offset, if spool { size } else { 0 }, "spool {spool}");

        // The next start, with Kafka back, delivers every line once.
        cluster.broker_up(1).unwrap();
        write_lines(&log, 200, 250);
        let (stop, handle, _) = start(cfg).await;
        let b = brokers.clone();
        let events = tokio::task::spawn_blocking(move || read_topic(&b, 250))
            .await
            .unwrap();
        assert_every_line_once(&events, 250);
        stop.send(true).unwrap();
        handle.await.unwrap();
    }
}
