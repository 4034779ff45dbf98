//! CPU cost of container stats collection: the collector pipeline with the Docker engine's
//! events and stats on, against `--containers` idle containers, for `--seconds`, with stats
//! every `--interval-ms`; then the same with stats off. Reports this process's CPU time
//! (user + system, /proc/self/stat) for both, and the difference per container-sample.
//!
//! ```text
//! cargo bench -p sightline-collector --bench stats_cost -- --containers 50 --seconds 60 --interval-ms 3000
//! ```
//! Needs a Docker engine and an image with `/bin/sh` (`--image`, default
//! `sightline-testbox:e2e`, which the end-to-end tests build from Debian's busybox-static).
//! Without `--brokers`, librdkafka's in-process mock cluster is used (its CPU is counted).
//! The engine's own CPU for answering the stats calls is not in these figures.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use sightline_collector::config::CollectorConfig;
use sightline_collector::stats::Stats;

use common::{arg, cpu_seconds};

/// Runs the pipeline for `seconds`; returns (CPU seconds, metric points read, samples taken).
fn measure(brokers: &str, stats_on: bool, interval_ms: u64, seconds: u64) -> (f64, u64, u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = CollectorConfig::default();
    cfg.docker.containers_dir = root.path().to_path_buf();
    cfg.data_dir = data.path().to_path_buf();
    cfg.kafka.brokers = brokers.to_string();
    cfg.kafka.topic = format!("stats-cost-{stats_on}");
    cfg.host = Some("bench".into());
    cfg.docker_engine.enabled = Some(true);
    cfg.docker_engine.stats.enabled = stats_on;
    cfg.docker_engine.stats.interval_ms = interval_ms;
    cfg.validate().unwrap();
    let stats = Arc::new(Stats::default());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let s = stats.clone();
    rt.block_on(async move {
        let h = tokio::spawn(sightline_collector::run(cfg, s.clone(), rx));
        // Warm-up: connected, first (two-cycle) samples taken.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (c0, s0) = (cpu_seconds(), s.snapshot());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (c1, s1) = (cpu_seconds(), s.snapshot());
        let _ = tx.send(true);
        let _ = h.await;
        (
            c1 - c0,
            s1.metrics_read - s0.metrics_read,
            s1.metric_samples - s0.metric_samples,
        )
    })
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let n: usize = arg("--containers")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(60);
    let interval_ms: u64 = arg("--interval-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let image = arg("--image").unwrap_or_else(|| "sightline-testbox:e2e".into());
    let cluster = arg("--brokers")
        .is_none()
        .then(|| MockCluster::new(1).unwrap());
    let brokers = arg("--brokers").unwrap_or_else(|| cluster.as_ref().unwrap().bootstrap_servers());

    let prefix = format!("stats-cost-{}", std::process::id());
    let mut ids = Vec::new();
    for i in 0..n {
        let out = Command::new("docker")
            .args(["run", "-d", "--name", &format!("{prefix}-{i}"), &image])
            .arg("while :; do sleep 1; done")
            .output()
            .expect("docker");
        assert!(out.status.success(), "docker run: {out:?}");
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    eprintln!(
        "{n} idle containers running; measuring {seconds} s with stats every {interval_ms} ms"
    );
    let (cpu_on, points, samples) = measure(&brokers, true, interval_ms, seconds);
    let (cpu_off, _, _) = measure(&brokers, false, interval_ms, seconds);
    for id in &ids {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
    let per_sample_ms = (cpu_on - cpu_off).max(0.0) / samples.max(1) as f64 * 1000.0;
    println!("stats_cost: containers={n} interval={interval_ms}ms window={seconds}s");
    println!(
        "  CPU with stats  {cpu_on:.2} s ({:.2} % of one core)",
        cpu_on / seconds as f64 * 100.0
    );
    println!(
        "  CPU without     {cpu_off:.2} s ({:.2} % of one core)",
        cpu_off / seconds as f64 * 100.0
    );
    println!("  samples         {samples} (container × round), {points} metric points");
    println!("  cost per container sample  {per_sample_ms:.3} ms CPU");
    println!(
        "  at the default 10 s interval: {:.3} % of one core for {n} containers",
        per_sample_ms * n as f64 / 10_000.0 * 100.0
    );
}
