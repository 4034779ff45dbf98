//! `docker stats` arithmetic against real-shaped samples: the Engine API spec's example, the
//! ECS task metadata v4 `/stats` example (fixtures/stats/README.md gives the sources), a
//! cgroup v2 sample, and hand-built edge cases. Expected values are computed here from the
//! fixture numbers with the docker/cli formulas.

use bollard::models::ContainerStatsResponse;
use sightline_collector::sources::stats_math::{
    container_points, reading, ContainerLimits, StatsReading,
};
use sightline_model::metric::names;
use sightline_model::{MetricKind, MetricPoint};

fn fixture(name: &str) -> ContainerStatsResponse {
    let path = format!("{}/tests/fixtures/stats/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn json(v: serde_json::Value) -> ContainerStatsResponse {
    serde_json::from_value(v).unwrap()
}

#[test]
fn engine_api_example() {
    let r = reading(&fixture("engine_api_example.json"), None);
    // cpuDelta = 100215355 - 100093996; systemDelta = 739306590000000 - 9492140000000.
    let cpu = 121359.0 / 729814450000000.0 * 4.0 * 100.0;
    assert_eq!(
        r,
        StatsReading {
            read_ns: 1_420_757_851_547_920_715,
            cpu_percent: Some(cpu),
            cpu_total_ns: 100_215_355,
            online_cpus: 4,
            // cgroup v1: total_inactive_file 0 < usage.
            memory_used_bytes: Some(6_537_216),
            memory_limit_bytes: Some(67_108_864),
            memory_percent: Some(6_537_216.0 / 67_108_864.0 * 100.0),
            network_rx_bytes: 5338 + 4641,
            network_tx_bytes: 648 + 690,
            blkio_read_bytes: 0,
            blkio_write_bytes: 0,
            pids: Some(3),
        }
    );
    assert!((cpu - 6.651_498_88e-8).abs() < 1e-16, "{cpu}");

    let points = container_points(&r, &ContainerLimits::default());
    let g = |n: &str, u: &str, v: f64| MetricPoint::gauge(n, u, v);
    let s = |n: &str, u: &str, v: f64| MetricPoint::sum(n, u, v);
    assert_eq!(
        points,
        vec![
            g(names::CPU_UTILIZATION, "%", cpu),
            s(names::CPU_USAGE_TOTAL, "ns", 100_215_355.0),
            g(names::MEMORY_USAGE_TOTAL, "By", 6_537_216.0),
            g(names::MEMORY_USAGE_LIMIT, "By", 67_108_864.0),
            g(
                names::MEMORY_PERCENT,
                "%",
                6_537_216.0 / 67_108_864.0 * 100.0
            ),
            s(names::NETWORK_RX_BYTES, "By", 9979.0),
            s(names::NETWORK_TX_BYTES, "By", 1338.0),
            s(names::BLOCKIO_READ_BYTES, "By", 0.0),
            s(names::BLOCKIO_WRITE_BYTES, "By", 0.0),
            g(names::PIDS_COUNT, "{pids}", 3.0),
        ]
    );
}

#[test]
fn ecs_v4_container_stats_example() {
    let r = reading(&fixture("ecs_v4_container_stats.json"), None);
    assert_eq!(
        r,
        StatsReading {
            read_ns: 1_601_599_873_410_254_284,
            // total_usage did not move between precpu and cpu: docker stats shows 0 %.
            cpu_percent: Some(0.0),
            cpu_total_ns: 360_968_065,
            online_cpus: 2,
            memory_used_bytes: Some(1_806_336),
            memory_limit_bytes: Some(134_217_728),
            memory_percent: Some(1_806_336.0 / 134_217_728.0 * 100.0),
            network_rx_bytes: 84,
            network_tx_bytes: 84,
            blkio_read_bytes: 0,
            blkio_write_bytes: 0,
            pids: Some(3),
        }
    );
}

#[test]
fn cgroup_v2_sample() {
    let r = reading(&fixture("cgroup_v2.json"), None);
    assert_eq!(
        r,
        StatsReading {
            read_ns: 1_714_564_810_000_000_000,
            // 0.4 s of CPU over 4 s of system time on 4 CPUs: 40 %.
            cpu_percent: Some(400_000_000.0 / 4_000_000_000.0 * 4.0 * 100.0),
            cpu_total_ns: 2_500_000_000,
            // No percpu_usage on cgroup v2: online_cpus is used.
            online_cpus: 4,
            // usage - inactive_file = 100 MiB - 20 MiB.
            memory_used_bytes: Some(83_886_080),
            memory_limit_bytes: Some(536_870_912),
            memory_percent: Some(15.625),
            network_rx_bytes: 1500,
            network_tx_bytes: 700,
            // Lowercase ops: read 1048576 + 2048, write 4096 + 0.
            blkio_read_bytes: 1_050_624,
            blkio_write_bytes: 4096,
            pids: Some(7),
        }
    );
    assert!((r.cpu_percent.unwrap() - 40.0).abs() < 1e-9);
}

fn mem(usage: u64, stats: serde_json::Value, limit: Option<u64>) -> StatsReading {
    let mut m = serde_json::json!({ "usage": usage, "stats": stats });
    if let Some(l) = limit {
        m["limit"] = l.into();
    }
    reading(&json(serde_json::json!({ "memory_stats": m })), None)
}

#[test]
fn memory_cgroup_v1_and_v2_rules() {
    // docker/cli's own test: cgroup v1, 500 - 400.
    assert_eq!(
        mem(500, serde_json::json!({"total_inactive_file": 400}), None).memory_used_bytes,
        Some(100)
    );
    // v1 key present but not below usage: falls through to inactive_file.
    let r = mem(
        500,
        serde_json::json!({"total_inactive_file": 600, "inactive_file": 100}),
        Some(1000),
    );
    assert_eq!(r.memory_used_bytes, Some(400));
    assert_eq!(r.memory_percent, Some(40.0));
    // cgroup v2.
    assert_eq!(
        mem(500, serde_json::json!({"inactive_file": 120}), None).memory_used_bytes,
        Some(380)
    );
    // inactive_file not below usage, and no stats at all: usage as is.
    assert_eq!(
        mem(500, serde_json::json!({"inactive_file": 500}), None).memory_used_bytes,
        Some(500)
    );
    assert_eq!(
        mem(500, serde_json::json!({}), None).memory_used_bytes,
        Some(500)
    );
    // No limit, or a zero limit: no percentage.
    assert_eq!(mem(500, serde_json::json!({}), None).memory_percent, None);
    let zero = mem(500, serde_json::json!({}), Some(0));
    assert_eq!(
        (zero.memory_limit_bytes, zero.memory_percent),
        (Some(0), None)
    );
}

fn cpu_sample(total: u64, system: u64, pre_total: u64, pre_system: u64) -> serde_json::Value {
    serde_json::json!({
        "cpu_stats": {"cpu_usage": {"total_usage": total}, "system_cpu_usage": system, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": pre_total}, "system_cpu_usage": pre_system, "online_cpus": 2},
    })
}

#[test]
fn cpu_zero_and_negative_deltas_give_zero() {
    let pct = |v| reading(&json(v), None).cpu_percent;
    assert_eq!(pct(cpu_sample(200, 1000, 100, 1000)), Some(0.0)); // systemDelta 0
    assert_eq!(pct(cpu_sample(100, 2000, 100, 1000)), Some(0.0)); // cpuDelta 0
    assert_eq!(pct(cpu_sample(50, 2000, 100, 1000)), Some(0.0)); // counter went back
    assert_eq!(pct(cpu_sample(90, 1000, 100, 2000)), Some(0.0)); // both negative
    assert_eq!(
        pct(cpu_sample(300, 2000, 100, 1000)),
        Some(200.0 / 1000.0 * 2.0 * 100.0)
    );
}

#[test]
fn online_cpus_falls_back_to_percpu_length() {
    let v = serde_json::json!({
        "cpu_stats": {"cpu_usage": {"total_usage": 400, "percpu_usage": [100, 100, 200]}, "system_cpu_usage": 3000, "online_cpus": 0},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
    });
    let r = reading(&json(v), None);
    assert_eq!(r.online_cpus, 3);
    assert_eq!(r.cpu_percent, Some(300.0 / 2000.0 * 3.0 * 100.0));
    // Neither online_cpus nor percpu_usage: no CPU count, no percentage.
    let v = serde_json::json!({
        "cpu_stats": {"cpu_usage": {"total_usage": 400}, "system_cpu_usage": 3000},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
    });
    let r = reading(&json(v), None);
    assert_eq!(
        (r.online_cpus, r.cpu_percent, r.cpu_total_ns),
        (0, None, 400)
    );
}

#[test]
fn missing_fields_give_none_and_zero() {
    assert_eq!(
        reading(&json(serde_json::json!({})), None),
        StatsReading::default()
    );
    let r = reading(
        &json(serde_json::json!({
            "read": "0001-01-01T00:00:00Z",
            "cpu_stats": {}, "precpu_stats": {}, "memory_stats": {}, "networks": {"eth0": {}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read"}, {"value": 5}, {"op": "", "value": 7}]},
            "pids_stats": {},
        })),
        None,
    );
    assert_eq!(r, StatsReading::default());
    // A one-shot sample: precpu_stats empty, system 0. No percentage rather than a
    // since-boot average.
    let one_shot = cpu_sample(500, 9000, 0, 0);
    assert_eq!(reading(&json(one_shot), None).cpu_percent, None);
    let points = container_points(&StatsReading::default(), &ContainerLimits::default());
    let names_kinds: Vec<_> = points.iter().map(|p| (p.name.as_str(), p.kind)).collect();
    assert_eq!(
        names_kinds,
        [
            (names::CPU_USAGE_TOTAL, MetricKind::CumulativeSum),
            (names::NETWORK_RX_BYTES, MetricKind::CumulativeSum),
            (names::NETWORK_TX_BYTES, MetricKind::CumulativeSum),
            (names::BLOCKIO_READ_BYTES, MetricKind::CumulativeSum),
            (names::BLOCKIO_WRITE_BYTES, MetricKind::CumulativeSum),
        ]
    );
}

#[test]
fn previous_reading_replaces_precpu() {
    let prev = fixture("ecs_v4_container_stats.json");
    let mut cur = prev.clone();
    let cpu = cur.cpu_stats.as_mut().unwrap();
    cpu.cpu_usage.as_mut().unwrap().total_usage = Some(360_968_065 + 100_000_000);
    cpu.system_cpu_usage = Some(13_939_680_000_000 + 2_000_000_000);
    // Against its own precpu_stats (total 360968065, system 13937670000000).
    let own = reading(&cur, None).cpu_percent;
    assert_eq!(own, Some(100_000_000.0 / 4_010_000_000.0 * 2.0 * 100.0));
    // Against the previous sample: 0.1 s over 2 s of system time on 2 CPUs = 10 %.
    let r = reading(&cur, Some(&prev));
    assert_eq!(
        r.cpu_percent,
        Some(100_000_000.0 / 2_000_000_000.0 * 2.0 * 100.0)
    );
    assert!((r.cpu_percent.unwrap() - 10.0).abs() < 1e-12);
    // Everything else comes from `cur`.
    assert_eq!(r.cpu_total_ns, 460_968_065);
    assert_eq!(r.memory_used_bytes, Some(1_806_336));
    // A previous sample without cpu_stats: no percentage.
    let empty = ContainerStatsResponse::default();
    assert_eq!(reading(&cur, Some(&empty)).cpu_percent, None);
}

#[test]
fn blkio_sums_ops_by_first_letter() {
    // docker/cli's TestCalculateBlockIO entries.
    let entries: Vec<_> = [
        (0, "read", 1234),
        (1, "read", 4567),
        (0, "Read", 6),
        (1, "Read", 8),
        (0, "write", 123),
        (1, "write", 456),
        (0, "Write", 6),
        (1, "Write", 8),
        (1, "", 456),
    ]
    .iter()
    .map(|(minor, op, value)| serde_json::json!({"major": 8, "minor": minor, "op": op, "value": value}))
    .collect();
    let v = serde_json::json!({"blkio_stats": {"io_service_bytes_recursive": entries}});
    let r = reading(&json(v), None);
    assert_eq!((r.blkio_read_bytes, r.blkio_write_bytes), (5815, 593));
}

#[test]
fn limits_add_their_points() {
    let r = reading(&fixture("cgroup_v2.json"), None);
    let limits = ContainerLimits {
        cpus: Some(1.5),
        cpu_shares: Some(512),
        memory_reservation_bytes: Some(268_435_456),
    };
    let points = container_points(&r, &limits);
    let find = |n: &str| points.iter().find(|p| p.name == n).cloned();
    assert_eq!(
        find(names::CPU_LIMIT),
        Some(MetricPoint::gauge(names::CPU_LIMIT, "{cpus}", 1.5))
    );
    assert_eq!(
        find(names::CPU_SHARES),
        Some(MetricPoint::gauge(names::CPU_SHARES, "1", 512.0))
    );
    assert_eq!(
        find(names::MEMORY_RESERVATION),
        Some(MetricPoint::gauge(
            names::MEMORY_RESERVATION,
            "By",
            268_435_456.0
        ))
    );
    assert_eq!(points.len(), 13);
}
