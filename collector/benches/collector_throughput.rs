//! Collector throughput: Docker json-file logs → collector → Kafka, end to end.
//!
//! Writes `--mb` MiB of json-file logs (a mix of JSON app lines with correlation IDs, text
//! lines with `x-correlation-id=`, and plain lines; ~200 B of text per line) for
//! `--containers` containers into a temporary containers directory, then runs the collector
//! pipeline until Kafka has acknowledged every event. Reports MB/s of json-file input and
//! CPU-seconds per GB (user + system of this process, from /proc/self/stat), and peak RSS.
//!
//! ```text
//! cargo bench -p sightline-collector --bench collector_throughput -- --brokers 127.0.0.1:9092 --mb 512
//! ```
//! Without `--brokers`, librdkafka's in-process mock cluster is used (its CPU is counted too).
//! `--config <toml>` starts from a configuration file instead of the defaults. The Docker
//! engine's events and stats are on whenever the engine's socket exists, as in production.

mod common;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sightline_collector::config::CollectorConfig;
use sightline_collector::stats::Stats;

use common::{arg, cpu_seconds};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Writes the logs; returns (bytes, lines).
fn generate(root: &Path, containers: usize, total_bytes: u64) -> (u64, u64) {
    let per = total_bytes / containers as u64;
    let (mut bytes, mut lines) = (0u64, 0u64);
    for c in 0..containers {
        let id = format!("{c:0>64}");
        let dir = root.join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.v2.json"),
            format!(r#"{{"ID":"{id}","Name":"/svc-{c}","Config":{{"Image":"bench","Labels":{{"com.docker.compose.service":"svc-{c}"}}}}}}"#),
        )
        .unwrap();
        let mut w = BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(dir.join(format!("{id}-json.log"))).unwrap(),
        );
        let mut written = 0u64;
        let mut i = 0u64;
        while written < per {
            let text = match i % 3 {
                0 => format!(r#"{{\"level\":\"info\",\"correlation_id\":\"req-{}\",\"msg\":\"GET /api/v1/orders/{i} 200 12ms user=alice cart=3 items region=eu-west-1\",\"hop\":1}}"#, i % 10_000),
                1 => format!("2026-11-21T05:00:00Z WARN checkout x-correlation-id=req-{} slow inventory call took 850ms retries=2 host=ip-10-0-1-17 pool=primary", i % 10_000),
                _ => format!("2026-11-21T05:00:00Z INFO scheduler tick {i} queue_depth=17 workers=8 idle=3 gc_pause_ms=4 heap_mb=512 build=v1.2.3"),
            };
            let line = format!(
                r#"{{"log":"{text}\n","stream":"stdout","time":"2026-11-21T05:00:00.{:09}Z"}}"#,
                i % 1_000_000_000
            );
            w.write_all(line.as_bytes()).unwrap();
            w.write_all(b"\n").unwrap();
            written += line.len() as u64 + 1;
            i += 1;
        }
        w.flush().unwrap();
        bytes += written;
        lines += i;
    }
    (bytes, lines)
}

fn main() {
    let mb: u64 = arg("--mb").and_then(|v| v.parse().ok()).unwrap_or(256);
    let containers: usize = arg("--containers")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (bytes, lines) = generate(root.path(), containers, mb * 1024 * 1024);
    let rss_before = peak_rss_mib();
    eprintln!(
        "generated {lines} lines, {:.1} MiB in {containers} containers",
        bytes as f64 / 1048576.0
    );

    let mock = if arg("--brokers").is_none() {
        Some(rdkafka::mocking::MockCluster::new(1).unwrap())
    } else {
        None
    };
    let brokers = arg("--brokers").unwrap_or_else(|| mock.as_ref().unwrap().bootstrap_servers());
    let topic = format!("bench-{}", std::process::id());
    if let Some(m) = &mock {
        m.create_topic(&topic, 6, 1).unwrap();
    }
    // `--config <toml>`: start from a config file (e.g. deploy/collector.toml) instead of
    // the defaults; the containers directory, data directory and Kafka settings below win.
    let mut cfg = match arg("--config") {
        Some(p) => CollectorConfig::from_file(std::path::Path::new(&p)).unwrap(),
        None => CollectorConfig::default(),
    };
    cfg.docker.containers_dir = root.path().to_path_buf();
    cfg.data_dir = data.path().to_path_buf();
    cfg.kafka.brokers = brokers.clone();
    cfg.kafka.topic = topic;
    cfg.host = Some("bench".into());
    cfg.validate().unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stats = Arc::new(Stats::default());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let s = stats.clone();
    let handle = rt.spawn(async move { sightline_collector::run(cfg, s, rx).await });
    while stats.snapshot().events_sent < lines {
        std::thread::sleep(Duration::from_millis(20));
        if t0.elapsed() > Duration::from_secs(900) {
            panic!("timed out: {:?}", stats.snapshot());
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    tx.send(true).unwrap();
    rt.block_on(handle).unwrap().unwrap();
    let mbs = bytes as f64 / 1e6 / elapsed;
    println!(
        "collector_throughput: broker={} input={:.1} MB lines={lines}",
        if mock.is_some() { "mock" } else { &brokers },
        bytes as f64 / 1e6
    );
    println!("  wall {elapsed:.2} s  ->  {mbs:.1} MB/s");
    println!(
        "  cpu  {cpu:.2} s  ->  {:.1} CPU-s/GB, {:.1} MB/s per core",
        cpu / (bytes as f64 / 1e9),
        bytes as f64 / 1e6 / cpu
    );
    println!("  peak RSS {:.1} MiB (after generating the logs, before the pipeline: {rss_before:.1} MiB)", peak_rss_mib());
    println!("  stats {:?}", stats.snapshot());
}
