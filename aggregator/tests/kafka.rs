//! The whole aggregator against rdkafka's in-process mock Kafka cluster.

mod common;

use std::time::{Duration, Instant};

use common::{encode, event, run_of, wait_until};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sightline_aggregator::{Aggregator, AggregatorConfig, MetricsSnapshot};
use sightline_model::LogEvent;
use sightline_query::{QueryEngine, SearchRequest, SearchResult};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "sightline.logs";
const PARTITIONS: i32 = 3;
const WAIT: Duration = Duration::from_secs(60);

fn config(brokers: &str, data_dir: &std::path::Path, group: &str) -> AggregatorConfig {
    common::mock_config(brokers, data_dir, group)
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap()
}

/// Produces one message to `partition` and returns its offset.
async fn produce(p: &FutureProducer, partition: i32, payload: &[u8]) -> i64 {
    let rec: FutureRecord<'_, (), [u8]> = FutureRecord::to(TOPIC)
        .partition(partition)
        .payload(payload);
    p.send(rec, Duration::from_secs(10)).await.unwrap().offset
}

/// The events of request `k`: five services along the path, hop 0..5, from five sources.
fn request(k: u64) -> Vec<LogEvent> {
    (0..5u32)
        .map(|hop| {
            event(
                100 + u64::from(hop),
                k * 1000,
                &format!("req-{k}"),
                &format!("svc-{hop}"),
                hop,
            )
        })
        .collect()
}

struct Running {
    engine: std::sync::Arc<QueryEngine>,
    metrics: std::sync::Arc<sightline_aggregator::IndexerMetrics>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), sightline_aggregator::AggregatorError>>,
}

impl Running {
    fn start(config: AggregatorConfig) -> Self {
        let agg = Aggregator::open(config).unwrap();
        let engine = agg.query_engine();
        let metrics = agg.metrics();
        let stop = CancellationToken::new();
        let task = tokio::spawn(agg.run(stop.clone()));
        Running {
            engine,
            metrics,
            stop,
            task,
        }
    }

    fn m(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Waits until `n` messages were consumed, then stops (final commit) and returns the
    /// final counters.
    async fn finish_after(self, n: u64) -> MetricsSnapshot {
        let ok = wait_until(WAIT, || self.m().messages_consumed >= n).await;
        assert!(ok, "only {:?} consumed, expected {n}", self.m());
        self.stop.cancel();
        let metrics = self.metrics.clone();
        self.task.await.unwrap().unwrap();
        metrics.snapshot()
    }
}

fn total(engine: &QueryEngine, id: &str) -> usize {
    engine.correlation(id, None).unwrap().total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_all_partitions_exactly_once_across_restarts() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let p = producer(&brokers);
    let tmp = tempfile::tempdir().unwrap();

    // 12 requests, one message each, spread over the 3 partitions: 60 events.
    for k in 0..12u64 {
        produce(&p, (k % 3) as i32, &encode(&request(k))).await;
    }
    let run = Running::start(config(&brokers, tmp.path(), "group-a"));
    let engine = run.engine.clone();
    assert!(
        wait_until(WAIT, || engine.num_docs() == 60).await,
        "docs: {}",
        engine.num_docs()
    );
    let m = run.finish_after(12).await;
    assert_eq!(
        (
            m.messages_consumed,
            m.events_indexed,
            m.stale_messages_skipped
        ),
        (12, 60, 0)
    );
    assert_eq!(engine.num_docs(), 60);
    for k in 0..12 {
        let r = engine.correlation(&format!("req-{k}"), None).unwrap();
        assert_eq!(r.total, 5);
        assert_eq!(
            r.services,
            vec!["svc-0", "svc-1", "svc-2", "svc-3", "svc-4"]
        );
    }

    // Restart as a new group: Kafka has no committed offsets for it (as after a crash
    // between the index commit and the Kafka commit). The checkpoint alone must prevent
    // re-indexing; only the 3 new messages are read.
    for k in 12..15u64 {
        produce(&p, (k % 3) as i32, &encode(&request(k))).await;
    }
    let run = Running::start(config(&brokers, tmp.path(), "group-b"));
    let engine = run.engine.clone();
    let m = run.finish_after(3).await;
    assert_eq!(
        (m.messages_consumed, m.events_indexed, m.duplicates_skipped),
        (3, 15, 0)
    );
    assert_eq!(engine.num_docs(), 75);
    for k in 0..15 {
        assert_eq!(total(&engine, &format!("req-{k}")), 5, "req-{k}");
    }

    // The first group's Kafka offsets are older than the index checkpoint: a third run in
    // that group resumes from the checkpoint, not from Kafka's offsets.
    produce(&p, 0, &encode(&request(15))).await;
    let run = Running::start(config(&brokers, tmp.path(), "group-a"));
    let engine = run.engine.clone();
    let m = run.finish_after(1).await;
    assert_eq!((m.messages_consumed, m.events_indexed), (1, 5));
    assert_eq!(engine.num_docs(), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_skipped_and_garbage_is_kept() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let p = producer(&brokers);
    let tmp = tempfile::tempdir().unwrap();

    let first = run_of(7, 0..10, "replay-1");
    produce(&p, 0, &encode(&first)).await;
    let run = Running::start(config(&brokers, tmp.path(), "g"));
    let engine = run.engine.clone();
    assert!(wait_until(WAIT, || engine.num_docs() == 10).await);

    // The collector restarts and re-sends from its checkpoint: the same 10 events again
    // (new Kafka offsets), then 10 old + 5 new, then a message that is not protobuf.
    produce(&p, 0, &encode(&first)).await;
    produce(&p, 0, &encode(&run_of(7, 0..15, "replay-1"))).await;
    let garbage_offset = produce(&p, 2, b"\xff\xff\xff\xff not protobuf").await;
    let m = run.finish_after(4).await;
    assert_eq!(
        (m.events_indexed, m.duplicates_skipped, m.decode_errors),
        (16, 20, 1)
    );
    assert_eq!(engine.num_docs(), 16);
    let r = engine.correlation("replay-1", None).unwrap();
    assert_eq!(r.total, 15);
    let mut ids: Vec<_> = r.events.iter().map(|e| e.event_id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 15);

    let garbage: SearchResult = engine
        .search(&SearchRequest {
            services: vec!["unknown".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(garbage.total, 1);
    let g = &garbage.hits[0];
    assert_eq!(g.message, "\u{fffd}\u{fffd}\u{fffd}\u{fffd} not protobuf");
    assert!(g.parse_error.as_deref().unwrap().starts_with(&format!(
        "undecodable Kafka message {TOPIC}/2@{garbage_offset}: "
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_sees_new_events_within_two_seconds() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let p = producer(&brokers);
    let tmp = tempfile::tempdir().unwrap();
    produce(&p, 1, &encode(&request(0))).await;

    let mut cfg = config(&brokers, tmp.path(), "api");
    cfg.commit_interval_ms = 1000; // the default
    let agg = Aggregator::open(cfg).unwrap();
    let metrics = agg.metrics();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(agg.run_with_api(listener, stop.clone()));
    let get = |path: String| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()
    };
    // Wait for the group join and the first message.
    assert!(wait_until(WAIT, || metrics.snapshot().commits >= 1).await);

    produce(&p, 2, &encode(&request(1))).await;
    let sent = Instant::now();
    let mut found = serde_json::Value::Null;
    while sent.elapsed() < Duration::from_secs(5) {
        let body = get("/api/v1/correlations/req-1".into()).await;
        if body["total"] == 5 {
            found = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latency = sent.elapsed();
    assert_eq!(
        found["services"],
        serde_json::json!(["svc-0", "svc-1", "svc-2", "svc-3", "svc-4"])
    );
    assert!(
        latency < Duration::from_secs(2),
        "searchable after {latency:?}"
    );
    let health = get("/healthz".into()).await;
    assert_eq!(health, serde_json::json!({"status": "ok", "num_docs": 10}));
    let search = get("/api/v1/search?service=svc-3".into()).await;
    assert_eq!(search["total"], 2);

    stop.cancel();
    task.await.unwrap().unwrap();
}
