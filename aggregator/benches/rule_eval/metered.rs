//! `rule_eval`'s counting [`SeriesSource`]: what the rule manager reads from the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sightline_aggregator::rollup::SharedRollups;
use sightline_aggregator::series::{Labels, MatchOp, Matcher, Series, SeriesSource};

/// Time and calls per kind of store read: `select cpu_utilization{service=}[5m]`.
pub type Breakdown = BTreeMap<String, (u64, u64, u64)>;

/// A `select` result or a `quantile` result, kept for the rest of a round (`--memo`).
enum Memo {
    Select(Vec<Series>),
    Quantile(Vec<(Labels, f64)>),
}

/// The rule manager's only source: forwards to the real `SharedRollups` and counts calls,
/// series, samples and time spent inside the store, per kind of read. With `--memo`
/// (an experiment, not production behaviour) each distinct (metric, q, range) is read
/// from the store once per round without matchers and the matchers are applied here:
/// what the evaluation would cost if the store computed each read once per round.
pub struct Metered {
    inner: SharedRollups,
    calls: AtomicU64,
    series: AtomicU64,
    samples: AtomicU64,
    nanos: AtomicU64,
    pub breakdown: Mutex<Breakdown>,
    memo: Option<Mutex<HashMap<MemoKey, Arc<Memo>>>>,
}

/// (metric, quantile bits or 0, start, end) of a read.
type MemoKey = (String, u64, i64, i64);

/// `select cpu_utilization{service=}[300s]`: the kind of a read, for the breakdown.
fn read_kind(op: &str, metric: &str, matchers: &[Matcher], range_ms: i64) -> String {
    let m: Vec<String> = matchers
        .iter()
        .map(|m| {
            let op = match m.op {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
                MatchOp::Regex => "=~",
                MatchOp::NotRegex => "!~",
            };
            format!("{}{op}", m.name)
        })
        .collect();
    format!("{op} {metric}{{{}}}[{}s]", m.join(","), range_ms / 1000)
}

impl Metered {
    pub fn new(inner: SharedRollups, memo: bool) -> Self {
        Metered {
            inner,
            calls: AtomicU64::new(0),
            series: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            breakdown: Mutex::new(BTreeMap::new()),
            memo: memo.then(|| Mutex::new(HashMap::new())),
        }
    }

    /// Counters since the last call (calls, series, samples, ms in the store); empties
    /// the memo.
    pub fn take(&self) -> (u64, u64, u64, f64) {
        if let Some(m) = &self.memo {
            m.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        (
            self.calls.swap(0, Ordering::Relaxed),
            self.series.swap(0, Ordering::Relaxed),
            self.samples.swap(0, Ordering::Relaxed),
            self.nanos.swap(0, Ordering::Relaxed) as f64 / 1e6,
        )
    }

    /// Records a read that started at `t` (its kind is formatted after the clock stops).
    fn note(&self, t: Instant, n: usize, samples: usize, kind: impl FnOnce() -> String) {
        let nanos = t.elapsed().as_nanos() as u64;
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.series.fetch_add(n as u64, Ordering::Relaxed);
        self.samples.fetch_add(samples as u64, Ordering::Relaxed);
        let mut b = self.breakdown.lock().unwrap_or_else(|p| p.into_inner());
        let e = b.entry(kind()).or_default();
        e.0 += 1;
        e.1 += nanos;
        e.2 += n as u64;
    }

    /// The memoized unfiltered result of a read (computed by `f` on a miss).
    fn memo(&self, key: (String, u64, i64, i64), f: impl FnOnce() -> Memo) -> Option<Arc<Memo>> {
        let memo = self.memo.as_ref()?;
        if let Some(m) = memo.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Some(m.clone());
        }
        let m = Arc::new(f());
        memo.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, m.clone());
        Some(m)
    }
}

impl SeriesSource for Metered {
    fn select(
        &self,
        metric: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Series> {
        let t = Instant::now();
        let memo = self.memo((metric.to_string(), 0, start_ms, end_ms), || {
            Memo::Select(self.inner.select(metric, &[], start_ms, end_ms))
        });
        let out = match memo.as_deref() {
            Some(Memo::Select(all)) => all
                .iter()
                .filter(|s| matchers.iter().all(|m| m.matches(&s.labels)))
                .cloned()
                .collect(),
            _ => self.inner.select(metric, matchers, start_ms, end_ms),
        };
        let samples = out.iter().map(|s| s.samples.len()).sum();
        self.note(t, out.len(), samples, || {
            read_kind("select", metric, matchers, end_ms - start_ms)
        });
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
        let t = Instant::now();
        let memo = self.memo((metric.to_string(), q.to_bits(), start_ms, end_ms), || {
            Memo::Quantile(self.inner.quantile(metric, &[], q, start_ms, end_ms))
        });
        let out: Vec<(Labels, f64)> = match memo.as_deref() {
            Some(Memo::Quantile(all)) => all
                .iter()
                .filter(|(l, _)| matchers.iter().all(|m| m.matches(l)))
                .cloned()
                .collect(),
            _ => self.inner.quantile(metric, matchers, q, start_ms, end_ms),
        };
        self.note(t, out.len(), 0, || {
            read_kind("quantile", metric, matchers, end_ms - start_ms)
        });
        out
    }
}
