//! The collector started while Kafka is down (librdkafka's mock cluster with its broker
//! down): it reads at once; what it reads waits (in memory without a spool, on disk with
//! one) and reaches Kafka exactly once, in order per key, in the partition the topic's *real*
//! partition count gives (3, not the configured 6), once the broker is up. A shutdown during
//! the outage is prompt and loses nothing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{line, start, until};
use rdkafka::mocking::MockCluster;
use sightline_collector::checkpoint::CheckpointStore;
use sightline_collector::config::CollectorConfig;
use sightline_model::kafka::partition_for_key;
use sightline_model::LogEvent;

const TOPIC: &str = "down-test";
const PARTITIONS: i32 = 3;
const ID: &str = "d0d0000000000000000000000000000000000000000000000000000000000001";

fn container(root: &Path) -> PathBuf {
    common::fake_container(root, ID, "down", "{}")
}

/// Lines `from..to`, line `i` with correlation ID `k<i % 7>`.
fn write_lines(log: &Path, from: usize, to: usize) {
    common::append_stdout(
        log,
        (from..to).map(|i| format!("line {i} x-correlation-id=k{} payload", i % 7)),
    );
}

fn config(root: &Path, data: &Path, brokers: &str, spool: bool) -> CollectorConfig {
    let mut cfg = common::config(root, data, brokers, TOPIC);
    cfg.kafka.partitions = 6; // the topic has 3: the collector must use what the broker says
    cfg.batch.linger_ms = 20;
    cfg.spool.enabled = spool;
    cfg.validate().unwrap();
    cfg
}

/// A cluster whose one broker holds the topic (3 partitions) and is down.
fn cluster_down() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = common::cluster(TOPIC, PARTITIONS);
    cluster.broker_down(1).unwrap();
    cluster
}

/// Every event in the topic with its partition, in partition order: polls until `n` came
/// (or 30 s), then 500 ms more to catch anything extra.
fn read_topic(brokers: &str, n: usize) -> Vec<(i32, LogEvent)> {
    common::read_topic(brokers, "down-reader", TOPIC, PARTITIONS, n)
}

/// Lines `0..n` each exactly once, each in its key's partition, in order per key.
fn assert_every_line_once(events: &[(i32, LogEvent)], n: usize) {
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
