//! The series model shared by rollups (which store it) and alert rules (which read it).
//!
//! A *series* is a metric name plus a label set (`service`, `cluster`, …) and its samples
//! in time order. Rollups expose their windows through [`SeriesSource`]; the rule
//! evaluator asks it for the samples of a selector over a time range, as PromQL's range
//! vectors do (`error_rate{service="checkout"}[5m]`).

use std::collections::BTreeMap;

/// A label set: label name → value, sorted by name (so equal sets compare and hash equal).
pub type Labels = BTreeMap<String, String>;

/// One sample: the window's end time (Unix ms) and its value (unit given by the metric:
/// % for `*_utilization`, bytes for `*_bytes`, seconds for latencies, a plain count
/// otherwise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Unix time, milliseconds.
    pub ts_ms: i64,
    /// The value.
    pub value: f64,
}

/// A metric's samples for one label set, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Labels, including the metric name under `__name__` (Prometheus' convention).
    pub labels: Labels,
    /// Samples in time order.
    pub samples: Vec<Sample>,
}

/// How a label matcher compares, as in PromQL: `=`, `!=`, `=~`, `!~` (regexes anchored
/// at both ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

/// A label matcher of a selector, e.g. `service="checkout"`. A missing label matches as
/// the empty string (PromQL semantics).
#[derive(Clone, Debug)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// The value, or the regex source for `=~`/`!~`.
    pub value: String,
    /// Compiled `^(?:value)$` for the regex operators.
    pub regex: Option<regex::Regex>,
}

impl Matcher {
    /// Builds a matcher. Errors: an invalid regex for `=~`/`!~` (the regex error's text).
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether `labels` satisfies this matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// Read access to stored series, implemented by the rollup store (and by in-memory
/// fixtures in tests).
pub trait SeriesSource: Send + Sync {
    /// Every series named `metric` whose labels satisfy all `matchers`, with the samples
    /// whose `ts_ms` is in `(start_ms, end_ms]` (PromQL's range-vector interval). Series
    /// without samples in the range are left out.
    fn select(&self, metric: &str, matchers: &[Matcher], start_ms: i64, end_ms: i64)
        -> Vec<Series>;

    /// For latency metrics kept as mergeable sketches: per matching label set, the `q`
    /// quantile (0 ≤ q ≤ 1) of all observations in windows ending in `(start_ms, end_ms]`,
    /// merged. Metrics without sketches give an empty result.
    fn quantile(
        &self,
        metric: &str,
        matchers: &[Matcher],
        q: f64,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(Labels, f64)>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_follow_promql_semantics() {
        let labels: Labels = [("service".to_string(), "checkout".to_string())].into();
        assert!(Matcher::new("service", MatchOp::Equal, "checkout")
            .unwrap()
            .matches(&labels));
        assert!(Matcher::new("service", MatchOp::Regex, "check.*")
            .unwrap()
            .matches(&labels));
        assert!(!Matcher::new("service", MatchOp::Regex, "check")
            .unwrap()
            .matches(&labels));
        assert!(Matcher::new("cluster", MatchOp::Equal, "")
            .unwrap()
            .matches(&labels));
        assert!(Matcher::new("cluster", MatchOp::NotRegex, ".+")
            .unwrap()
            .matches(&labels));
        assert!(Matcher::new("x", MatchOp::Regex, "(").is_err());
    }
}
