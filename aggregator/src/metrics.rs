//! Counters of the aggregator, readable at any time (e.g. by a `/metrics` endpoint).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Monotonic counters, updated by the indexer thread with relaxed atomics.
#[derive(Debug, Default)]
pub struct IndexerMetrics {
    /// Kafka messages received (including skipped ones).
    pub messages_consumed: AtomicU64,
    /// Messages skipped because the index already holds their Kafka offset.
    pub stale_messages_skipped: AtomicU64,
    /// Events added to the index writer (visible after the next commit).
    pub events_indexed: AtomicU64,
    /// Replayed events skipped because their event ID was already indexed.
    pub duplicates_skipped: AtomicU64,
    /// Messages that were not OTLP protobuf (each indexed as one marked event).
    pub decode_errors: AtomicU64,
    /// Errors reported by the Kafka client while polling.
    pub kafka_errors: AtomicU64,
    /// Index commits done.
    pub commits: AtomicU64,
    /// Wall-clock time of the last index commit, ms since the Unix epoch (0 = none yet).
    pub last_commit_unix_ms: AtomicU64,
}

/// A point-in-time copy of [`IndexerMetrics`], serialisable as JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// See [`IndexerMetrics::messages_consumed`].
    pub messages_consumed: u64,
    /// See [`IndexerMetrics::stale_messages_skipped`].
    pub stale_messages_skipped: u64,
    /// See [`IndexerMetrics::events_indexed`].
    pub events_indexed: u64,
    /// See [`IndexerMetrics::duplicates_skipped`].
    pub duplicates_skipped: u64,
    /// See [`IndexerMetrics::decode_errors`].
    pub decode_errors: u64,
    /// See [`IndexerMetrics::kafka_errors`].
    pub kafka_errors: u64,
    /// See [`IndexerMetrics::commits`].
    pub commits: u64,
    /// See [`IndexerMetrics::last_commit_unix_ms`].
    pub last_commit_unix_ms: u64,
}

impl IndexerMetrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            messages_consumed: r(&self.messages_consumed),
            stale_messages_skipped: r(&self.stale_messages_skipped),
            events_indexed: r(&self.events_indexed),
            duplicates_skipped: r(&self.duplicates_skipped),
            decode_errors: r(&self.decode_errors),
            kafka_errors: r(&self.kafka_errors),
            commits: r(&self.commits),
            last_commit_unix_ms: r(&self.last_commit_unix_ms),
        }
    }

    pub(crate) fn inc(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}
