//! Windows and their aggregates.
//!
//! A window is `[start, start + width)` in event time (Unix ms); its samples carry the
//! window's **end** as `ts_ms` (so a rule's range `(t − 5m, t]` covers the windows that
//! ended in it). A window belongs to a [`SeriesKey`]: a service (with its cluster when
//! known) or a whole cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use crate::series::Labels;

/// Window width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Resolution {
    /// 10 s windows (kept `retention_10s`).
    #[serde(rename = "10s")]
    S10,
    /// 1 min windows (kept `retention_1m`).
    #[serde(rename = "1m")]
    M1,
}

impl Resolution {
    /// Both resolutions, finest first.
    pub const ALL: [Resolution; 2] = [Resolution::S10, Resolution::M1];

    /// Width, ms.
    pub fn width_ms(self) -> i64 {
        match self {
            Resolution::S10 => 10_000,
            Resolution::M1 => 60_000,
        }
    }

    /// Name used in file names: `10s`, `1m`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::S10 => "10s",
            Resolution::M1 => "1m",
        }
    }

    /// Start of the window holding `t_ms` (floor, also for negative times).
    pub fn start_of(self, t_ms: i64) -> i64 {
        t_ms.div_euclid(self.width_ms()) * self.width_ms()
    }
}

/// Who a window describes: `service` set → one service (in `cluster` when known);
/// `service` empty → the whole `cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// `service` label; empty for a cluster-level key.
    pub service: String,
    /// `cluster` label; empty when unknown.
    pub cluster: String,
}

impl SeriesKey {
    /// The label set of `metric` for this key (`__name__`, `service`, `cluster`, the ones
    /// that are non-empty).
    pub fn labels(&self, metric: &str) -> Labels {
        let mut l = Labels::new();
        l.insert("__name__".into(), metric.into());
        if !self.service.is_empty() {
            l.insert("service".into(), self.service.clone());
        }
        if !self.cluster.is_empty() {
            l.insert("cluster".into(), self.cluster.clone());
        }
        l
    }
}

/// Index of a log level in [`LogAgg::lines`]: trace, debug, info, warn, error, fatal,
/// then `unknown` (no level detected).
pub const LEVELS: [&str; 7] = [
    "trace", "debug", "info", "warn", "error", "fatal", "unknown",
];

/// Log-derived aggregates of one window.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct LogAgg {
    /// Lines per level, indexed as [`LEVELS`].
    pub lines: [u64; 7],
    /// Access-log lines with a status and a duration.
    pub requests: u64,
    /// Of those, status 500–599.
    pub status_5xx: u64,
    /// Request durations, seconds (DDSketch); `None` without requests.
    pub latency: Option<DDSketch>,
    /// Sum of request durations, whole nanoseconds (exact and order-independent, unlike
    /// the sketch's float sum); the mean is `latency_sum_ns / requests`.
    pub latency_sum_ns: u128,
    /// Lines matching each configured pattern, by pattern name.
    pub patterns: BTreeMap<String, u64>,
}

impl std::fmt::Debug for LogAgg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogAgg")
            .field("lines", &self.lines)
            .field("requests", &self.requests)
            .field("status_5xx", &self.status_5xx)
            .field("latency_count", &self.latency.as_ref().map(|s| s.count()))
            .field("latency_sum_ns", &self.latency_sum_ns)
            .field("patterns", &self.patterns)
            .finish()
    }
}

/// The sketch configuration for a relative accuracy (max 4096 bins, values down to 1 ns).
pub fn sketch_config(relative_accuracy: f64) -> SketchConfig {
    SketchConfig::new(relative_accuracy, 4096, 1e-9)
}

impl LogAgg {
    /// All lines.
    pub fn total(&self) -> u64 {
        self.lines.iter().sum()
    }

    /// `error` + `fatal` lines.
    pub fn errors(&self) -> u64 {
        self.lines[4] + self.lines[5]
    }

    /// Adds `other` into `self` (counts add, sketches merge).
    pub fn merge(&mut self, other: &LogAgg) {
        for (a, b) in self.lines.iter_mut().zip(other.lines) {
            *a += b;
        }
        self.requests += other.requests;
        self.status_5xx += other.status_5xx;
        self.latency_sum_ns += other.latency_sum_ns;
        if let Some(o) = &other.latency {
            match &mut self.latency {
                // Same config by construction; a mismatch (config changed across a
                // restart) keeps the existing sketch rather than failing.
                Some(s) => {
                    if s.merge(o).is_err() {
                        tracing::warn!("latency sketches with different accuracy not merged");
                    }
                }
                None => self.latency = Some(o.clone()),
            }
        }
        for (k, v) in &other.patterns {
            *self.patterns.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Records one request.
    pub fn add_request(&mut self, status: u16, seconds: f64, cfg: SketchConfig) {
        self.requests += 1;
        if (500..600).contains(&status) {
            self.status_5xx += 1;
        }
        self.latency
            .get_or_insert_with(|| DDSketch::new(cfg))
            .add(seconds);
        self.latency_sum_ns += (seconds * 1e9).round() as u128;
    }
}

/// Container-stats aggregates of one window (see `docs/rollups.md` for the formulas).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricValues {
    /// CPU used, ECS CPU units (1024 = one vCPU busy), Σ over tasks/containers of their
    /// mean in the window.
    pub cpu_used_units: f64,
    /// CPU reserved, CPU units (same sum).
    pub cpu_reserved_units: f64,
    /// Memory used, bytes.
    pub memory_used_bytes: f64,
    /// Memory reserved, bytes.
    pub memory_reserved_bytes: f64,
    /// Whether any task/container reported CPU usage (else `cpu_*` are absent).
    pub has_cpu: bool,
    /// Whether any task/container reported memory usage.
    pub has_memory: bool,
    /// Increase of the received-bytes counters, bytes.
    pub network_rx_bytes: f64,
    /// Increase of the sent-bytes counters, bytes.
    pub network_tx_bytes: f64,
    /// Increase of the block-I/O read counters, bytes.
    pub storage_read_bytes: f64,
    /// Increase of the block-I/O write counters, bytes.
    pub storage_write_bytes: f64,
    /// Distinct tasks (ECS) and containers (others) seen running.
    pub running_tasks: u64,
}

impl MetricValues {
    /// `cpu_utilization`: used / reserved × 100, when both are known.
    pub fn cpu_utilization(&self) -> Option<f64> {
        (self.has_cpu && self.cpu_reserved_units > 0.0)
            .then(|| self.cpu_used_units / self.cpu_reserved_units * 100.0)
    }

    /// `memory_utilization`: used / reserved × 100, when both are known.
    pub fn memory_utilization(&self) -> Option<f64> {
        (self.has_memory && self.memory_reserved_bytes > 0.0)
            .then(|| self.memory_used_bytes / self.memory_reserved_bytes * 100.0)
    }
}

/// Everything one window of one key holds once closed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WindowValues {
    /// Log aggregates, when the window had log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogAgg>,
    /// Container-stats aggregates, when the window had samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricValues>,
}

impl WindowValues {
    /// The value of a (non-sketch) rollup metric in this window; `extra` is the `level` or
    /// `pattern` label value for `log_lines` / `log_pattern_count`.
    pub fn value(&self, metric: &str, extra: Option<&str>) -> Option<f64> {
        use super::names::*;
        if let Some(l) = &self.logs {
            let total = l.total();
            match metric {
                LOG_LINES => {
                    let i = LEVELS.iter().position(|n| Some(*n) == extra)?;
                    return (l.lines[i] > 0).then_some(l.lines[i] as f64);
                }
                ERROR_COUNT => return Some(l.errors() as f64),
                ERROR_RATE => return (total > 0).then(|| l.errors() as f64 / total as f64),
                REQUEST_COUNT => return Some(l.requests as f64),
                HTTP_5XX_RATE => {
                    return (l.requests > 0).then(|| l.status_5xx as f64 / l.requests as f64)
                }
                REQUEST_LATENCY_SECONDS => {
                    return (l.requests > 0)
                        .then(|| l.latency_sum_ns as f64 / 1e9 / l.requests as f64)
                }
                LOG_PATTERN_COUNT => return l.patterns.get(extra?).map(|v| *v as f64),
                _ => {}
            }
        }
        let m = self.metrics.as_ref()?;
        match metric {
            CPU_UTILIZATION => m.cpu_utilization(),
            MEMORY_UTILIZATION => m.memory_utilization(),
            CPU_UTILIZED => m.has_cpu.then_some(m.cpu_used_units),
            MEMORY_UTILIZED => m.has_memory.then_some(m.memory_used_bytes),
            NETWORK_RX_BYTES => Some(m.network_rx_bytes),
            NETWORK_TX_BYTES => Some(m.network_tx_bytes),
            STORAGE_READ_BYTES => Some(m.storage_read_bytes),
            STORAGE_WRITE_BYTES => Some(m.storage_write_bytes),
            RUNNING_TASK_COUNT => Some(m.running_tasks as f64),
            _ => None,
        }
    }

    /// Merges `other` (log aggregates add; metric values add, which is right for the
    /// cluster-level sum of its services' disjoint tasks).
    pub fn merge(&mut self, other: &WindowValues) {
        if let Some(o) = &other.logs {
            self.logs.get_or_insert_with(LogAgg::default).merge(o);
        }
        if let Some(o) = &other.metrics {
            let m = self.metrics.get_or_insert_with(MetricValues::default);
            m.cpu_used_units += o.cpu_used_units;
            m.cpu_reserved_units += o.cpu_reserved_units;
            m.memory_used_bytes += o.memory_used_bytes;
            m.memory_reserved_bytes += o.memory_reserved_bytes;
            m.has_cpu |= o.has_cpu;
            m.has_memory |= o.has_memory;
            m.network_rx_bytes += o.network_rx_bytes;
            m.network_tx_bytes += o.network_tx_bytes;
            m.storage_read_bytes += o.storage_read_bytes;
            m.storage_write_bytes += o.storage_write_bytes;
            m.running_tasks += o.running_tasks;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds() {
        assert_eq!(Resolution::S10.start_of(19_999), 10_000);
        assert_eq!(Resolution::S10.start_of(-1), -10_000);
        assert_eq!(Resolution::M1.start_of(119_999), 60_000);
    }

    #[test]
    fn log_values() {
        let mut a = LogAgg::default();
        a.lines[2] = 8;
        a.lines[4] = 2;
        a.add_request(200, 0.1, sketch_config(0.01));
        a.add_request(503, 0.3, sketch_config(0.01));
        let w = WindowValues {
            logs: Some(a),
            metrics: None,
        };
        use crate::rollup::names::*;
        assert_eq!(w.value(ERROR_RATE, None), Some(0.2));
        assert_eq!(w.value(LOG_LINES, Some("info")), Some(8.0));
        assert_eq!(w.value(LOG_LINES, Some("warn")), None);
        assert_eq!(w.value(HTTP_5XX_RATE, None), Some(0.5));
        assert!((w.value(REQUEST_LATENCY_SECONDS, None).unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(w.value(CPU_UTILIZATION, None), None);
    }
}
