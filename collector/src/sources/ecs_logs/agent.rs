//! `ecs-agent.log` and `ecs-init.log` lines → log events, encoded per Kafka partition and
//! sent to the log sink as [`Chunk`]s.
//!
//! Per line ([`parse_agent_line`]): `message` = `msg` (or the legacy text; the raw line when
//! the line is marked), `level`, `timestamp_ns` = the line's `time` (else the time it was
//! read), every structured field as an attribute under its own key (`taskARN`, `dockerId`,
//! `knownStatus`, …) plus `module`, `correlation_ids` = [`AgentRecord::correlation_ids`]
//! followed by any the configured extraction rules find in the message (the trace and span
//! IDs and hop come from those rules too), `parse_error` for lines of no known shape.
//! Marks: `sightline.split_part` (1-based) on the parts of a line longer than
//! `max_line_bytes` — parts are not parsed, carry the first part's time, level and
//! correlation IDs (so they stay in one partition, in order) and a `parse_error` saying why;
//! `sightline.invalid_utf8=true` when bytes were replaced by U+FFFD.

use std::collections::BTreeMap;
use std::sync::Arc;

use sightline_model::encode::{encode_resource, put_log_record_field};
use sightline_model::kafka::partition_for_key;
use sightline_model::{EventId, Level, LogEvent, SourceKind, SourcePosition};
use tokio::sync::mpsc;

use super::lines::{FileIdent, Line, LineHandler};
use crate::checkpoint::FileCheckpoint;
use crate::parse::app::Extractor;
use crate::parse::ecs_agent::{parse_agent_line, AgentRecord};
use crate::parse::timestamp::now_ns;
use crate::sinks::topics::{Partitions, UNASSIGNED};
use crate::sources::{Chunk, Part};
use crate::stats::Stats;

/// Attribute naming the part number of a cut line.
pub const SPLIT_PART_ATTR: &str = "sightline.split_part";
/// Attribute set to `true` when invalid UTF-8 was replaced.
pub const INVALID_UTF8_ATTR: &str = "sightline.invalid_utf8";

/// Events encoded per partition, as the json-file tailer does: a part per partition, a new
/// one when it would pass `max_part_bytes`.
struct PartsBuilder {
    partitions: Partitions,
    /// The count the parts being built use (`None`: [`UNASSIGNED`]), read at each chunk's
    /// first event.
    count: Option<i32>,
    max_part_bytes: usize,
    open: Vec<usize>,
    parts: Vec<Part>,
    scratch: Vec<u8>,
}

impl PartsBuilder {
    fn new(partitions: Partitions, max_part_bytes: usize) -> Self {
        PartsBuilder {
            partitions,
            count: None,
            max_part_bytes,
            open: Vec::new(),
            parts: Vec::new(),
            scratch: Vec::with_capacity(1024),
        }
    }

    fn push(&mut self, ev: &LogEvent) {
        let key = ev.partition_key();
        if self.parts.is_empty() {
            self.count = self.partitions.get();
            self.open = vec![usize::MAX; self.count.unwrap_or(1) as usize];
        }
        let p = match self.count {
            Some(n) => partition_for_key(key.as_bytes(), n),
            None => UNASSIGNED,
        };
        let slot = &mut self.open[p.max(0) as usize];
        // The message plus 1 KiB bounds a record's other fields.
        let room = self.max_part_bytes.saturating_sub(ev.message.len() + 1024);
        if *slot == usize::MAX || self.parts[*slot].records.len() > room {
            *slot = self.parts.len();
            self.parts.push(Part {
                partition: p,
                records: Vec::with_capacity(4096),
                count: 0,
                key: Some(key.to_string()),
            });
        }
        let part = &mut self.parts[*slot];
        if part.key.as_deref().is_some_and(|k| k != key) {
            part.key = None;
        }
        part.count += 1;
        put_log_record_field(&mut part.records, &mut self.scratch, ev);
    }

    fn take(&mut self) -> Vec<Part> {
        self.open.fill(usize::MAX);
        std::mem::take(&mut self.parts)
    }
}

/// What the first part of a cut line lends to the later ones.
struct SplitHead {
    time_ns: Option<u64>,
    level: Option<Level>,
    correlation_ids: Vec<String>,
}

/// The [`LineHandler`] of `ecs-agent.log` / `ecs-init.log`.
pub struct AgentLines {
    service: String,
    key: Arc<str>,
    resource: Arc<Vec<u8>>,
    extractor: Extractor,
    stats: Arc<Stats>,
    tx: mpsc::Sender<Chunk>,
    max_line_bytes: usize,
    parts: PartsBuilder,
    events: u64,
    last_checkpoint: Option<FileCheckpoint>,
    split: Option<SplitHead>,
}

impl AgentLines {
    /// Events of `service` (`ecs-agent` or `ecs-init`) read on `host`, sent on `tx` under
    /// checkpoint key `key`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service: &str,
        host: &str,
        key: &str,
        extractor: Extractor,
        stats: Arc<Stats>,
        tx: mpsc::Sender<Chunk>,
        partitions: Partitions,
        max_part_bytes: usize,
        max_line_bytes: usize,
    ) -> Self {
        let resource = Arc::new(encode_resource(&LogEvent {
            host: host.to_string(),
            source_kind: SourceKind::EcsAgentLog,
            service: service.to_string(),
            ..Default::default()
        }));
        AgentLines {
            service: service.to_string(),
            key: Arc::from(key),
            resource,
            extractor,
            stats,
            tx,
            max_line_bytes,
            parts: PartsBuilder::new(partitions, max_part_bytes),
            events: 0,
            last_checkpoint: None,
            split: None,
        }
    }

    /// The event of one line. `host` stays empty (it travels in the chunk's resource);
    /// `service` is set only for [`LogEvent::partition_key`] (the encoder takes it from the
    /// resource too).
    pub fn event(&mut self, file: &FileIdent, line: &Line<'_>, observed: u64) -> LogEvent {
        let mut attributes = BTreeMap::new();
        let (rec, head) = match line.split_part {
            None => (parse_agent_line(&line.text), None),
            Some(part) => {
                if part == 1 {
                    // Time and level as far as they could be read; IDs of the first part.
                    let first = parse_agent_line(&line.text);
                    let probe = AgentRecord {
                        message: line.text.to_string(),
                        ..Default::default()
                    };
                    let mut ids = probe.correlation_ids();
                    merge(&mut ids, self.extractor.extract(&line.text).correlation_ids);
                    self.split = Some(SplitHead {
                        time_ns: first.time_ns,
                        level: first.level,
                        correlation_ids: ids,
                    });
                }
                attributes.insert(SPLIT_PART_ATTR.to_string(), part.to_string());
                let rec = AgentRecord {
                    message: line.text.to_string(),
                    parse_error: Some(format!(
                        "line longer than {} bytes (max_line_bytes): shipped in parts, not parsed",
                        self.max_line_bytes
                    )),
                    ..Default::default()
                };
                (rec, self.split.as_ref())
            }
        };
        let (time_ns, level, correlation_ids, ex) = match head {
            Some(h) => (
                h.time_ns,
                h.level,
                h.correlation_ids.clone(),
                Default::default(),
            ),
            None => {
                let ex = self.extractor.extract(&rec.message);
                let mut ids = rec.correlation_ids();
                merge(&mut ids, ex.correlation_ids.clone());
                (rec.time_ns, rec.level, ids, ex)
            }
        };
        if line.complete && line.split_part.is_some() {
            self.split = None;
        }
        attributes.extend(rec.fields);
        if let Some(m) = rec.module {
            // A second `module` key (kept in `fields`) moves aside for the header's.
            if let Some(other) = attributes.insert("module".to_string(), m) {
                attributes.insert("module.2".to_string(), other);
            }
        }
        if line.invalid_utf8 {
            attributes.insert(INVALID_UTF8_ATTR.to_string(), "true".to_string());
        }
        if rec.parse_error.is_some() {
            self.stats.add_parse_errors(1);
        }
        LogEvent {
            event_id: EventId::derive(file.source_id, line.offset),
            timestamp_ns: time_ns.unwrap_or(observed),
            observed_ns: observed,
            host: String::new(),
            source_kind: SourceKind::EcsAgentLog,
            position: SourcePosition {
                source_id: file.source_id,
                offset: line.offset,
            },
            container: None,
            service: self.service.clone(),
            stream: String::new(),
            level,
            message: rec.message,
            correlation_ids,
            trace_id: ex.trace_id,
            span_id: ex.span_id,
            hop: ex.hop,
            parse_error: rec.parse_error,
            attributes,
        }
    }
}

/// Appends the IDs of `more` not already in `ids`.
fn merge(ids: &mut Vec<String>, more: Vec<String>) {
    for id in more {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
}

impl LineHandler for AgentLines {
    fn line(&mut self, file: &FileIdent, line: Line<'_>) {
        let ev = self.event(file, &line, now_ns());
        self.parts.push(&ev);
        self.events += 1;
    }

    fn flush(&mut self, _file: &FileIdent, checkpoint: FileCheckpoint) -> bool {
        if self.events == 0 && self.last_checkpoint.as_ref() == Some(&checkpoint) {
            return true;
        }
        self.stats.add_events_read(self.events);
        self.events = 0;
        self.last_checkpoint = Some(checkpoint.clone());
        let chunk = Chunk {
            key: self.key.clone(),
            resource: self.resource.clone(),
            parts: self.parts.take(),
            checkpoint: Some(checkpoint),
            done: false,
        };
        self.tx.blocking_send(chunk).is_ok()
    }
}
