//! Rollup stage benchmark (issue 4): the real `RollupStage::handle` (OTLP decode + apply),
//! which `rollup_throughput` does not time (it applies already-decoded events).
//!
//! the rollup stage decodes each
//! Kafka message (OTLP protobuf) before applying it, which `rollup_throughput` does not
//! time. This mode builds the same event mix as `rollup_throughput` (N events, 20
//! services) with the resource fields the collector sets (host, ECS container with labels,
//! stream, position), encodes them with `sightline_model::encode_logs` in 2,000-event
//! messages, and times (1) the real `RollupStage::handle` (decode + apply) over the
//! messages, (2) `decode_logs_fast` alone, (3) `apply_logs` alone on the decoded events
//! (stores persisted in temp directories, as `rollup_throughput`'s). Rates are per
//! CPU-second (`/proc/self/stat`) in events, MB of log text, MB of OTLP, and MB of the
//! Docker json-file lines the events came from (the collector's unit; computed outside the
//! timed part, as `index_throughput` does).
//!
//! ```text
//! cargo bench -p sightline-aggregator --bench rollup_stage -- --events 1000000
//! ```

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sightline_aggregator::consumer::Stage;
use sightline_aggregator::indexer::KafkaRecord;
use sightline_aggregator::rollup::stage::{CaughtUp, Feed, RollupStage};
use sightline_aggregator::rollup::{
    KafkaPosition, LogPattern, RollupConfig, RollupStore, SharedRollups,
};
use sightline_model::{Container, EventId, Level, LogEvent, SourceKind, SourcePosition};

mod common;

use common::{arg, cpu_seconds};

/// SplitMix64: deterministic pseudo-random numbers from an index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The event mix of `rollup_throughput` (same messages, levels, services and timestamps),
/// with the resource fields the collector sets.
fn throughput_events(n: usize) -> Vec<LogEvent> {
    let t0_ns: u64 = 1_714_521_600_000_000_000;
    let containers: Vec<Arc<Container>> = (0..20)
        .map(|s| {
            Arc::new(Container {
                id: format!("{:016x}{:048x}", mix(s), 0),
                name: format!("ecs-svc{s}-7-app-{:016x}", mix(s + 100)),
                image: format!("111122223333.dkr.ecr.us-east-1.amazonaws.com/svc{s}:7"),
                labels: [
                    (
                        "com.amazonaws.ecs.cluster",
                        "arn:aws:ecs:us-east-1:111122223333:cluster/prod-a".to_string(),
                    ),
                    (
                        "com.amazonaws.ecs.task-arn",
                        format!(
                            "arn:aws:ecs:us-east-1:111122223333:task/prod-a/{:032x}",
                            mix(s + 200)
                        ),
                    ),
                    (
                        "com.amazonaws.ecs.task-definition-family",
                        format!("svc{s}"),
                    ),
                    ("com.amazonaws.ecs.task-definition-version", "7".into()),
                    ("com.amazonaws.ecs.container-name", "app".into()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            })
        })
        .collect();
    (0..n)
        .map(|i| {
            let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (message, level) = match i % 10 {
                0..=2 => (
                    format!(
                        r#"{{"ts":"2024-05-01T00:00:00Z","msg":"handled request","path":"/api/orders/{}","status":{},"duration_ms":{}}}"#,
                        x % 10_000,
                        if x.is_multiple_of(50) { 503 } else { 200 },
                        x % 900 + 1
                    ),
                    Some(Level::Info),
                ),
                3 => (
                    format!(
                        r#"10.0.{}.{} - - [01/May/2024:00:00:00 +0000] "GET /static/app.js HTTP/1.1" 200 5120 "-" "Mozilla/5.0" 0.{:03}"#,
                        x % 256,
                        (x >> 8) % 256,
                        x % 1000
                    ),
                    None,
                ),
                4 => (
                    format!("ERROR worker {} failed: java.lang.OutOfMemoryError: Java heap space while processing batch", x % 64),
                    Some(Level::Error),
                ),
                _ => (
                    format!("INFO order {} processed for customer {} in region us-east-1, items=3 total=42.50 currency=USD", x % 1_000_000, x % 77_777),
                    Some(Level::Info),
                ),
            };
            let svc = x % 20;
            let ts = t0_ns + (i as u64) * 1_000_000_000 / 700_000;
            LogEvent {
                event_id: EventId::derive(x % 97, i as u64),
                timestamp_ns: ts,
                observed_ns: ts + 150_000_000,
                host: format!("ip-10-0-1-{}", svc % 4),
                source_kind: SourceKind::DockerJsonFile,
                position: SourcePosition {
                    source_id: x % 97,
                    offset: i as u64,
                },
                container: Some(containers[svc as usize].clone()),
                service: format!("svc{svc}"),
                stream: "stdout".into(),
                level,
                message,
                ..Default::default()
            }
        })
        .collect()
}

/// A store persisted in a temp directory, as `rollup_throughput` and production open it.
fn throughput_store() -> (tempfile::TempDir, RollupStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = RollupConfig {
        patterns: vec![LogPattern {
            name: "oom".into(),
            regex: "OutOfMemoryError".into(),
        }],
        ..Default::default()
    };
    let store = RollupStore::open(dir.path(), cfg).expect("open store");
    (dir, store)
}

fn decode_cost(n: usize) {
    let events = throughput_events(n);
    let text: usize = events.iter().map(|e| e.message.len()).sum();
    // The Docker json-file lines the events were read from: the collector's MB/s unit.
    let json_file: usize = events
        .iter()
        .map(|e| {
            let line = serde_json::json!({"log": format!("{}\n", e.message), "stream": e.stream, "time": "2024-05-01T00:00:00.123456789Z"});
            line.to_string().len() + 1
        })
        .sum();
    let payloads: Vec<Vec<u8>> = events
        .chunks(2_000)
        .map(|c| sightline_model::encode_logs(c.to_vec()))
        .collect();
    drop(events);
    let otlp: usize = payloads.iter().map(Vec::len).sum();
    let (mb, json_mb, otlp_mb) = (text as f64 / 1e6, json_file as f64 / 1e6, otlp as f64 / 1e6);
    println!(
        "decode cost: {n} events (rollup_throughput's mix, collector resources), {mb:.1} MB of log text = {json_mb:.1} MB as Docker json-file lines, {otlp_mb:.1} MB of OTLP in {} messages",
        payloads.len()
    );
    println!("  per CPU-second:                                                     events/s  text MB/s  json-file MB/s  OTLP MB/s");
    let report = |what: &str, wall: f64, cpu: f64| {
        let cpu = cpu.max(1e-9);
        println!(
            "  {what:<38} {wall:>5.2} s wall {cpu:>5.2} s CPU  {:>9.0}  {:>9.1}  {:>14.1}  {:>9.1}",
            n as f64 / cpu,
            mb / cpu,
            json_mb / cpu,
            otlp_mb / cpu
        );
    };

    // (1) The real consume stage: decode + apply per Kafka message.
    let (dir1, store) = throughput_store();
    let store = SharedRollups(Arc::new(RwLock::new(store)));
    let mut stage = RollupStage::new(
        store.clone(),
        &CaughtUp::default(),
        Feed::Logs,
        "sightline.logs",
        Duration::from_secs(3_600),
    );
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for (k, p) in payloads.iter().enumerate() {
        stage
            .handle(&KafkaRecord {
                topic: "sightline.logs",
                partition: 0,
                offset: k as i64,
                payload: p,
                timestamp_ms: None,
            })
            .expect("handle");
    }
    report(
        "RollupStage::handle (decode + apply)",
        wall.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
    );
    assert_eq!(stage.undecodable, 0);
    let staged = store
        .0
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .counters()
        .clone();
    assert_eq!(staged.applied_events, n as u64);
    drop(stage);
    drop(store);
    drop(dir1);

    // (2) Decode alone, (3) apply alone on the decoded events (what rollup_throughput times).
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let decoded: Vec<Vec<LogEvent>> = payloads
        .iter()
        .map(|p| sightline_model::decode_logs_fast(p).expect("decode"))
        .collect();
    report(
        "decode_logs_fast alone",
        wall.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
    );
    let (_dir2, mut store) = throughput_store();
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for (k, chunk) in decoded.iter().enumerate() {
        let pos = KafkaPosition {
            topic: "sightline.logs".into(),
            partition: 0,
            offset: k as i64,
        };
        store.apply_logs(chunk, Some(&pos));
    }
    report(
        "apply_logs alone (decoded events)",
        wall.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
    );
    assert_eq!(store.counters(), &staged, "stage and direct apply agree");
}

fn main() {
    decode_cost(arg("--events", 1_000_000));
}
