//! Kafka source stage: a consumer group member (rdkafka `BaseConsumer`, polled on a
//! blocking thread) that feeds every message to the [`Indexer`] and commits the index on
//! schedule.
//!
//! Offsets: `enable.auto.commit=false`, `auto.offset.reset=earliest`. When partitions are
//! assigned, each one whose next offset is known from the index checkpoint starts there
//! (the checkpoint is the source of truth); others start at the group's committed offset.
//! After every index commit the same offsets are committed to Kafka asynchronously, best
//! effort, for lag visibility only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::TopicPartition;
use crate::config::KafkaConfig;
use crate::indexer::{Indexer, IndexerError, KafkaRecord};
use crate::metrics::IndexerMetrics;

/// Longest a single poll blocks, so shutdown is noticed within this time.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A repeated Kafka error (same text) is logged at most once per this period.
pub const ERROR_LOG_PERIOD: Duration = Duration::from_secs(30);

type StartOffsets = Arc<Mutex<BTreeMap<TopicPartition, i64>>>;

/// Rate limiter for repeated error logs (librdkafka repeats "all brokers down" on every
/// reconnect attempt): each distinct text is logged at most once per [`ERROR_LOG_PERIOD`].
#[derive(Default)]
struct LogThrottle {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogThrottle {
    /// `Some(suppressed_since_last_log)` when `text` should be logged now.
    fn check(&self, text: &str) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, suppressed)) = seen.get_mut(text) {
            if at.elapsed() < ERROR_LOG_PERIOD {
                *suppressed += 1;
                return None;
            }
            let n = *suppressed;
            *at = Instant::now();
            *suppressed = 0;
            return Some(n);
        }
        if seen.len() >= 256 {
            seen.retain(|_, (at, _)| at.elapsed() < ERROR_LOG_PERIOD);
        }
        seen.insert(text.to_string(), (Instant::now(), 0));
        Some(0)
    }
}

/// Consumer context: positions newly assigned partitions at the checkpoint's offsets, and
/// logs client errors without flooding.
pub struct SourceContext {
    start_offsets: StartOffsets,
    client_errors: LogThrottle,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let text = format!("{error}: {reason}");
        if let Some(suppressed) = self.client_errors.check(&text) {
            tracing::error!(suppressed, "Kafka client error: {text}");
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let starts = self
                    .start_offsets
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                // The index's checkpoint is the source of truth: a partition it has no
                // offset for starts at the beginning (not at the group's committed offset,
                // which may belong to an older index).
                let all: Vec<(String, i32, Option<i64>)> = tpl
                    .elements()
                    .iter()
                    .map(|e| {
                        let key = (e.topic().to_string(), e.partition());
                        let start = starts.get(&key).copied();
                        (key.0, key.1, start)
                    })
                    .collect();
                let wanted = all.iter().filter(|(_, _, o)| o.is_some()).count();
                for (topic, partition, offset) in &all {
                    let offset = offset.map_or(Offset::Beginning, Offset::Offset);
                    if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                        tracing::warn!(topic, partition, error = %e, "cannot set start offset");
                    }
                }
                tracing::info!(
                    partitions = tpl.count(),
                    from_checkpoint = wanted,
                    "partitions assigned"
                );
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the rebalance failed");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "Kafka offset commit failed (lag display only)");
        }
    }
}

/// The Kafka source: a subscribed consumer.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    topic: String,
    start_offsets: StartOffsets,
}

impl KafkaSource {
    /// Creates the consumer and subscribes to `config.topic`. `start` holds the next offset
    /// per partition from the index checkpoint. Does not wait for the brokers.
    ///
    /// Errors: invalid client settings (e.g. an unknown librdkafka property).
    pub fn new(
        config: &KafkaConfig,
        start: &BTreeMap<TopicPartition, i64>,
    ) -> Result<Self, KafkaError> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        for (k, v) in &config.settings {
            cc.set(k, v);
        }
        let start_offsets: StartOffsets = Arc::new(Mutex::new(start.clone()));
        let consumer: BaseConsumer<SourceContext> = cc.create_with_context(SourceContext {
            start_offsets: start_offsets.clone(),
            client_errors: LogThrottle::default(),
        })?;
        consumer.subscribe(&[&config.topic])?;
        Ok(KafkaSource {
            consumer,
            topic: config.topic.clone(),
            start_offsets,
        })
    }

    /// Polls one message, waiting at most `timeout`.
    pub fn poll(&self, timeout: Duration) -> Option<KafkaResult<BorrowedMessage<'_>>> {
        self.consumer.poll(timeout)
    }

    /// Records the committed checkpoint offsets (used for later assignments) and commits
    /// those of currently assigned partitions to Kafka asynchronously. Failures are logged.
    pub fn publish_offsets(&self, offsets: &BTreeMap<TopicPartition, i64>) {
        *self
            .start_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = offsets.clone();
        let assigned = match self.consumer.assignment() {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read assignment; skipping Kafka commit");
                return;
            }
        };
        let mut tpl = TopicPartitionList::new();
        for e in assigned.elements() {
            if e.topic() != self.topic {
                continue;
            }
            if let Some(&next) = offsets.get(&(e.topic().to_string(), e.partition())) {
                if let Err(err) =
                    tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(next))
                {
                    tracing::debug!(error = %err, "cannot build commit list");
                }
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "Kafka offset commit not sent (lag display only)");
        }
    }
}

/// A stage fed by a [`KafkaSource`]: it handles records, and commits what it handled
/// together with the next offsets (its own checkpoint), so a restart resumes exactly.
/// Implemented by the [`Indexer`] (logs topic) and the audit stage (audit topic).
pub trait Stage {
    /// Handles one record. Errors stop the consume loop.
    fn handle(&mut self, rec: &KafkaRecord<'_>) -> Result<(), ConsumeError>;
    /// Whether handled records wait for a commit.
    fn has_uncommitted(&self) -> bool;
    /// Time left until a commit is due.
    fn until_commit_due(&self) -> Duration;
    /// Whether a commit is due now.
    fn commit_due(&self) -> bool;
    /// Commits; `Ok(true)` when something was committed.
    fn commit(&mut self) -> Result<bool, ConsumeError>;
    /// Next offset per partition, as of the last commit.
    fn next_offsets(&self) -> &BTreeMap<TopicPartition, i64>;
}

impl Stage for Indexer {
    fn handle(&mut self, rec: &KafkaRecord<'_>) -> Result<(), ConsumeError> {
        Ok(Indexer::handle(self, rec)?)
    }
    fn has_uncommitted(&self) -> bool {
        Indexer::has_uncommitted(self)
    }
    fn until_commit_due(&self) -> Duration {
        Indexer::until_commit_due(self)
    }
    fn commit_due(&self) -> bool {
        Indexer::commit_due(self)
    }
    fn commit(&mut self) -> Result<bool, ConsumeError> {
        Ok(Indexer::commit(self)?)
    }
    fn next_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        Indexer::next_offsets(self)
    }
}

/// Why the consume loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The index stage failed.
    #[error(transparent)]
    Index(#[from] IndexerError),
    /// The audit stage failed (the store refused a write).
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The rollup store could not be written.
    #[error(transparent)]
    Rollup(#[from] crate::rollup::RollupError),
    /// librdkafka reported a fatal consumer error; the consumer cannot continue.
    #[error("fatal Kafka consumer error: {0}")]
    KafkaFatal(KafkaError),
}

/// Polls `source` and hands every message to the stage (the [`Indexer`] for logs) until
/// `shutdown` is cancelled, committing whenever [`Stage::commit_due`]; then does a final
/// commit. Blocking: run it on a blocking thread.
///
/// Errors: stage failures and fatal consumer errors. Other Kafka errors are counted in
/// `kafka_errors` and logged (a repeated one at most every [`ERROR_LOG_PERIOD`]).
pub fn consume<S: Stage>(
    source: &KafkaSource,
    indexer: &mut S,
    shutdown: &CancellationToken,
    metrics: &IndexerMetrics,
) -> Result<(), ConsumeError> {
    let poll_errors = LogThrottle::default();
    while !shutdown.is_cancelled() {
        let wait = if indexer.has_uncommitted() {
            indexer
                .until_commit_due()
                .clamp(Duration::from_millis(1), POLL_INTERVAL)
        } else {
            POLL_INTERVAL
        };
        match source.poll(wait) {
            Some(Ok(msg)) => {
                let rec = KafkaRecord {
                    topic: msg.topic(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    payload: msg.payload().unwrap_or_default(),
                    timestamp_ms: msg.timestamp().to_millis(),
                };
                indexer.handle(&rec)?;
            }
            Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                IndexerMetrics::inc(&metrics.kafka_errors, 1);
                return Err(ConsumeError::KafkaFatal(e));
            }
            Some(Err(e)) => {
                IndexerMetrics::inc(&metrics.kafka_errors, 1);
                if let Some(suppressed) = poll_errors.check(&e.to_string()) {
                    tracing::warn!(error = %e, suppressed, "Kafka consumer error");
                }
            }
            None => {}
        }
        if indexer.commit_due() && indexer.commit()? {
            source.publish_offsets(indexer.next_offsets());
        }
    }
    if indexer.commit()? {
        tracing::info!(topic = %source.topic, "final commit done");
    }
    source.publish_offsets(indexer.next_offsets());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_logs_each_text_once_per_period() {
        let t = LogThrottle::default();
        assert_eq!(t.check("a"), Some(0));
        assert_eq!(t.check("b"), Some(0));
        assert_eq!(t.check("a"), None);
        assert_eq!(t.check("b"), None);
        assert_eq!(t.check("a"), None);
        // Pretend the period passed for "a".
        if let Some((at, _)) = t.seen.lock().unwrap().get_mut("a") {
            *at -= ERROR_LOG_PERIOD;
        }
        assert_eq!(t.check("a"), Some(2));
        assert_eq!(t.check("a"), None);
    }
}
