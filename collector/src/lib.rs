//! Sightline host collector: tails Docker json-file logs and ships them to Kafka.
//!
//! Data path, one module per stage:
//! - [`sources::docker_json`]: discovery of containers and one tailer per container log;
//! - [`parse`]: json-file framing and split-line reassembly, then the application's line
//!   (correlation ID, trace ID, hop, level);
//! - [`sinks::kafka`]: per-partition batching as OTLP `LogsData`, idempotent produce, and
//!   checkpoints advanced only after Kafka acknowledged;
//! - [`checkpoint`]: the atomic, versioned checkpoint file;
//! - [`config`]: the TOML configuration and its validation; [`stats`]: counters.
//! - [`secret`]: [`secret::SensitiveString`], secrets in config that never print.
//!
//! The collector never links tantivy: it is the lean daemonset / sidecar binary.

pub mod checkpoint;
pub mod config;
pub mod parse;
pub mod secret;
pub mod sinks;
pub mod sources;
pub mod stats;

use std::sync::Arc;

use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, watch};

use checkpoint::{CheckpointError, CheckpointStore};
use config::{CollectorConfig, ConfigError};
use sinks::kafka::{ensure_topic, producer_config, KafkaSink, SinkError};
use sources::docker_json::discovery::DockerJsonSource;
use stats::Stats;

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The checkpoint file is unreadable.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Kafka producer or topic problem.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// The host name to stamp on events: the configured one, else `$HOSTNAME`, else
/// `/etc/hostname`, else `unknown`.
pub fn host_name(cfg: &CollectorConfig) -> String {
    cfg.host
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the collector until `shutdown` turns true; then stops reading, waits for Kafka to
/// acknowledge everything read and writes the final checkpoint. `cfg` must have passed
/// [`CollectorConfig::validate`].
pub async fn run(
    cfg: CollectorConfig,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), CollectorError> {
    let extractor = Arc::new(parse::app::Extractor::new(&cfg.correlation)?);
    let store = CheckpointStore::open(&cfg.data_dir)?;
    let checkpoints = store.load()?;
    let producer: FutureProducer = producer_config(&cfg.kafka)
        .create()
        .map_err(SinkError::Client)?;
    let partitions = ensure_topic(&producer, &cfg.kafka, &mut shutdown).await?;
    tracing::info!(topic = %cfg.kafka.topic, partitions, brokers = %cfg.kafka.brokers, "connected to Kafka");

    let (tx, rx) = mpsc::channel(8);
    let sink = KafkaSink {
        producer,
        topic: cfg.kafka.topic.clone(),
        partitions,
        batch: cfg.batch.clone(),
        store,
        stats: stats.clone(),
    };
    let sink_task = tokio::spawn(sink.run(rx, checkpoints.clone()));
    let source = DockerJsonSource {
        cfg: cfg.docker.clone(),
        host: host_name(&cfg),
        extractor,
        stats,
        partitions,
        max_part_bytes: cfg.batch.max_bytes,
    };
    source.run(checkpoints, tx, shutdown).await;
    let _ = sink_task.await;
    Ok(())
}
