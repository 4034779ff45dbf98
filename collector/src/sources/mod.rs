//! Inputs. Each source turns something on the host into [`Chunk`]s of events for the sink.

pub mod docker_engine;
pub mod docker_json;
pub mod ecs_logs;
pub mod ecs_metadata;
pub mod file_identity;
pub mod rate_limit;
pub mod stats_math;

use std::sync::Arc;

use crate::checkpoint::FileCheckpoint;

/// Events of one chunk bound for one Kafka partition, already encoded: concatenated OTLP
/// `log_records` fields (see `sightline_model::encode`), in read order.
#[derive(Debug)]
pub struct Part {
    /// Kafka partition (`partition_for_key` of each event's partitioning key).
    pub partition: i32,
    /// Encoded records.
    pub records: Vec<u8>,
    /// Number of events in `records`.
    pub count: u64,
    /// The partitioning key all these events share, or `None` when they differ.
    pub key: Option<String>,
}

/// A run of events from one source, with where that source may resume once every event of
/// this chunk (and of all earlier chunks) has been acknowledged by Kafka. Events are encoded
/// by the source's own thread, so the sink only concatenates bytes.
#[derive(Debug)]
pub struct Chunk {
    /// Checkpoint key of the source (for Docker: the container ID).
    pub key: Arc<str>,
    /// The source's OTLP `Resource`, encoded once and shared.
    pub resource: Arc<Vec<u8>>,
    /// Encoded events by partition; a partition may have several parts.
    pub parts: Vec<Part>,
    /// Resume position after this chunk; `None` when it does not move.
    pub checkpoint: Option<FileCheckpoint>,
    /// The source is finished for good (container removed): forget its checkpoint once acked.
    pub done: bool,
}
