//! Direct protobuf decoding of an OTLP `LogsData` message into events, without building
//! prost's message tree first (the aggregator's hot path). The result equals
//! [`crate::otlp::decode_logs`] (prost) for every message prost accepts; a property test
//! holds the two together. Unknown fields are skipped, as protobuf requires.
//!
//! Field numbers: `opentelemetry/proto/logs/v1/logs.proto`, `common/v1/common.proto`,
//! `resource/v1/resource.proto`.

use std::sync::Arc;

use crate::event::{Container, EventId, Level, LogEvent, SourceKind, SourcePosition};
use crate::otlp::{DecodeError, ResourceFields};

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn malformed(what: &'static str) -> DecodeError {
    DecodeError::Malformed(what)
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(malformed("truncated varint"))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(malformed("varint overflow"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(malformed("varint too long"))
    }

    /// (field number, wire type)
    fn key(&mut self) -> Result<(u64, u8), DecodeError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(malformed("length overflow"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(malformed("truncated field"))?;
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.varint()?).map_err(|_| malformed("length overflow"))?;
        self.take(n)
    }

    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            _ => Err(malformed("unsupported wire type")),
        }
    }
}

fn utf8(b: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(b).map_err(|_| malformed("string field is not UTF-8"))
}

/// An `AnyValue`, borrowed.
enum Any<'a> {
    Unset,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(&'a [u8]),
    Kvlist,
}

fn any(buf: &[u8]) -> Result<Any<'_>, DecodeError> {
    let mut r = Reader::new(buf);
    let mut v = Any::Unset;
    while !r.done() {
        let (field, wire) = r.key()?;
        v = match (field, wire) {
            (1, 2) => Any::Str(utf8(r.bytes()?)?),
            (2, 0) => Any::Bool(r.varint()? != 0),
            (3, 0) => Any::Int(r.varint()? as i64),
            (4, 1) => Any::Double(f64::from_bits(r.fixed64()?)),
            (5, 2) => Any::Array(r.bytes()?),
            (6, 2) => {
                r.bytes()?;
                Any::Kvlist
            }
            (7, 2) => Any::Bytes(r.bytes()?),
            _ => {
                r.skip(wire)?;
                continue;
            }
        };
    }
    Ok(v)
}

impl Any<'_> {
    /// As `otlp::any_to_string`.
    fn string(&self) -> Option<String> {
        Some(match self {
            Any::Str(s) => s.to_string(),
            Any::Bool(b) => b.to_string(),
            Any::Int(i) => i.to_string(),
            Any::Double(d) => d.to_string(),
            Any::Bytes(b) => hex::encode(b),
            Any::Unset | Any::Array(_) | Any::Kvlist => return None,
        })
    }

    /// As `otlp::any_to_int`.
    fn int(&self) -> Option<i64> {
        match self {
            Any::Int(i) => Some(*i),
            Any::Str(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// A `KeyValue`: key and the value's bytes (`None` when the value is absent).
fn key_value(buf: &[u8]) -> Result<(&str, Option<&[u8]>), DecodeError> {
    let mut r = Reader::new(buf);
    let (mut key, mut value) = ("", None);
    while !r.done() {
        match r.key()? {
            (1, 2) => key = utf8(r.bytes()?)?,
            (2, 2) => value = Some(r.bytes()?),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((key, value))
}

struct ResourceInfo {
    service: String,
    host: String,
    kind: SourceKind,
    container: Option<Arc<Container>>,
}

fn resource(parts: &[&[u8]]) -> Result<ResourceInfo, DecodeError> {
    let mut fields = ResourceFields::default();
    for buf in parts {
        let mut r = Reader::new(buf);
        while !r.done() {
            match r.key()? {
                (1, 2) => {
                    let (key, value) = key_value(r.bytes()?)?;
                    if let Some(val) = value.map(any).transpose()?.and_then(|a| a.string()) {
                        fields.set(key, val);
                    }
                }
                (_, wire) => r.skip(wire)?,
            }
        }
    }
    let (service, host, kind, container) = fields.finish();
    Ok(ResourceInfo {
        service,
        host,
        kind,
        container,
    })
}

fn record(buf: &[u8], res: &ResourceInfo) -> Result<LogEvent, DecodeError> {
    let mut ev = LogEvent {
        host: res.host.clone(),
        source_kind: res.kind,
        container: res.container.clone(),
        service: res.service.clone(),
        ..Default::default()
    };
    let (mut severity_number, mut severity_text) = (0i32, "");
    let (mut trace, mut span): (&[u8], &[u8]) = (&[], &[]);
    let mut uid = None;
    let mut many: Option<Vec<String>> = None;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, 1) => ev.timestamp_ns = r.fixed64()?,
            (11, 1) => ev.observed_ns = r.fixed64()?,
            (2, 0) => severity_number = r.varint()? as i32,
            (3, 2) => severity_text = utf8(r.bytes()?)?,
            (5, 2) => ev.message = any(r.bytes()?)?.string().unwrap_or_default(),
            (9, 2) => trace = r.bytes()?,
            (10, 2) => span = r.bytes()?,
            (6, 2) => {
                let (key, value) = key_value(r.bytes()?)?;
                let Some(value) = value else { continue };
                let v = any(value)?;
                match key {
                    "log.record.uid" => uid = v.string().and_then(|s| EventId::parse(&s)),
                    "log.iostream" => ev.stream = v.string().unwrap_or_default(),
                    "sightline.correlation_id" => {
                        ev.correlation_ids = v.string().into_iter().collect()
                    }
                    "sightline.correlation_ids" => {
                        if let Any::Array(arr) = v {
                            let mut ids = Vec::new();
                            let mut ar = Reader::new(arr);
                            while !ar.done() {
                                match ar.key()? {
                                    (1, 2) => ids.extend(any(ar.bytes()?)?.string()),
                                    (_, wire) => ar.skip(wire)?,
                                }
                            }
                            many = Some(ids);
                        }
                    }
                    "sightline.hop" => ev.hop = v.int().and_then(|h| u32::try_from(h).ok()),
                    "sightline.parse_error" => ev.parse_error = v.string(),
                    "sightline.source.id" => {
                        ev.position.source_id = v
                            .string()
                            .and_then(|s| u64::from_str_radix(&s, 16).ok())
                            .unwrap_or(0)
                    }
                    "sightline.source.offset" => {
                        ev.position.offset = v.int().unwrap_or(0).max(0) as u64
                    }
                    k => {
                        if let Some(s) = v.string() {
                            ev.attributes.insert(k.to_string(), s);
                        }
                    }
                }
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    ev.level = Level::from_severity_number(severity_number).or_else(|| Level::parse(severity_text));
    ev.trace_id = (trace.len() == 16).then(|| hex::encode(trace));
    ev.span_id = (span.len() == 8).then(|| hex::encode(span));
    if let Some(m) = many {
        ev.correlation_ids = m;
    }
    ev.event_id = uid.unwrap_or_else(|| {
        let SourcePosition { source_id, offset } = ev.position;
        EventId::derive(source_id, offset)
    });
    Ok(ev)
}

/// Decodes a Kafka message value (an OTLP `LogsData` protobuf) into events; same result
/// as [`crate::otlp::decode_logs`], without prost's intermediate messages.
///
/// Errors: [`DecodeError::Malformed`] when the bytes are not a well-formed message.
pub fn decode_logs_fast(bytes: &[u8]) -> Result<Vec<LogEvent>, DecodeError> {
    let mut out = Vec::new();
    let mut top = Reader::new(bytes);
    while !top.done() {
        let (field, wire) = top.key()?;
        if (field, wire) != (1, 2) {
            top.skip(wire)?;
            continue;
        }
        // A ResourceLogs: its resource may come after its scope_logs, so collect first.
        let mut r = Reader::new(top.bytes()?);
        let (mut resources, mut scopes) = (Vec::new(), Vec::new());
        while !r.done() {
            match r.key()? {
                (1, 2) => resources.push(r.bytes()?),
                (2, 2) => scopes.push(r.bytes()?),
                (_, wire) => r.skip(wire)?,
            }
        }
        let res = resource(&resources)?;
        for scope in scopes {
            let mut s = Reader::new(scope);
            while !s.done() {
                match s.key()? {
                    (2, 2) => out.push(record(s.bytes()?, &res)?),
                    (_, wire) => s.skip(wire)?,
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::tests::arb_event;
    use crate::{decode_logs, encode_logs};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn equals_prost_decoding(events in prop::collection::vec(arb_event(), 0..20)) {
            let bytes = encode_logs(events);
            prop_assert_eq!(decode_logs_fast(&bytes).unwrap(), decode_logs(&bytes).unwrap());
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(proptest::arbitrary::any::<u8>(), 0..300)) {
            let _ = decode_logs_fast(&bytes);
        }

        #[test]
        fn truncations_never_panic(events in prop::collection::vec(arb_event(), 1..5), cut in 0usize..2000) {
            let bytes = encode_logs(events);
            let _ = decode_logs_fast(&bytes[..cut.min(bytes.len())]);
        }
    }
}
