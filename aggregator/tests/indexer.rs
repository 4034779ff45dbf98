//! The index stage on a real tantivy index in a temporary directory (no Kafka).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{event, run_of};
use sightline_aggregator::indexer::KafkaRecord;
use sightline_aggregator::{Checkpoint, Indexer, IndexerMetrics, MetricsSnapshot};
use sightline_model::{EventId, LogEvent, SourcePosition};
use sightline_query::{IndexSchema, QueryEngine, QueryLimits, SearchRequest};
use tantivy::{Index, IndexReader, ReloadPolicy};

const TOPIC: &str = "sightline.logs";

struct Stage {
    index: Index,
    reader: IndexReader,
    indexer: Indexer,
    metrics: Arc<IndexerMetrics>,
}

fn open(dir: &std::path::Path) -> Stage {
    let index = IndexSchema::new().open_or_create(dir).unwrap();
    let reader: IndexReader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();
    let metrics = Arc::new(IndexerMetrics::default());
    let indexer = Indexer::new(
        &index,
        reader.clone(),
        15_000_000,
        Duration::from_secs(3600),
        metrics.clone(),
    )
    .unwrap();
    Stage {
        index,
        reader,
        indexer,
        metrics,
    }
}

impl Stage {
    fn feed(&mut self, partition: i32, offset: i64, events: &[LogEvent]) {
        let payload = common::encode(events);
        self.feed_raw(partition, offset, &payload);
    }

    fn feed_raw(&mut self, partition: i32, offset: i64, payload: &[u8]) {
        self.indexer
            .handle(&KafkaRecord {
                topic: TOPIC,
                partition,
                offset,
                payload,
                timestamp_ms: Some(1_795_237_200_000),
            })
            .unwrap();
    }

    fn engine(&self) -> QueryEngine {
        QueryEngine::new(&self.index, self.reader.clone(), QueryLimits::default()).unwrap()
    }

    fn count(&self, correlation_id: &str) -> usize {
        self.engine()
            .correlation(correlation_id, None)
            .unwrap()
            .total
    }

    fn docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }
}

#[test]
fn redelivered_offsets_are_skipped_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    for k in 0..3 {
        s.feed(0, k, &run_of(1, k as u64 * 10..k as u64 * 10 + 4, "a"));
    }
    s.feed(1, 0, &run_of(2, 0..2, "b"));
    assert_eq!(s.docs(), 0, "nothing visible before the commit");
    assert!(s.indexer.commit().unwrap());
    assert!(
        !s.indexer.commit().unwrap(),
        "nothing new: no second commit"
    );
    assert_eq!((s.docs(), s.count("a"), s.count("b")), (14, 12, 2));
    let payload = s.index.load_metas().unwrap().payload.unwrap();
    let cp = Checkpoint::from_payload(Some(&payload)).unwrap();
    assert_eq!(cp.offsets[&(TOPIC.to_string(), 0)], 3);
    assert_eq!(cp.offsets[&(TOPIC.to_string(), 1)], 1);
    assert_eq!(cp.watermarks[&(TOPIC.to_string(), 0)][&1].offset, 2300);
    drop(s);

    // Restart; Kafka redelivers everything (e.g. its offsets were never committed).
    let mut s = open(tmp.path());
    for k in 0..5 {
        s.feed(0, k, &run_of(1, k as u64 * 10..k as u64 * 10 + 4, "a"));
    }
    s.feed(1, 0, &run_of(2, 0..2, "b"));
    s.indexer.commit().unwrap();
    assert_eq!((s.docs(), s.count("a"), s.count("b")), (22, 20, 2));
    let m = s.metrics();
    assert_eq!(
        (
            m.messages_consumed,
            m.stale_messages_skipped,
            m.events_indexed,
            m.duplicates_skipped
        ),
        (6, 4, 8, 0)
    );
}

#[test]
fn replayed_events_are_indexed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    let first = run_of(7, 0..10, "r");
    s.feed(0, 0, &first);
    // Replay inside the same commit window (caught by the pending set).
    s.feed(0, 1, &first[5..]);
    s.indexer.commit().unwrap();
    assert_eq!(s.count("r"), 10);
    assert_eq!(s.metrics().duplicates_skipped, 5);

    // Replay after the commit (caught by the committed index), with 5 new events.
    s.feed(0, 2, &run_of(7, 0..15, "r"));
    s.indexer.commit().unwrap();
    assert_eq!(s.count("r"), 15);
    assert_eq!(s.metrics().duplicates_skipped, 15);
    drop(s);

    // After a restart the watermark comes from the payload: still no duplicates.
    let mut s = open(tmp.path());
    s.feed(0, 3, &run_of(7, 10..20, "r"));
    s.indexer.commit().unwrap();
    assert_eq!(s.count("r"), 20);
    assert_eq!(s.docs(), 20);
    assert_eq!(s.metrics().duplicates_skipped, 5);
}

#[test]
fn out_of_order_new_events_below_watermark_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    s.feed(0, 0, &[event(9, 500, "o", "svc", 0)]);
    s.indexer.commit().unwrap();
    // Offset 200 < watermark 500 but never indexed: it is not a replay.
    s.feed(
        0,
        1,
        &[event(9, 200, "o", "svc", 0), event(9, 500, "o", "svc", 0)],
    );
    s.indexer.commit().unwrap();
    assert_eq!(s.count("o"), 2);
    assert_eq!(s.metrics().duplicates_skipped, 1);
    // Watermarks are per partition: the same source in partition 1 starts fresh.
    s.feed(1, 0, &[event(9, 100, "o", "svc", 0)]);
    s.indexer.commit().unwrap();
    assert_eq!(s.count("o"), 3);
}

#[test]
fn events_without_a_source_are_never_deduplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    let foreign = LogEvent {
        event_id: EventId::derive(0, 0),
        position: SourcePosition::default(),
        service: "otel".into(),
        correlation_ids: vec!["f".into()],
        message: "from another producer".into(),
        ..Default::default()
    };
    s.feed(0, 0, &[foreign.clone(), foreign.clone()]);
    s.feed(0, 1, &[foreign]);
    s.indexer.commit().unwrap();
    assert_eq!(s.count("f"), 3);
}

#[test]
fn undecodable_message_is_kept_as_a_marked_event() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    s.feed_raw(2, 41, b"\xff\xff\xff\xff not protobuf");
    s.feed(2, 42, &run_of(3, 0..2, "g"));
    s.indexer.commit().unwrap();
    assert_eq!(s.docs(), 3);
    let m = s.metrics();
    assert_eq!((m.decode_errors, m.events_indexed), (1, 3));
    let req = SearchRequest {
        services: vec!["unknown".into()],
        ..Default::default()
    };
    let hits = s.engine().search(&req).unwrap().hits;
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(h.message, "\u{fffd}\u{fffd}\u{fffd}\u{fffd} not protobuf");
    assert_eq!(h.timestamp, "2026-11-21T05:00:00.000000000Z");
    assert_eq!(h.source_kind.as_deref(), Some("other"));
    assert_eq!(h.attributes["kafka.offset"], "41");
    let pe = h.parse_error.as_deref().unwrap();
    assert!(
        pe.starts_with("undecodable Kafka message sightline.logs/2@41: payload is not an OTLP LogsData protobuf"),
        "{pe}"
    );
    // Re-delivering the garbage after the commit is an offset skip, not a second event.
    s.feed_raw(2, 41, b"\xff\xff\xff\xff not protobuf");
    s.indexer.commit().unwrap();
    assert_eq!(s.docs(), 3);
}

#[test]
fn second_writer_on_the_same_index_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let index = IndexSchema::new().open_or_create(tmp.path()).unwrap();
    let reader = index.reader().unwrap();
    let err = Indexer::new(
        &index,
        reader,
        15_000_000,
        Duration::from_secs(1),
        Arc::new(IndexerMetrics::default()),
    )
    .err()
    .expect("the lock is held");
    assert!(err.to_string().contains("lock"), "{err}");
    drop(s);
}
