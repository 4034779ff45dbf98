//! Sightline's wire model: what travels from the collector, through Kafka, to the aggregator.
//!
//! Module map:
//! - [`event`]: the log event envelope ([`LogEvent`], [`Container`], [`Level`], [`EventId`]).
//! - [`otlp`]: the OTLP `LogsData` mapping of a batch of events, and decoding;
//! - [`decode`]: decoding straight into events (the aggregator's hot path);
//! - [`encode`]: the same bytes written directly, and assembled from pre-encoded records
//!   (the collector's hot path).
//! - [`metric`]: container stats and ECS task metrics ([`MetricBatch`]) as OTLP `MetricsData`;
//! - [`audit`]: audit events ([`AuditEvent`]: Docker events, ECS credential requests,
//!   Sightline's own actions) as OTLP `LogsData`;
//! - [`kafka`]: topic names, message headers and the Java-compatible murmur2 partitioner.
//!
//! The encoding is the one the OpenTelemetry Collector's Kafka exporter and receiver speak
//! (`otlp_proto`), so other tools can read Sightline's topics; see `docs/wire-format.md`.

pub mod audit;
pub mod decode;
pub mod encode;
pub mod event;
pub mod kafka;
pub mod metric;
pub mod otlp;

pub use audit::{decode_audit, encode_audit, Actor, AuditEvent};
pub use decode::decode_logs_fast;
pub use encode::encode_logs;
pub use event::{Container, EventId, Level, LogEvent, SourceKind, SourcePosition};
pub use metric::{decode_metrics, encode_metrics, MetricBatch, MetricKind, MetricPoint};
pub use otlp::{decode_logs, to_logs_data, DecodeError};

/// Version of the envelope: the attribute mapping documented in `docs/wire-format.md`.
/// Carried in every message as the Kafka header [`kafka::SCHEMA_HEADER`] and as the
/// instrumentation scope attribute `sightline.schema_version`.
pub const SCHEMA_VERSION: u32 = 1;
