//! The log event envelope.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Stable identity of one event, derived from its source and its position in that source
/// (so a replay of the same bytes yields the same ID and can be recognised downstream).
///
/// 128 bits of XXH3 over `source_id` (8 bytes LE) and `offset` (8 bytes LE); rendered as
/// 32 lowercase hex digits, which is also its OTLP `log.record.uid` attribute value.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct EventId(pub u128);

impl EventId {
    /// Derives the ID of the event that starts at byte `offset` of source `source_id`.
    pub fn derive(source_id: u64, offset: u64) -> Self {
        let mut buf = [0u8; 16];
        buf[..8].copy_from_slice(&source_id.to_le_bytes());
        buf[8..].copy_from_slice(&offset.to_le_bytes());
        EventId(xxhash_rust::xxh3::xxh3_128(&buf))
    }

    /// Parses the 32-hex-digit form; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(EventId)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Where an event was read: a stable source ID (for a Docker json-file log: the container
/// ID and a fingerprint of the file's first line) and the byte offset at which the event
/// starts. Downstream uses it to recognise replays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourcePosition {
    /// Stable 64-bit identity of the source file or stream.
    pub source_id: u64,
    /// Byte offset of the event's first byte in that source.
    pub offset: u64,
}

/// What kind of input produced an event (OTLP resource attribute `sightline.source.kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A Docker `json-file` log (`<data-root>/containers/<id>/<id>-json.log`).
    #[default]
    DockerJsonFile,
    /// Container stats from the Docker Engine API (`GET /containers/{id}/stats`).
    DockerStats,
    /// The Docker Engine API event stream (`GET /events`).
    DockerEvents,
    /// The ECS container agent's own logs (`/var/log/ecs/ecs-agent.log*`, `ecs-init.log*`).
    EcsAgentLog,
    /// The ECS agent's credentials audit log (`/var/log/ecs/audit.log*`).
    EcsAuditLog,
    /// The ECS task metadata endpoint v4 (`$ECS_CONTAINER_METADATA_URI_V4/task/stats`).
    EcsTaskMetadata,
    /// Sightline's own actions (notifications sent, scaling actions).
    Sightline,
    /// Anything else (decoded from a producer Sightline does not know).
    Other,
}

impl SourceKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::DockerJsonFile => "docker_json_file",
            SourceKind::DockerStats => "docker_stats",
            SourceKind::DockerEvents => "docker_events",
            SourceKind::EcsAgentLog => "ecs_agent_log",
            SourceKind::EcsAuditLog => "ecs_audit_log",
            SourceKind::EcsTaskMetadata => "ecs_task_metadata",
            SourceKind::Sightline => "sightline",
            SourceKind::Other => "other",
        }
    }

    /// Inverse of [`SourceKind::as_str`]; unknown names map to [`SourceKind::Other`].
    pub fn from_name(s: &str) -> Self {
        match s {
            "docker_json_file" => SourceKind::DockerJsonFile,
            "docker_stats" => SourceKind::DockerStats,
            "docker_events" => SourceKind::DockerEvents,
            "ecs_agent_log" => SourceKind::EcsAgentLog,
            "ecs_audit_log" => SourceKind::EcsAuditLog,
            "ecs_task_metadata" => SourceKind::EcsTaskMetadata,
            "sightline" => SourceKind::Sightline,
            _ => SourceKind::Other,
        }
    }
}

/// Log level, with the OTLP severity numbers of each range's first value
/// (OpenTelemetry logs data model, "SeverityNumber").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// SeverityNumber 1.
    Trace,
    /// SeverityNumber 5.
    Debug,
    /// SeverityNumber 9.
    Info,
    /// SeverityNumber 13.
    Warn,
    /// SeverityNumber 17.
    Error,
    /// SeverityNumber 21.
    Fatal,
}

impl Level {
    /// Lowercase name, as indexed: `trace`, `debug`, `info`, `warn`, `error`, `fatal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    /// OTLP `SeverityNumber` (1, 5, 9, 13, 17, 21).
    pub fn severity_number(self) -> i32 {
        match self {
            Level::Trace => 1,
            Level::Debug => 5,
            Level::Info => 9,
            Level::Warn => 13,
            Level::Error => 17,
            Level::Fatal => 21,
        }
    }

    /// Maps an OTLP `SeverityNumber` (1–24) back to its range; `None` for 0 (unspecified).
    pub fn from_severity_number(n: i32) -> Option<Self> {
        Some(match n {
            1..=4 => Level::Trace,
            5..=8 => Level::Debug,
            9..=12 => Level::Info,
            13..=16 => Level::Warn,
            17..=20 => Level::Error,
            21..=24 => Level::Fatal,
            _ => return None,
        })
    }

    /// Case-insensitive parse of the usual spellings (`WARNING`, `err`, `CRITICAL`, `panic`, …).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() > 9 {
            return None;
        }
        let mut buf = [0u8; 9];
        let lower = &mut buf[..s.len()];
        lower.copy_from_slice(s.as_bytes());
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"trace" | b"trc" => Level::Trace,
            b"debug" | b"dbg" => Level::Debug,
            b"info" | b"inf" | b"notice" | b"information" => Level::Info,
            b"warn" | b"warning" | b"wrn" => Level::Warn,
            b"error" | b"err" | b"eror" => Level::Error,
            b"fatal" | b"critical" | b"crit" | b"panic" | b"emerg" | b"alert" => Level::Fatal,
            _ => return None,
        })
    }
}

/// The container an event came from, shared by all its events (hence held in an [`Arc`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Full 64-hex container ID (`container.id`).
    pub id: String,
    /// Name without Docker's leading `/` (`container.name`).
    pub name: String,
    /// Image reference as configured (`container.image.name`).
    pub image: String,
    /// All Docker labels (`container.label.<key>`).
    pub labels: BTreeMap<String, String>,
}

/// One log event: the unit Sightline ships, indexes and returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Stable ID derived from `position` (OTLP `log.record.uid`).
    pub event_id: EventId,
    /// When the line was written, ns since the Unix epoch (Docker's `time`).
    pub timestamp_ns: u64,
    /// When the collector read it, ns since the Unix epoch.
    pub observed_ns: u64,
    /// Host the collector runs on (`host.name`).
    pub host: String,
    /// Input kind.
    pub source_kind: SourceKind,
    /// Source identity and byte offset.
    pub position: SourcePosition,
    /// The container, when the source is one.
    pub container: Option<Arc<Container>>,
    /// Service name (`service.name`): ECS task family, compose service, a configured label,
    /// or the container name, in that order.
    pub service: String,
    /// `stdout` or `stderr` (`log.iostream`); empty when unknown.
    pub stream: String,
    /// Detected level, if any.
    pub level: Option<Level>,
    /// The log line, without its trailing newline.
    pub message: String,
    /// Correlation IDs found in the line; the first is the primary one (Kafka key).
    pub correlation_ids: Vec<String>,
    /// W3C trace ID, 32 lowercase hex digits.
    pub trace_id: Option<String>,
    /// W3C span ID, 16 lowercase hex digits.
    pub span_id: Option<String>,
    /// Hop count along the request path, when the line carries one.
    pub hop: Option<u32>,
    /// Why the line could not be parsed as expected; the raw text is kept in `message`.
    pub parse_error: Option<String>,
    /// Other attributes (string values), e.g. Docker `attrs`.
    pub attributes: BTreeMap<String, String>,
}

impl LogEvent {
    /// Primary correlation ID, if any.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_ids.first().map(String::as_str)
    }

    /// The Kafka partitioning key: the primary correlation ID, else the container ID,
    /// else the service name.
    pub fn partition_key(&self) -> &str {
        if let Some(c) = self.correlation_id() {
            return c;
        }
        match &self.container {
            Some(c) => &c.id,
            None => &self.service,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_is_stable_and_position_sensitive() {
        let a = EventId::derive(7, 100);
        assert_eq!(a, EventId::derive(7, 100));
        assert_ne!(a, EventId::derive(7, 101));
        assert_ne!(a, EventId::derive(8, 100));
        assert_eq!(EventId::parse(&a.to_string()), Some(a));
        assert_eq!(EventId::parse("xyz"), None);
    }

    #[test]
    fn level_parse_and_severity_roundtrip() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("Err"), Some(Level::Error));
        assert_eq!(Level::parse("verbose-ish"), None);
        for l in [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
            Level::Fatal,
        ] {
            assert_eq!(Level::from_severity_number(l.severity_number()), Some(l));
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
    }
}
