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
//!
//! `--cpu-only DIR` measures the tailer threads' work alone (read, frame, reassemble, extract,
//! encode per partition; no Kafka): the logs are generated into `DIR` unless it already holds
//! them, then each container's file is read to its end on one thread at a time, so the
//! instruction count under `valgrind --tool=callgrind` is reproducible. `--digest` prints a
//! digest of every encoded record (the observed time masked) to compare behaviour between
//! builds.

mod common;

use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
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

/// A record's last field is `observed_time_unix_nano` (field 11, fixed64): masked.
fn digest_part(h: &mut impl Hasher, records: &[u8]) {
    let mut i = 0;
    while i < records.len() {
        assert_eq!(records[i], 0x12, "log_records field");
        i += 1;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = records[i];
            i += 1;
            len |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let rec = &records[i..i + len];
        assert_eq!(rec[len - 9], 0x59, "observed time last");
        h.write(&rec[..len - 9]);
        i += len;
    }
}

/// Runs each container's tailer to the end of its file, one after the other (`--cpu-only`).
fn cpu_only(dir: &Path, cfg: &CollectorConfig, digest: bool) {
    use sightline_collector::parse::{app::Extractor, redact::Redactor};
    use sightline_collector::sinks::topics::Partitions;
    use sightline_collector::sources::docker_json::tailer::{Tailer, TailerContext, REMOVED};
    use sightline_model::Container;
    use std::sync::atomic::AtomicU8;

    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    let bytes: u64 = ids
        .iter()
        .map(|id| {
            let p = dir.join(id).join(format!("{id}-json.log"));
            std::fs::metadata(p).unwrap().len()
        })
        .sum();
    let extractor = Extractor::new(&cfg.correlation).unwrap();
    let redactor = Arc::new(Redactor::new(&cfg.redaction).unwrap());
    let stats = Arc::new(Stats::default());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let (mut events, mut chunks) = (0u64, 0u64);
    let cpu0 = cpu_seconds();
    for (c, id) in ids.iter().enumerate() {
        let ctx = TailerContext {
            container: Arc::new(Container {
                id: id.clone(),
                name: format!("svc-{c}"),
                image: "bench".into(),
                labels: Default::default(),
            }),
            service: format!("svc-{c}"),
            host: "bench".into(),
            log_path: dir.join(id).join(format!("{id}-json.log")),
            extractor: Arc::new(extractor.clone()),
            cfg: cfg.docker.clone(),
            stats: stats.clone(),
            partitions: Partitions::known(6),
            max_part_bytes: cfg.batch.max_bytes,
            multiline: None,
            redactor: redactor.clone(),
            rate_limit: cfg.rate_limit.clone(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let tailer = Tailer::new(ctx, tx, Arc::new(AtomicU8::new(REMOVED)));
        let t = std::thread::spawn(move || tailer.run(None));
        while let Some(chunk) = rx.blocking_recv() {
            chunks += 1;
            for p in &chunk.parts {
                events += p.count;
                if digest {
                    h.write_i32(p.partition);
                    h.write_u64(p.count);
                    p.key.hash(&mut h);
                    digest_part(&mut h, &p.records);
                }
            }
            if digest {
                h.write(&chunk.resource);
                chunk.checkpoint.as_ref().map(|c| c.offset).hash(&mut h);
            }
        }
        t.join().unwrap();
    }
    let cpu = cpu_seconds() - cpu0;
    println!(
        "cpu-only: {:.1} MB, {events} events, {chunks} chunks, cpu {cpu:.2} s -> {:.1} MB/s per core",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / cpu
    );
    if digest {
        println!("  digest {:016x}", h.finish());
    }
}

fn main() {
    if let Some(dir) = arg("--cpu-only") {
        let dir = PathBuf::from(dir);
        let mb: u64 = arg("--mb").and_then(|v| v.parse().ok()).unwrap_or(64);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            generate(&dir, 4, mb * 1024 * 1024);
        }
        let cfg = match arg("--config") {
            Some(p) => CollectorConfig::from_file(Path::new(&p)).unwrap(),
            None => CollectorConfig::default(),
        };
        let digest = std::env::args().any(|a| a == "--digest");
        cpu_only(&dir, &cfg, digest);
        return;
    }
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
