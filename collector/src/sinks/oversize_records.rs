//! Metric and audit records Kafka refuses as too large (`MessageSizeTooLarge`), handled as
//! log batches are (see [`super::oversize`]): never re-sent as they are, which would stall
//! their topic forever, never dropped.
//!
//! - A run of audit events is split into two halves, in order. One audit event alone too
//!   large (a `docker exec` with a 2 MB command line, a container with huge labels) has its
//!   longest text — the message, an attribute value, the actor's name, or the container's
//!   name, image or a label value — cut to half its size, on a UTF-8 boundary, and is
//!   marked: [`TRUNCATED_ATTR`] = that text's original size in bytes,
//!   [`TRUNCATED_FIELD_ATTR`] = which text (`message`, an attribute's name, `actor.name`,
//!   `container.name`, `container.image`, `container.label.<key>`). IDs, which key and
//!   identify the record, are never cut.
//! - A metric batch is split into two batches of the same resource and instant, each with
//!   half its points. One point alone too large has its longest resource attribute, point
//!   attribute or container text cut the same way, marked in the resource attributes.
//!
//! Both count in `sightline_collector_kafka_batches_split_total` and, for the first cut of a
//! record, `sightline_collector_events_truncated_total`.

use std::collections::BTreeMap;

use sightline_model::{AuditEvent, MetricBatch};

pub use super::oversize::TRUNCATED_ATTR;
use crate::stats::Stats;

/// Attribute naming the text that was cut: `message`, or an attribute's name.
pub const TRUNCATED_FIELD_ATTR: &str = "sightline.truncated.field";

/// Cuts `text` to half its length on a char boundary; returns the new length.
fn halve(text: &mut String) -> usize {
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    cut
}

/// The container's cuttable texts, named as in [`TRUNCATED_FIELD_ATTR`].
fn container_texts(
    c: &mut Option<std::sync::Arc<sightline_model::Container>>,
) -> Vec<(String, &mut String)> {
    let Some(c) = c.as_mut() else {
        return Vec::new();
    };
    let c = std::sync::Arc::make_mut(c);
    let mut texts: Vec<(String, &mut String)> = vec![
        ("container.name".into(), &mut c.name),
        ("container.image".into(), &mut c.image),
    ];
    texts.extend(
        c.labels
            .iter_mut()
            .map(|(k, v)| (format!("container.label.{k}"), v)),
    );
    texts
}

/// Cuts the longest non-empty value among `texts` (name, value) in half, leaving the marks
/// themselves alone: its name and original size, or `None` when nothing is left to cut.
fn cut_longest(texts: Vec<(String, &mut String)>) -> Option<(String, usize)> {
    let (field, text) = texts
        .into_iter()
        .filter(|(name, t)| !t.is_empty() && name != TRUNCATED_ATTR && name != TRUNCATED_FIELD_ATTR)
        .max_by_key(|(_, t)| t.len())?;
    let original = text.len();
    let now = halve(text);
    tracing::warn!(
        %field,
        original,
        now,
        "one record alone is larger than Kafka accepts: its longest text is cut (marked sightline.truncated)"
    );
    Some((field, original))
}

/// Marks `attrs` after a cut of `field` from `original` bytes; a later cut of the same text
/// keeps its first original size, and a record is counted truncated once.
fn mark(attrs: &mut BTreeMap<String, String>, (field, original): (String, usize), stats: &Stats) {
    let first_cut = !attrs.contains_key(TRUNCATED_ATTR);
    if first_cut || attrs.get(TRUNCATED_FIELD_ATTR) != Some(&field) {
        attrs.insert(TRUNCATED_ATTR.into(), original.to_string());
        attrs.insert(TRUNCATED_FIELD_ATTR.into(), field);
    }
    if first_cut {
        stats.add_events_truncated(1);
    }
}

/// Splits a run of audit events Kafka refused as too large: two halves, or one event with
/// its longest text cut (see the module docs). `None` when nothing can be made smaller: the
/// caller retries as it is.
pub(crate) fn shrink_audit(events: &[AuditEvent], stats: &Stats) -> Option<Vec<Vec<AuditEvent>>> {
    if events.len() >= 2 {
        stats.add_batches_split(1);
        tracing::warn!(
            events = events.len(),
            "Kafka refused audit events as too large (raise its message.max.bytes): split in two"
        );
        let (a, z) = events.split_at(events.len() / 2);
        return Some(vec![a.to_vec(), z.to_vec()]);
    }
    let mut ev = events.first()?.clone();
    let mut texts: Vec<(String, &mut String)> = vec![
        ("message".into(), &mut ev.message),
        ("actor.name".into(), &mut ev.actor.name),
    ];
    texts.extend(ev.attributes.iter_mut().map(|(k, v)| (k.clone(), v)));
    texts.extend(container_texts(&mut ev.resource.container));
    let cut = cut_longest(texts)?;
    mark(&mut ev.attributes, cut, stats);
    stats.add_batches_split(1);
    Some(vec![vec![ev]])
}

/// Splits a metric batch Kafka refused as too large: two batches of half the points each,
/// or, for one point, its longest attribute value cut (see the module docs). `None` when
/// nothing can be made smaller.
pub(crate) fn shrink_metrics(b: &MetricBatch, stats: &Stats) -> Option<Vec<MetricBatch>> {
    if b.points.len() >= 2 {
        stats.add_batches_split(1);
        tracing::warn!(
            points = b.points.len(),
            "Kafka refused metric samples as too large (raise its message.max.bytes): split in two"
        );
        let (a, z) = b.points.split_at(b.points.len() / 2);
        let half = |points: &[_]| MetricBatch {
            points: points.to_vec(),
            ..b.clone()
        };
        return Some(vec![half(a), half(z)]);
    }
    let mut out = b.clone();
    let mut texts: Vec<(String, &mut String)> = out
        .resource_attributes
        .iter_mut()
        .map(|(k, v)| (k.clone(), v))
        .collect();
    if let Some(p) = out.points.first_mut() {
        texts.extend(
            p.attributes
                .iter_mut()
                .map(|(k, v)| (format!("point.{k}"), v)),
        );
    }
    texts.extend(container_texts(&mut out.resource.container));
    let cut = cut_longest(texts)?;
    mark(&mut out.resource_attributes, cut, stats);
    stats.add_batches_split(1);
    Some(vec![out])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_model::{encode_audit, encode_metrics, Actor, MetricPoint};

    fn audit(i: u64, command: &str) -> AuditEvent {
        AuditEvent {
            time_ns: i,
            action: "container.exec_start".into(),
            actor: Actor {
                id: "c1".into(),
                ..Default::default()
            },
            message: format!("exec {i}"),
            attributes: BTreeMap::from([("exec.command".into(), command.into())]),
            ..Default::default()
        }
    }

    #[test]
    fn audit_runs_split_in_order_then_the_longest_text_is_cut() {
        let stats = Stats::default();
        let run: Vec<AuditEvent> = (0..5).map(|i| audit(i, "sh")).collect();
        let parts = shrink_audit(&run, &stats).unwrap();
        assert_eq!(parts.concat(), run, "every event, in order");
        assert_eq!((parts[0].len(), parts[1].len()), (2, 3));

        let big = audit(9, &"é".repeat(1000));
        let once = shrink_audit(std::slice::from_ref(&big), &stats).unwrap();
        let cut = &once[0][0];
        assert!(encode_audit(&once[0]).len() < encode_audit(std::slice::from_ref(&big)).len());
        assert_eq!(cut.attributes["exec.command"].len(), 1000);
        assert_eq!(cut.attributes[TRUNCATED_ATTR], "2000");
        assert_eq!(cut.attributes[TRUNCATED_FIELD_ATTR], "exec.command");
        assert_eq!((cut.message.as_str(), cut.time_ns), ("exec 9", 9));
        // Cut again: the original size stays, the event is counted once.
        let twice = shrink_audit(&once[0], &stats).unwrap();
        assert_eq!(twice[0][0].attributes["exec.command"].len(), 500);
        assert_eq!(twice[0][0].attributes[TRUNCATED_ATTR], "2000");
        assert_eq!(stats.snapshot().events_truncated, 1);
        assert_eq!(stats.snapshot().batches_split, 3);
    }

    #[test]
    fn huge_container_labels_are_cut_too() {
        let stats = Stats::default();
        let mut e = audit(1, "sh");
        e.resource.container = Some(std::sync::Arc::new(sightline_model::Container {
            id: "c1".into(),
            name: "web-1".into(),
            labels: BTreeMap::from([("blob".into(), "z".repeat(3000))]),
            ..Default::default()
        }));
        let cut = shrink_audit(&[e], &stats).unwrap().remove(0).remove(0);
        let c = cut.resource.container.as_ref().unwrap();
        assert_eq!((c.id.as_str(), c.labels["blob"].len()), ("c1", 1500));
        assert_eq!(cut.attributes[TRUNCATED_FIELD_ATTR], "container.label.blob");
        assert_eq!(cut.attributes[TRUNCATED_ATTR], "3000");

        let b = MetricBatch {
            resource: cut.resource.clone(),
            points: vec![MetricPoint::gauge("x", "1", 1.0)],
            ..Default::default()
        };
        let m = shrink_metrics(&b, &stats).unwrap().remove(0);
        assert_eq!(
            m.resource.container.as_ref().unwrap().labels["blob"].len(),
            750
        );
        assert_eq!(
            m.resource_attributes[TRUNCATED_FIELD_ATTR],
            "container.label.blob"
        );
    }

    #[test]
    fn an_audit_event_with_nothing_to_cut_is_left_as_it_is() {
        let stats = Stats::default();
        let mut e = audit(1, "");
        e.message.clear();
        assert!(shrink_audit(&[e], &stats).is_none());
        assert!(shrink_audit(&[], &stats).is_none());
    }

    #[test]
    fn metric_batches_split_by_points_then_attributes_are_cut() {
        let stats = Stats::default();
        let b = MetricBatch {
            time_ns: 5,
            resource_attributes: BTreeMap::from([("aws.ecs.cluster.name".into(), "c".into())]),
            points: (0..3)
                .map(|i| MetricPoint::gauge("container.pids.count", "{pids}", i as f64))
                .collect(),
            ..Default::default()
        };
        let parts = shrink_metrics(&b, &stats).unwrap();
        assert_eq!(parts.len(), 2);
        let points: Vec<_> = parts.iter().flat_map(|p| p.points.clone()).collect();
        assert_eq!(points, b.points);
        assert!(parts
            .iter()
            .all(|p| p.time_ns == 5 && p.resource_attributes == b.resource_attributes));

        let mut one = parts[0].clone();
        one.points[0]
            .attributes
            .insert("interface".into(), "x".repeat(4000));
        let cut = shrink_metrics(&one, &stats).unwrap().remove(0);
        assert!(encode_metrics(std::slice::from_ref(&cut)).len() < encode_metrics(&[one]).len());
        assert_eq!(cut.points[0].attributes["interface"].len(), 2000);
        assert_eq!(cut.resource_attributes[TRUNCATED_ATTR], "4000");
        assert_eq!(
            cut.resource_attributes[TRUNCATED_FIELD_ATTR],
            "point.interface"
        );
        assert_eq!(cut.resource_attributes["aws.ecs.cluster.name"], "c");

        let bare = MetricBatch {
            points: vec![MetricPoint::gauge("x", "1", 1.0)],
            ..Default::default()
        };
        assert!(shrink_metrics(&bare, &stats).is_none());
    }
}
