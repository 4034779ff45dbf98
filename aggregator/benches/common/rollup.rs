//! The log event mix and store of the rollup benches (`rollup_throughput`, `rollup_stage`).

use sightline_aggregator::rollup::{KafkaPosition, LogPattern, RollupConfig, RollupStore};
use sightline_model::{Level, LogEvent};

/// 2024-05-01T00:00:00Z, ns: the first event's timestamp.
const T0_NS: u64 = 1_714_521_600_000_000_000;

/// Event `i` of the mix (~100 B messages on average): its hash `x` (which also picks its
/// service, event ID and position), message and level. 30 % JSON access-log lines, 10 %
/// combined-format access lines with a request time, the rest plain text with levels.
pub fn mix_event(i: usize) -> (u64, String, Option<Level>) {
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
    (x, message, level)
}

/// Event `i`'s timestamp: 700 k events per second of event time, so windows open and
/// close as in production.
pub fn mix_timestamp_ns(i: usize) -> u64 {
    T0_NS + (i as u64) * 1_000_000_000 / 700_000
}

/// A store persisted in a temp directory, as production opens it, with one pattern (`oom`).
pub fn rollup_store() -> (tempfile::TempDir, RollupStore) {
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

/// Applies `messages` (one Kafka message's events each) as the consumer does: message `k`
/// at offset `k` of `sightline.logs` partition 0.
pub fn apply_messages<'a>(store: &mut RollupStore, messages: impl Iterator<Item = &'a [LogEvent]>) {
    for (k, chunk) in messages.enumerate() {
        let pos = KafkaPosition {
            topic: "sightline.logs".into(),
            partition: 0,
            offset: k as i64,
        };
        store.apply_logs(chunk, Some(&pos));
    }
}
