//! Log events → per-service log aggregates of the open 10 s windows.
//!
//! Per event: its level count (`unknown` when the collector detected none), the patterns
//! its message matches (one `RegexSet` pass), and, for access-log lines, the request
//! ([`super::access_log`]). Each open window remembers the `event_id`s it applied (64 low
//! bits of the 128-bit ID, in a hash set) so a replayed event is recognised; a duplicate
//! has the same timestamp, hence the same window.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use regex::RegexSet;
use sightline_model::{Level, LogEvent};

use super::access_log::AccessLogParser;
use super::config::RollupConfig;
use super::window::{sketch_config, LogAgg};
use sketches_ddsketch::Config as SketchConfig;

/// Hasher for event IDs, which are already uniformly distributed (XXH3-128): passes the
/// 64-bit value through.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A set of event IDs (low 64 bits).
pub type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;

/// The log aggregate of an open window, with its pattern counts by index and its applied
/// event IDs.
#[derive(Clone, Debug, Default)]
pub struct OpenLogs {
    /// Counts and sketch (patterns empty until closed).
    pub agg: LogAgg,
    /// Matches per configured pattern, in config order.
    pub pattern_counts: Vec<u64>,
    /// Applied event IDs.
    pub ids: IdSet,
}

impl OpenLogs {
    /// The aggregate with pattern counts under their names (every configured pattern,
    /// 0 included).
    pub fn to_agg(&self, pattern_names: &[String]) -> LogAgg {
        let mut a = self.agg.clone();
        a.patterns = pattern_names
            .iter()
            .zip(self.pattern_counts.iter().chain(std::iter::repeat(&0)))
            .map(|(n, c)| (n.clone(), *c))
            .collect();
        a
    }
}

/// Classifies log events; built once from the config.
#[derive(Clone, Debug)]
pub struct LogClassifier {
    patterns: Option<RegexSet>,
    /// Pattern names, in config order.
    pub pattern_names: Vec<String>,
    access: AccessLogParser,
    sketch: SketchConfig,
}

impl LogClassifier {
    /// Builds the classifier. Errors: an invalid pattern regex (which `validate` rejects
    /// first).
    pub fn new(cfg: &RollupConfig) -> Result<Self, regex::Error> {
        let patterns = if cfg.patterns.is_empty() {
            None
        } else {
            Some(RegexSet::new(cfg.patterns.iter().map(|p| &p.regex))?)
        };
        Ok(LogClassifier {
            patterns,
            pattern_names: cfg.patterns.iter().map(|p| p.name.clone()).collect(),
            access: AccessLogParser::new(&cfg.access_log),
            sketch: sketch_config(cfg.sketch_relative_accuracy),
        })
    }

    /// Adds `ev` to `w` unless its ID is already there. Returns false for a duplicate.
    pub fn apply(&self, ev: &LogEvent, w: &mut OpenLogs) -> bool {
        if !w.ids.insert(ev.event_id.0 as u64) {
            return false;
        }
        let level = match ev.level {
            Some(Level::Trace) => 0,
            Some(Level::Debug) => 1,
            Some(Level::Info) => 2,
            Some(Level::Warn) => 3,
            Some(Level::Error) => 4,
            Some(Level::Fatal) => 5,
            None => 6,
        };
        w.agg.lines[level] += 1;
        if let Some(set) = &self.patterns {
            let hits = set.matches(&ev.message);
            if hits.matched_any() {
                if w.pattern_counts.len() < self.pattern_names.len() {
                    w.pattern_counts.resize(self.pattern_names.len(), 0);
                }
                for i in hits.iter() {
                    w.pattern_counts[i] += 1;
                }
            }
        }
        if let Some(a) = self.access.parse(&ev.message) {
            w.agg.add_request(a.status, a.seconds, self.sketch);
        }
        true
    }
}
