//! Helpers shared by the aggregator's integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use sightline_model::{EventId, Level, LogEvent, SourcePosition};

/// An aggregator config for the mock cluster at `brokers`: data in `data_dir`, consumer
/// group `group`, 100 ms commits, a small tantivy heap, an ephemeral API port.
pub fn mock_config(
    brokers: &str,
    data_dir: &std::path::Path,
    group: &str,
) -> sightline_aggregator::AggregatorConfig {
    let mut c = sightline_aggregator::AggregatorConfig::default();
    c.kafka.brokers = brokers.to_string();
    c.kafka.group_id = group.to_string();
    c.data_dir = data_dir.to_path_buf();
    c.commit_interval_ms = 100;
    c.writer_memory_bytes = 20_000_000;
    c.listen = "127.0.0.1:0".into();
    // The mock broker keeps a departed member until its session times out before it lets
    // a new member of the same group join (real brokers honour LeaveGroup): keep it short.
    c.kafka
        .settings
        .insert("session.timeout.ms".into(), "6000".into());
    c.kafka
        .settings
        .insert("heartbeat.interval.ms".into(), "500".into());
    c
}

/// 2026-11-21T05:00:00Z in ns.
pub const T0: u64 = 1_795_237_200_000_000_000;

/// An event of source `source_id` at byte `offset`, carrying `correlation_id`.
pub fn event(
    source_id: u64,
    offset: u64,
    correlation_id: &str,
    service: &str,
    hop: u32,
) -> LogEvent {
    LogEvent {
        event_id: EventId::derive(source_id, offset),
        timestamp_ns: T0 + offset * 1_000 + u64::from(hop),
        observed_ns: T0 + offset * 1_000 + 500,
        host: "host-a".into(),
        position: SourcePosition { source_id, offset },
        service: service.into(),
        stream: "stdout".into(),
        level: Some(Level::Info),
        message: format!("{service} handled {correlation_id} at {offset}"),
        correlation_ids: vec![correlation_id.to_string()],
        hop: Some(hop),
        ..Default::default()
    }
}

/// Events of source `source_id` at offsets `offsets` (×100), all for `correlation_id`.
pub fn run_of(
    source_id: u64,
    offsets: std::ops::Range<u64>,
    correlation_id: &str,
) -> Vec<LogEvent> {
    offsets
        .map(|i| event(source_id, i * 100, correlation_id, "svc", 0))
        .collect()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Encodes a batch the way the collector does (the one call site of `encode_logs`).
pub fn encode(events: &[LogEvent]) -> Vec<u8> {
    sightline_model::encode_logs(events.to_vec())
}
