//! Batches Kafka refuses as too large (`MessageSizeTooLarge`: the producer's or the broker's
//! `message.max.bytes`, or the topic's `max.message.bytes`, is below `batch.max_bytes`).
//!
//! Sending the same batch again would fail forever and stall the pipeline, so it is split
//! instead (`shrink`): into two halves of its events, in order, each sent (and, if still
//! too large, split) in turn. A single event that alone is too large is kept, never
//! dropped: its message is cut to half its size, marked (`sightline.truncated` = the original
//! size in bytes, and a parse-error reason unless it had one), and counted
//! (`sightline_collector_events_truncated_total`); cut again if still too large. Splits
//! are counted in `sightline_collector_kafka_batches_split_total`.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use sightline_model::encode::{encode_resource, put_log_record_field, LogsDataBuilder};
use sightline_model::LogEvent;

use super::kafka::Batch;
use super::producer::Payload;
use crate::stats::Stats;

/// Attribute set on an event whose message was cut to fit a Kafka message: the original
/// message size, bytes.
pub const TRUNCATED_ATTR: &str = "sightline.truncated";

/// Whether `e` says the message is larger than the producer or the broker accepts.
pub(crate) fn too_large(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
    )
}

/// Encodes `events` as one `LogsData`, in order: each run of events of one resource is one
/// `ResourceLogs`, as the sink builds them.
pub(crate) fn encode_in_order<'a>(events: impl IntoIterator<Item = &'a LogEvent>) -> Vec<u8> {
    let mut builder = LogsDataBuilder::default();
    let (mut resource, mut records, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    for ev in events {
        let r = encode_resource(ev);
        if r != resource && !records.is_empty() {
            builder.add(&resource, &records);
            records.clear();
        }
        resource = r;
        put_log_record_field(&mut records, &mut scratch, ev);
    }
    if !records.is_empty() {
        builder.add(&resource, &records);
    }
    builder.finish()
}

/// A batch of `events` for `partition`, keyed by their common key when they share one.
pub(crate) fn batch_of(partition: i32, events: &[&LogEvent]) -> Batch {
    let first = events.first().map(|e| e.partition_key());
    let key = first
        .filter(|k| events.iter().all(|e| e.partition_key() == *k))
        .map(str::to_string);
    Batch {
        partition,
        key,
        payload: Payload::from(encode_in_order(events.iter().copied())),
        events: events.len() as u64,
    }
}

/// Splits a batch Kafka refused as too large: two halves of its events, or, for a single
/// event, that event with its message cut in half (marked). `None` when it cannot be made
/// smaller (not a well-formed `LogsData`, or one event with an empty message): the caller
/// keeps retrying it as it is.
pub(crate) fn shrink(b: &Batch, stats: &Stats) -> Option<Vec<Batch>> {
    let mut events = match sightline_model::decode::decode_logs_fast(&b.payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "a batch Kafka refused as too large is malformed; cannot split it");
            return None;
        }
    };
    stats.add_batches_split(1);
    if events.len() >= 2 {
        let refs: Vec<&LogEvent> = events.iter().collect();
        let (a, z) = refs.split_at(refs.len() / 2);
        tracing::warn!(
            bytes = b.payload.len(),
            events = refs.len(),
            partition = b.partition,
            "Kafka refused a batch as too large (lower its message.max.bytes or batch.max_bytes): split in two"
        );
        return Some(vec![batch_of(b.partition, a), batch_of(b.partition, z)]);
    }
    let ev = events.first_mut()?;
    if ev.message.is_empty() {
        tracing::error!(
            bytes = b.payload.len(),
            "an event without a message is still too large for Kafka; retrying it as it is"
        );
        return None;
    }
    let first_cut = !ev.attributes.contains_key(TRUNCATED_ATTR);
    let original = ev
        .attributes
        .get(TRUNCATED_ATTR)
        .cloned()
        .unwrap_or_else(|| ev.message.len().to_string());
    let mut cut = ev.message.len() / 2;
    while !ev.message.is_char_boundary(cut) {
        cut -= 1;
    }
    ev.message.truncate(cut);
    ev.attributes
        .insert(TRUNCATED_ATTR.into(), original.clone());
    if ev.parse_error.is_none() {
        ev.parse_error = Some(format!(
            "message cut to {cut} of {original} bytes: Kafka refused it as too large"
        ));
    }
    if first_cut {
        stats.add_events_truncated(1);
    }
    tracing::warn!(
        original,
        now = cut,
        partition = b.partition,
        "one event alone is larger than Kafka accepts: its message is cut (marked sightline.truncated)"
    );
    let ev = &*ev;
    Some(vec![batch_of(b.partition, &[ev])])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_model::{decode_logs, Container, EventId, SourcePosition};
    use std::sync::Arc;

    fn event(i: u64, container: &str, message: String) -> LogEvent {
        LogEvent {
            event_id: EventId::derive(1, i),
            timestamp_ns: 10 + i,
            host: "h".into(),
            position: SourcePosition {
                source_id: 1,
                offset: i,
            },
            container: Some(Arc::new(Container {
                id: container.into(),
                ..Default::default()
            })),
            service: "s".into(),
            message,
            correlation_ids: vec![format!("req-{}", i % 2)],
            ..Default::default()
        }
    }

    #[test]
    fn halves_keep_every_event_in_order() {
        let events: Vec<LogEvent> = (0..5)
            .map(|i| event(i, if i < 2 { "a" } else { "b" }, format!("line {i}")))
            .collect();
        let refs: Vec<&LogEvent> = events.iter().collect();
        let b = batch_of(2, &refs);
        assert_eq!(decode_logs(&b.payload).unwrap(), events);
        let stats = Stats::default();
        let parts = shrink(&b, &stats).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].events, parts[1].events), (2, 3));
        let mut back = Vec::new();
        for p in &parts {
            assert_eq!(p.partition, 2);
            back.extend(decode_logs(&p.payload).unwrap());
        }
        assert_eq!(back, events);
        assert_eq!(stats.snapshot().batches_split, 1);
        assert_eq!(stats.snapshot().events_truncated, 0);
    }

    #[test]
    fn a_lone_event_is_cut_and_marked_never_dropped() {
        let msg = "é".repeat(1000) + "x"; // 2001 bytes, cut on a char boundary
        let b = batch_of(0, &[&event(7, "a", msg.clone())]);
        let stats = Stats::default();
        let parts = shrink(&b, &stats).unwrap();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].payload.len() < b.payload.len());
        let got = decode_logs(&parts[0].payload).unwrap().remove(0);
        assert!(msg.starts_with(&got.message));
        assert_eq!(got.message.len(), 1000);
        assert_eq!(got.attributes.get(TRUNCATED_ATTR).unwrap(), "2001");
        assert!(got.parse_error.unwrap().contains("2001"));
        assert_eq!(got.event_id, EventId::derive(1, 7));
        // Cut again: the original size stays.
        let again = shrink(&parts[0], &stats).unwrap();
        let got = decode_logs(&again[0].payload).unwrap().remove(0);
        assert_eq!(got.message.len(), 500);
        assert_eq!(got.attributes.get(TRUNCATED_ATTR).unwrap(), "2001");
        assert_eq!(stats.snapshot().events_truncated, 1, "one event, cut twice");
    }

    #[test]
    fn what_cannot_shrink_is_left_as_it_is() {
        let stats = Stats::default();
        let empty = batch_of(0, &[&event(1, "a", String::new())]);
        assert!(shrink(&empty, &stats).is_none());
        let junk = Batch {
            partition: 0,
            key: None,
            payload: vec![0x0a, 0xff].into(),
            events: 1,
        };
        assert!(shrink(&junk, &stats).is_none());
        assert!(too_large(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(!too_large(&KafkaError::MessageProduction(
            RDKafkaErrorCode::QueueFull
        )));
    }
}
