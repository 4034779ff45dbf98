//! Rollup benchmark: log events per second (and MB/s of log text) through
//! `RollupStore::apply_logs`, per wall-second and per CPU-second (/proc/self/stat).
//!
//! Builds `--events` (default 1,000,000) decoded events (~100 B messages on average, 20 services,
//! one pattern configured): 30 % JSON access-log lines, 10 % combined-format access lines
//! with a request time, the rest plain text with levels; timestamps advance 700 k events
//! per second of event time, so windows open and close as in production. Applies them in
//! Kafka-message-sized slices (2,000 events), then one flush to a temp directory.
//!
//! ```text
//! cargo bench -p sightline-aggregator --bench rollup_throughput -- --events 1000000
//! ```

use std::time::Instant;

use sightline_aggregator::rollup::{KafkaPosition, LogPattern, RollupConfig, RollupStore};
use sightline_model::{EventId, Level, LogEvent};

mod common;

use common::{arg, cpu_seconds};

fn main() {
    let n = arg("--events", 1_000_000);
    let t0_ns: u64 = 1_714_521_600_000_000_000;
    let events: Vec<LogEvent> = (0..n)
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
            LogEvent {
                event_id: EventId::derive(x % 97, i as u64),
                timestamp_ns: t0_ns + (i as u64) * 1_000_000_000 / 700_000,
                service: format!("svc{}", x % 20),
                level,
                message,
                ..Default::default()
            }
        })
        .collect();
    let bytes: usize = events.iter().map(|e| e.message.len()).sum();
    let cfg = RollupConfig {
        patterns: vec![LogPattern {
            name: "oom".into(),
            regex: "OutOfMemoryError".into(),
        }],
        ..Default::default()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = RollupStore::open(dir.path(), cfg).expect("open store");
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for (k, chunk) in events.chunks(2_000).enumerate() {
        let pos = KafkaPosition {
            topic: "sightline.logs".into(),
            partition: 0,
            offset: k as i64,
        };
        store.apply_logs(chunk, Some(&pos));
    }
    let apply_wall = wall.elapsed().as_secs_f64();
    let apply_cpu = (cpu_seconds() - cpu).max(1e-9);
    let flush = Instant::now();
    store.flush().expect("flush");
    let flush_s = flush.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    println!(
        "rollup_throughput: {n} events, {mb:.1} MB of log text ({:.0} B/event)",
        bytes as f64 / n as f64
    );
    println!(
        "  apply: {:.2} s wall, {:.2} s CPU → {:.0} events/s, {:.1} MB/s per wall-second; {:.0} events/s, {:.1} MB/s per CPU-second",
        apply_wall,
        apply_cpu,
        n as f64 / apply_wall,
        mb / apply_wall,
        n as f64 / apply_cpu,
        mb / apply_cpu
    );
    println!("  flush (open windows + event IDs + closed segments): {flush_s:.3} s");
    println!("  counters: {:?}", store.counters());
}
