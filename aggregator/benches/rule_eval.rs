//! Rule evaluation benchmark (issue 4): can the aggregator evaluate `--rules` (default
//! 1,000) alert rules over `--services` (default 500) services within one 10 s evaluation
//! interval? Everything on the path is the production code: a [`RollupStore`] opened on a
//! temp directory, filled through `apply_metrics` / `apply_logs`, shared as
//! [`SharedRollups`], read by a [`RuleManager`] that loaded real rule files.
//!
//! **The data.** `--services` services in 5 ECS clusters (`prod-a` … `prod-e`), `--tasks`
//! (default 2) containers each. Every 10 s each container sends one `docker_stats` batch as
//! the collector does (CPU %, CPU shares = 1024 units, memory used/limit, network and block
//! I/O counters, pids), and each service writes `--lines` (default 20) log lines: ~60 %
//! JSON access lines (`status`, `duration_ms`), errors at the service's error rate, a few
//! warnings, plain info lines, and for some services `OutOfMemoryError` lines (the pattern
//! `oom`, as in `deploy/aggregator.toml`). Most services are healthy; a few are hot on CPU
//! or memory, throw errors or 5xx, answer slowly, or lost a task 10 minutes ago, so rules
//! fire for some services and not for others. `--minutes` (default 30) of 10 s windows are
//! applied before the first round (lateness 5 min as deployed, so the newest 5 minutes are
//! open windows, computed on read).
//!
//! **The rules.** `--rules` alerting rules in `--groups` (default 20) groups of 10 s, over
//! 4 rule files in the Prometheus rule-file shape, with labels and annotation templates. The
//! mix cycles through 20 kinds: instant thresholds over all services
//! (`cpu_utilization > 88`), per-service matchers (`error_rate{service="svc-17"} > 0.05`),
//! cluster and regex matchers, `avg/max/min/sum_over_time` over 5–30 min,
//! `quantile_over_time` on the latency sketches, `rate`/`increase`, `and`/`or`, arithmetic
//! and `sum by (cluster)`; 60 % of the rules select every service. `for` is 0s, 30s, 1m or
//! 2m, so alerts go pending, then fire during the rounds.
//!
//! **A round.** The next 10 s window of stats and logs is applied (timed apart, as
//! "ingest"), the [`ManualClock`] moves 10 s so every group is due, and `evaluate_due()`
//! runs every group (persisting the alert state file after the round, as in production).
//! Per round: wall and CPU ms of `evaluate_due` (CPU of this thread, from
//! `/proc/thread-self/schedstat`), rules evaluated, selector calls and series/samples read
//! through the store (the store is wrapped in a counting [`SeriesSource`] that forwards to
//! `SharedRollups`), time spent inside the store, alert instances (firing / pending /
//! resolved from `status()`), and the verdict against the 10 s interval. The bench asserts
//! that every rule was evaluated without error and that alerts fire. At the end: the size
//! of the state file and the store reads of all rounds by kind
//! (`select error_count{service=}[300s]`: calls, ms, series), slowest first.
//!
//! ```text
//! cargo bench -p sightline-aggregator --bench rule_eval
//! cargo bench -p sightline-aggregator --bench rule_eval -- --services 500 --rules 1000 --rounds 10 --minutes 30
//! ```
//!
//! Experiments (not production behaviour; they say where the time goes):
//! - `--lateness-s S`: the store's lateness (default 300, as deployed); with 0 only the
//!   current window is open, so reads touch closed windows only.
//! - `--memo`: the bench's own per-round read cache, as measured before the rule manager
//!   got one (`rules::round_cache`, now always on). With it on the manager's cache sits
//!   in front of it, so it changes nothing; kept to reproduce the first measurements.
//!
//! The rollup stage's decode + apply cost is in `rollup_stage.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use sightline_aggregator::rollup::{
    KafkaPosition, LogPattern, RollupConfig, RollupStore, SharedRollups,
};
use sightline_aggregator::rules::{AlertState, ManualClock, RuleManager, RuleManagerConfig};
use sightline_aggregator::series::{Labels, MatchOp, Matcher, Series, SeriesSource};
use sightline_model::metric::names;
use sightline_model::{
    Container, EventId, Level, LogEvent, MetricBatch, MetricPoint, SourceKind, SourcePosition,
};

mod common;

use common::{arg, cpu_seconds};

/// 2024-05-01T00:00:00Z, a minute boundary.
const T0_MS: i64 = 1_714_521_600_000;
const WINDOW_MS: i64 = 10_000;
const CLUSTERS: [&str; 5] = ["prod-a", "prod-b", "prod-c", "prod-d", "prod-e"];
const GIB: f64 = 1_073_741_824.0;

/// SplitMix64: deterministic pseudo-random numbers from an index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform number in [0, 1) from `x`.
fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

/// CPU time of the calling thread, seconds (`/proc/thread-self/schedstat`, ns resolution);
/// the process's CPU time when that file is missing.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(cpu_seconds, |ns| ns / 1e9)
}

/// How one service behaves (fixed per service; most are healthy).
struct Profile {
    name: String,
    cluster: &'static str,
    cpu_pct: f64,
    mem_frac: f64,
    error_frac: f64,
    status_5xx_frac: f64,
    /// Upper bound of request durations, ms.
    slow_ms: u64,
    oom: bool,
    /// Window index after which the last task stops reporting (a lost task).
    task_lost_at: Option<i64>,
}

fn profile(i: usize, lost_at: i64) -> Profile {
    let h = i as u64;
    let hot_cpu = i % 37 == 5;
    let hot_mem = i % 41 == 7;
    let erroring = i % 29 == 3;
    let slow = i % 31 == 11;
    Profile {
        name: format!("svc-{i}"),
        cluster: CLUSTERS[i % CLUSTERS.len()],
        cpu_pct: if hot_cpu {
            86.0 + 10.0 * unit(h * 7 + 1)
        } else {
            8.0 + 55.0 * unit(h * 7 + 1)
        },
        mem_frac: if hot_mem {
            0.89 + 0.08 * unit(h * 7 + 2)
        } else {
            0.25 + 0.45 * unit(h * 7 + 2)
        },
        error_frac: if erroring {
            0.08 + 0.12 * unit(h * 7 + 3)
        } else {
            0.01 * unit(h * 7 + 3)
        },
        status_5xx_frac: if erroring {
            0.06 + 0.06 * unit(h * 7 + 4)
        } else {
            0.004 * unit(h * 7 + 4)
        },
        slow_ms: if slow {
            2_500
        } else {
            120 + (250.0 * unit(h * 7 + 5)) as u64
        },
        oom: i % 97 == 1,
        task_lost_at: (i % 53 == 13).then_some(lost_at),
    }
}

/// The fleet: per service its profile and its containers (one ECS task each).
struct Fleet {
    services: Vec<Profile>,
    containers: Vec<Vec<Arc<Container>>>,
    lines: usize,
}

impl Fleet {
    fn new(services: usize, tasks: usize, lines: usize, lost_at: i64) -> Self {
        let profiles: Vec<Profile> = (0..services).map(|i| profile(i, lost_at)).collect();
        let containers = profiles
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (0..tasks)
                    .map(|t| {
                        let task_id = format!("{:032x}", mix((i * 64 + t) as u64) as u128 * 7919);
                        let labels: BTreeMap<String, String> = [
                            (
                                "com.amazonaws.ecs.cluster",
                                format!("arn:aws:ecs:us-east-1:111122223333:cluster/{}", p.cluster),
                            ),
                            (
                                "com.amazonaws.ecs.task-arn",
                                format!(
                                    "arn:aws:ecs:us-east-1:111122223333:task/{}/{task_id}",
                                    p.cluster
                                ),
                            ),
                            ("com.amazonaws.ecs.task-definition-family", p.name.clone()),
                            ("com.amazonaws.ecs.task-definition-version", "42".into()),
                            ("com.amazonaws.ecs.container-name", "app".into()),
                        ]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect();
                        Arc::new(Container {
                            id: format!("{:016x}{:016x}{:032x}", mix(i as u64), mix(t as u64), 0),
                            name: format!("ecs-{}-42-app-{task_id}", p.name),
                            image: format!(
                                "111122223333.dkr.ecr.us-east-1.amazonaws.com/{}:42",
                                p.name
                            ),
                            labels,
                        })
                    })
                    .collect()
            })
            .collect();
        Fleet {
            services: profiles,
            containers,
            lines: lines.max(1),
        }
    }

    /// The stats batches and log events of 10 s window `w` (window start `T0 + w × 10 s`).
    fn window(&self, w: i64) -> (Vec<MetricBatch>, Vec<LogEvent>) {
        let start_ms = T0_MS + w * WINDOW_MS;
        let mut batches = Vec::new();
        let mut events = Vec::with_capacity(self.services.len() * self.lines);
        // Slow wave over time (10 min period) so range functions see varying data.
        let wave = |phase: f64| (std::f64::consts::TAU * (w as f64 / 60.0) + phase).sin();
        for (i, p) in self.services.iter().enumerate() {
            let conts = &self.containers[i];
            for (t, c) in conts.iter().enumerate() {
                let last_task = t + 1 == conts.len() && conts.len() > 1;
                if last_task && p.task_lost_at.is_some_and(|at| w >= at) {
                    continue;
                }
                let key = (i * 64 + t) as u64;
                let at_ms = start_ms + 500 + (mix(key) % 9_000) as i64;
                let noise = unit(key ^ ((w as u64) << 20)) - 0.5;
                let cpu = (p.cpu_pct + 6.0 * wave(i as f64) + 4.0 * noise).clamp(0.5, 100.0);
                let limit = GIB;
                let mem = (p.mem_frac + 0.02 * wave(i as f64 + 1.0)).clamp(0.05, 0.99) * limit;
                let elapsed = (w + 10_000) as f64;
                let rx = elapsed * (40_000.0 + 1_000.0 * (i % 50) as f64);
                batches.push(MetricBatch {
                    resource: LogEvent {
                        host: format!("ip-10-0-{}-{}", i % 16, t),
                        service: p.name.clone(),
                        source_kind: SourceKind::DockerStats,
                        container: Some(c.clone()),
                        ..Default::default()
                    },
                    resource_attributes: BTreeMap::new(),
                    time_ns: (at_ms * 1_000_000) as u64,
                    start_ns: ((T0_MS - 86_400_000) * 1_000_000) as u64,
                    points: vec![
                        MetricPoint::gauge(names::CPU_UTILIZATION, "%", cpu),
                        MetricPoint::sum(names::CPU_USAGE_TOTAL, "ns", elapsed * cpu * 1e8),
                        MetricPoint::gauge(names::CPU_SHARES, "1", 1024.0),
                        MetricPoint::gauge(names::MEMORY_USAGE_TOTAL, "By", mem),
                        MetricPoint::gauge(names::MEMORY_USAGE_LIMIT, "By", limit),
                        MetricPoint::gauge(names::MEMORY_PERCENT, "%", mem / limit * 100.0),
                        MetricPoint::sum(names::NETWORK_RX_BYTES, "By", rx),
                        MetricPoint::sum(names::NETWORK_TX_BYTES, "By", rx * 0.6),
                        MetricPoint::sum(names::BLOCKIO_READ_BYTES, "By", elapsed * 4096.0),
                        MetricPoint::sum(names::BLOCKIO_WRITE_BYTES, "By", elapsed * 8192.0),
                        MetricPoint::gauge(names::PIDS_COUNT, "{pids}", 23.0),
                    ],
                });
            }
            for k in 0..self.lines {
                let seq = (w as u64) * 1_000_000 + k as u64;
                let x = mix(((i as u64) << 40) ^ seq);
                let r = unit(x);
                let c = &conts[k % conts.len()];
                let ts_ms = start_ms + (k as i64 * WINDOW_MS) / self.lines as i64 + (x % 97) as i64;
                let (level, message) = if p.oom && k == 0 {
                    (
                        Level::Error,
                        "ERROR java.lang.OutOfMemoryError: Java heap space at com.example.orders.BatchWriter.flush(BatchWriter.java:88)".to_string(),
                    )
                } else if r < p.error_frac {
                    (
                        Level::Error,
                        format!(
                            "ERROR request {} failed: upstream {} timed out after 3000 ms",
                            x % 1_000_000,
                            CLUSTERS[(x % 5) as usize]
                        ),
                    )
                } else if r < p.error_frac + 0.03 {
                    (
                        Level::Warn,
                        format!(
                            "WARN retrying call to inventory (attempt {}) for order {}",
                            x % 3 + 1,
                            x % 100_000
                        ),
                    )
                } else if r < 0.65 {
                    let status = if unit(x ^ 0xABCD) < p.status_5xx_frac {
                        503
                    } else if x.is_multiple_of(23) {
                        404
                    } else {
                        200
                    };
                    (
                        Level::Info,
                        format!(
                            r#"{{"ts":"2024-05-01T00:00:00Z","level":"info","msg":"handled request","method":"GET","path":"/api/orders/{}","status":{status},"duration_ms":{},"correlation_id":"req-{:012x}"}}"#,
                            x % 10_000,
                            1 + (x >> 20) % p.slow_ms,
                            x >> 16
                        ),
                    )
                } else {
                    (
                        Level::Info,
                        format!("INFO order {} processed for customer {} in region us-east-1, items={} total=42.50", x % 1_000_000, x % 77_777, x % 9 + 1),
                    )
                };
                events.push(LogEvent {
                    event_id: EventId::derive(key_of(i, k % conts.len()), seq),
                    timestamp_ns: (ts_ms * 1_000_000) as u64,
                    observed_ns: (ts_ms * 1_000_000 + 150_000_000) as u64,
                    host: format!("ip-10-0-{}-{}", i % 16, k % conts.len()),
                    source_kind: SourceKind::DockerJsonFile,
                    position: SourcePosition {
                        source_id: key_of(i, k % conts.len()),
                        offset: seq * 200,
                    },
                    container: Some(c.clone()),
                    service: p.name.clone(),
                    stream: "stdout".into(),
                    level: Some(level),
                    message,
                    ..Default::default()
                });
            }
        }
        (batches, events)
    }
}

fn key_of(service: usize, task: usize) -> u64 {
    (service * 64 + task) as u64 + 1
}

/// Time and calls per kind of store read: `select cpu_utilization{service=}[5m]`.
type Breakdown = BTreeMap<String, (u64, u64, u64)>;

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
struct Metered {
    inner: SharedRollups,
    calls: AtomicU64,
    series: AtomicU64,
    samples: AtomicU64,
    nanos: AtomicU64,
    breakdown: Mutex<Breakdown>,
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
    fn new(inner: SharedRollups, memo: bool) -> Self {
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
    fn take(&self) -> (u64, u64, u64, f64) {
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

/// Rule `k`'s expression and `for` (kind `k % 20`; see the module docs).
fn rule_expr(k: usize, services: usize) -> (&'static str, String) {
    let s = (k * 7 + k / 20) % services;
    let v = (k / 20) % 10;
    let cluster = CLUSTERS[k % CLUSTERS.len()];
    match k % 20 {
        0 => ("HighCpu", format!("cpu_utilization > {}", 85 + v)),
        1 => ("HighMemory", format!("memory_utilization > {}", 86 + v)),
        2 => (
            "ServiceErrors",
            format!("error_rate{{service=\"svc-{s}\"}} > 0.05"),
        ),
        3 => (
            "SustainedCpu",
            format!("avg_over_time(cpu_utilization[5m]) > {}", 82 + v),
        ),
        4 => (
            "ErrorRate5m",
            format!("avg_over_time(error_rate[5m]) > 0.0{}", 5 + v % 5),
        ),
        5 => (
            "SlowP99",
            format!(
                "quantile_over_time(0.99, request_latency_seconds[5m]) > {}",
                1.0 + v as f64 * 0.1
            ),
        ),
        6 => (
            "ServiceSlowP95",
            format!(
                "quantile_over_time(0.95, request_latency_seconds{{service=\"svc-{s}\"}}[5m]) > 0.3"
            ),
        ),
        7 => (
            "CpuAndMemory",
            format!(
                "cpu_utilization > {} and memory_utilization > {}",
                70 + v,
                75 + v
            ),
        ),
        8 => (
            "ErrorsOr5xx",
            format!("error_rate > 0.1 or http_5xx_rate > 0.0{}", 5 + v % 5),
        ),
        9 => (
            "MemoryGiB",
            format!("memory_utilized / 1073741824 > {}", 1.7 + v as f64 * 0.02),
        ),
        10 => (
            "TaskLost",
            "max_over_time(running_task_count[15m]) - running_task_count > 0".to_string(),
        ),
        11 => (
            "ErrorLinesRate",
            format!(
                "rate(log_lines{{level=\"error\", cluster=\"{cluster}\"}}[5m]) > 0.0{}",
                1 + v % 9
            ),
        ),
        12 => (
            "OutOfMemory",
            "log_pattern_count{pattern=\"oom\"} > 0".to_string(),
        ),
        13 => (
            "ClusterCpu",
            format!("sum by (cluster) (cpu_utilized) / 1024 > {}", 60 + v * 5),
        ),
        14 => (
            "ServiceErrorBurst",
            format!("sum_over_time(error_count{{service=\"svc-{s}\"}}[5m]) > 10"),
        ),
        15 => (
            "ClusterMemory15m",
            format!("avg_over_time(memory_utilization{{cluster=\"{cluster}\"}}[15m]) > 85"),
        ),
        16 => (
            "Http5xxRegex",
            format!("http_5xx_rate{{service=~\"svc-{}.*\"}} > 0.02", 1 + v % 9),
        ),
        17 => (
            "Availability",
            format!(
                "(1 - avg_over_time(http_5xx_rate[5m])) * 100 < {}",
                99.0 - v as f64 * 0.2
            ),
        ),
        18 => (
            "CpuPeak30m",
            format!("max_over_time(cpu_utilization[30m]) > {}", 97 + v % 3),
        ),
        _ => (
            "ErrorCountIncrease",
            format!("increase(error_count{{service=\"svc-{s}\"}}[10m]) > 5"),
        ),
    }
}

/// Writes the rule files: `rules` rules in (about) `groups` groups over 4 files. Returns the
/// paths and the number of groups written.
fn write_rule_files(
    dir: &Path,
    rules: usize,
    groups: usize,
    services: usize,
) -> (Vec<PathBuf>, usize) {
    let per_group = rules.div_ceil(groups.max(1)).max(1);
    let groups = rules.div_ceil(per_group);
    let files = 4.min(groups);
    let mut texts = vec![String::from("groups:\n"); files];
    for g in 0..groups {
        let text = &mut texts[g % files];
        text.push_str(&format!("  - name: team-{g}\n    rules:\n"));
        for k in g * per_group..((g + 1) * per_group).min(rules) {
            let (name, expr) = rule_expr(k, services);
            let for_ = ["0s", "30s", "1m", "2m"][k % 4];
            let severity = if k % 3 == 0 { "page" } else { "ticket" };
            text.push_str(&format!(
                "      - alert: {name}{k}\n        expr: '{expr}'\n        for: {for_}\n        labels:\n          severity: {severity}\n          team: \"{{{{ $labels.cluster }}}}-oncall\"\n        annotations:\n          summary: \"{{{{ $labels.service }}}} in {{{{ $labels.cluster }}}}: {name} at {{{{ $value | humanize }}}}\"\n          runbook_url: https://runbooks.example/{name}\n"
            ));
        }
    }
    let paths = texts
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let p = dir.join(format!("team-rules-{i}.yml"));
            std::fs::write(&p, t).expect("write rule file");
            p
        })
        .collect();
    (paths, groups)
}

fn apply_window(store: &SharedRollups, fleet: &Fleet, w: i64) -> usize {
    let (batches, events) = fleet.window(w);
    let mut s = store.0.write().unwrap_or_else(|p| p.into_inner());
    let pos = |topic: &str, offset: i64| KafkaPosition {
        topic: topic.into(),
        partition: 0,
        offset,
    };
    s.apply_metrics(&batches, Some(&pos("sightline.metrics", w)));
    for (k, chunk) in events.chunks(2_000).enumerate() {
        s.apply_logs(chunk, Some(&pos("sightline.logs", w * 1_000 + k as i64)));
    }
    batches.len() + events.len()
}

fn rule_eval() {
    let services = arg("--services", 500);
    let rules = arg("--rules", 1_000);
    let groups = arg("--groups", 20);
    let rounds = arg("--rounds", 10);
    let tasks = arg("--tasks", 2).max(1);
    let lines = arg("--lines", 20);
    let minutes = arg("--minutes", 30).max(1) as i64;
    let lateness_s = arg("--lateness-s", 300) as i64;
    let fill_windows = minutes * 6;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = RollupConfig {
        lateness: lateness_s * 1_000,
        patterns: vec![LogPattern {
            name: "oom".into(),
            regex: "OutOfMemoryError|OOMKilled".into(),
        }],
        ..Default::default()
    };
    let store = SharedRollups(Arc::new(RwLock::new(
        RollupStore::open(&dir.path().join("rollups"), cfg).expect("open rollup store"),
    )));
    let fleet = Fleet::new(services, tasks, lines, fill_windows - 60);

    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let mut applied = 0;
    for w in 0..fill_windows {
        applied += apply_window(&store, &fleet, w);
    }
    let (fill_wall, fill_cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    {
        let s = store.0.read().unwrap_or_else(|p| p.into_inner());
        println!(
            "rule_eval: {services} services × {tasks} tasks, {lines} log lines per service per 10 s, {minutes} min of 10 s windows (lateness {lateness_s} s){}",
            if std::env::args().any(|a| a == "--memo") {
                "; --memo: EXPERIMENT, each distinct read once per round"
            } else {
                ""
            }
        );
        println!(
            "  fill: {applied} stats batches + log events in {fill_wall:.2} s wall, {fill_cpu:.2} s CPU (data generation included); counters {:?}",
            s.counters()
        );
        assert_eq!(s.counters().late_events, 0, "fill must not be late");
    }

    let (files, groups_loaded) = write_rule_files(dir.path(), rules, groups, services);
    let toml_cfg = format!(
        "rule_files = [{}]\nevaluation_interval_ms = \"10s\"\nlookback_ms = \"1m\"\nexternal_url = \"https://sightline.example\"\nstate_file = {:?}\n",
        files
            .iter()
            .map(|f| format!("{:?}", f.display().to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        dir.path().join("alerts").join("state.json").display().to_string()
    );
    std::fs::create_dir_all(dir.path().join("alerts")).expect("alerts dir");
    let config: RuleManagerConfig = toml::from_str(&toml_cfg).expect("rules config");
    let memo = std::env::args().any(|a| a == "--memo");
    let metered = Arc::new(Metered::new(store.clone(), memo));
    let source: Arc<dyn SeriesSource> = metered.clone();
    let start_ms = T0_MS + fill_windows * WINDOW_MS;
    let clock = Arc::new(ManualClock::new(start_ms));
    let load = Instant::now();
    let mut manager = RuleManager::new(config, source, clock.clone()).expect("load rule files");
    let load_s = load.elapsed().as_secs_f64();
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    println!(
        "  rules: {rules} in {groups_loaded} groups over {} files ({:.0} KiB), loaded in {:.0} ms",
        files.len(),
        bytes as f64 / 1024.0,
        load_s * 1e3
    );
    println!(
        "  round  ingest_ms  eval_wall_ms  eval_cpu_ms  rules  selects  series_read  samples_read  in_store_ms  firing  pending  resolved  to_send  verdict"
    );
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut last_firing = 0;
    for r in 0..rounds {
        // The consumers apply the next 10 s of stats and logs; the clock reaches its end.
        let w = fill_windows + r as i64;
        let ingest = Instant::now();
        apply_window(&store, &fleet, w);
        let ingest_ms = ingest.elapsed().as_secs_f64() * 1e3;
        let now = T0_MS + (w + 1) * WINDOW_MS;
        clock.set(now);
        metered.take();
        let (wall, cpu) = (Instant::now(), thread_cpu_seconds());
        let sent = manager.evaluate_due();
        let (wall_ms, cpu_ms) = (
            wall.elapsed().as_secs_f64() * 1e3,
            (thread_cpu_seconds() - cpu) * 1e3,
        );
        let (selects, series, samples, in_store_ms) = metered.take();
        let status = manager.status();
        let evaluated = status
            .iter()
            .filter(|s| s.last_evaluation_ms == Some(now))
            .count();
        let errors: Vec<_> = status
            .iter()
            .filter_map(|s| s.last_error.as_ref().map(|e| (&s.alert, e)))
            .collect();
        assert!(
            errors.is_empty(),
            "rules failed: {:?}",
            &errors[..errors.len().min(5)]
        );
        assert_eq!(evaluated, rules, "every rule is due every round");
        assert_eq!(sent.len(), groups_loaded, "every group is due every round");
        let count = |st: AlertState| -> usize {
            status
                .iter()
                .map(|s| s.alerts.iter().filter(|a| a.state == st).count())
                .sum()
        };
        let (firing, pending, resolved) = (
            count(AlertState::Firing),
            count(AlertState::Pending),
            count(AlertState::Inactive),
        );
        let to_send: usize = sent.iter().map(Vec::len).sum();
        let verdict = if wall_ms <= 10_000.0 {
            format!("ok ({:.1} % of 10 s)", wall_ms / 100.0)
        } else {
            format!("OVER ({:.1}× the 10 s interval)", wall_ms / 10_000.0)
        };
        println!(
            "  {r:>5}  {ingest_ms:>9.1}  {wall_ms:>12.1}  {cpu_ms:>11.1}  {evaluated:>5}  {selects:>7}  {series:>11}  {samples:>12}  {in_store_ms:>11.1}  {firing:>6}  {pending:>7}  {resolved:>8}  {to_send:>7}  {verdict}"
        );
        walls.push(wall_ms);
        cpus.push(cpu_ms);
        last_firing = firing;
    }
    assert!(
        last_firing > 0,
        "no alert fired: the bench would prove nothing"
    );
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2], v[v.len() - 1])
    };
    let (wmin, wmed, wmax) = stats(&mut walls);
    let (cmin, cmed, cmax) = stats(&mut cpus);
    println!(
        "  evaluate_due over {rounds} rounds: wall min {wmin:.0} / median {wmed:.0} / max {wmax:.0} ms; CPU min {cmin:.0} / median {cmed:.0} / max {cmax:.0} ms"
    );
    println!(
        "  verdict: {rules} rules over {services} services {} the 10 s interval (max round {:.1} % of it; {:.1} % of one core at one round per 10 s)",
        if wmax <= 10_000.0 { "fit in" } else { "do NOT fit in" },
        wmax / 100.0,
        cmed / 100.0
    );
    let state =
        std::fs::metadata(dir.path().join("alerts").join("state.json")).map_or(0, |m| m.len());
    println!(
        "  alert state file after the last round: {:.1} MB (written and fsynced by every evaluate_due)",
        state as f64 / 1e6
    );
    let b = metered
        .breakdown
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let total: u64 = b.values().map(|v| v.1).sum();
    let mut rows: Vec<_> = b.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1 .1));
    println!(
        "  store reads over all rounds by kind (top 12 of {} by time):",
        rows.len()
    );
    println!(
        "    {:>7}  {:>9}  {:>8}  {:>6}  {:>9}  read",
        "calls", "ms", "ms/call", "share", "series"
    );
    for (k, (calls, nanos, series)) in rows.iter().take(12) {
        println!(
            "    {calls:>7}  {:>9.0}  {:>8.1}  {:>5.1}%  {series:>9}  {k}",
            *nanos as f64 / 1e6,
            *nanos as f64 / 1e6 / *calls as f64,
            *nanos as f64 * 100.0 / total.max(1) as f64
        );
    }
}

fn main() {
    rule_eval();
}
