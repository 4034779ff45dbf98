//! The audit topic's consume stage: decodes `sightline.audit` messages and appends their
//! events to the [`AuditStore`] together with the consumer positions they came from, so a
//! restart resumes exactly after the last stored event and a replay stores nothing twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sightline_model::audit::{Actor, AuditEvent};

use crate::checkpoint::TopicPartition;
use crate::consumer::{ConsumeError, Stage};
use crate::indexer::KafkaRecord;

use super::AuditStore;

/// Most events held before an append is due regardless of `commit_interval`.
pub const MAX_PENDING_EVENTS: usize = 50_000;

/// Appends that fail with an I/O error are retried this many times (1 s, 2 s, 4 s, …) before
/// the consume loop stops (nothing is lost: the positions did not move).
const IO_RETRIES: u32 = 5;

/// Buffers decoded audit events and appends them every `commit_interval` or every
/// [`MAX_PENDING_EVENTS`] (one fsync and one head write per commit, not per event).
pub struct AuditStage {
    store: AuditStore,
    pending: Vec<AuditEvent>,
    handled: BTreeMap<TopicPartition, i64>,
    committed: BTreeMap<TopicPartition, i64>,
    commit_interval: Duration,
    last_commit: Instant,
    /// Messages that were not audit `LogsData` (kept as `sightline.undecodable` records).
    pub undecodable: u64,
}

impl AuditStage {
    /// A stage over `store`, resuming from its stored positions.
    pub fn new(store: AuditStore, commit_interval: Duration) -> Self {
        let committed = store.positions();
        AuditStage {
            store,
            pending: Vec::new(),
            handled: committed.clone(),
            committed,
            commit_interval,
            last_commit: Instant::now(),
            undecodable: 0,
        }
    }
}

/// The record kept for a message that is not an audit `LogsData`: the trail shows that
/// something arrived, from where, and why it could not be read (never silently dropped).
fn undecodable(rec: &KafkaRecord<'_>, error: &str) -> AuditEvent {
    let at = format!("{}/{}/{}", rec.topic, rec.partition, rec.offset);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let time_ns = rec
        .timestamp_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .and_then(|ms| ms.checked_mul(1_000_000))
        .unwrap_or(now);
    AuditEvent {
        event_id: AuditEvent::content_id(&["sightline.undecodable", &at]),
        time_ns,
        observed_ns: now,
        resource: Default::default(),
        action: "sightline.undecodable".into(),
        actor: Actor {
            kind: "sightline".into(),
            id: "aggregator".into(),
            name: "audit-consumer".into(),
        },
        outcome: Some("error".into()),
        message: format!(
            "message {at} ({} bytes) is not audit LogsData: {error}",
            rec.payload.len()
        ),
        attributes: BTreeMap::from([("kafka.position".to_string(), at)]),
    }
}

impl Stage for AuditStage {
    fn handle(&mut self, rec: &KafkaRecord<'_>) -> Result<(), ConsumeError> {
        match sightline_model::decode_audit(rec.payload) {
            Ok(events) => self.pending.extend(events),
            Err(e) => {
                self.undecodable += 1;
                tracing::warn!(topic = rec.topic, partition = rec.partition, offset = rec.offset, error = %e, "undecodable audit message kept as a sightline.undecodable record");
                self.pending.push(undecodable(rec, &e.to_string()));
            }
        }
        self.handled
            .insert((rec.topic.to_string(), rec.partition), rec.offset + 1);
        Ok(())
    }

    fn has_uncommitted(&self) -> bool {
        self.handled != self.committed
    }

    fn until_commit_due(&self) -> Duration {
        self.commit_interval
            .saturating_sub(self.last_commit.elapsed())
    }

    fn commit_due(&self) -> bool {
        self.pending.len() >= MAX_PENDING_EVENTS
            || (self.has_uncommitted() && self.last_commit.elapsed() >= self.commit_interval)
    }

    fn commit(&mut self) -> Result<bool, ConsumeError> {
        self.last_commit = Instant::now();
        if !self.has_uncommitted() {
            return Ok(false);
        }
        let mut attempt = 0;
        let outcome = loop {
            match self.store.append_batch(&self.pending, &self.handled) {
                Err(e @ crate::audit::AuditError::Io { .. }) if attempt < IO_RETRIES => {
                    // Rolled back by the store: the same append can be tried again.
                    let wait = Duration::from_secs(1 << attempt);
                    tracing::error!(error = %e, ?wait, "audit append failed; retrying");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                other => break other?,
            }
        };
        tracing::debug!(
            appended = outcome.appended,
            duplicates = outcome.duplicates,
            head_seq = outcome.head_seq,
            "audit records committed"
        );
        self.pending.clear();
        self.committed = self.handled.clone();
        Ok(true)
    }

    fn next_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.committed
    }
}
