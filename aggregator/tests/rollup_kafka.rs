//! Rollups fed from the logs topic (rdkafka's mock cluster): exact per-service counts, kept
//! across a restart without double counting what is consumed again.

mod common;

use std::time::Duration;

use common::wait_until;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sightline_aggregator::series::{MatchOp, Matcher, SeriesSource};
use sightline_aggregator::{Aggregator, AggregatorConfig};
use sightline_model::{encode_logs, EventId, Level, LogEvent};
use tokio_util::sync::CancellationToken;

fn config(brokers: &str, data_dir: &std::path::Path) -> AggregatorConfig {
    let mut c = common::mock_config(brokers, data_dir, "rollup-test");
    c.audit.enabled = false;
    c.rollups.flush_interval = 1_000;
    c
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `n` lines of `service`, every third one an error, timestamped `at_ns`.
fn lines(service: &str, source: u64, n: u64, at_ns: u64) -> Vec<LogEvent> {
    (0..n)
        .map(|i| LogEvent {
            event_id: EventId::derive(source, i),
            timestamp_ns: at_ns + i,
            observed_ns: at_ns + i,
            host: "host-a".into(),
            service: service.into(),
            stream: "stdout".into(),
            level: Some(if i % 3 == 0 {
                Level::Error
            } else {
                Level::Info
            }),
            message: format!("{service} line {i}"),
            ..Default::default()
        })
        .collect()
}

fn service_total(source: &dyn SeriesSource, metric: &str, service: &str) -> f64 {
    let now_ms = (now_ns() / 1_000_000) as i64;
    let m = [Matcher::new("service", MatchOp::Equal, service).unwrap()];
    source
        .select(metric, &m, now_ms - 3_600_000, now_ms + 3_600_000)
        .iter()
        .flat_map(|s| s.samples.iter())
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rollups_count_exactly_once_across_a_restart() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("sightline.logs", 2, 1).unwrap();
    mock.create_topic("sightline.metrics", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let at = now_ns() - 2_000_000_000;
    for (partition, events) in [
        (0, lines("checkout", 1, 300, at)),
        (1, lines("cart", 2, 90, at)),
    ] {
        let payload = encode_logs(events);
        let rec: FutureRecord<'_, (), [u8]> = FutureRecord::to("sightline.logs")
            .partition(partition)
            .payload(&payload);
        p.send(rec, Duration::from_secs(10)).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let agg = Aggregator::open(config(&brokers, tmp.path())).unwrap();
        let rollups = agg.rollups().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(agg.run(stop.clone()));
        let counted = wait_until(Duration::from_secs(60), || {
            service_total(&rollups, "log_lines", "checkout") >= 300.0
                && service_total(&rollups, "log_lines", "cart") >= 90.0
        })
        .await;
        assert!(counted, "round {round}: rollups did not see every line");
        // Give a replay (if any) time to land, then check nothing was counted twice.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            service_total(&rollups, "log_lines", "checkout"),
            300.0,
            "round {round}"
        );
        assert_eq!(
            service_total(&rollups, "error_count", "checkout"),
            100.0,
            "round {round}"
        );
        assert_eq!(
            service_total(&rollups, "log_lines", "cart"),
            90.0,
            "round {round}"
        );
        assert_eq!(
            service_total(&rollups, "error_count", "cart"),
            30.0,
            "round {round}"
        );
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
