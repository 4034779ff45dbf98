//! `audit.log` lines → [`AuditItem`]s for the audit sink.
//!
//! A line that parses ([`parse_audit_line`]) becomes
//! [`CredentialsAuditRecord::to_audit_event`]'s event. Every other line — malformed, or a
//! part of a line longer than `max_line_bytes` — becomes an audit event too, so that the
//! whole file goes through one channel and its checkpoint (stored by the audit sink once
//! Kafka acknowledged an event) never passes a line that was not delivered:
//!
//! - `action` = [`UNPARSED_ACTION`] (`ecs.unparsed`), `actor` empty, no `outcome`;
//! - `message` = the raw line (lossy UTF-8);
//! - `time_ns` = the line's first token when it is an RFC 3339 time, else the time read;
//! - attributes `sightline.parse_error` (why), and `sightline.split_part` on parts.
//!
//! Every event gets `resource.service` = `ecs-agent` (the agent writes the file) and
//! `sightline.invalid_utf8=true` when bytes were replaced by U+FFFD. Its position is
//! [`AuditPosition::File`] with the checkpoint *after* its line: the offset following the
//! line's `\n` (for a part that does not end its line: the line's start).

use std::sync::Arc;

use sightline_model::{Actor, AuditEvent, EventId, LogEvent, SourceKind, SourcePosition};
use tokio::sync::mpsc;

use super::agent::{INVALID_UTF8_ATTR, SPLIT_PART_ATTR};
use super::lines::{FileIdent, Line, LineHandler};
use crate::checkpoint::FileCheckpoint;
use crate::parse::ecs_audit::parse_audit_line;
use crate::parse::timestamp::{now_ns, parse_rfc3339_ns};
use crate::sinks::records::{AuditItem, AuditPosition};
use crate::stats::Stats;

/// Action of an audit log line that could not be parsed.
pub const UNPARSED_ACTION: &str = "ecs.unparsed";
/// Attribute holding why a line could not be parsed.
pub const PARSE_ERROR_ATTR: &str = "sightline.parse_error";
/// `resource.service` of audit events from the credentials audit log.
pub const AUDIT_SERVICE: &str = "ecs-agent";

/// The [`LineHandler`] of `audit.log`.
pub struct AuditLines {
    host: String,
    key: Arc<str>,
    stats: Arc<Stats>,
    tx: mpsc::Sender<AuditItem>,
    max_line_bytes: usize,
    pending: Vec<AuditItem>,
}

impl AuditLines {
    /// Audit events read on `host`, sent on `tx` with positions under checkpoint key `key`.
    pub fn new(
        host: &str,
        key: &str,
        stats: Arc<Stats>,
        tx: mpsc::Sender<AuditItem>,
        max_line_bytes: usize,
    ) -> Self {
        AuditLines {
            host: host.to_string(),
            key: Arc::from(key),
            stats,
            tx,
            max_line_bytes,
            pending: Vec::new(),
        }
    }

    /// The audit event of one line, read at `observed` (Unix ns).
    pub fn event(&self, file: &FileIdent, line: &Line<'_>, observed: u64) -> AuditEvent {
        let parsed = match line.split_part {
            None => parse_audit_line(&line.text).map_err(|e| e.to_string()),
            Some(_) => Err(format!(
                "line longer than {} bytes (max_line_bytes): shipped in parts, not parsed",
                self.max_line_bytes
            )),
        };
        let mut ev = match parsed {
            Ok(rec) => rec.to_audit_event(&self.host, file.source_id, line.offset, observed),
            Err(error) => {
                self.stats.add_parse_errors(1);
                let time_ns = line
                    .text
                    .split(' ')
                    .next()
                    .and_then(parse_rfc3339_ns)
                    .unwrap_or(observed);
                AuditEvent {
                    event_id: EventId::derive(file.source_id, line.offset),
                    time_ns,
                    observed_ns: observed,
                    resource: LogEvent {
                        host: self.host.clone(),
                        source_kind: SourceKind::EcsAuditLog,
                        position: SourcePosition {
                            source_id: file.source_id,
                            offset: line.offset,
                        },
                        ..Default::default()
                    },
                    action: UNPARSED_ACTION.to_string(),
                    actor: Actor::default(),
                    outcome: None,
                    message: line.text.to_string(),
                    attributes: [(PARSE_ERROR_ATTR.to_string(), error)].into(),
                }
            }
        };
        ev.resource.service = AUDIT_SERVICE.to_string();
        if let Some(p) = line.split_part {
            ev.attributes
                .insert(SPLIT_PART_ATTR.to_string(), p.to_string());
        }
        if line.invalid_utf8 {
            ev.attributes
                .insert(INVALID_UTF8_ATTR.to_string(), "true".to_string());
        }
        ev
    }
}

impl LineHandler for AuditLines {
    fn line(&mut self, file: &FileIdent, line: Line<'_>) {
        let event = self.event(file, &line, now_ns());
        let offset = if line.complete {
            line.end
        } else {
            line.line_start
        };
        self.pending.push(AuditItem {
            event,
            position: AuditPosition::File {
                key: self.key.clone(),
                checkpoint: file.checkpoint(offset),
            },
        });
    }

    fn flush(&mut self, _file: &FileIdent, _checkpoint: FileCheckpoint) -> bool {
        // Positions travel with each item; lines that make no item (blank ones) are passed
        // by the next item's position.
        for item in self.pending.drain(..) {
            if self.tx.blocking_send(item).is_err() {
                return false;
            }
        }
        true
    }
}
