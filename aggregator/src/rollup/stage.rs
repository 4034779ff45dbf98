//! The rollups' consume stages: one per topic (logs, metrics), both applying to one shared
//! [`RollupStore`]. Each message is applied with its Kafka position, so the store knows what
//! it has; a commit advances the windows to the clock and flushes the store (state and
//! positions together, atomically), and a restart resumes from [`RollupStore::positions`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::checkpoint::TopicPartition;
use crate::consumer::{ConsumeError, Stage};
use crate::indexer::KafkaRecord;

use super::{KafkaPosition, SharedRollups};

/// What a topic carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// OTLP `LogsData` (the logs topic).
    Logs,
    /// OTLP `MetricsData` (the metrics topic).
    Metrics,
}

/// Applies one topic's messages to the shared store.
pub struct RollupStage {
    store: SharedRollups,
    feed: Feed,
    topic: String,
    flush_interval: Duration,
    last_flush: Instant,
    handled: BTreeMap<TopicPartition, i64>,
    committed: BTreeMap<TopicPartition, i64>,
    /// Messages that could not be decoded (logged with their position; the raw message
    /// stays in Kafka, and log messages are also in the index).
    pub undecodable: u64,
}

impl RollupStage {
    /// A stage for `topic`, resuming from the store's positions for it.
    pub fn new(store: SharedRollups, feed: Feed, topic: &str, flush_interval: Duration) -> Self {
        let committed = positions_of(&store, topic);
        RollupStage {
            store,
            feed,
            topic: topic.to_string(),
            flush_interval,
            last_flush: Instant::now(),
            handled: committed.clone(),
            committed,
            undecodable: 0,
        }
    }
}

/// The store's next offsets for `topic`.
pub fn positions_of(store: &SharedRollups, topic: &str) -> BTreeMap<TopicPartition, i64> {
    let s = store.0.read().unwrap_or_else(|p| p.into_inner());
    s.positions()
        .iter()
        .filter(|((t, _), _)| t == topic)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Stage for RollupStage {
    fn handle(&mut self, rec: &KafkaRecord<'_>) -> Result<(), ConsumeError> {
        let pos = KafkaPosition {
            topic: rec.topic.to_string(),
            partition: rec.partition,
            offset: rec.offset,
        };
        let mut store = self.store.0.write().unwrap_or_else(|p| p.into_inner());
        let decoded = match self.feed {
            Feed::Logs => sightline_model::decode_logs_fast(rec.payload)
                .map(|events| {
                    store.apply_logs(&events, Some(&pos));
                })
                .map_err(|e| e.to_string()),
            Feed::Metrics => sightline_model::decode_metrics(rec.payload)
                .map(|batches| {
                    store.apply_metrics(&batches, Some(&pos));
                })
                .map_err(|e| e.to_string()),
        };
        drop(store);
        if let Err(e) = decoded {
            self.undecodable += 1;
            tracing::warn!(topic = rec.topic, partition = rec.partition, offset = rec.offset, error = %e, "message not decodable for rollups; skipped");
        }
        self.handled
            .insert((rec.topic.to_string(), rec.partition), rec.offset + 1);
        Ok(())
    }

    fn has_uncommitted(&self) -> bool {
        self.handled != self.committed
    }

    fn until_commit_due(&self) -> Duration {
        self.flush_interval
            .saturating_sub(self.last_flush.elapsed())
    }

    fn commit_due(&self) -> bool {
        self.last_flush.elapsed() >= self.flush_interval
    }

    fn commit(&mut self) -> Result<bool, ConsumeError> {
        self.last_flush = Instant::now();
        let mut store = self.store.0.write().unwrap_or_else(|p| p.into_inner());
        // Windows also close on the clock, not only on newer events.
        store.advance(now_ms());
        store.flush()?;
        drop(store);
        let changed = self.has_uncommitted();
        self.committed = positions_of(&self.store, &self.topic);
        self.handled = self.committed.clone();
        Ok(changed)
    }

    fn next_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.committed
    }
}
