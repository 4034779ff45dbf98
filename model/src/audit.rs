//! Audit events: who did what to which container, task or credential, as OTLP `LogsData` on
//! [`crate::kafka::AUDIT_TOPIC`].
//!
//! Sources: the Docker Engine event stream (container lifecycle, `exec_*`, image pull and
//! delete), the ECS agent's credentials audit log, and Sightline's own actions.
//!
//! Mapping, one `LogRecord` per event:
//! - resource: as for log events (`host.name`, `service.name`, `container.*`, `aws.ecs.*`,
//!   `sightline.source.kind`), see [`crate::otlp`];
//! - `event_name` = [`AuditEvent::action`], e.g. `container.exec_start`, `image.pull`,
//!   `ecs.GetCredentials`; `body` = [`AuditEvent::message`];
//! - `time_unix_nano`, `observed_time_unix_nano`;
//! - attributes `log.record.uid` (event ID), `audit.action`, `audit.actor.kind`,
//!   `audit.actor.id`, `audit.actor.name`, `audit.outcome` (when known), then
//!   [`AuditEvent::attributes`] under their own keys (e.g. `exit_code`, `signal`,
//!   `exec.command`, `http.response.status_code`).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, LogsData, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::event::{EventId, LogEvent, SourceKind};
use crate::otlp::{kv_str, resource_attributes, resource_fields, scope, DecodeError};

/// Who acted, or what was acted on: a container, an image, an ECS task, a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `container`, `image`, `network`, `volume`, `task`, `daemon`, `sightline`, ….
    pub kind: String,
    /// Stable ID: the container ID, image ID or name, task ARN.
    pub id: String,
    /// Human name: container name, image reference; may be empty.
    pub name: String,
}

/// One audit event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Stable ID (a replay of the same source record keeps it): for Docker events XXH3-128
    /// of (host, `timeNano`, type, action, actor ID); for log-file sources
    /// [`EventId::derive`] of (source ID, byte offset).
    pub event_id: EventId,
    /// When it happened, Unix ns.
    pub time_ns: u64,
    /// When the collector read it, Unix ns.
    pub observed_ns: u64,
    /// Resource: `host`, `service`, `source_kind` and `container` are used, the rest ignored.
    pub resource: LogEvent,
    /// `<actor kind>.<verb>` for Docker (`container.die`, `container.exec_start`,
    /// `image.pull`), `ecs.<event type>` for the credentials audit log.
    pub action: String,
    /// The actor.
    pub actor: Actor,
    /// Result when the source gives one: exit code of `die`, HTTP status of a credentials
    /// request.
    pub outcome: Option<String>,
    /// One-line human summary.
    pub message: String,
    /// Action-specific details (`signal`, `exit_code`, `exec.command`, `source.address`, …).
    pub attributes: BTreeMap<String, String>,
}

impl AuditEvent {
    /// The ID of an event that has no byte offset: XXH3-128 of the given parts, separated by
    /// NUL bytes.
    pub fn content_id(parts: &[&str]) -> EventId {
        let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for p in parts {
            buf.extend_from_slice(p.as_bytes());
            buf.push(0);
        }
        EventId(xxhash_rust::xxh3::xxh3_128(&buf))
    }
}

/// Encodes audit events as one OTLP `LogsData` protobuf (see the module docs).
pub fn encode_audit(events: &[AuditEvent]) -> Vec<u8> {
    let resource_logs = events
        .iter()
        .map(|ev| {
            let mut attributes = vec![
                kv_str("log.record.uid", &ev.event_id.to_string()),
                kv_str("audit.action", &ev.action),
                kv_str("audit.actor.kind", &ev.actor.kind),
                kv_str("audit.actor.id", &ev.actor.id),
                kv_str("audit.actor.name", &ev.actor.name),
            ];
            if let Some(o) = &ev.outcome {
                attributes.push(kv_str("audit.outcome", o));
            }
            attributes.extend(ev.attributes.iter().map(|(k, v)| kv_str(k, v)));
            let record = LogRecord {
                time_unix_nano: ev.time_ns,
                observed_time_unix_nano: ev.observed_ns,
                event_name: ev.action.clone(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue(ev.message.clone())),
                }),
                attributes,
                ..Default::default()
            };
            ResourceLogs {
                resource: Some(Resource {
                    attributes: resource_attributes(&ev.resource),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: vec![record],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }
        })
        .collect();
    LogsData { resource_logs }.encode_to_vec()
}

/// Decodes an audit payload written by [`encode_audit`]. Records from other producers are
/// accepted: a missing `audit.action` falls back to `event_name`, a missing or malformed
/// `log.record.uid` to a content ID of (time, action, body).
///
/// Errors: [`DecodeError::Protobuf`] when the bytes are not a `LogsData`.
pub fn decode_audit(bytes: &[u8]) -> Result<Vec<AuditEvent>, DecodeError> {
    let data = LogsData::decode(bytes)?;
    let mut out = Vec::new();
    for rl in data.resource_logs {
        let attrs = rl.resource.map(|r| r.attributes).unwrap_or_default();
        let (resource, _extra) = resource_fields(&attrs, SourceKind::Other);
        for sl in rl.scope_logs {
            for rec in sl.log_records {
                let mut ev = AuditEvent {
                    time_ns: rec.time_unix_nano,
                    observed_ns: rec.observed_time_unix_nano,
                    resource: resource.clone(),
                    action: rec.event_name,
                    ..Default::default()
                };
                if let Some(Value::StringValue(s)) = rec.body.and_then(|b| b.value) {
                    ev.message = s;
                }
                let mut uid = None;
                for kv in rec.attributes {
                    let Some(Value::StringValue(v)) = kv.value.and_then(|v| v.value) else {
                        continue;
                    };
                    match kv.key.as_str() {
                        "log.record.uid" => uid = EventId::parse(&v),
                        "audit.action" => ev.action = v,
                        "audit.actor.kind" => ev.actor.kind = v,
                        "audit.actor.id" => ev.actor.id = v,
                        "audit.actor.name" => ev.actor.name = v,
                        "audit.outcome" => ev.outcome = Some(v),
                        _ => {
                            ev.attributes.insert(kv.key, v);
                        }
                    }
                }
                ev.event_id = uid.unwrap_or_else(|| {
                    AuditEvent::content_id(&[&ev.time_ns.to_string(), &ev.action, &ev.message])
                });
                out.push(ev);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::Container;

    #[test]
    fn audit_round_trip() {
        let ev = AuditEvent {
            event_id: AuditEvent::content_id(&["h1", "1700000000000000000", "container", "die"]),
            time_ns: 1_700_000_000_000_000_000,
            observed_ns: 1_700_000_000_100_000_000,
            resource: LogEvent {
                host: "h1".into(),
                service: "web".into(),
                source_kind: SourceKind::DockerEvents,
                container: Some(Arc::new(Container {
                    id: "abc".into(),
                    name: "web-1".into(),
                    image: "busybox".into(),
                    labels: Default::default(),
                })),
                ..Default::default()
            },
            action: "container.die".into(),
            actor: Actor {
                kind: "container".into(),
                id: "abc".into(),
                name: "web-1".into(),
            },
            outcome: Some("137".into()),
            message: "container web-1 died with exit code 137".into(),
            attributes: [("exit_code".to_string(), "137".to_string())].into(),
        };
        let back = decode_audit(&encode_audit(std::slice::from_ref(&ev))).unwrap();
        assert_eq!(back, vec![ev]);
    }
}
