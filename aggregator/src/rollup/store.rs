//! [`RollupStore`]: open and closed windows, the event-time watermark, Kafka positions.
//!
//! Event time drives everything: the **watermark** is the newest event/sample time seen
//! (or a later clock reading passed to [`RollupStore::advance`]). A 10 s window
//! `[s, s + 10 s)` is *closed* once `s + 10 s + lateness <= watermark`; a 1 min window when
//! its last 10 s window closes. Events for a closed window are **late**: counted in
//! [`RollupCounters::late_events`], logged (one warning per batch), and not applied.
//! Windows are closed in time order; closed windows are kept `retention_10s` /
//! `retention_1m` behind the watermark.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sightline_model::{LogEvent, MetricBatch};

use super::config::RollupConfig;
use super::from_logs::{LogClassifier, OpenLogs};
use super::from_metrics::{cluster_of, compute_window, sample_of, History};
use super::window::{Resolution, SeriesKey, WindowValues};

/// Where a Kafka message came from. Messages of a partition must be applied in offset
/// order; one with an offset below the partition's applied next offset is a replay and is
/// skipped whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaPosition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// The message's offset.
    pub offset: i64,
}

/// What the store counted since it was created (persisted with it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupCounters {
    /// Log events applied.
    pub applied_events: u64,
    /// Metric samples applied (a repeated (unit, time) counts again but changes nothing).
    pub applied_samples: u64,
    /// Log events and samples older than their window's lateness horizon: not applied.
    pub late_events: u64,
    /// Log events whose `event_id` was already applied to their window.
    pub duplicate_events: u64,
    /// Kafka messages skipped because their offset was already applied.
    pub replayed_messages: u64,
    /// Metric batches without service, identity or valid time.
    pub rejected_samples: u64,
}

/// The rollup store: apply log events and metric batches, read series through
/// [`crate::series::SeriesSource`], persist with [`RollupStore::flush`] (see
/// [`super::persist`]).
pub struct RollupStore {
    pub(super) cfg: RollupConfig,
    pub(super) classifier: LogClassifier,
    /// Newest event time seen, Unix ms (`i64::MIN` before the first).
    pub(super) watermark_ms: i64,
    /// Every 10 s window ending at or before this is closed (`i64::MIN` before the first
    /// event).
    pub(super) closed_through_ms: i64,
    /// Open 10 s log windows: service → cluster → window start → aggregate.
    pub(super) open_logs: HashMap<String, HashMap<String, BTreeMap<i64, OpenLogs>>>,
    /// Container/task samples of the last minutes.
    pub(super) history: History,
    /// Closed windows: resolution → key → window end → values.
    pub(super) closed: BTreeMap<Resolution, BTreeMap<SeriesKey, BTreeMap<i64, WindowValues>>>,
    /// Applied Kafka positions: (topic, partition) → next offset.
    pub(super) positions: BTreeMap<(String, i32), i64>,
    pub(super) counters: RollupCounters,
    /// Closed windows not yet written to disk.
    pub(super) pending: Vec<(Resolution, SeriesKey, i64)>,
    pub(super) persist: Option<super::persist::Persister>,
}

impl std::fmt::Debug for RollupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollupStore")
            .field("watermark_ms", &self.watermark_ms)
            .field("closed_through_ms", &self.closed_through_ms)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// Errors of the rollup store.
#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] super::config::RollupConfigError),
    /// Reading or writing `<data_dir>/rollups`.
    #[error("rollup files: {path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A persisted file is not in the expected format (or has a bad checksum).
    #[error("rollup files: {path}: {message}")]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong (with the line number for segments).
        message: String,
    },
}

const S10: i64 = 10_000;
const M1: i64 = 60_000;

impl RollupStore {
    /// An in-memory store (nothing persisted). Errors: an invalid config.
    pub fn new(cfg: RollupConfig) -> Result<Self, RollupError> {
        cfg.validate()?;
        let classifier = LogClassifier::new(&cfg).map_err(|e| {
            RollupError::Config(super::config::RollupConfigError {
                field: "rollups.patterns".into(),
                message: e.to_string(),
            })
        })?;
        Ok(RollupStore {
            cfg,
            classifier,
            watermark_ms: i64::MIN,
            closed_through_ms: i64::MIN,
            open_logs: HashMap::new(),
            history: History::new(),
            closed: BTreeMap::new(),
            positions: BTreeMap::new(),
            counters: RollupCounters::default(),
            pending: Vec::new(),
            persist: None,
        })
    }

    /// The config in use.
    pub fn config(&self) -> &RollupConfig {
        &self.cfg
    }

    /// Applied Kafka positions: (topic, partition) → the next offset to consume. After a
    /// restart, resume each partition exactly there.
    pub fn positions(&self) -> &BTreeMap<(String, i32), i64> {
        &self.positions
    }

    /// Counters since the store was created.
    pub fn counters(&self) -> &RollupCounters {
        &self.counters
    }

    /// The watermark (newest event time seen, or the last `advance`), Unix ms; `None`
    /// before any.
    pub fn watermark_ms(&self) -> Option<i64> {
        (self.watermark_ms != i64::MIN).then_some(self.watermark_ms)
    }

    /// True when the message was already applied (and records it as applied otherwise).
    fn replayed(&mut self, pos: Option<&KafkaPosition>) -> bool {
        let Some(p) = pos else { return false };
        let next = self
            .positions
            .entry((p.topic.clone(), p.partition))
            .or_insert(0);
        if p.offset < *next {
            self.counters.replayed_messages += 1;
            return true;
        }
        *next = p.offset + 1;
        false
    }

    /// First event: start closing windows just before its lateness horizon.
    fn start_at(&mut self, t_ms: i64) {
        if self.closed_through_ms == i64::MIN {
            self.closed_through_ms = Resolution::M1.start_of(t_ms - self.cfg.lateness);
        }
    }

    /// Applies the log events of one Kafka message (`pos`; `None` outside Kafka). Returns
    /// the number of events applied (not late, not duplicate, message not replayed).
    pub fn apply_logs(&mut self, events: &[LogEvent], pos: Option<&KafkaPosition>) -> usize {
        if self.replayed(pos) {
            return 0;
        }
        let mut applied = 0;
        let mut late = 0u64;
        let mut first_late: Option<(String, i64)> = None;
        for ev in events {
            let t = (ev.timestamp_ns / 1_000_000) as i64;
            self.start_at(t);
            let start = Resolution::S10.start_of(t);
            if start < self.closed_through_ms {
                late += 1;
                first_late.get_or_insert_with(|| (ev.service.clone(), t));
                continue;
            }
            let cluster = cluster_of(ev.container.as_deref(), &ev.attributes);
            if !self.open_logs.contains_key(ev.service.as_str()) {
                self.open_logs.insert(ev.service.clone(), HashMap::new());
            }
            let by_cluster = self
                .open_logs
                .get_mut(ev.service.as_str())
                .expect("inserted above");
            if !by_cluster.contains_key(cluster) {
                by_cluster.insert(cluster.to_string(), BTreeMap::new());
            }
            let windows = by_cluster.get_mut(cluster).expect("inserted above");
            let w = windows.entry(start).or_default();
            if self.classifier.apply(ev, w) {
                applied += 1;
            } else {
                self.counters.duplicate_events += 1;
            }
            self.watermark_ms = self.watermark_ms.max(t);
        }
        self.counters.applied_events += applied as u64;
        self.note_late(late, first_late);
        self.close_ready();
        applied
    }

    /// Applies the metric batches of one Kafka message. Returns the number of samples
    /// applied.
    pub fn apply_metrics(&mut self, batches: &[MetricBatch], pos: Option<&KafkaPosition>) -> usize {
        if self.replayed(pos) {
            return 0;
        }
        let mut applied = 0;
        let mut late = 0u64;
        let mut first_late = None;
        for b in batches {
            let (unit, time_ns, s) = match sample_of(b) {
                Ok(x) => x,
                Err(e) => {
                    self.counters.rejected_samples += 1;
                    tracing::debug!(error = %e, "metric batch not rolled up");
                    continue;
                }
            };
            let t = (time_ns / 1_000_000) as i64;
            self.start_at(t);
            if Resolution::S10.start_of(t) < self.closed_through_ms {
                late += 1;
                first_late.get_or_insert_with(|| (s.service.clone(), t));
                continue;
            }
            self.history.entry(unit).or_default().insert(time_ns, s);
            self.watermark_ms = self.watermark_ms.max(t);
            applied += 1;
        }
        self.counters.applied_samples += applied as u64;
        self.note_late(late, first_late);
        self.close_ready();
        applied
    }

    fn note_late(&mut self, late: u64, first: Option<(String, i64)>) {
        if late == 0 {
            return;
        }
        self.counters.late_events += late;
        if let Some((service, t)) = first {
            tracing::warn!(
                late,
                service = %service,
                event_time_ms = t,
                watermark_ms = self.watermark_ms,
                lateness_ms = self.cfg.lateness,
                "events older than the rollup lateness horizon were not rolled up"
            );
        }
    }

    /// Moves the watermark to `now_ms` (wall clock) if that is later, closing the windows
    /// that are past the lateness horizon even when no event arrives.
    pub fn advance(&mut self, now_ms: i64) {
        if now_ms > self.watermark_ms && self.closed_through_ms != i64::MIN {
            self.watermark_ms = now_ms;
            self.close_ready();
        }
    }

    /// Earliest time with open data at or after `from` (open logs or samples).
    fn next_data_at(&self, from: i64) -> Option<i64> {
        let logs = self
            .open_logs
            .values()
            .flat_map(|m| m.values())
            .filter_map(|w| w.range(from..).next().map(|(s, _)| *s))
            .min();
        let from_ns = super::from_metrics::ms_to_ns(from);
        let samples = self
            .history
            .values()
            .filter_map(|h| {
                h.range(from_ns..)
                    .next()
                    .map(|(t, _)| (*t / 1_000_000) as i64)
            })
            .min();
        match (logs, samples) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes every window past the lateness horizon, in time order.
    fn close_ready(&mut self) {
        if self.closed_through_ms == i64::MIN {
            return;
        }
        let horizon = self.watermark_ms.saturating_sub(self.cfg.lateness);
        let mut pruned = false;
        while self.closed_through_ms + S10 <= horizon {
            // Skip empty stretches a minute at a time.
            if self.closed_through_ms % M1 == 0 {
                match self.next_data_at(self.closed_through_ms) {
                    Some(t) => {
                        let m = Resolution::M1
                            .start_of(t)
                            .min(Resolution::M1.start_of(horizon));
                        if m > self.closed_through_ms {
                            self.closed_through_ms = m;
                            continue;
                        }
                    }
                    None => {
                        self.closed_through_ms = Resolution::M1.start_of(horizon);
                        break;
                    }
                }
            }
            let start = self.closed_through_ms;
            self.close_window(Resolution::S10, start);
            self.closed_through_ms = start + S10;
            if self.closed_through_ms % M1 == 0 {
                self.close_window(Resolution::M1, self.closed_through_ms - M1);
                pruned = true;
            }
        }
        if pruned {
            self.prune();
        }
    }

    /// Values of every key (services, then clusters) for the window `[start, start+width)`,
    /// from the open state (10 s log windows still open, or closed 10 s windows for the
    /// minutes' logs) and the sample history.
    pub(super) fn compute(&self, res: Resolution, start: i64) -> BTreeMap<SeriesKey, WindowValues> {
        let end = start + res.width_ms();
        let mut out: BTreeMap<SeriesKey, WindowValues> = BTreeMap::new();
        let names = &self.classifier.pattern_names;
        for (service, by_cluster) in &self.open_logs {
            for (cluster, windows) in by_cluster {
                for (_, w) in windows.range(start..end) {
                    let key = SeriesKey {
                        service: service.clone(),
                        cluster: cluster.clone(),
                    };
                    let v = out.entry(key).or_default();
                    v.merge(&WindowValues {
                        logs: Some(w.to_agg(names)),
                        metrics: None,
                    });
                }
            }
        }
        if res == Resolution::M1 {
            if let Some(closed) = self.closed.get(&Resolution::S10) {
                for (key, windows) in closed.iter().filter(|(k, _)| !k.service.is_empty()) {
                    for (_, w) in windows.range(start + S10..=end) {
                        if let Some(l) = &w.logs {
                            let v = out.entry(key.clone()).or_default();
                            v.merge(&WindowValues {
                                logs: Some(l.clone()),
                                metrics: None,
                            });
                        }
                    }
                }
            }
        }
        for (key, m) in compute_window(&self.history, start, end) {
            out.entry(key).or_default().metrics = Some(m);
        }
        // Cluster-level keys: the sum of the cluster's services.
        let mut clusters: BTreeMap<SeriesKey, WindowValues> = BTreeMap::new();
        for (key, v) in &out {
            if !key.cluster.is_empty() {
                let ck = SeriesKey {
                    service: String::new(),
                    cluster: key.cluster.clone(),
                };
                clusters.entry(ck).or_default().merge(v);
            }
        }
        out.extend(clusters);
        out
    }

    fn close_window(&mut self, res: Resolution, start: i64) {
        let values = self.compute(res, start);
        let end = start + res.width_ms();
        if res == Resolution::S10 {
            for by_cluster in self.open_logs.values_mut() {
                for windows in by_cluster.values_mut() {
                    windows.remove(&start);
                }
            }
        }
        let closed = self.closed.entry(res).or_default();
        for (key, v) in values {
            if self.persist.is_some() {
                self.pending.push((res, key.clone(), end));
            }
            closed.entry(key).or_default().insert(end, v);
        }
    }

    /// Drops closed windows past retention, empty open maps, and old samples (keeping each
    /// unit's newest sample before the cutoff, the base of the next counter increase).
    fn prune(&mut self) {
        let wm = self.watermark_ms;
        for (res, keep) in [
            (Resolution::S10, self.cfg.retention_10s),
            (Resolution::M1, self.cfg.retention_1m),
        ] {
            if let Some(c) = self.closed.get_mut(&res) {
                let cutoff = wm.saturating_sub(keep);
                for windows in c.values_mut() {
                    *windows = windows.split_off(&(cutoff + 1));
                }
                c.retain(|_, w| !w.is_empty());
            }
        }
        for by_cluster in self.open_logs.values_mut() {
            by_cluster.retain(|_, w| !w.is_empty());
        }
        self.open_logs.retain(|_, m| !m.is_empty());
        let cutoff = super::from_metrics::ms_to_ns(self.closed_through_ms - 2 * M1);
        let forget = super::from_metrics::ms_to_ns(self.closed_through_ms - 15 * M1);
        self.history.retain(|_, samples| {
            let keep = samples.split_off(&cutoff);
            let base = samples.pop_last();
            *samples = keep;
            if let Some((t, s)) = base {
                if t >= forget {
                    samples.insert(t, s);
                }
            }
            !samples.is_empty()
        });
    }
}
