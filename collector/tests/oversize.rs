//! Kafka refusing batches as too large (`MessageSizeTooLarge`), against librdkafka's mock
//! cluster: the producer's own `message.max.bytes` below the batch size (refused when
//! enqueued), the broker refusing produce requests (refused on delivery), and spooled
//! batches drained under a low limit. Every line must arrive exactly once, in order per key;
//! a line alone larger than the limit arrives cut and marked, never dropped.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{line, start};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sightline_collector::config::CollectorConfig;
use sightline_collector::sinks::oversize::TRUNCATED_ATTR;
use sightline_model::LogEvent;

const TOPIC: &str = "oversize-test";
const PARTITIONS: i32 = 2;
const ID: &str = "b16b000000000000000000000000000000000000000000000000000000000001";
const BIG: usize = 100_000;

fn container(root: &Path) -> PathBuf {
    common::fake_container(root, ID, "big", "{}")
}

/// Lines `0..n` (`line <i> x-correlation-id=k<i % 5> <padding>`, ~300 bytes), and, when
/// `big`, line `n` of [`BIG`] bytes.
fn write_lines(log: &Path, n: usize, big: bool) {
    let pad = "p".repeat(250);
    let lines = (0..n).map(|i| format!("line {i} x-correlation-id=k{} {pad}", i % 5));
    let big = big.then(|| format!("line {n} x-correlation-id=big ") + &"b".repeat(BIG));
    common::append_stdout(log, lines.chain(big));
}

fn config(root: &Path, data: &Path, brokers: &str, max_message: Option<&str>) -> CollectorConfig {
    let mut cfg = common::config(root, data, brokers, TOPIC);
    cfg.batch.linger_ms = 50;
    if let Some(m) = max_message {
        cfg.kafka
            .client
            .insert("message.max.bytes".into(), m.into());
    }
    cfg.validate().unwrap();
    cfg
}

/// Every event in the topic, in partition order: polls until `n` came (or 30 s), then
/// 500 ms more to catch anything extra.
async fn read_topic(brokers: &str, n: usize) -> Vec<LogEvent> {
    let brokers = brokers.to_string();
    tokio::task::spawn_blocking(move || {
        common::read_topic(&brokers, "oversize-reader", TOPIC, PARTITIONS, n)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    })
    .await
    .unwrap()
}

/// Lines `0..n` (and the big line `n` when `big`) each exactly once, in order per key when
/// `ordered`; the big one cut and marked.
fn assert_every_line_once(events: &[LogEvent], n: usize, big: bool, ordered: bool) {
    let mut lines: Vec<usize> = events.iter().map(line).collect();
    lines.sort_unstable();
    let total = n + big as usize;
    assert_eq!(
        lines,
        (0..total).collect::<Vec<_>>(),
        "each line exactly once"
    );
    let mut per_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for e in events {
        per_key
            .entry(e.correlation_id().unwrap())
            .or_default()
            .push(line(e));
        if line(e) == n {
            let original = BIG + format!("line {n} x-correlation-id=big ").len();
            assert!(e.message.len() < original, "cut");
            assert!(e
                .message
                .starts_with(&format!("line {n} x-correlation-id=big bbb")));
            assert_eq!(
                e.attributes.get(TRUNCATED_ATTR),
                Some(&original.to_string())
            );
            assert!(e.parse_error.as_deref().unwrap().contains("too large"));
        } else {
            assert!(!e.attributes.contains_key(TRUNCATED_ATTR));
        }
    }
    for (key, lines) in per_key.into_iter().filter(|_| ordered) {
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "{key}: {lines:?}");
    }
}

/// The producer's `message.max.bytes` (20 kB) is far below `batch.max_bytes` (512 KiB):
/// without splitting, the first batch would be refused forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_limit_below_the_batch_size_splits_batches_and_cuts_a_lone_line() {
    let cluster = common::cluster(TOPIC, PARTITIONS);
    let brokers = cluster.bootstrap_servers();
    let (root, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = container(root.path());
    write_lines(&log, 2000, true);
    let cfg = config(root.path(), data.path(), &brokers, Some("20000"));
    let (stop, handle, stats) = start(cfg).await;
    let events = read_topic(&brokers, 2001).await;
    assert_every_line_once(&events, 2000, true, true);
    let s = stats.snapshot();
    assert!(s.batches_split >= 10, "{s:?}");
    assert_eq!(s.events_truncated, 1);
    stop.send(true).unwrap();
    handle.await.unwrap();
}

/// The broker refuses produce requests as too large: the refused batches are split and sent
/// again, nothing is lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_refusals_as_too_large_split_and_deliver_everything_once() {
    let cluster = common::cluster(TOPIC, PARTITIONS);
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 3],
    );
    let brokers = cluster.bootstrap_servers();
    let (root, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = container(root.path());
    write_lines(&log, 3000, false);
    let cfg = config(root.path(), data.path(), &brokers, None);
    let (stop, handle, stats) = start(cfg).await;
    let events = read_topic(&brokers, 3000).await;
    // Not in order: batches sent after a refused one may be delivered before its parts (as
    // after any failed delivery that is sent again).
    assert_every_line_once(&events, 3000, false, false);
    assert!(stats.snapshot().batches_split >= 1);
    stop.send(true).unwrap();
    handle.await.unwrap();
}

/// Lines spooled while the broker was down (before the partition count was known), then
/// drained under a producer limit below their batches' size, or with the broker refusing
/// produce requests as too large: the drain splits them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_drain_splits_batches_too_large() {
    for broker_refuses in [false, true] {
        let cluster = common::cluster(TOPIC, PARTITIONS);
        cluster.broker_down(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let (root, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let log = container(root.path());
        write_lines(&log, 2000, !broker_refuses);
        let limit = (!broker_refuses).then_some("20000");
        let cfg = config(root.path(), data.path(), &brokers, limit);
        let (stop, handle, stats) = start(cfg).await;
        let n = 2000 + !broker_refuses as usize;
        common::until("the lines spooled", Duration::from_secs(10), || {
            stats.spool_state().1 >= n as u64
        })
        .await;
        if broker_refuses {
            cluster.request_errors(
                RDKafkaApiKey::Produce,
                &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 2],
            );
        }
        cluster.broker_up(1).unwrap();
        let events = read_topic(&brokers, n).await;
        assert_every_line_once(&events, 2000, !broker_refuses, !broker_refuses);
        let s = stats.snapshot();
        assert!(s.batches_split >= 1, "{s:?}");
        assert_eq!(s.events_truncated, !broker_refuses as u64, "{s:?}");
        // Everything went through the spool: its drain counts what Kafka acknowledged (at
        // least the two halves of a split batch).
        assert!(s.batches_sent >= 2, "{s:?}");
        assert_eq!(s.events_sent, n as u64, "{s:?}");
        stop.send(true).unwrap();
        handle.await.unwrap();
    }
}
