//! [`RoundCache`]: the series reads of one evaluation round, each done once.
//!
//! Every group due at one timestamp is evaluated at that timestamp, so rules that read the
//! same metric over the same range (`cpu_utilization > 88` and `cpu_utilization{service=
//! "x"} > 95`, or `avg_over_time(error_rate[5m])` in several rules) ask the store for the
//! same windows. The rollup store's cost of a read hardly depends on the matchers (it
//! builds every key's windows, the open ones computed on read), so the cache reads each
//! distinct `(metric, range)` once without matchers and applies each caller's matchers to
//! that result; a read with matchers gives exactly the series it would have got from the
//! store (matchers only filter whole series). BENCHMARKS.md, "Rollups and rule
//! evaluation": 1,000 rules × 500 services went from 82–100 CPU-seconds per round to
//! about 2.5.
//!
//! The cache lives for one [`RuleManager::evaluate_due`](super::RuleManager::evaluate_due)
//! call, so it never serves data older than the round.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::series::{Labels, Matcher, Series, SeriesSource};

type SelectKey = (String, i64, i64);
type QuantileKey = (String, u64, i64, i64);
/// Per label set, a quantile.
type Quantiles = Vec<(Labels, f64)>;

/// A [`SeriesSource`] over another that reads each distinct `(metric, range)` once.
pub struct RoundCache<'a> {
    inner: &'a dyn SeriesSource,
    selects: Mutex<HashMap<SelectKey, Arc<Vec<Series>>>>,
    quantiles: Mutex<HashMap<QuantileKey, Arc<Quantiles>>>,
}

impl<'a> RoundCache<'a> {
    /// An empty cache over `inner`.
    pub fn new(inner: &'a dyn SeriesSource) -> Self {
        RoundCache {
            inner,
            selects: Mutex::new(HashMap::new()),
            quantiles: Mutex::new(HashMap::new()),
        }
    }
}

fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// The cached value of `key`, read (outside the lock) on a miss.
fn get_or_read<K: Eq + std::hash::Hash, V>(
    map: &Mutex<HashMap<K, Arc<V>>>,
    key: K,
    read: impl FnOnce() -> V,
) -> Arc<V> {
    let lock = || map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = lock().get(&key) {
        return v.clone();
    }
    let v = Arc::new(read());
    lock().insert(key, v.clone());
    v
}

impl SeriesSource for RoundCache<'_> {
    fn select(
        &self,
        metric: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Series> {
        let key = (metric.to_string(), start_ms, end_ms);
        let all = get_or_read(&self.selects, key, || {
            self.inner.select(metric, &[], start_ms, end_ms)
        });
        all.iter()
            .filter(|s| matches_all(matchers, &s.labels))
            .cloned()
            .collect()
    }

    fn quantile(
        &self,
        metric: &str,
        matchers: &[Matcher],
        q: f64,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(Labels, f64)> {
        let key = (metric.to_string(), q.to_bits(), start_ms, end_ms);
        let all = get_or_read(&self.quantiles, key, || {
            self.inner.quantile(metric, &[], q, start_ms, end_ms)
        });
        all.iter()
            .filter(|(l, _)| matches_all(matchers, l))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::rules::tests::MemorySource;
    use crate::series::MatchOp;

    /// Counts the reads that reach the store.
    struct Counting(MemorySource, AtomicUsize);
    impl SeriesSource for Counting {
        fn select(&self, m: &str, ms: &[Matcher], s: i64, e: i64) -> Vec<Series> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.select(m, ms, s, e)
        }
        fn quantile(&self, m: &str, ms: &[Matcher], q: f64, s: i64, e: i64) -> Vec<(Labels, f64)> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.quantile(m, ms, q, s, e)
        }
    }

    #[test]
    fn same_series_as_the_store_with_one_read_per_metric_and_range() {
        let store = Counting(MemorySource::default(), AtomicUsize::new(0));
        for (svc, v) in [("checkout", 91.0), ("cart", 40.0), ("search", 97.0)] {
            store.0.add(
                "cpu_utilization",
                &[("service", svc)],
                &[(10_000, v), (20_000, v + 1.0)],
            );
        }
        store
            .0
            .add("error_rate", &[("service", "cart")], &[(20_000, 0.2)]);
        let cache = RoundCache::new(&store);
        let eq = |v: &str| vec![Matcher::new("service", MatchOp::Equal, v).unwrap()];
        let re = vec![Matcher::new("service", MatchOp::Regex, "c.*").unwrap()];
        for matchers in [vec![], eq("cart"), eq("nope"), re] {
            for (s, e) in [(0, 20_000), (10_000, 20_000)] {
                let mut direct = store.0.select("cpu_utilization", &matchers, s, e);
                let mut cached = cache.select("cpu_utilization", &matchers, s, e);
                direct.sort_by(|a, b| a.labels.cmp(&b.labels));
                cached.sort_by(|a, b| a.labels.cmp(&b.labels));
                assert_eq!(cached, direct, "{matchers:?} ({s}, {e}]");
            }
        }
        assert_eq!(cache.select("error_rate", &eq("cart"), 0, 20_000).len(), 1);
        // Two ranges of cpu_utilization and one of error_rate reached the store.
        assert_eq!(store.1.load(Ordering::Relaxed), 3);
    }
}
