//! Inputs. Each source turns something on the host into [`Chunk`]s of events for the sink.

pub mod docker_json;

use std::sync::Arc;

use sightline_model::LogEvent;

use crate::checkpoint::FileCheckpoint;

/// A run of events from one source, with where that source may resume once every event of
/// this chunk (and of all earlier chunks) has been acknowledged by Kafka.
#[derive(Debug)]
pub struct Chunk {
    /// Checkpoint key of the source (for Docker: the container ID).
    pub key: Arc<str>,
    /// Events in read order.
    pub events: Vec<LogEvent>,
    /// Resume position after this chunk; `None` when it does not move.
    pub checkpoint: Option<FileCheckpoint>,
    /// The source is finished for good (container removed): forget its checkpoint once acked.
    pub done: bool,
}
