//! OTLP protobuf encoding of event batches (`opentelemetry.proto.logs.v1.LogsData`).
//!
//! Mapping (documented for other readers in `docs/wire-format.md`):
//! - one `ResourceLogs` per (host, container, service, source kind), with resource attributes
//!   `service.name`, `host.name`, `container.id`, `container.name`, `container.image.name`,
//!   `container.label.<key>`, `aws.ecs.task.arn`, `aws.ecs.task.family`,
//!   `aws.ecs.task.revision`, `aws.ecs.cluster.arn` (from the ECS agent's labels) and
//!   `sightline.source.kind`;
//! - one `ScopeLogs` with scope `sightline` and attribute `sightline.schema_version`;
//! - per `LogRecord`: `time_unix_nano`, `observed_time_unix_nano`, `severity_number`,
//!   `severity_text`, `body` (string), `trace_id`/`span_id` (bytes), and attributes
//!   `log.record.uid` (event ID), `log.iostream`, `sightline.correlation_id`,
//!   `sightline.correlation_ids` (array, only when more than one), `sightline.hop`,
//!   `sightline.parse_error`, `sightline.source.id` (16 hex), `sightline.source.offset`,
//!   plus free string attributes under their own keys.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, LogsData, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::event::{Container, EventId, Level, LogEvent, SourceKind, SourcePosition};
use crate::SCHEMA_VERSION;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a protobuf `LogsData`.
    #[error("payload is not an OTLP LogsData protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The bytes are not a well-formed `LogsData` (direct decoder): what is wrong.
    #[error("payload is not an OTLP LogsData protobuf: {0}")]
    Malformed(&'static str),
}

const LABEL_PREFIX: &str = "container.label.";

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

pub(crate) fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, Value::StringValue(v.to_string()))
}

/// Resource attributes of an event's resource (see the module docs).
pub(crate) fn resource_attributes(ev: &LogEvent) -> Vec<KeyValue> {
    let mut attrs = vec![
        kv_str("service.name", &ev.service),
        kv_str("host.name", &ev.host),
        kv_str("sightline.source.kind", ev.source_kind.as_str()),
    ];
    if let Some(c) = &ev.container {
        attrs.push(kv_str("container.id", &c.id));
        attrs.push(kv_str("container.name", &c.name));
        attrs.push(kv_str("container.image.name", &c.image));
        for (k, v) in &c.labels {
            attrs.push(kv_str(&format!("{LABEL_PREFIX}{k}"), v));
            let ecs = match k.as_str() {
                "com.amazonaws.ecs.task-arn" => "aws.ecs.task.arn",
                "com.amazonaws.ecs.task-definition-family" => "aws.ecs.task.family",
                "com.amazonaws.ecs.task-definition-version" => "aws.ecs.task.revision",
                "com.amazonaws.ecs.cluster" => "aws.ecs.cluster.arn",
                _ => continue,
            };
            attrs.push(kv_str(ecs, v));
        }
    }
    attrs
}

/// The instrumentation scope of every Sightline payload: `sightline`, with the attribute
/// `sightline.schema_version`.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "sightline".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        attributes: vec![kv(
            "sightline.schema_version",
            Value::IntValue(SCHEMA_VERSION as i64),
        )],
        ..Default::default()
    }
}

/// Reads resource attributes back into a resource-only event (`host`, `service`,
/// `source_kind`, `container`) plus the attributes that mapping does not cover. The
/// `aws.ecs.*` keys derived from container labels count as covered when the label is there
/// with the same value. `default_kind` applies when `sightline.source.kind` is absent.
pub(crate) fn resource_fields(
    attrs: &[KeyValue],
    default_kind: SourceKind,
) -> (LogEvent, std::collections::BTreeMap<String, String>) {
    let mut res = ResourceFields::default();
    let mut extra = std::collections::BTreeMap::new();
    let mut derived = Vec::new();
    for a in attrs {
        let Some(val) = a.value.as_ref().and_then(any_to_string) else {
            continue;
        };
        match ecs_label_for(&a.key) {
            Some(label) => derived.push((a.key.clone(), label, val)),
            None if res.knows(&a.key) => res.set(&a.key, val),
            None => {
                extra.insert(a.key.clone(), val);
            }
        }
    }
    let had_kind = res.kind.is_some();
    let (service, host, kind, container) = res.finish();
    for (key, label, val) in derived {
        let covered = container
            .as_ref()
            .is_some_and(|c| c.labels.get(label) == Some(&val));
        if !covered {
            extra.insert(key, val);
        }
    }
    let ev = LogEvent {
        service,
        host,
        source_kind: if had_kind { kind } else { default_kind },
        container,
        ..Default::default()
    };
    (ev, extra)
}

/// The container label an `aws.ecs.*` resource attribute is derived from.
fn ecs_label_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "aws.ecs.task.arn" => "com.amazonaws.ecs.task-arn",
        "aws.ecs.task.family" => "com.amazonaws.ecs.task-definition-family",
        "aws.ecs.task.revision" => "com.amazonaws.ecs.task-definition-version",
        "aws.ecs.cluster.arn" => "com.amazonaws.ecs.cluster",
        _ => return None,
    })
}

fn hex_bytes(s: &Option<String>, len: usize) -> Vec<u8> {
    match s {
        Some(h) if h.len() == len * 2 => hex::decode(h).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn log_record(ev: LogEvent) -> LogRecord {
    let mut attributes = Vec::with_capacity(6 + ev.attributes.len());
    attributes.push(kv_str("log.record.uid", &ev.event_id.to_string()));
    if !ev.stream.is_empty() {
        attributes.push(kv_str("log.iostream", &ev.stream));
    }
    if let Some(c) = ev.correlation_id() {
        attributes.push(kv_str("sightline.correlation_id", c));
    }
    if ev.correlation_ids.len() > 1 {
        let values = ev
            .correlation_ids
            .iter()
            .map(|c| AnyValue {
                value: Some(Value::StringValue(c.clone())),
            })
            .collect();
        attributes.push(kv(
            "sightline.correlation_ids",
            Value::ArrayValue(ArrayValue { values }),
        ));
    }
    if let Some(h) = ev.hop {
        attributes.push(kv("sightline.hop", Value::IntValue(h as i64)));
    }
    if let Some(e) = &ev.parse_error {
        attributes.push(kv_str("sightline.parse_error", e));
    }
    attributes.push(kv_str(
        "sightline.source.id",
        &format!("{:016x}", ev.position.source_id),
    ));
    attributes.push(kv(
        "sightline.source.offset",
        Value::IntValue(ev.position.offset as i64),
    ));
    for (k, v) in &ev.attributes {
        attributes.push(kv_str(k, v));
    }
    LogRecord {
        time_unix_nano: ev.timestamp_ns,
        observed_time_unix_nano: ev.observed_ns,
        severity_number: ev.level.map_or(0, Level::severity_number),
        severity_text: ev.level.map_or("", |l| l.as_str()).to_ascii_uppercase(),
        trace_id: hex_bytes(&ev.trace_id, 16),
        span_id: hex_bytes(&ev.span_id, 8),
        body: Some(AnyValue {
            value: Some(Value::StringValue(ev.message)),
        }),
        attributes,
        ..Default::default()
    }
}

/// Builds the `LogsData` message for a batch, grouping events by resource (host, container,
/// service, source kind). Consumes the events so their messages move into the records.
pub fn to_logs_data(events: Vec<LogEvent>) -> LogsData {
    // Few resources per batch, and events come in runs from one container: check the last
    // group first, then scan.
    let mut keys: Vec<(String, String, String, SourceKind)> = Vec::new();
    let mut resource_logs: Vec<ResourceLogs> = Vec::new();
    let mut last = usize::MAX;
    for ev in events {
        let cid = ev.container.as_deref().map_or("", |c| c.id.as_str());
        let same = |k: &(String, String, String, SourceKind)| {
            k.0 == ev.host && k.1 == cid && k.2 == ev.service && k.3 == ev.source_kind
        };
        let idx = if last < keys.len() && same(&keys[last]) {
            last
        } else if let Some(i) = keys.iter().position(same) {
            i
        } else {
            keys.push((
                ev.host.clone(),
                cid.to_string(),
                ev.service.clone(),
                ev.source_kind,
            ));
            resource_logs.push(ResourceLogs {
                resource: Some(Resource {
                    attributes: resource_attributes(&ev),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    ..Default::default()
                }],
                ..Default::default()
            });
            keys.len() - 1
        };
        last = idx;
        resource_logs[idx].scope_logs[0]
            .log_records
            .push(log_record(ev));
    }
    LogsData { resource_logs }
}

fn any_to_string(v: &AnyValue) -> Option<String> {
    Some(match v.value.as_ref()? {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        Value::BytesValue(b) => hex::encode(b),
        Value::ArrayValue(_) | Value::KvlistValue(_) => return None,
    })
}

fn any_to_int(v: &AnyValue) -> Option<i64> {
    match v.value.as_ref()? {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

/// The resource-level fields of events, filled attribute by attribute (shared by both
/// decoders).
#[derive(Default)]
pub(crate) struct ResourceFields {
    service: String,
    host: String,
    kind: Option<SourceKind>,
    container: Container,
    has_container: bool,
}

impl ResourceFields {
    /// Whether [`ResourceFields::set`] keeps `key`.
    pub(crate) fn knows(&self, key: &str) -> bool {
        matches!(
            key,
            "service.name"
                | "host.name"
                | "sightline.source.kind"
                | "container.id"
                | "container.name"
                | "container.image.name"
        ) || key.starts_with(LABEL_PREFIX)
    }

    /// Applies one resource attribute; unknown keys are ignored.
    pub(crate) fn set(&mut self, key: &str, val: String) {
        match key {
            "service.name" => self.service = val,
            "host.name" => self.host = val,
            "sightline.source.kind" => self.kind = Some(SourceKind::from_name(&val)),
            "container.id" => {
                self.container.id = val;
                self.has_container = true;
            }
            "container.name" => self.container.name = val,
            "container.image.name" => self.container.image = val,
            k if k.starts_with(LABEL_PREFIX) => {
                self.container
                    .labels
                    .insert(k[LABEL_PREFIX.len()..].to_string(), val);
            }
            _ => {}
        }
    }

    /// (service, host, source kind, container)
    pub(crate) fn finish(self) -> (String, String, SourceKind, Option<Arc<Container>>) {
        let container = self.has_container.then(|| Arc::new(self.container));
        (
            self.service,
            self.host,
            self.kind.unwrap_or(SourceKind::Other),
            container,
        )
    }
}

/// Decodes a Kafka message value into events. Records written by other OTLP producers are
/// accepted: missing fields get defaults, an absent `log.record.uid` gets an ID derived from
/// `(source_id, offset)` attributes (or zero), and unknown attributes land in `attributes`.
pub fn decode_logs(bytes: &[u8]) -> Result<Vec<LogEvent>, DecodeError> {
    let data = LogsData::decode(bytes)?;
    let mut out = Vec::new();
    for rl in data.resource_logs {
        let mut res = ResourceFields::default();
        for a in rl.resource.map(|r| r.attributes).unwrap_or_default() {
            if let Some(val) = a.value.as_ref().and_then(any_to_string) {
                res.set(&a.key, val);
            }
        }
        let (service, host, kind, container) = res.finish();
        for sl in rl.scope_logs {
            for rec in sl.log_records {
                out.push(record_to_event(rec, &service, &host, kind, &container));
            }
        }
    }
    Ok(out)
}

fn record_to_event(
    rec: LogRecord,
    service: &str,
    host: &str,
    kind: SourceKind,
    container: &Option<Arc<Container>>,
) -> LogEvent {
    let mut ev = LogEvent {
        timestamp_ns: rec.time_unix_nano,
        observed_ns: rec.observed_time_unix_nano,
        host: host.to_string(),
        source_kind: kind,
        container: container.clone(),
        service: service.to_string(),
        level: Level::from_severity_number(rec.severity_number)
            .or_else(|| Level::parse(&rec.severity_text)),
        message: rec
            .body
            .as_ref()
            .and_then(any_to_string)
            .unwrap_or_default(),
        trace_id: (rec.trace_id.len() == 16).then(|| hex::encode(&rec.trace_id)),
        span_id: (rec.span_id.len() == 8).then(|| hex::encode(&rec.span_id)),
        ..Default::default()
    };
    let mut uid = None;
    let mut many: Option<Vec<String>> = None;
    for a in rec.attributes {
        let Some(v) = a.value else { continue };
        match a.key.as_str() {
            "log.record.uid" => uid = any_to_string(&v).and_then(|s| EventId::parse(&s)),
            "log.iostream" => ev.stream = any_to_string(&v).unwrap_or_default(),
            "sightline.correlation_id" => {
                ev.correlation_ids = any_to_string(&v).into_iter().collect()
            }
            "sightline.correlation_ids" => {
                if let Some(Value::ArrayValue(arr)) = &v.value {
                    many = Some(arr.values.iter().filter_map(any_to_string).collect());
                }
            }
            "sightline.hop" => ev.hop = any_to_int(&v).and_then(|h| u32::try_from(h).ok()),
            "sightline.parse_error" => ev.parse_error = any_to_string(&v),
            "sightline.source.id" => {
                ev.position.source_id = any_to_string(&v)
                    .and_then(|s| u64::from_str_radix(&s, 16).ok())
                    .unwrap_or(0)
            }
            "sightline.source.offset" => {
                ev.position.offset = any_to_int(&v).unwrap_or(0).max(0) as u64
            }
            k => {
                if let Some(s) = any_to_string(&v) {
                    ev.attributes.insert(k.to_string(), s);
                }
            }
        }
    }
    if let Some(m) = many {
        ev.correlation_ids = m;
    }
    ev.event_id = uid.unwrap_or_else(|| {
        let SourcePosition { source_id, offset } = ev.position;
        EventId::derive(source_id, offset)
    });
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode_logs;
    use std::collections::BTreeMap;

    fn sample(i: u64, container: &Arc<Container>) -> LogEvent {
        let position = SourcePosition {
            source_id: 42,
            offset: i * 100,
        };
        LogEvent {
            event_id: EventId::derive(42, i * 100),
            timestamp_ns: 1_700_000_000_000_000_000 + i,
            observed_ns: 1_700_000_000_000_000_500 + i,
            host: "host-a".into(),
            source_kind: SourceKind::DockerJsonFile,
            position,
            container: Some(container.clone()),
            service: "checkout".into(),
            stream: "stderr".into(),
            level: Some(Level::Error),
            message: format!("line {i} with NUL \0 and ünïcode"),
            correlation_ids: vec!["req-1".into(), "blk_-5".into()],
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            hop: Some(3),
            parse_error: Some("invalid json".into()),
            attributes: BTreeMap::from([("tag".to_string(), "x".to_string())]),
        }
    }

    #[test]
    fn roundtrip_preserves_every_field() {
        let c = Arc::new(Container {
            id: "abc".into(),
            name: "checkout-1".into(),
            image: "busybox:latest".into(),
            labels: BTreeMap::from([(
                "com.amazonaws.ecs.task-definition-family".to_string(),
                "checkout".to_string(),
            )]),
        });
        let events: Vec<_> = (0..5).map(|i| sample(i, &c)).collect();
        let bytes = encode_logs(events.clone());
        let back = decode_logs(&bytes).unwrap();
        assert_eq!(back, events);
        // Grouped into a single resource.
        assert_eq!(to_logs_data(events).resource_logs.len(), 1);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(decode_logs(b"\xff\xff\xff\xff not protobuf").is_err());
    }
}
