//! Index stage: turns Kafka records into tantivy documents with exactly-once semantics.
//!
//! - One [`IndexWriter`]. Each commit carries a [`Checkpoint`] payload (next Kafka offset
//!   per partition, source watermarks), read back on start: a record whose offset is below
//!   its partition's stored next offset is already indexed and is skipped.
//! - Replays (a collector re-sending events with the same event IDs at new Kafka offsets)
//!   are recognised per (partition, source): an event at or below the source's watermark is
//!   a *suspected replay*, indexed only if its event ID is neither in the committed index
//!   nor among the events added since the last commit. Events without a source
//!   (`source_id == 0`) are always indexed.
//! - A record that is not OTLP protobuf is indexed as one marked event (service
//!   `unknown`, message = the bytes decoded lossily as UTF-8 and cut at
//!   [`MAX_GARBAGE_MESSAGE_BYTES`], `parse_error` set) and counted in `decode_errors`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sightline_model::{decode_logs_fast, EventId, LogEvent, SourceKind, SourcePosition};
use sightline_query::schema::{event_id_bucket, field};
use sightline_query::IndexSchema;
use tantivy::indexer::UserOperation;
use tantivy::schema::{IndexRecordOption, Term};
use tantivy::{DocSet, Index, IndexReader, IndexWriter, TantivyDocument, TERMINATED};

use crate::checkpoint::{Checkpoint, CheckpointError, TopicPartition, Watermark};
use crate::metrics::IndexerMetrics;

/// Longest message kept for an undecodable record, in bytes.
pub const MAX_GARBAGE_MESSAGE_BYTES: usize = 64 * 1024;

/// Events added since the last commit that force a commit even before the interval.
pub const MAX_PENDING_EVENTS: usize = 200_000;

/// Why the index stage failed. Any of these stops the aggregator: on restart it resumes
/// from the last commit.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// tantivy failed (writer, commit or reader).
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The last commit's payload is unusable.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// One Kafka message, as the index stage needs it.
#[derive(Clone, Copy, Debug)]
pub struct KafkaRecord<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Message value (empty for a null value).
    pub payload: &'a [u8],
    /// Message timestamp, ms since the Unix epoch, when the broker gave one.
    pub timestamp_ms: Option<i64>,
}

/// The index stage. Owns the only [`IndexWriter`]; reloads the shared [`IndexReader`]
/// after each commit so searches see new events at once.
pub struct Indexer {
    schema: IndexSchema,
    writer: IndexWriter,
    reader: IndexReader,
    checkpoint: Checkpoint,
    pending_ids: HashSet<EventId>,
    /// Documents of the message being handled.
    batch: Vec<UserOperation<TantivyDocument>>,
    dirty: bool,
    last_commit: Instant,
    commit_interval: Duration,
    metrics: Arc<IndexerMetrics>,
}

fn now_unix() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Indexer {
    /// Opens the writer on `index` (taking its lock) and loads the last commit's
    /// checkpoint. `reader` should use `ReloadPolicy::Manual`; it is reloaded after each
    /// commit. `writer_memory_bytes` ≥ 15 MB (one indexing thread).
    ///
    /// Errors: `Tantivy` (e.g. `LockFailure` when another writer holds the index),
    /// `Checkpoint` when the stored payload is not a readable checkpoint.
    pub fn new(
        index: &Index,
        reader: IndexReader,
        writer_memory_bytes: usize,
        commit_interval: Duration,
        metrics: Arc<IndexerMetrics>,
    ) -> Result<Self, IndexerError> {
        let checkpoint = Checkpoint::from_payload(index.load_metas()?.payload.as_deref())?;
        // One indexing thread: with a commit every second, each extra thread adds a segment
        // per commit and the merges to undo it; measured in BENCHMARKS.md (one thread: 7.3 MB/s
        // of log text per CPU-second, two: 6.1).
        let writer = index.writer_with_num_threads(1, writer_memory_bytes)?;
        Ok(Indexer {
            schema: IndexSchema::new(),
            writer,
            reader,
            checkpoint,
            pending_ids: HashSet::new(),
            batch: Vec::new(),
            dirty: false,
            last_commit: Instant::now(),
            commit_interval,
            metrics,
        })
    }

    /// The state as of the last commit plus records handled since.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Next Kafka offset to index for each partition, as of the last handled record.
    pub fn next_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.checkpoint.offsets
    }

    /// Indexes one record (or skips it when already indexed). The result is durable after
    /// the next [`Self::commit`].
    ///
    /// Errors: tantivy failures only; bad payloads are indexed as marked events.
    pub fn handle(&mut self, rec: &KafkaRecord<'_>) -> Result<(), IndexerError> {
        IndexerMetrics::inc(&self.metrics.messages_consumed, 1);
        let tp: TopicPartition = (rec.topic.to_string(), rec.partition);
        if let Some(&next) = self.checkpoint.offsets.get(&tp) {
            if rec.offset < next {
                IndexerMetrics::inc(&self.metrics.stale_messages_skipped, 1);
                return Ok(());
            }
        }
        let now = now_unix();
        match decode_logs_fast(rec.payload) {
            Ok(events) => {
                for ev in events {
                    self.index_event(&tp, ev, now.as_secs())?;
                }
            }
            Err(e) => {
                IndexerMetrics::inc(&self.metrics.decode_errors, 1);
                tracing::warn!(
                    topic = rec.topic,
                    partition = rec.partition,
                    offset = rec.offset,
                    bytes = rec.payload.len(),
                    error = %e,
                    "undecodable Kafka message; indexing it as a marked event"
                );
                let ev = garbage_event(rec, &e.to_string(), now);
                self.add(ev)?;
            }
        }
        // One hand-off per message to tantivy's indexing thread, not one per document.
        if !self.batch.is_empty() {
            self.writer.run(std::mem::take(&mut self.batch))?;
        }
        self.checkpoint.offsets.insert(tp, rec.offset + 1);
        self.dirty = true;
        Ok(())
    }

    fn index_event(
        &mut self,
        tp: &TopicPartition,
        ev: LogEvent,
        now_s: u64,
    ) -> Result<(), IndexerError> {
        let SourcePosition { source_id, offset } = ev.position;
        if source_id != 0 {
            let marks = self.checkpoint.watermarks.entry(tp.clone()).or_default();
            let suspected = match marks.get_mut(&source_id) {
                Some(wm) => {
                    wm.seen_unix_s = now_s;
                    let at_or_below = offset <= wm.offset;
                    wm.offset = wm.offset.max(offset);
                    at_or_below
                }
                None => {
                    marks.insert(
                        source_id,
                        Watermark {
                            offset,
                            seen_unix_s: now_s,
                        },
                    );
                    false
                }
            };
            if suspected && self.is_indexed(ev.event_id)? {
                IndexerMetrics::inc(&self.metrics.duplicates_skipped, 1);
                return Ok(());
            }
        }
        self.add(ev)
    }

    /// Whether `id` is in the committed index or added since: the postings of its 16-bit
    /// bucket term, compared against the `event_id_hi`/`event_id_lo` fast columns.
    fn is_indexed(&self, id: EventId) -> Result<bool, IndexerError> {
        if self.pending_ids.contains(&id) {
            return Ok(true);
        }
        let term = Term::from_field_u64(self.schema.event_id_bucket, event_id_bucket(id.0));
        let (hi, lo) = ((id.0 >> 64) as u64, id.0 as u64);
        let searcher = self.reader.searcher();
        for segment in searcher.segment_readers() {
            let Some(mut postings) = segment
                .inverted_index(self.schema.event_id_bucket)?
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(tantivy::TantivyError::from)?
            else {
                continue;
            };
            let fast = segment.fast_fields();
            let (hi_col, lo_col) = (fast.u64(field::EVENT_ID_HI)?, fast.u64(field::EVENT_ID_LO)?);
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if lo_col.first(doc) == Some(lo) && hi_col.first(doc) == Some(hi) {
                    return Ok(true);
                }
                doc = postings.advance();
            }
        }
        Ok(false)
    }

    /// Queues a document; [`Self::handle`] hands a message's documents to tantivy at once.
    fn add(&mut self, ev: LogEvent) -> Result<(), IndexerError> {
        self.batch
            .push(UserOperation::Add(self.schema.to_document(&ev)));
        self.pending_ids.insert(ev.event_id);
        IndexerMetrics::inc(&self.metrics.events_indexed, 1);
        Ok(())
    }

    /// True when there is something uncommitted and the commit interval has passed (or
    /// [`MAX_PENDING_EVENTS`] events are waiting).
    pub fn commit_due(&self) -> bool {
        self.dirty
            && (self.last_commit.elapsed() >= self.commit_interval
                || self.pending_ids.len() >= MAX_PENDING_EVENTS)
    }

    /// True when records were handled since the last commit.
    pub fn has_uncommitted(&self) -> bool {
        self.dirty
    }

    /// Time until [`Self::commit_due`] may become true by the clock alone.
    pub fn until_commit_due(&self) -> Duration {
        self.commit_interval
            .saturating_sub(self.last_commit.elapsed())
    }

    /// Commits everything handled so far, with the checkpoint as payload, then reloads the
    /// reader. Returns `false` (and does nothing) when nothing changed since the last commit.
    ///
    /// Errors: tantivy commit or reload failures; the index then still holds the previous
    /// commit and its payload, so a restart neither loses nor duplicates.
    pub fn commit(&mut self) -> Result<bool, IndexerError> {
        if !self.dirty {
            return Ok(false);
        }
        let now = now_unix();
        let pruned = self.checkpoint.prune(now.as_secs());
        if pruned > 0 {
            tracing::debug!(pruned, "dropped watermarks of sources unseen for 7 days");
        }
        let payload = self.checkpoint.to_payload();
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        self.reader.reload()?;
        self.pending_ids.clear();
        self.dirty = false;
        self.last_commit = Instant::now();
        IndexerMetrics::inc(&self.metrics.commits, 1);
        self.metrics.last_commit_unix_ms.store(
            u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(true)
    }
}

fn garbage_event(rec: &KafkaRecord<'_>, error: &str, now: Duration) -> LogEvent {
    let source_id =
        xxhash_rust::xxh3::xxh3_64(format!("kafka:{}/{}", rec.topic, rec.partition).as_bytes());
    let offset = u64::try_from(rec.offset).unwrap_or(0);
    let cut = &rec.payload[..rec.payload.len().min(MAX_GARBAGE_MESSAGE_BYTES)];
    let now_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
    let timestamp_ns = rec
        .timestamp_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or(now_ns, |ms| ms.saturating_mul(1_000_000));
    LogEvent {
        event_id: EventId::derive(source_id, offset),
        timestamp_ns,
        observed_ns: now_ns,
        source_kind: SourceKind::Other,
        position: SourcePosition { source_id, offset },
        service: "unknown".into(),
        message: String::from_utf8_lossy(cut).into_owned(),
        parse_error: Some(format!(
            "undecodable Kafka message {}/{}@{}: {error}",
            rec.topic, rec.partition, rec.offset
        )),
        attributes: BTreeMap::from([
            ("kafka.topic".to_string(), rec.topic.to_string()),
            ("kafka.partition".to_string(), rec.partition.to_string()),
            ("kafka.offset".to_string(), rec.offset.to_string()),
        ]),
        ..Default::default()
    }
}
