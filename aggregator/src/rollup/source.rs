//! [`SeriesSource`] over the store: closed windows plus the open ones, computed on read.
//!
//! `select` reads 10 s windows when the range starts within `retention_10s` of the
//! watermark, else 1 min windows. `request_latency_seconds` samples are the window's mean
//! latency; its quantiles come from `quantile`, which merges the windows' DDSketches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use super::names;
use super::store::RollupStore;
use super::window::{Resolution, SeriesKey, WindowValues, LEVELS};
use crate::series::{Labels, Matcher, Sample, Series, SeriesSource};

impl RollupStore {
    fn resolution_for(&self, start_ms: i64) -> Resolution {
        if self.watermark_ms == i64::MIN
            || start_ms >= self.watermark_ms.saturating_sub(self.cfg.retention_10s)
        {
            Resolution::S10
        } else {
            Resolution::M1
        }
    }

    /// Every window of `res` ending in `(start_ms, end_ms]`, closed or open, per key:
    /// `(key, window end, values)` in key then time order.
    pub fn windows(
        &self,
        res: Resolution,
        start_ms: i64,
        end_ms: i64,
    ) -> BTreeMap<SeriesKey, BTreeMap<i64, WindowValues>> {
        let mut out: BTreeMap<SeriesKey, BTreeMap<i64, WindowValues>> = BTreeMap::new();
        if end_ms <= start_ms {
            return out;
        }
        if let Some(closed) = self.closed.get(&res) {
            for (key, windows) in closed {
                for (end, v) in windows.range(start_ms + 1..=end_ms) {
                    out.entry(key.clone()).or_default().insert(*end, v.clone());
                }
            }
        }
        // Open windows: those ending after `closed_through_ms` with data.
        let w = res.width_ms();
        let mut starts = BTreeSet::new();
        for by_cluster in self.open_logs.values() {
            for windows in by_cluster.values() {
                starts.extend(windows.keys().map(|s| res.start_of(*s)));
            }
        }
        for samples in self.history.values() {
            starts.extend(
                samples
                    .keys()
                    .map(|t| res.start_of((*t / 1_000_000) as i64)),
            );
        }
        for s in starts {
            let end = s + w;
            if end <= self.closed_through_ms || end <= start_ms || end > end_ms {
                continue;
            }
            for (key, v) in self.compute(res, s) {
                out.entry(key).or_default().insert(end, v);
            }
        }
        out
    }
}

/// Label values of the extra label of `metric`: `level` for `log_lines`, `pattern` for
/// `log_pattern_count`.
fn extra_label(metric: &str) -> Option<&'static str> {
    match metric {
        names::LOG_LINES => Some("level"),
        names::LOG_PATTERN_COUNT => Some("pattern"),
        _ => None,
    }
}

impl SeriesSource for RollupStore {
    fn select(
        &self,
        metric: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Series> {
        if !names::ALL.contains(&metric) {
            return Vec::new();
        }
        let res = self.resolution_for(start_ms);
        let extra = extra_label(metric);
        let extra_values: Vec<String> = match metric {
            names::LOG_LINES => LEVELS.iter().map(|s| s.to_string()).collect(),
            names::LOG_PATTERN_COUNT => self.classifier.pattern_names.clone(),
            _ => vec![String::new()],
        };
        let mut out = Vec::new();
        for (key, windows) in self.windows(res, start_ms, end_ms) {
            for xv in &extra_values {
                let mut labels = key.labels(metric);
                if let Some(name) = extra {
                    labels.insert(name.to_string(), xv.clone());
                }
                if !matchers.iter().all(|m| m.matches(&labels)) {
                    continue;
                }
                let samples: Vec<Sample> = windows
                    .iter()
                    .filter_map(|(end, v)| {
                        v.value(metric, extra.map(|_| xv.as_str()))
                            .map(|value| Sample { ts_ms: *end, value })
                    })
                    .collect();
                if !samples.is_empty() {
                    out.push(Series { labels, samples });
                }
            }
        }
        out
    }

    fn quantile(
        &self,
        metric: &str,
        matchers: &[Matcher],
        q: f64,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(Labels, f64)> {
        if metric != names::REQUEST_LATENCY_SECONDS {
            return Vec::new();
        }
        let res = self.resolution_for(start_ms);
        let mut out = Vec::new();
        for (key, windows) in self.windows(res, start_ms, end_ms) {
            let labels = key.labels(metric);
            if !matchers.iter().all(|m| m.matches(&labels)) {
                continue;
            }
            let mut merged: Option<sketches_ddsketch::DDSketch> = None;
            for l in windows.values().filter_map(|v| v.logs.as_ref()) {
                if let Some(s) = &l.latency {
                    match &mut merged {
                        Some(m) => {
                            let _ = m.merge(s);
                        }
                        None => merged = Some(s.clone()),
                    }
                }
            }
            let Some(sketch) = merged else { continue };
            let value = if q.is_nan() {
                f64::NAN
            } else if q < 0.0 {
                f64::NEG_INFINITY
            } else if q > 1.0 {
                f64::INFINITY
            } else {
                match sketch.quantile(q) {
                    Ok(Some(v)) => v,
                    _ => continue,
                }
            };
            out.push((labels, value));
        }
        out
    }
}

/// A store shared between the consumers (writers) and the rule evaluator (reader).
#[derive(Clone, Debug)]
pub struct SharedRollups(pub Arc<RwLock<RollupStore>>);

impl SeriesSource for SharedRollups {
    fn select(
        &self,
        metric: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Series> {
        match self.0.read() {
            Ok(s) => s.select(metric, matchers, start_ms, end_ms),
            Err(p) => p.into_inner().select(metric, matchers, start_ms, end_ms),
        }
    }

    fn quantile(
        &self,
        metric: &str,
        matchers: &[Matcher],
        q: f64,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(Labels, f64)> {
        match self.0.read() {
            Ok(s) => s.quantile(metric, matchers, q, start_ms, end_ms),
            Err(p) => p
                .into_inner()
                .quantile(metric, matchers, q, start_ms, end_ms),
        }
    }
}
