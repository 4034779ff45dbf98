//! Rollups end to end: real-shaped metric batches and log events in, exact series out;
//! replays, permutations, persistence and restarts.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use sightline_aggregator::rollup::{
    KafkaPosition, LogPattern, Resolution, RollupConfig, RollupStore,
};
use sightline_aggregator::series::{MatchOp, Matcher, Series, SeriesSource};
use sightline_model::metric::{ecs_names, names};
use sightline_model::{Container, EventId, Level, LogEvent, MetricBatch, MetricPoint, SourceKind};

const T0: i64 = 1_714_521_600_000; // 2024-05-01T00:00:00Z, a minute boundary.

fn ecs_container(id: &str, task: &str) -> Arc<Container> {
    Arc::new(Container {
        id: id.into(),
        name: format!("ecs-web-{id}"),
        image: "web:1".into(),
        labels: [
            (
                "com.amazonaws.ecs.cluster".to_string(),
                "arn:aws:ecs:us-east-1:111122223333:cluster/prod".to_string(),
            ),
            ("com.amazonaws.ecs.task-arn".to_string(), task.to_string()),
        ]
        .into(),
    })
}

/// A docker_stats batch as the collector sends it.
#[allow(clippy::too_many_arguments)]
fn stats(
    c: &Arc<Container>,
    t_ms: i64,
    cpu_pct: f64,
    cpu_limit: Option<f64>,
    shares: Option<f64>,
    mem: f64,
    mem_limit: f64,
    rx: f64,
    start_ns: u64,
) -> MetricBatch {
    let mut points = vec![
        MetricPoint::gauge(names::CPU_UTILIZATION, "%", cpu_pct),
        MetricPoint::sum(names::CPU_USAGE_TOTAL, "ns", 1e9),
        MetricPoint::gauge(names::MEMORY_USAGE_TOTAL, "By", mem),
        MetricPoint::gauge(names::MEMORY_USAGE_LIMIT, "By", mem_limit),
        MetricPoint::sum(names::NETWORK_RX_BYTES, "By", rx),
        MetricPoint::sum(names::NETWORK_TX_BYTES, "By", rx / 2.0),
        MetricPoint::sum(names::BLOCKIO_READ_BYTES, "By", rx * 2.0),
        MetricPoint::sum(names::BLOCKIO_WRITE_BYTES, "By", 0.0),
    ];
    if let Some(l) = cpu_limit {
        points.push(MetricPoint::gauge(names::CPU_LIMIT, "{cpus}", l));
    }
    if let Some(s) = shares {
        points.push(MetricPoint::gauge(names::CPU_SHARES, "1", s));
    }
    MetricBatch {
        resource: LogEvent {
            host: "h1".into(),
            service: "web".into(),
            source_kind: SourceKind::DockerStats,
            container: Some(c.clone()),
            ..Default::default()
        },
        resource_attributes: BTreeMap::new(),
        time_ns: (t_ms * 1_000_000) as u64,
        start_ns,
        points,
    }
}

fn eq(name: &str, v: &str) -> Matcher {
    Matcher::new(name, MatchOp::Equal, v).unwrap()
}

fn values(s: &[Series]) -> Vec<(i64, f64)> {
    s.iter()
        .flat_map(|s| s.samples.iter().map(|x| (x.ts_ms, x.value)))
        .collect()
}

fn cfg() -> RollupConfig {
    RollupConfig {
        lateness: 60_000,
        retention_10s: 3_600_000,
        patterns: vec![LogPattern {
            name: "oom".into(),
            regex: "OutOfMemoryError".into(),
        }],
        ..Default::default()
    }
}

#[test]
fn ecs_service_cpu_and_memory_utilization() {
    let mut s = RollupStore::new(cfg()).unwrap();
    // Task A: container a1 with 512 CPU units (ECS CpuShares), at 25 % of a CPU.
    // Task B: container b1 with a hard limit of 0.5 vCPU, at 40 % of a CPU.
    let a1 = ecs_container("a1", "arn:task/A");
    let b1 = ecs_container("b1", "arn:task/B");
    let gib = 1_073_741_824.0;
    s.apply_metrics(
        &[
            stats(
                &a1,
                T0 + 2_000,
                25.0,
                None,
                Some(512.0),
                0.25 * gib,
                gib,
                1000.0,
                1,
            ),
            stats(
                &b1,
                T0 + 3_000,
                40.0,
                Some(0.5),
                Some(2.0),
                0.5 * gib,
                gib,
                500.0,
                1,
            ),
            // A second reading of a1 in the same window: the window uses the mean.
            stats(
                &a1,
                T0 + 7_000,
                35.0,
                None,
                Some(512.0),
                0.25 * gib,
                gib,
                1600.0,
                1,
            ),
        ],
        None,
    );
    let w = |m: &str| values(&s.select(m, &[eq("service", "web")], T0, T0 + 10_000));
    // used = (30 % + 40 %) of 1024 units = 716.8; reserved = 512 + 512 = 1024.
    assert_eq!(w("cpu_utilized"), vec![(T0 + 10_000, 716.8)]);
    assert_eq!(w("cpu_utilization"), vec![(T0 + 10_000, 70.0)]);
    assert_eq!(w("memory_utilized"), vec![(T0 + 10_000, 0.75 * gib)]);
    assert_eq!(w("memory_utilization"), vec![(T0 + 10_000, 37.5)]);
    assert_eq!(w("running_task_count"), vec![(T0 + 10_000, 2.0)]);
    // a1's counter rose 1000 → 1600 within the window; first samples count 0 (started
    // long before the window).
    assert_eq!(w("network_rx_bytes"), vec![(T0 + 10_000, 600.0)]);
    assert_eq!(w("storage_read_bytes"), vec![(T0 + 10_000, 1200.0)]);
    // The series carry service and cluster; the cluster-level series too.
    let sel = s.select("cpu_utilization", &[], T0, T0 + 10_000);
    let labels: Vec<_> = sel.iter().map(|x| x.labels.clone()).collect();
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[0].get("cluster").map(String::as_str), Some("prod"));
    assert!(labels.iter().any(|l| !l.contains_key("service")));
}

#[test]
fn ecs_task_batches_take_precedence_over_their_containers() {
    let mut s = RollupStore::new(cfg()).unwrap();
    let a1 = ecs_container("a1", "arn:task/A");
    let task = MetricBatch {
        resource: LogEvent {
            service: "web".into(),
            source_kind: SourceKind::EcsTaskMetadata,
            ..Default::default()
        },
        resource_attributes: [
            ("aws.ecs.task.arn".to_string(), "arn:task/A".to_string()),
            ("aws.ecs.cluster.name".to_string(), "prod".to_string()),
        ]
        .into(),
        time_ns: ((T0 + 1_000) * 1_000_000) as u64,
        start_ns: 0,
        points: vec![
            MetricPoint::gauge(ecs_names::CPU_UTILIZED, "{cpu_units}", 256.0),
            MetricPoint::gauge(ecs_names::CPU_RESERVED, "{cpu_units}", 1024.0),
            MetricPoint::gauge(ecs_names::MEMORY_UTILIZED, "MiBy", 512.0),
            MetricPoint::gauge(ecs_names::MEMORY_RESERVED, "MiBy", 2048.0),
        ],
    };
    s.apply_metrics(
        &[
            task,
            stats(&a1, T0 + 2_000, 90.0, None, Some(2.0), 1.0, 2.0, 0.0, 1),
        ],
        None,
    );
    let w = |m: &str| values(&s.select(m, &[eq("service", "web")], T0, T0 + 10_000));
    assert_eq!(w("cpu_utilization"), vec![(T0 + 10_000, 25.0)]);
    assert_eq!(w("memory_utilization"), vec![(T0 + 10_000, 25.0)]);
    assert_eq!(w("running_task_count"), vec![(T0 + 10_000, 1.0)]);
}

#[test]
fn counter_increases_across_a_reset_and_idempotent_samples() {
    let mut s = RollupStore::new(cfg()).unwrap();
    let c = Arc::new(Container {
        id: "c1".into(),
        ..Default::default()
    });
    let start = (T0 as u64 - 3_600_000) * 1_000_000;
    let b = |t, rx, st| stats(&c, t, 10.0, None, None, 1.0, 2.0, rx, st);
    s.apply_metrics(&[b(T0 + 1_000, 5_000.0, start)], None);
    s.apply_metrics(&[b(T0 + 11_000, 8_000.0, start)], None);
    // Counter reset (the value went down): the new value is the increase.
    s.apply_metrics(&[b(T0 + 21_000, 700.0, start)], None);
    // Container restarted (new start time) inside the window: its whole value counts.
    let restart = ((T0 + 30_500) * 1_000_000) as u64;
    s.apply_metrics(&[b(T0 + 31_000, 900.0, restart)], None);
    // Idempotent: the same (container, time) again changes nothing.
    s.apply_metrics(&[b(T0 + 11_000, 8_000.0, start)], None);
    let rx = values(&s.select("network_rx_bytes", &[], T0, T0 + 40_000));
    assert_eq!(
        rx,
        vec![
            (T0 + 10_000, 0.0),
            (T0 + 20_000, 3_000.0),
            (T0 + 30_000, 700.0),
            (T0 + 40_000, 900.0)
        ]
    );
    // Without a CPU limit the reference is one vCPU, as `docker stats`.
    let cpu = values(&s.select("cpu_utilization", &[], T0, T0 + 10_000));
    assert_eq!(cpu, vec![(T0 + 10_000, 10.0)]);
}

fn log(id: u128, t_ms: i64, level: Option<Level>, msg: &str) -> LogEvent {
    LogEvent {
        event_id: EventId(id),
        timestamp_ns: (t_ms * 1_000_000) as u64,
        service: "api".into(),
        level,
        message: msg.into(),
        ..Default::default()
    }
}

fn access_logs() -> Vec<LogEvent> {
    let mut v = Vec::new();
    // 100 JSON lines: 10 ms .. 1000 ms, every 10th a 503.
    for i in 1..=100u32 {
        let status = if i % 10 == 0 { 503 } else { 200 };
        let msg = format!(
            r#"{{"msg":"req","status":{status},"duration_ms":{}}}"#,
            i * 10
        );
        v.push(log(u128::from(i), T0 + 1_000, Some(Level::Info), &msg));
    }
    // 2 combined-format lines with nginx' request time, one 500.
    v.push(log(
        1001,
        T0 + 2_000,
        None,
        r#"10.0.0.1 - - [01/May/2024:00:00:02 +0000] "GET / HTTP/1.1" 500 12 "-" "curl" 0.250"#,
    ));
    v.push(log(
        1002,
        T0 + 2_000,
        None,
        r#"10.0.0.1 - - [01/May/2024:00:00:02 +0000] "GET / HTTP/1.1" 200 12 "-" "curl" 0.050"#,
    ));
    v.push(log(
        1003,
        T0 + 3_000,
        Some(Level::Error),
        "java.lang.OutOfMemoryError: heap",
    ));
    v.push(log(1004, T0 + 3_000, Some(Level::Fatal), "panic"));
    v
}

#[test]
fn log_counts_rates_and_quantiles() {
    let mut s = RollupStore::new(cfg()).unwrap();
    s.apply_logs(&access_logs(), None);
    let api = [eq("service", "api")];
    let w = |m: &str| values(&s.select(m, &api, T0, T0 + 10_000));
    let end = T0 + 10_000;
    assert_eq!(w("request_count"), vec![(end, 102.0)]);
    assert_eq!(w("http_5xx_rate"), vec![(end, 11.0 / 102.0)]);
    assert_eq!(w("error_count"), vec![(end, 2.0)]);
    assert_eq!(w("error_rate"), vec![(end, 2.0 / 104.0)]);
    assert_eq!(w("log_pattern_count"), vec![(end, 1.0)]);
    let levels = s.select("log_lines", &api, T0, end);
    let by_level: BTreeMap<_, _> = levels
        .iter()
        .map(|x| (x.labels["level"].clone(), x.samples[0].value))
        .collect();
    assert_eq!(by_level["info"], 100.0);
    assert_eq!(by_level["unknown"], 2.0);
    assert_eq!(by_level["error"], 1.0);
    assert_eq!(by_level["fatal"], 1.0);
    // Quantiles within the sketch's 1 % relative error of the exact ones.
    for (q, exact) in [(0.5, 0.5), (0.9, 0.9), (0.99, 0.99)] {
        let got = s.quantile("request_latency_seconds", &api, q, T0, end);
        assert_eq!(got.len(), 1);
        let v = got[0].1;
        // Exact rank value among the 102 samples is within one step of `exact`.
        assert!((v - exact).abs() / exact < 0.03, "q{q}: {v} vs {exact}");
    }
    // Windows merge: a second window with slow requests moves p99 over both.
    let slow: Vec<_> = (0..100u128)
        .map(|i| {
            log(
                5000 + i,
                T0 + 15_000,
                None,
                r#"{"status":200,"request_time":4.0}"#,
            )
        })
        .collect();
    s.apply_logs(&slow, None);
    let p99 = s.quantile("request_latency_seconds", &api, 0.99, T0, T0 + 20_000);
    assert!((p99[0].1 - 4.0).abs() / 4.0 <= 0.0101);
    let p25 = s.quantile("request_latency_seconds", &api, 0.25, T0, T0 + 20_000);
    // Rank 50 of the 202 merged values is 0.49 s.
    assert!((p25[0].1 - 0.49).abs() / 0.49 < 0.03, "{}", p25[0].1);
}

#[test]
fn late_events_and_duplicates_and_kafka_replays() {
    let mut s = RollupStore::new(cfg()).unwrap();
    let pos = |o| KafkaPosition {
        topic: "sightline.logs".into(),
        partition: 3,
        offset: o,
    };
    assert_eq!(
        s.apply_logs(&[log(1, T0 + 1_000, None, "a")], Some(&pos(7))),
        1
    );
    // Same message again (Kafka redelivery): skipped whole.
    assert_eq!(
        s.apply_logs(&[log(2, T0 + 1_000, None, "b")], Some(&pos(7))),
        0
    );
    assert_eq!(s.counters().replayed_messages, 1);
    // Same event in a new message (collector replay): de-duplicated by event_id.
    assert_eq!(
        s.apply_logs(&[log(1, T0 + 1_000, None, "a")], Some(&pos(8))),
        0
    );
    assert_eq!(s.counters().duplicate_events, 1);
    assert_eq!(s.positions()[&("sightline.logs".to_string(), 3)], 9);
    // Out of order but within lateness (1 min): lands in its window.
    s.apply_logs(&[log(3, T0 + 50_000, None, "c")], None);
    s.apply_logs(&[log(4, T0 + 5_000, None, "d")], None);
    // Move event time 3 min on: the first minute closes; an event for it is late.
    s.apply_logs(&[log(5, T0 + 180_000, None, "e")], None);
    assert_eq!(s.apply_logs(&[log(6, T0 + 2_000, None, "f")], None), 0);
    assert_eq!(s.counters().late_events, 1);
    let lines = values(&s.select("log_lines", &[], T0, T0 + 60_000));
    assert_eq!(lines, vec![(T0 + 10_000, 2.0), (T0 + 60_000, 1.0)]);
    // 1 min windows for ranges beyond the 10 s retention (1 h here).
    s.advance(T0 + 7_200_000);
    let minute = s.windows(Resolution::M1, T0, T0 + 60_000);
    assert_eq!(minute.len(), 1);
    let old = values(&s.select("log_lines", &[], T0, T0 + 60_000));
    assert_eq!(old, vec![(T0 + 60_000, 3.0)]);
}

fn all_values(s: &RollupStore) -> Vec<(String, Vec<Series>)> {
    let mut out = Vec::new();
    for m in sightline_aggregator::rollup::names::ALL {
        out.push((m.to_string(), s.select(m, &[], T0 - 600_000, T0 + 600_000)));
    }
    for q in [0.5, 0.9, 0.99] {
        let v = s.quantile(
            "request_latency_seconds",
            &[],
            q,
            T0 - 600_000,
            T0 + 600_000,
        );
        out.push((
            format!("q{q}"),
            v.into_iter()
                .map(|(labels, v)| Series {
                    labels,
                    samples: vec![sightline_aggregator::series::Sample { ts_ms: 0, value: v }],
                })
                .collect(),
        ));
    }
    out
}

#[derive(Clone, Debug)]
enum Input {
    Log(LogEvent),
    Stat(MetricBatch),
}

fn apply(s: &mut RollupStore, i: &Input) {
    match i {
        Input::Log(e) => {
            s.apply_logs(std::slice::from_ref(e), None);
        }
        Input::Stat(b) => {
            s.apply_metrics(std::slice::from_ref(b), None);
        }
    }
}

/// Events spread over 50 s (less than the 1 min lateness), so no order makes one late.
fn inputs() -> impl Strategy<Value = Vec<Input>> {
    let log = (0u128..40, 0i64..50_000, 0usize..4, 0u32..3, 1u32..2000).prop_map(
        |(id, dt, svc, kind, ms)| {
            let msg = match kind {
                0 => format!(
                    r#"{{"status":{},"duration_ms":{ms}}}"#,
                    200 + (ms % 2) * 300
                ),
                1 => "OutOfMemoryError".to_string(),
                _ => "plain".to_string(),
            };
            let mut e = log(id * 7 + svc as u128, T0 + dt, Some(Level::Info), &msg);
            e.service = format!("svc{svc}");
            Input::Log(e)
        },
    );
    let stat = (0usize..3, 0i64..5, 0u32..100, 0u32..10_000).prop_map(|(c, slot, cpu, rx)| {
        let ct = ecs_container(&format!("c{c}"), &format!("arn:task/{c}"));
        Input::Stat(stats(
            &ct,
            T0 + slot * 10_000 + c as i64,
            f64::from(cpu),
            None,
            Some(256.0),
            1.0,
            4.0,
            f64::from(rx),
            1,
        ))
    });
    // An ID (event_id, or container + sample time) always means the same content, as in
    // a real replay: later inputs with a known ID are replaced by the first one.
    prop::collection::vec(prop_oneof![3 => log, 1 => stat], 1..60).prop_map(|v| {
        let mut first: BTreeMap<String, Input> = BTreeMap::new();
        v.into_iter()
            .map(|i| {
                let id = match &i {
                    Input::Log(e) => format!("log{}", e.event_id),
                    Input::Stat(b) => format!(
                        "stat{}/{}",
                        b.resource.container.as_ref().unwrap().id,
                        b.time_ns
                    ),
                };
                first.entry(id).or_insert(i).clone()
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_order_gives_identical_windows(v in inputs(), seed in any::<u64>()) {
        let mut a = RollupStore::new(cfg()).unwrap();
        for i in &v { apply(&mut a, i); }
        // A deterministic shuffle of the same inputs.
        let mut shuffled = v.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut b = RollupStore::new(cfg()).unwrap();
        for i in &shuffled { apply(&mut b, i); }
        prop_assert_eq!(all_values(&a), all_values(&b));
        // Closed the same way too.
        a.advance(T0 + 400_000);
        b.advance(T0 + 400_000);
        prop_assert_eq!(all_values(&a), all_values(&b));
    }

    #[test]
    fn replaying_a_prefix_changes_nothing(v in inputs(), cut in any::<prop::sample::Index>()) {
        let mut a = RollupStore::new(cfg()).unwrap();
        for i in &v { apply(&mut a, i); }
        let before = all_values(&a);
        let k = cut.index(v.len() + 1);
        for i in &v[..k] { apply(&mut a, i); }
        prop_assert_eq!(before, all_values(&a));
    }

    #[test]
    fn persistence_round_trips(v in inputs(), split in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let k = split.index(v.len() + 1);
        let mut a = RollupStore::open(dir.path(), cfg()).unwrap();
        for i in &v[..k] { apply(&mut a, i); }
        a.advance(T0 + 30_000);
        a.flush().unwrap();
        drop(a);
        // Restart, apply the rest (and the first part again: no double count).
        let mut b = RollupStore::open(dir.path(), cfg()).unwrap();
        for i in &v { apply(&mut b, i); }
        let mut c = RollupStore::new(cfg()).unwrap();
        for i in &v[..k] { apply(&mut c, i); }
        c.advance(T0 + 30_000);
        for i in &v { apply(&mut c, i); }
        prop_assert_eq!(all_values(&b), all_values(&c));
    }
}

#[test]
fn restart_through_the_files_keeps_windows_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let pos = |o| KafkaPosition {
        topic: "sightline.logs".into(),
        partition: 0,
        offset: o,
    };
    let mut s = RollupStore::open(dir.path(), cfg()).unwrap();
    s.apply_logs(&access_logs(), Some(&pos(0)));
    s.apply_logs(&[log(9000, T0 + 200_000, None, "later")], Some(&pos(1)));
    s.flush().unwrap();
    let before = all_values(&s);
    // Uncommitted work after the flush is lost on a crash, positions included.
    s.apply_logs(&[log(9001, T0 + 201_000, None, "lost")], Some(&pos(2)));
    drop(s);
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.contains(&"snapshot.json".to_string()));
    assert!(files
        .iter()
        .any(|f| f.starts_with("segment-10s-2024-05-01")));
    let mut r = RollupStore::open(dir.path(), cfg()).unwrap();
    assert_eq!(r.positions()[&("sightline.logs".to_string(), 0)], 2);
    assert_eq!(all_values(&r), before);
    // The consumer resumes at offset 2; offsets 0 and 1 would be skipped.
    assert_eq!(r.apply_logs(&access_logs(), Some(&pos(0))), 0);

    // A segment flipped by one byte is refused with a clear error.
    drop(r);
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("segment-10s"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let i = bytes.len() - 10;
    bytes[i] ^= 0x01;
    std::fs::write(&seg, bytes).unwrap();
    let err = RollupStore::open(dir.path(), cfg())
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn uncommitted_segment_bytes_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = RollupStore::open(dir.path(), cfg()).unwrap();
    s.apply_logs(&access_logs(), None);
    s.advance(T0 + 200_000);
    s.flush().unwrap();
    let before = all_values(&s);
    drop(s);
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("segment-10s"))
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    // A torn append from a crash between segment write and snapshot.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, b"deadbeef {\"torn").unwrap();
    drop(f);
    let r = RollupStore::open(dir.path(), cfg()).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
    assert_eq!(all_values(&r), before);
}
