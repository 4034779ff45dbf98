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

use sightline_model::{EventId, LogEvent};

mod common;

use common::rollup::{apply_messages, mix_event, mix_timestamp_ns, rollup_store};
use common::{arg, cpu_seconds};

fn main() {
    let n = arg("--events", 1_000_000);
    let events: Vec<LogEvent> = (0..n)
        .map(|i| {
            let (x, message, level) = mix_event(i);
            LogEvent {
                event_id: EventId::derive(x % 97, i as u64),
                timestamp_ns: mix_timestamp_ns(i),
                service: format!("svc{}", x % 20),
                level,
                message,
                ..Default::default()
            }
        })
        .collect();
    let bytes: usize = events.iter().map(|e| e.message.len()).sum();
    let (_dir, mut store) = rollup_store();
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    apply_messages(&mut store, events.chunks(2_000));
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
