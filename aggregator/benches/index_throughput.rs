//! Aggregator benchmark: indexing throughput and correlation lookup latency.
//!
//! Builds `--events` (default 1,000,000) realistic events (~150 B messages, 8 events per
//! correlation ID across 4 services), encodes them in Kafka-message-sized OTLP batches
//! (2,000 events), and feeds them through the index stage exactly as the Kafka source does
//! (decode, dedup check, add, commit every second). Reports MB/s of log text and of OTLP
//! payload, per wall-second and per CPU-second (/proc/self/stat), then runs `--lookups`
//! (default 2,000) correlation lookups for random IDs over the committed index and reports
//! p50 / p99 / max latency.
//!
//! ```text
//! cargo bench -p sightline-aggregator --bench index_throughput -- --events 1000000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use sightline_aggregator::indexer::KafkaRecord;
use sightline_aggregator::{Indexer, IndexerMetrics};
use sightline_model::{encode_logs, EventId, Level, LogEvent, SourcePosition};
use sightline_query::{IndexSchema, QueryEngine, QueryLimits};
use tantivy::ReloadPolicy;

mod common;

use common::{arg, cpu_seconds};

const SERVICES: [&str; 4] = ["frontend", "checkout", "payments", "inventory"];

fn event(i: u64) -> LogEvent {
    let corr = format!("req-{:08x}", i / 8);
    let hop = (i % 8) as u32 / 2;
    let service = SERVICES[hop as usize];
    let level = if i.is_multiple_of(50) {
        Level::Error
    } else {
        Level::Info
    };
    LogEvent {
        event_id: EventId::derive(hop as u64 + 1, i * 200),
        timestamp_ns: 1_795_237_200_000_000_000 + i * 1_000,
        observed_ns: 1_795_237_200_000_000_000 + i * 1_000 + 500,
        host: "ip-10-0-1-17".into(),
        position: SourcePosition { source_id: hop as u64 + 1, offset: i * 200 },
        service: service.into(),
        stream: "stdout".into(),
        level: Some(level),
        message: format!(
            "{} {service} x-correlation-id={corr} hop={hop} GET /api/v1/orders/{i} status=200 duration_ms={} user=u{} region=eu-west-1",
            level.as_str().to_ascii_uppercase(),
            i % 997,
            i % 10_007
        ),
        correlation_ids: vec![corr],
        hop: Some(hop),
        ..Default::default()
    }
}

fn main() {
    let n = arg("--events", 1_000_000) as u64;
    let lookups = arg("--lookups", 2_000);
    let batch = 2_000u64;
    let dir = tempfile::tempdir().unwrap();
    let schema = IndexSchema::new();
    let index = schema.open_or_create(dir.path()).unwrap();
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();
    let metrics = Arc::new(IndexerMetrics::default());
    let mut indexer = Indexer::new(
        &index,
        reader,
        128 * 1024 * 1024,
        Duration::from_secs(1),
        metrics.clone(),
    )
    .unwrap();

    eprintln!("encoding {n} events in batches of {batch}");
    let mut payloads = Vec::new();
    let mut text_bytes = 0u64;
    let mut json_file_bytes = 0u64;
    let mut start = 0;
    while start < n {
        let events: Vec<LogEvent> = (start..(start + batch).min(n)).map(event).collect();
        text_bytes += events.iter().map(|e| e.message.len() as u64).sum::<u64>();
        // The Docker json-file line each event came from (the collector's input unit).
        json_file_bytes += events
            .iter()
            .map(|e| {
                let line = serde_json::json!({"log": format!("{}\n", e.message), "stream": e.stream, "time": "2026-11-21T05:00:00.123456789Z"});
                line.to_string().len() as u64 + 1
            })
            .sum::<u64>();
        payloads.push(encode_logs(events));
        start += batch;
    }
    let payload_bytes: u64 = payloads.iter().map(|p| p.len() as u64).sum();

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for (offset, p) in payloads.iter().enumerate() {
        let rec = KafkaRecord {
            topic: "bench",
            partition: 0,
            offset: offset as i64,
            payload: p,
            timestamp_ms: None,
        };
        indexer.handle(&rec).unwrap();
        if indexer.commit_due() {
            indexer.commit().unwrap();
        }
    }
    indexer.commit().unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let m = metrics.snapshot();
    assert_eq!(m.events_indexed, n, "every event indexed once");

    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();
    let engine = QueryEngine::new(&index, reader, QueryLimits::default()).unwrap();
    assert_eq!(engine.num_docs(), n);
    let mut lat = Vec::with_capacity(lookups);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..lookups {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = format!("req-{:08x}", x % (n / 8));
        let t = Instant::now();
        let res = engine.correlation(&id, None).unwrap();
        lat.push(t.elapsed());
        assert_eq!(res.events.len(), 8, "{id}");
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "index_throughput: events={n} text={:.1} MB otlp={:.1} MB commits={}",
        text_bytes as f64 / 1e6,
        payload_bytes as f64 / 1e6,
        m.commits
    );
    println!(
        "  wall {wall:.2} s -> {:.0} events/s, {:.1} MB/s text, {:.1} MB/s OTLP",
        n as f64 / wall,
        text_bytes as f64 / 1e6 / wall,
        payload_bytes as f64 / 1e6 / wall
    );
    println!(
        "  cpu  {cpu:.2} s -> {:.1} MB/s text per core, {:.1} MB/s OTLP per core",
        text_bytes as f64 / 1e6 / cpu,
        payload_bytes as f64 / 1e6 / cpu
    );
    println!(
        "  as Docker json-file logs ({:.1} MB): {:.1} MB/s wall, {:.1} MB/s per core",
        json_file_bytes as f64 / 1e6,
        json_file_bytes as f64 / 1e6 / wall,
        json_file_bytes as f64 / 1e6 / cpu
    );
    println!("  correlation lookup over {n} events ({lookups} lookups, 8 events each): p50 {:?} p99 {:?} max {:?}", pct(0.50), pct(0.99), lat[lat.len() - 1]);
}
