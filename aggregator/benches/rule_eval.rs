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

use std::sync::{Arc, RwLock};
use std::time::Instant;

use sightline_aggregator::rollup::{
    KafkaPosition, LogPattern, RollupConfig, RollupStore, SharedRollups,
};
use sightline_aggregator::rules::{AlertState, ManualClock, RuleManager, RuleManagerConfig};
use sightline_aggregator::series::SeriesSource;

mod common;
#[path = "rule_eval/data.rs"]
mod data;
#[path = "rule_eval/metered.rs"]
mod metered;
#[path = "rule_eval/rules.rs"]
mod rules;

use common::{arg, cpu_seconds};
use data::{Fleet, T0_MS, WINDOW_MS};
use metered::Metered;
use rules::write_rule_files;

/// CPU time of the calling thread, seconds (`/proc/thread-self/schedstat`, ns resolution);
/// the process's CPU time when that file is missing.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(cpu_seconds, |ns| ns / 1e9)
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
