//! The rollups' consume stages: one per topic (logs, metrics), both applying to one shared
//! [`RollupStore`]. Each message is applied with its Kafka position, so the store knows what
//! it has; a commit flushes the store (state and positions together, atomically), and a
//! restart resumes from [`RollupStore::positions`].
//!
//! Windows close on event time as events arrive; a commit also advances them to the wall
//! clock (so they close when traffic stops), but only when every feed is caught up: while
//! one replays a backlog (after downtime, or on first start), moving the watermark to now
//! would make the whole backlog "late".

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// Whether each feed of one store is caught up (see the module docs).
#[derive(Clone, Default)]
pub struct CaughtUp(Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>>);

impl CaughtUp {
    fn register(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(true));
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(flag.clone());
        flag
    }

    fn all(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .all(|f| f.load(Ordering::Acquire))
    }
}

/// Applies one topic's messages to the shared store.
pub struct RollupStage {
    store: SharedRollups,
    caught_up: CaughtUp,
    mine: Arc<AtomicBool>,
    /// Kafka timestamp of the newest record handled since the last commit, ms.
    newest_record_ms: Option<i64>,
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
    /// A stage for `topic`, resuming from the store's positions for it; the stages of one
    /// store share `caught_up`.
    pub fn new(
        store: SharedRollups,
        caught_up: &CaughtUp,
        feed: Feed,
        topic: &str,
        flush_interval: Duration,
    ) -> Self {
        let committed = positions_of(&store, topic);
        RollupStage {
            store,
            mine: caught_up.register(),
            caught_up: caught_up.clone(),
            newest_record_ms: None,
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
        if let Some(ts) = rec.timestamp_ms {
            self.newest_record_ms = Some(self.newest_record_ms.map_or(ts, |n| n.max(ts)));
        }
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
        let now = now_ms();
        let mut store = self.store.0.write().unwrap_or_else(|p| p.into_inner());
        // Caught up: nothing arrived since the last commit, or what arrived was written to
        // Kafka within the lateness horizon (records without a broker timestamp count as
        // recent).
        let horizon = now - store.config().lateness;
        let caught_up = self.newest_record_ms.is_none_or(|ts| ts >= horizon);
        self.mine.store(caught_up, Ordering::Release);
        self.newest_record_ms = None;
        if self.caught_up.all() {
            // Windows also close on the clock, not only on newer events.
            store.advance(now);
        }
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

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use sightline_model::{encode_logs, EventId, LogEvent};

    use super::*;
    use crate::rollup::{RollupConfig, RollupStore};

    fn events(from: u64, n: u64, at_ms: i64) -> Vec<LogEvent> {
        (from..from + n)
            .map(|i| LogEvent {
                event_id: EventId::derive(9, i),
                timestamp_ns: at_ms as u64 * 1_000_000 + i,
                service: "checkout".into(),
                message: format!("line {i}"),
                ..Default::default()
            })
            .collect()
    }

    /// A backlog an hour old (e.g. after downtime) is rolled up whole across commits: the
    /// clock does not overtake it while it is being read.
    #[test]
    fn a_backlog_older_than_lateness_is_not_made_late_by_commits() {
        let store = SharedRollups(Arc::new(RwLock::new(
            RollupStore::new(RollupConfig::default()).unwrap(),
        )));
        let caught_up = CaughtUp::default();
        let mut logs = RollupStage::new(
            store.clone(),
            &caught_up,
            Feed::Logs,
            "logs",
            Duration::from_secs(30),
        );
        let metrics = RollupStage::new(
            store.clone(),
            &caught_up,
            Feed::Metrics,
            "metrics",
            Duration::from_secs(30),
        );
        let hour_ago = now_ms() - 3_600_000;
        for (offset, first) in [(0i64, 0u64), (1, 100), (2, 200)] {
            let payload = encode_logs(events(first, 100, hour_ago + offset * 1000));
            logs.handle(&KafkaRecord {
                topic: "logs",
                partition: 0,
                offset,
                payload: &payload,
                timestamp_ms: Some(hour_ago + offset * 1000),
            })
            .unwrap();
            logs.commit().unwrap();
        }
        let s = store.0.read().unwrap();
        assert_eq!(s.counters().applied_events, 300);
        assert_eq!(s.counters().late_events, 0);
        drop(s);
        drop(metrics);
    }
}
