//! Sightline host collector: tails Docker json-file logs, follows the Docker engine's events
//! and container stats, and ships them to Kafka.
//!
//! Data path, one module per stage:
//! - [`sources::docker_json`]: discovery of containers and one tailer per container log;
//! - [`sources::docker_engine`]: the Engine API (bollard): events → audit events (and a
//!   wake-up for discovery), stats → metric samples ([`sources::stats_math`]: the formulas);
//! - [`parse`]: json-file framing and split-line reassembly, then the application's line
//!   (correlation ID, trace ID, hop, level);
//! - [`sinks::kafka`]: per-partition batching as OTLP `LogsData`, idempotent produce, and
//!   checkpoints advanced only after Kafka acknowledged;
//! - [`sinks::records`]: metric samples and audit events on their own topics;
//! - [`spool`]: the bounded, checksummed on-disk spool for Kafka messages while Kafka is slow;
//! - [`checkpoint`]: the atomic, versioned checkpoint and cursor files;
//! - [`telemetry`]: `/metrics` (Prometheus) and `/healthz`;
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
pub mod spool;
pub mod stats;
pub mod telemetry;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use checkpoint::{CheckpointError, CheckpointStore, CursorStore};
use config::{CollectorConfig, ConfigError};
use sinks::kafka::{producer_config, KafkaSink, SinkError};
use sinks::records::{RecordSink, DOCKER_EVENTS_CURSOR};
use sources::docker_engine::EngineContext;
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
    /// The spool directory cannot be opened.
    #[error("cannot open the spool in {dir}: {source}")]
    Spool {
        /// The spool directory.
        dir: std::path::PathBuf,
        /// Why.
        source: spool::SpoolError,
    },
    /// The telemetry address cannot be bound.
    #[error("cannot listen on {addr} for /metrics: {source}")]
    Telemetry {
        /// `telemetry.listen`.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
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
/// acknowledge everything read (or, with the spool, for it to be on disk) and writes the
/// final checkpoint. `cfg` must have passed [`CollectorConfig::validate`].
///
/// It does not wait for Kafka to start: the sources read at once, the topics are found or
/// created in the background ([`sinks::topics`]), and what is read meanwhile goes to the
/// spool (or, without one, waits in the sink, which then stops the reading: backpressure).
pub async fn run(
    cfg: CollectorConfig,
    stats: Arc<Stats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), CollectorError> {
    let extractor = Arc::new(parse::app::Extractor::new(&cfg.correlation)?);
    let store = CheckpointStore::open(&cfg.data_dir)?;
    let checkpoints = store.load()?;
    let handle = sinks::producer::ProducerHandle::new(producer_config(&cfg.kafka))
        .map_err(SinkError::Client)?;
    let producer = handle.producer();
    let mut tasks = Vec::new();
    let (topics, discovery) = sinks::topics::discover(&producer, &cfg.kafka, shutdown.clone());
    tasks.push(discovery);
    let partitions = topics.logs.clone();
    if let Some(addr) = cfg.telemetry.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| CollectorError::Telemetry { addr, source })?;
        tracing::info!(%addr, "serving /metrics and /healthz");
        let (stats, shutdown) = (stats.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = telemetry::serve(listener, stats, shutdown).await {
                tracing::error!(error = %e, "telemetry endpoint failed");
            }
        }));
    }

    // A reachable Kafka answers within milliseconds: wait for the logs topic's partition
    // count up to `spool.spill_after_ms` (as long as a batch may wait for Kafka before it
    // goes to disk), so a normal start encodes for the right partitions and sends straight
    // to Kafka instead of through the spool. Past that, sources start anyway and spool.
    {
        let mut stop = shutdown.clone();
        tokio::select! {
            _ = partitions.until_known() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(cfg.spool.spill_after_ms)) => {
                tracing::warn!(brokers = %cfg.kafka.brokers, "Kafka not reachable yet: reading into the spool meanwhile");
            }
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    // Metric samples and audit events: their own topics, one sink each.
    let cursors = CursorStore::open(&cfg.data_dir)?;
    let since = cursors.load()?.get(DOCKER_EVENTS_CURSOR).copied();
    let records = RecordSink {
        producer: handle.clone(),
        metrics_topic: cfg.kafka.metrics_topic.clone(),
        audit_topic: cfg.kafka.audit_topic.clone(),
        stats: stats.clone(),
        cursors,
        audit_files: sinks::records::audit_file_store(&cfg.data_dir)?,
        shutdown_grace: std::time::Duration::from_secs(10),
        metrics_ready: topics.metrics.clone(),
        audit_ready: topics.audit.clone(),
    };
    let (audit_tx, audit_rx) = mpsc::channel(1024);
    let (metrics_tx, metrics_rx) = mpsc::channel(16);
    tasks.push(tokio::spawn(
        records.clone().run_audit(audit_rx, shutdown.clone()),
    ));
    tasks.push(tokio::spawn(
        records.run_metrics(metrics_rx, shutdown.clone()),
    ));

    // The Docker Engine API: events (audit, discovery wake-ups) and stats (metrics).
    let wake = Arc::new(tokio::sync::Notify::new());
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let socket = cfg.docker_engine.socket_path(docker_host.as_deref());
    if cfg.docker_engine.active(&socket, docker_host.as_deref()) {
        let ctx = EngineContext {
            cfg: cfg.docker_engine.clone(),
            socket: socket.clone(),
            host: host_name(&cfg),
            service_label: cfg.docker.service_label.clone(),
        };
        tracing::info!(socket = %socket.display(), "following the Docker engine's events and stats");
        tasks.push(tokio::spawn(sources::docker_engine::events::run(
            ctx.clone(),
            since,
            audit_tx.clone(),
            wake.clone(),
            shutdown.clone(),
        )));
        if cfg.docker_engine.stats.enabled {
            tasks.push(tokio::spawn(sources::docker_engine::stats::run(
                ctx,
                stats.clone(),
                metrics_tx.clone(),
                shutdown.clone(),
            )));
        }
    } else {
        tracing::info!(socket = %socket.display(), "no Docker engine socket: no events, no stats");
    }

    // Sidecar mode: the ECS task metadata endpoint v4.
    let ecs_env = std::env::var(sources::ecs_metadata::ENDPOINT_ENV).ok();
    match cfg.ecs_metadata.resolve_endpoint(ecs_env) {
        Some(endpoint) => {
            tracing::info!(%endpoint, "sidecar mode: reading ECS task metadata and stats");
            tasks.push(tokio::spawn(sources::ecs_metadata::run(
                cfg.ecs_metadata.clone(),
                host_name(&cfg),
                metrics_tx.clone(),
                shutdown.clone(),
            )));
        }
        None if cfg.ecs_metadata.enabled == Some(true) => {
            return Err(CollectorError::Config(ConfigError::Invalid {
                field: "ecs_metadata.endpoint".into(),
                message: format!(
                    "ecs_metadata.enabled is true but neither an endpoint nor ${} is set",
                    sources::ecs_metadata::ENDPOINT_ENV
                ),
            }));
        }
        None => {}
    }
    drop(metrics_tx);

    stats.set_spool(None); // a reload: the previous run's spool is closed first
    let (drain_stop, drain_stop_rx) = watch::channel(false);
    let mut drain_task = None;
    let spool = if cfg.spool.enabled {
        let dir = cfg.spool.resolve_dir(&cfg.data_dir);
        let opened =
            spool::Spool::open(&dir, &cfg.spool).map_err(|source| CollectorError::Spool {
                dir: dir.clone(),
                source,
            })?;
        if !opened.is_empty() {
            tracing::info!(records = opened.records(), bytes = opened.bytes(), dir = %dir.display(), "spool holds batches from an earlier run: sending them first");
        }
        let spool_handle = sinks::spooled::SpoolHandle::new(opened, shutdown.clone());
        // The drain task stops after the log sink (it may need the room the drain frees).
        drain_task = Some(tokio::spawn(spool_handle.clone().drain(
            handle.clone(),
            cfg.kafka.topic.clone(),
            partitions.clone(),
            stats.clone(),
            drain_stop_rx,
        )));
        stats.set_spool(Some(spool_handle.clone()));
        Some(spool_handle)
    } else {
        None
    };

    // Chunks waiting for the sink (each up to one read of `docker.read_buffer_bytes`, encoded):
    // a short queue keeps the tailers' memory small; the sink is rarely the bottleneck.
    let (tx, rx) = mpsc::channel(4);
    let sink = KafkaSink {
        producer: handle,
        topic: cfg.kafka.topic.clone(),
        partitions: partitions.clone(),
        shutdown: shutdown.clone(),
        batch: cfg.batch.clone(),
        store,
        stats: stats.clone(),
        spool,
        spill_after: std::time::Duration::from_millis(cfg.spool.spill_after_ms),
        stalled: Default::default(),
        learned_max_bytes: Default::default(),
    };
    let sink_task = tokio::spawn(sink.run(rx, checkpoints.clone()));

    // The ECS agent's own log files (agent, init, credentials audit), when present.
    let ecs_logs = sources::ecs_logs::EcsLogsSource {
        cfg: cfg.ecs_logs.clone(),
        host: host_name(&cfg),
        extractor: extractor.clone(),
        stats: stats.clone(),
        partitions: partitions.clone(),
        max_part_bytes: cfg.batch.max_bytes,
    };
    let ecs_checkpoints = checkpoints
        .iter()
        .filter(|(k, _)| k.starts_with("ecs:"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let audit_checkpoints = sinks::records::audit_file_store(&cfg.data_dir)?.load()?;
    tasks.push(tokio::spawn(ecs_logs.run(
        ecs_checkpoints,
        audit_checkpoints,
        tx.clone(),
        audit_tx,
        shutdown.clone(),
    )));
    let source = DockerJsonSource {
        cfg: cfg.docker.clone(),
        host: host_name(&cfg),
        extractor,
        stats,
        partitions,
        max_part_bytes: cfg.batch.max_bytes,
        multiline: if cfg.multiline.mode == parse::multiline::MultilineMode::Off {
            None
        } else {
            Some(Arc::new(parse::multiline::MultilineRules::new(
                &cfg.multiline,
            )?))
        },
        redactor: Arc::new(parse::redact::Redactor::new(&cfg.redaction)?),
        rate_limit: cfg.rate_limit.clone(),
        wake,
    };
    source.run(checkpoints, tx, shutdown).await;
    let _ = sink_task.await;
    let _ = drain_stop.send(true);
    if let Some(t) = drain_task {
        let _ = t.await;
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
