//! Container stats arithmetic shared by the Docker stats source and the ECS sidecar: one
//! Engine API stats sample (`GET /containers/{id}/stats`, or one value of ECS's
//! `${ECS_CONTAINER_METADATA_URI_V4}/task/stats`) in, the numbers `docker stats` shows out.
//!
//! The formulas are those of the Docker CLI, `docker/cli: cli/command/container/stats_helpers.go`
//! (`calculateCPUPercentUnix`, `calculateMemUsageUnixNoCache`, `calculateMemPercentUnixNoCache`,
//! `calculateNetwork`, `calculateBlockIO`):
//!
//! ```text
//! cpuDelta    = cpu_stats.cpu_usage.total_usage - prev.cpu_usage.total_usage        (ns)
//! systemDelta = cpu_stats.system_cpu_usage      - prev.system_cpu_usage             (ns)
//! onlineCPUs  = cpu_stats.online_cpus, or len(cpu_stats.cpu_usage.percpu_usage) when 0
//! CPU %       = cpuDelta / systemDelta * onlineCPUs * 100   if systemDelta > 0 && cpuDelta > 0, else 0
//! mem used    = usage - stats.total_inactive_file   (cgroup v1: key present and < usage)
//!             = usage - stats.inactive_file         (cgroup v2: < usage)
//!             = usage                               (otherwise)
//! mem %       = used / limit * 100                  if limit != 0
//! net rx / tx = Σ over `networks` of rx_bytes / tx_bytes
//! blkio r / w = Σ `blkio_stats.io_service_bytes_recursive` values whose op starts with r/R, w/W
//! ```
//!
//! `prev` is `precpu_stats` as the daemon sends it, or the caller's previous sample of the
//! same container (then the CPU % covers the whole interval between the two samples).
//!
//! Where this module differs from the CLI, it reports absence instead of a made-up number:
//! no CPU % (`None`) when the current or previous sample lacks `total_usage` or
//! `system_cpu_usage` (or the previous `system_cpu_usage` is 0, as in a `one-shot` sample's
//! empty `precpu_stats`), or when the CPU count is 0; no memory % when the limit is 0 or
//! absent. Windows samples (`num_procs`, `storage_stats`, `privateworkingset`) are not
//! handled: this is the Linux formula set.

use bollard::models::{ContainerCpuStats, ContainerStatsResponse};
use sightline_model::metric::names;
use sightline_model::MetricPoint;

use crate::parse::timestamp::parse_rfc3339_ns;

/// The `docker stats` figures of one sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsReading {
    /// When the sample was taken (`read`), ns since the Unix epoch; 0 when absent or
    /// unparseable (the caller then stamps its own clock).
    pub read_ns: u64,
    /// CPU %, 100 = one CPU fully busy (see the module docs); `None` when it cannot be
    /// computed from the two samples.
    pub cpu_percent: Option<f64>,
    /// CPU time used since the container started (`cpu_stats.cpu_usage.total_usage`), ns;
    /// 0 when absent.
    pub cpu_total_ns: u64,
    /// CPUs the percentage is scaled by: `online_cpus`, else `len(percpu_usage)`; 0 when
    /// neither is known.
    pub online_cpus: u32,
    /// Memory used without inactive file cache, bytes; `None` without `memory_stats.usage`.
    pub memory_used_bytes: Option<u64>,
    /// Memory limit (`memory_stats.limit`; the host's memory when unlimited), bytes.
    pub memory_limit_bytes: Option<u64>,
    /// `memory_used_bytes / memory_limit_bytes * 100`; `None` when either is absent or the
    /// limit is 0.
    pub memory_percent: Option<f64>,
    /// Bytes received since the container started, summed over interfaces (0 without
    /// `networks`, e.g. `--network host`).
    pub network_rx_bytes: u64,
    /// Bytes sent since the container started, summed over interfaces.
    pub network_tx_bytes: u64,
    /// Block-device bytes read (`io_service_bytes_recursive`, ops starting with `r`/`R`).
    pub blkio_read_bytes: u64,
    /// Block-device bytes written (ops starting with `w`/`W`).
    pub blkio_write_bytes: u64,
    /// Processes and threads in the container (`pids_stats.current`).
    pub pids: Option<u64>,
}

/// Resource limits of a container, from `docker inspect` (`HostConfig`) or ECS metadata;
/// each `None` when unset, and then its metric is not emitted.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ContainerLimits {
    /// CPUs the container may use: `NanoCpus / 1e9`, or `CpuQuota / CpuPeriod`.
    pub cpus: Option<f64>,
    /// Relative CPU weight (`CpuShares`; ECS puts the container's CPU units here).
    pub cpu_shares: Option<u64>,
    /// Soft memory limit (`MemoryReservation`), bytes.
    pub memory_reservation_bytes: Option<u64>,
}

/// The `docker stats` figures of `cur`. CPU % is taken against `prev`'s `cpu_stats` when
/// given (the previous sample of the same container), else against `cur.precpu_stats` as
/// `docker stats` does. Pass `prev` only when it is strictly older than `cur` (a repeated
/// sample would give 0 %). Never panics; absent fields give 0 sums and `None` gauges.
pub fn reading(
    cur: &ContainerStatsResponse,
    prev: Option<&ContainerStatsResponse>,
) -> StatsReading {
    let cpu = cur.cpu_stats.as_ref();
    let prev_cpu = match prev {
        Some(p) => p.cpu_stats.as_ref(),
        None => cur.precpu_stats.as_ref(),
    };
    let (memory_used_bytes, memory_limit_bytes) = memory_used(cur);
    let memory_percent = match (memory_used_bytes, memory_limit_bytes) {
        (Some(used), Some(limit)) if limit != 0 => Some(used as f64 / limit as f64 * 100.0),
        _ => None,
    };
    let (network_rx_bytes, network_tx_bytes) = network_bytes(cur);
    let (blkio_read_bytes, blkio_write_bytes) = blkio_bytes(cur);
    StatsReading {
        read_ns: cur.read.as_deref().and_then(parse_rfc3339_ns).unwrap_or(0),
        cpu_percent: match (cpu, prev_cpu) {
            (Some(c), Some(p)) => cpus_used(c, p).map(|cpus| cpus * 100.0),
            _ => None,
        },
        cpu_total_ns: cpu
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        online_cpus: cpu.map_or(0, online_cpus),
        memory_used_bytes,
        memory_limit_bytes,
        memory_percent,
        network_rx_bytes,
        network_tx_bytes,
        blkio_read_bytes,
        blkio_write_bytes,
        pids: cur.pids_stats.as_ref().and_then(|p| p.current),
    }
}

/// `online_cpus`, or the length of `percpu_usage` when that is 0 or absent (cgroup v1
/// daemons before `online_cpus` existed).
pub fn online_cpus(cpu: &ContainerCpuStats) -> u32 {
    match cpu.online_cpus {
        Some(n) if n != 0 => n,
        _ => cpu
            .cpu_usage
            .as_ref()
            .and_then(|u| u.percpu_usage.as_ref())
            .map_or(0, |v| u32::try_from(v.len()).unwrap_or(u32::MAX)),
    }
}

/// CPUs busy on average between `prev` and `cur`: `cpuDelta / systemDelta * onlineCPUs`
/// (the `docker stats` CPU % divided by 100; × 1024 gives ECS CPU units). `Some(0.0)`
/// when either delta is not positive (as the CLI); `None` when a counter is missing, the
/// previous `system_cpu_usage` is 0 (no previous sample) or the CPU count is 0.
pub fn cpus_used(cur: &ContainerCpuStats, prev: &ContainerCpuStats) -> Option<f64> {
    let total = |c: &ContainerCpuStats| c.cpu_usage.as_ref().and_then(|u| u.total_usage);
    let (cur_total, cur_system) = (total(cur)?, cur.system_cpu_usage?);
    let (prev_total, prev_system) = (total(prev)?, prev.system_cpu_usage?);
    if prev_system == 0 {
        return None;
    }
    let online = online_cpus(cur);
    if online == 0 {
        return None;
    }
    let cpu_delta = cur_total as f64 - prev_total as f64;
    let system_delta = cur_system as f64 - prev_system as f64;
    if system_delta > 0.0 && cpu_delta > 0.0 {
        Some(cpu_delta / system_delta * f64::from(online))
    } else {
        Some(0.0)
    }
}

/// (memory used without inactive file cache, limit), bytes: `calculateMemUsageUnixNoCache`.
fn memory_used(s: &ContainerStatsResponse) -> (Option<u64>, Option<u64>) {
    let Some(mem) = s.memory_stats.as_ref() else {
        return (None, None);
    };
    let used = mem.usage.map(|usage| {
        let stat = |k: &str| mem.stats.as_ref().and_then(|m| m.get(k)).copied();
        match (stat("total_inactive_file"), stat("inactive_file")) {
            (Some(v1), _) if v1 < usage => usage - v1,
            (_, v2) if v2.unwrap_or(0) < usage => usage - v2.unwrap_or(0),
            _ => usage,
        }
    });
    (used, mem.limit)
}

/// Σ rx_bytes, Σ tx_bytes over interfaces: `calculateNetwork`.
fn network_bytes(s: &ContainerStatsResponse) -> (u64, u64) {
    s.networks
        .iter()
        .flatten()
        .fold((0u64, 0u64), |(rx, tx), (_, n)| {
            (
                rx.saturating_add(n.rx_bytes.unwrap_or(0)),
                tx.saturating_add(n.tx_bytes.unwrap_or(0)),
            )
        })
}

/// Σ read, Σ write bytes of `io_service_bytes_recursive`: `calculateBlockIO`.
fn blkio_bytes(s: &ContainerStatsResponse) -> (u64, u64) {
    let entries = s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref());
    let (mut read, mut write) = (0u64, 0u64);
    for e in entries.into_iter().flatten() {
        let value = e.value.unwrap_or(0);
        match e.op.as_deref().and_then(|op| op.bytes().next()) {
            Some(b'r' | b'R') => read = read.saturating_add(value),
            Some(b'w' | b'W') => write = write.saturating_add(value),
            _ => {}
        }
    }
    (read, write)
}

/// The OpenTelemetry `docker_stats` points ([`names`]) of a reading, in this order:
/// - `container.cpu.utilization` (gauge, `%`) when `cpu_percent` is known;
/// - `container.cpu.usage.total` (sum, `ns`);
/// - `container.cpu.limit` (gauge, `{cpus}`) and `container.cpu.shares` (gauge, `1`) when
///   the limits give them;
/// - `container.memory.usage.total`, `container.memory.usage.limit` (gauges, `By`) and
///   `container.memory.percent` (gauge, `%`) when known;
/// - `container.memory.reservation` (gauge, `By`) when the limits give it;
/// - `container.network.io.usage.rx_bytes` / `tx_bytes`,
///   `container.blockio.io_service_bytes_recursive.read` / `write` (sums, `By`);
/// - `container.pids.count` (gauge, `{pids}`) when known.
pub fn container_points(r: &StatsReading, limits: &ContainerLimits) -> Vec<MetricPoint> {
    let mut points = Vec::with_capacity(13);
    if let Some(v) = r.cpu_percent {
        points.push(MetricPoint::gauge(names::CPU_UTILIZATION, "%", v));
    }
    points.push(MetricPoint::sum(
        names::CPU_USAGE_TOTAL,
        "ns",
        r.cpu_total_ns as f64,
    ));
    if let Some(v) = limits.cpus {
        points.push(MetricPoint::gauge(names::CPU_LIMIT, "{cpus}", v));
    }
    if let Some(v) = limits.cpu_shares {
        points.push(MetricPoint::gauge(names::CPU_SHARES, "1", v as f64));
    }
    if let Some(v) = r.memory_used_bytes {
        points.push(MetricPoint::gauge(
            names::MEMORY_USAGE_TOTAL,
            "By",
            v as f64,
        ));
    }
    if let Some(v) = r.memory_limit_bytes {
        points.push(MetricPoint::gauge(
            names::MEMORY_USAGE_LIMIT,
            "By",
            v as f64,
        ));
    }
    if let Some(v) = r.memory_percent {
        points.push(MetricPoint::gauge(names::MEMORY_PERCENT, "%", v));
    }
    if let Some(v) = limits.memory_reservation_bytes {
        points.push(MetricPoint::gauge(
            names::MEMORY_RESERVATION,
            "By",
            v as f64,
        ));
    }
    for (name, v) in [
        (names::NETWORK_RX_BYTES, r.network_rx_bytes),
        (names::NETWORK_TX_BYTES, r.network_tx_bytes),
        (names::BLOCKIO_READ_BYTES, r.blkio_read_bytes),
        (names::BLOCKIO_WRITE_BYTES, r.blkio_write_bytes),
    ] {
        points.push(MetricPoint::sum(name, "By", v as f64));
    }
    if let Some(v) = r.pids {
        points.push(MetricPoint::gauge(names::PIDS_COUNT, "{pids}", v as f64));
    }
    points
}
