//! Per-service rollups: 10 s and 1 min windows of container stats, ECS task metrics and
//! log-derived counts, per service and per cluster, read by alert rules through
//! [`crate::series::SeriesSource`]. User documentation: `docs/rollups.md`.
//!
//! Files:
//! - [`config`]: [`RollupConfig`] (`[rollups]`, `deny_unknown_fields`, pure `validate()`).
//! - [`window`]: window bounds ([`Resolution`]), series keys, the per-window aggregates.
//! - [`from_metrics`]: `MetricBatch` → per-unit samples; CPU/memory/counter formulas.
//! - [`from_logs`]: `LogEvent` → level, pattern and request counts, event-ID de-duplication.
//! - [`access_log`]: status and duration of JSON and CLF/combined access-log lines.
//! - [`store`]: [`RollupStore`]: watermark, lateness, closing windows, Kafka positions.
//! - [`source`]: the [`crate::series::SeriesSource`] implementation ([`SharedRollups`]).
//! - [`persist`]: the versioned on-disk format (per-day segments + atomic snapshot).
//! - [`api`]: `GET /api/v1/rollups` ([`api::router`]).
//! - [`stage`]: [`stage::RollupStage`], the logs and metrics topics' consume stages.
//!
//! Usage (the consumer wiring):
//!
//! ```no_run
//! # fn demo(dir: &std::path::Path, events: Vec<sightline_model::LogEvent>) -> Result<(), Box<dyn std::error::Error>> {
//! use sightline_aggregator::rollup::{KafkaPosition, RollupConfig, RollupStore};
//! let mut store = RollupStore::open(&dir.join("rollups"), RollupConfig::default())?;
//! let resume_at = store.positions().clone();      // (topic, partition) → next offset
//! let pos = KafkaPosition { topic: "sightline.logs".into(), partition: 0, offset: 42 };
//! store.apply_logs(&events, Some(&pos));
//! store.flush()?;                                  // every flush_interval and on shutdown
//! # let _ = resume_at; Ok(()) }
//! ```

pub mod access_log;
pub mod api;
pub mod config;
pub mod from_logs;
pub mod from_metrics;
pub mod persist;
pub mod source;
pub mod stage;
pub mod store;
pub mod window;

pub use config::{AccessLogConfig, DurationField, DurationUnit, LogPattern, RollupConfig};
pub use source::SharedRollups;
pub use store::{KafkaPosition, RollupCounters, RollupError, RollupStore};
pub use window::{Resolution, SeriesKey};

/// The rollup metric names (labels `service` and/or `cluster`; see `docs/rollups.md`).
pub mod names {
    /// CPU used / CPU reserved × 100, %.
    pub const CPU_UTILIZATION: &str = "cpu_utilization";
    /// Memory used / memory reserved × 100, %.
    pub const MEMORY_UTILIZATION: &str = "memory_utilization";
    /// CPU used, ECS CPU units (1024 = one vCPU).
    pub const CPU_UTILIZED: &str = "cpu_utilized";
    /// Memory used, bytes.
    pub const MEMORY_UTILIZED: &str = "memory_utilized";
    /// Bytes received in the window.
    pub const NETWORK_RX_BYTES: &str = "network_rx_bytes";
    /// Bytes sent in the window.
    pub const NETWORK_TX_BYTES: &str = "network_tx_bytes";
    /// Block-device bytes read in the window.
    pub const STORAGE_READ_BYTES: &str = "storage_read_bytes";
    /// Block-device bytes written in the window.
    pub const STORAGE_WRITE_BYTES: &str = "storage_write_bytes";
    /// Distinct tasks/containers seen running in the window.
    pub const RUNNING_TASK_COUNT: &str = "running_task_count";
    /// Log lines in the window, label `level`.
    pub const LOG_LINES: &str = "log_lines";
    /// `error` + `fatal` lines in the window.
    pub const ERROR_COUNT: &str = "error_count";
    /// Error lines per line, 0..1.
    pub const ERROR_RATE: &str = "error_rate";
    /// Access-log requests in the window.
    pub const REQUEST_COUNT: &str = "request_count";
    /// 5xx responses per request, 0..1.
    pub const HTTP_5XX_RATE: &str = "http_5xx_rate";
    /// Request latency, seconds: a sketch (`quantile`); `select` gives the mean.
    pub const REQUEST_LATENCY_SECONDS: &str = "request_latency_seconds";
    /// Lines matching a configured pattern, label `pattern`.
    pub const LOG_PATTERN_COUNT: &str = "log_pattern_count";

    /// Every name above.
    pub const ALL: [&str; 16] = [
        CPU_UTILIZATION,
        MEMORY_UTILIZATION,
        CPU_UTILIZED,
        MEMORY_UTILIZED,
        NETWORK_RX_BYTES,
        NETWORK_TX_BYTES,
        STORAGE_READ_BYTES,
        STORAGE_WRITE_BYTES,
        RUNNING_TASK_COUNT,
        LOG_LINES,
        ERROR_COUNT,
        ERROR_RATE,
        REQUEST_COUNT,
        HTTP_5XX_RATE,
        REQUEST_LATENCY_SECONDS,
        LOG_PATTERN_COUNT,
    ];
}
