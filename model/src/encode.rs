//! Direct protobuf encoding of a batch as OTLP `LogsData`, without building the prost
//! message tree first: per record, no allocation beyond the output buffer. The bytes are
//! identical to prost's encoding of [`crate::otlp::to_logs_data`] (field order and
//! proto3 default-skipping included); a test holds the two together.
//!
//! Field numbers: `opentelemetry/proto/logs/v1/logs.proto` and `common/v1/common.proto`.

use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::event::{LogEvent, SourceKind};
use crate::otlp::resource_attributes;
use crate::SCHEMA_VERSION;

const LEN: u8 = 2;
const I64: u8 = 1;
const VARINT: u8 = 0;

#[inline]
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[inline]
fn put_tag(buf: &mut Vec<u8>, field: u8, wire: u8) {
    buf.push((field << 3) | wire);
}

#[inline]
fn put_len_field(buf: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_tag(buf, field, LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Length of an `AnyValue { string_value }` message.
#[inline]
fn any_str_len(v: &str) -> usize {
    1 + varint_len(v.len() as u64) + v.len()
}

/// Length of an `AnyValue { int_value }` message.
#[inline]
fn any_int_len(v: i64) -> usize {
    1 + varint_len(v as u64)
}

#[inline]
fn kv_len(key: &str, any_len: usize) -> usize {
    let k = if key.is_empty() {
        0
    } else {
        1 + varint_len(key.len() as u64) + key.len()
    };
    k + 1 + varint_len(any_len as u64) + any_len
}

#[inline]
fn put_kv_header(buf: &mut Vec<u8>, field: u8, key: &str, any_len: usize) {
    put_tag(buf, field, LEN);
    put_varint(buf, kv_len(key, any_len) as u64);
    if !key.is_empty() {
        put_len_field(buf, 1, key.as_bytes());
    }
    put_tag(buf, 2, LEN);
    put_varint(buf, any_len as u64);
}

/// `KeyValue { key, value: AnyValue { string_value } }` as field `field`.
#[inline]
fn put_kv_str(buf: &mut Vec<u8>, field: u8, key: &str, v: &str) {
    put_kv_header(buf, field, key, any_str_len(v));
    put_len_field(buf, 1, v.as_bytes());
}

/// `KeyValue { key, value: AnyValue { int_value } }` as field `field`.
#[inline]
fn put_kv_int(buf: &mut Vec<u8>, field: u8, key: &str, v: i64) {
    put_kv_header(buf, field, key, any_int_len(v));
    put_tag(buf, 3, VARINT);
    put_varint(buf, v as u64);
}

fn hex_into(out: &mut [u8], mut v: u128, digits: usize) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out[i] = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
    std::str::from_utf8(&out[..digits]).expect("hex is ASCII")
}

fn hex_decode_into(s: &Option<String>, out: &mut [u8]) -> bool {
    let Some(s) = s else { return false };
    if s.len() != out.len() * 2 {
        return false;
    }
    let b = s.as_bytes();
    for (i, o) in out.iter_mut().enumerate() {
        let h = (b[2 * i] as char).to_digit(16);
        let l = (b[2 * i + 1] as char).to_digit(16);
        match (h, l) {
            (Some(h), Some(l)) => *o = (h * 16 + l) as u8,
            _ => return false,
        }
    }
    true
}

/// Appends one `LogRecord` (without its own tag and length) to `buf`.
fn put_record(buf: &mut Vec<u8>, ev: &LogEvent) {
    if ev.timestamp_ns != 0 {
        put_tag(buf, 1, I64);
        buf.extend_from_slice(&ev.timestamp_ns.to_le_bytes());
    }
    if let Some(l) = ev.level {
        put_tag(buf, 2, VARINT);
        put_varint(buf, l.severity_number() as u64);
        let upper = l.as_str().to_ascii_uppercase();
        put_len_field(buf, 3, upper.as_bytes());
    }
    // body: AnyValue { string_value }
    put_tag(buf, 5, LEN);
    put_varint(buf, any_str_len(&ev.message) as u64);
    put_len_field(buf, 1, ev.message.as_bytes());
    let mut hex = [0u8; 32];
    put_kv_str(
        buf,
        6,
        "log.record.uid",
        hex_into(&mut hex, ev.event_id.0, 32),
    );
    if !ev.stream.is_empty() {
        put_kv_str(buf, 6, "log.iostream", &ev.stream);
    }
    if let Some(c) = ev.correlation_ids.first() {
        put_kv_str(buf, 6, "sightline.correlation_id", c);
    }
    if ev.correlation_ids.len() > 1 {
        // ArrayValue { values: [AnyValue { string_value }] } inside AnyValue field 5.
        let arr_len: usize = ev
            .correlation_ids
            .iter()
            .map(|c| {
                let l = any_str_len(c);
                1 + varint_len(l as u64) + l
            })
            .sum();
        let any_len = 1 + varint_len(arr_len as u64) + arr_len;
        put_kv_header(buf, 6, "sightline.correlation_ids", any_len);
        put_tag(buf, 5, LEN);
        put_varint(buf, arr_len as u64);
        for c in &ev.correlation_ids {
            put_tag(buf, 1, LEN);
            put_varint(buf, any_str_len(c) as u64);
            put_len_field(buf, 1, c.as_bytes());
        }
    }
    if let Some(h) = ev.hop {
        put_kv_int(buf, 6, "sightline.hop", h as i64);
    }
    if let Some(e) = &ev.parse_error {
        put_kv_str(buf, 6, "sightline.parse_error", e);
    }
    put_kv_str(
        buf,
        6,
        "sightline.source.id",
        hex_into(&mut hex, ev.position.source_id as u128, 16),
    );
    put_kv_int(buf, 6, "sightline.source.offset", ev.position.offset as i64);
    for (k, v) in &ev.attributes {
        put_kv_str(buf, 6, k, v);
    }
    let mut id = [0u8; 16];
    if hex_decode_into(&ev.trace_id, &mut id) {
        put_len_field(buf, 9, &id);
    }
    let mut span = [0u8; 8];
    if hex_decode_into(&ev.span_id, &mut span) {
        put_len_field(buf, 10, &span);
    }
    if ev.observed_ns != 0 {
        put_tag(buf, 11, I64);
        buf.extend_from_slice(&ev.observed_ns.to_le_bytes());
    }
}

/// Appends `ev` as one `log_records` field of a `ScopeLogs` message (tag, length, record) to
/// `buf`: the unit a [`LogsDataBuilder`] concatenates.
pub fn put_log_record_field(buf: &mut Vec<u8>, scratch: &mut Vec<u8>, ev: &LogEvent) {
    scratch.clear();
    put_record(scratch, ev);
    put_len_field(buf, 2, scratch);
}

/// The `Resource` message of `ev`'s resource (host, container, service, source kind), encoded.
pub fn encode_resource(ev: &LogEvent) -> Vec<u8> {
    Resource {
        attributes: resource_attributes(ev),
        ..Default::default()
    }
    .encode_to_vec()
}

fn scope_bytes() -> Vec<u8> {
    InstrumentationScope {
        name: "sightline".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        attributes: vec![KeyValue {
            key: "sightline.schema_version".into(),
            value: Some(AnyValue {
                value: Some(Value::IntValue(SCHEMA_VERSION as i64)),
            }),
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

/// Assembles a `LogsData` message from runs of records already encoded with
/// [`put_log_record_field`], each run tagged with its resource (from [`encode_resource`]).
/// Each run is written straight into the output buffer as one `ResourceLogs` (a resource
/// seen again later gets another `ResourceLogs`: valid OTLP, and it spares a second copy
/// of every record). The buffer can be a recycled one ([`LogsDataBuilder::with_buffer`]).
#[derive(Default)]
pub struct LogsDataBuilder {
    out: Vec<u8>,
    scope: Vec<u8>,
}

impl LogsDataBuilder {
    /// A builder writing into `buf` (cleared first; its capacity is kept).
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        LogsDataBuilder {
            out: buf,
            scope: Vec::new(),
        }
    }

    /// Adds a run of encoded `log_records` fields of one resource.
    pub fn add(&mut self, resource: &[u8], records: &[u8]) {
        if self.scope.is_empty() {
            self.scope = scope_bytes();
        }
        write_resource_logs(&mut self.out, resource, &self.scope, records);
    }

    /// Bytes of the message so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The encoded `LogsData`.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Appends one `ResourceLogs` field (resource, one `ScopeLogs` with `scope` and the
/// encoded `log_records` fields) to `out`.
fn write_resource_logs(out: &mut Vec<u8>, resource: &[u8], scope: &[u8], records: &[u8]) {
    let scope_field_len = 1 + varint_len(scope.len() as u64) + scope.len();
    let scope_logs_len = scope_field_len + records.len();
    let resource_logs_len = 1
        + varint_len(resource.len() as u64)
        + resource.len()
        + 1
        + varint_len(scope_logs_len as u64)
        + scope_logs_len;
    out.reserve(resource_logs_len + 6);
    put_tag(out, 1, LEN);
    put_varint(out, resource_logs_len as u64);
    put_len_field(out, 1, resource);
    put_tag(out, 2, LEN);
    put_varint(out, scope_logs_len as u64);
    put_len_field(out, 1, scope);
    out.extend_from_slice(records);
}

fn assemble<'a>(
    groups: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    scope: &[u8],
    hint: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(hint + 64);
    for (resource, records) in groups {
        write_resource_logs(&mut out, resource, scope, records);
    }
    out
}

struct Group {
    host: String,
    container_id: String,
    service: String,
    kind: SourceKind,
    resource: Vec<u8>,
    /// Concatenated `log_records` fields (tag, length, record).
    records: Vec<u8>,
}

/// Encodes a batch as OTLP protobuf bytes (the Kafka message value), grouping events by
/// resource (host, container, service, source kind). Consumes the events.
pub fn encode_logs(events: Vec<LogEvent>) -> Vec<u8> {
    let mut groups: Vec<Group> = Vec::new();
    let mut last = usize::MAX;
    let mut scratch = Vec::with_capacity(1024);
    for ev in &events {
        let cid = ev.container.as_deref().map_or("", |c| c.id.as_str());
        let same = |g: &Group| {
            g.container_id == cid
                && g.service == ev.service
                && g.host == ev.host
                && g.kind == ev.source_kind
        };
        let idx = if last < groups.len() && same(&groups[last]) {
            last
        } else if let Some(i) = groups.iter().position(same) {
            i
        } else {
            groups.push(Group {
                host: ev.host.clone(),
                container_id: cid.to_string(),
                service: ev.service.clone(),
                kind: ev.source_kind,
                resource: encode_resource(ev),
                records: Vec::with_capacity(64 * 1024),
            });
            groups.len() - 1
        };
        last = idx;
        put_log_record_field(&mut groups[idx].records, &mut scratch, ev);
    }
    drop(events);
    let scope = scope_bytes();
    let hint = groups
        .iter()
        .map(|g| g.records.len() + g.resource.len() + 32)
        .sum();
    assemble(
        groups
            .iter()
            .map(|g| (g.resource.as_slice(), g.records.as_slice())),
        &scope,
        hint,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{Container, EventId, Level, SourcePosition};
    use crate::otlp::{decode_logs, to_logs_data};
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    pub(crate) fn arb_event() -> impl Strategy<Value = LogEvent> {
        (
            any::<u64>(),
            any::<u64>(),
            0u64..3,
            ".{0,40}",
            prop::collection::vec("[a-z0-9-]{0,12}", 0..4),
            prop::option::of(0u32..1_000_000),
            prop::option::of("[0-9a-f]{32}"),
            prop::option::of(".{0,10}"),
            any::<u64>(),
            0usize..7,
        )
            .prop_map(|(src, off, c, msg, ids, hop, trace, perr, ts, lvl)| {
                let container = (c > 0).then(|| {
                    Arc::new(Container {
                        id: format!("c{c}"),
                        name: format!("n{c}"),
                        image: "img".into(),
                        labels: BTreeMap::from([(
                            "com.amazonaws.ecs.task-arn".to_string(),
                            "arn:x".to_string(),
                        )]),
                    })
                });
                LogEvent {
                    event_id: EventId::derive(src, off),
                    timestamp_ns: ts,
                    observed_ns: ts / 2,
                    host: "h".into(),
                    position: SourcePosition {
                        source_id: src,
                        offset: off,
                    },
                    container,
                    service: format!("s{c}"),
                    stream: if off % 2 == 0 {
                        "stdout".into()
                    } else {
                        String::new()
                    },
                    level: [
                        None,
                        Some(Level::Trace),
                        Some(Level::Debug),
                        Some(Level::Info),
                        Some(Level::Warn),
                        Some(Level::Error),
                        Some(Level::Fatal),
                    ][lvl],
                    message: msg,
                    correlation_ids: ids,
                    trace_id: trace,
                    span_id: Some("00f067aa0ba902b7".into()),
                    hop,
                    parse_error: perr,
                    attributes: BTreeMap::from([("k".to_string(), "v".to_string())]),
                    ..Default::default()
                }
            })
    }

    proptest! {
        #[test]
        fn builder_writes_each_run_as_resource_logs(events in prop::collection::vec(arb_event(), 1..20), cut in 0usize..20) {
            // Runs of one event each, in event order, into a recycled buffer: the message
            // decodes to exactly these events, in this order (each with its resource).
            let mut builder = LogsDataBuilder::with_buffer(vec![7; 100]);
            let mut scratch = Vec::new();
            let (a, b) = events.split_at(cut.min(events.len()));
            let mut expected = Vec::new();
            for part in [a, b] {
                for ev in part {
                    let mut run = Vec::new();
                    put_log_record_field(&mut run, &mut scratch, ev);
                    builder.add(&encode_resource(ev), &run);
                    expected.extend(crate::decode_logs(&encode_logs(vec![ev.clone()])).unwrap());
                }
            }
            let got = builder.finish();
            prop_assert_eq!(crate::decode_logs(&got).unwrap(), expected);
        }

        #[test]
        fn identical_to_prost_and_decodes_back(events in prop::collection::vec(arb_event(), 0..20)) {
            let direct = encode_logs(events.clone());
            let via_prost = to_logs_data(events.clone()).encode_to_vec();
            prop_assert_eq!(&direct, &via_prost);
            // Empty correlation IDs are not sent; everything else comes back.
            let back = decode_logs(&direct).unwrap();
            prop_assert_eq!(back.len(), events.len());
        }
    }
}
