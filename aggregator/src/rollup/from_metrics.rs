//! Container stats and ECS task metrics → per-service window values.
//!
//! Each [`MetricBatch`] becomes one [`StatSample`] of a *unit*: an ECS task (a task batch,
//! Container Insights names) or a container (a `docker_stats` batch). Samples are kept per
//! unit by sample time, so applying the same (unit, time) twice replaces the sample with an
//! identical one; window values are computed from the samples (see [`compute_window`] and
//! `docs/rollups.md` for the formulas).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sightline_model::metric::{ecs_names, names};
use sightline_model::{Container, MetricBatch, SourceKind};

use super::window::{MetricValues, SeriesKey};

/// ECS CPU units per vCPU.
pub const CPU_UNITS_PER_VCPU: f64 = 1024.0;
const MIB: f64 = 1_048_576.0;

/// Why a batch was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// Neither a service name nor a container/task identity.
    #[error("metric batch without service name")]
    NoService,
    /// A container batch without a container, or a task batch without `aws.ecs.task.arn`.
    #[error("metric batch without container ID or task ARN")]
    NoIdentity,
    /// `time_ns` is 0 or beyond year 2262.
    #[error("metric batch with invalid time {0}")]
    BadTime(u64),
}

/// One reading of one unit (task or container), in the units of the rollups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatSample {
    /// `service` label.
    pub service: String,
    /// `cluster` label (may be empty).
    pub cluster: String,
    /// ECS task ARN, empty outside ECS.
    pub task_arn: String,
    /// True for an ECS task batch (task-level CPU/memory).
    pub is_task: bool,
    /// Start of the cumulative counters, Unix ns (0 unknown); a change means a restart.
    pub start_ns: u64,
    /// CPU used, CPU units.
    pub cpu_used: Option<f64>,
    /// CPU reserved, CPU units.
    pub cpu_reserved: Option<f64>,
    /// Memory used, bytes.
    pub mem_used: Option<f64>,
    /// Memory reserved, bytes.
    pub mem_reserved: Option<f64>,
    /// Cumulative counters (bytes): rx, tx, read, write; containers only.
    pub counters: [Option<f64>; 4],
}

/// The cluster short name of a resource: `aws.ecs.cluster.name`, else the
/// `com.amazonaws.ecs.cluster` container label or `aws.ecs.cluster.arn` (the part after the
/// last `/` of an ARN); empty when none is known.
pub fn cluster_of<'a>(
    container: Option<&'a Container>,
    attrs: &'a BTreeMap<String, String>,
) -> &'a str {
    if let Some(n) = attrs.get("aws.ecs.cluster.name").filter(|n| !n.is_empty()) {
        return n;
    }
    let raw = container
        .and_then(|c| c.labels.get("com.amazonaws.ecs.cluster"))
        .or_else(|| attrs.get("aws.ecs.cluster.arn"));
    match raw {
        Some(c) if c.starts_with("arn:") => c.rsplit('/').next().unwrap_or(c),
        Some(c) => c,
        None => "",
    }
}

/// The unit ID (`task:<arn>` or the container ID), sample time (Unix ns) and sample of a
/// batch. Errors: see [`SampleError`].
pub fn sample_of(b: &MetricBatch) -> Result<(String, u64, StatSample), SampleError> {
    if b.time_ns == 0 || b.time_ns > i64::MAX as u64 {
        return Err(SampleError::BadTime(b.time_ns));
    }
    let container = b.resource.container.as_deref();
    let mut service = b.resource.service.clone();
    if service.is_empty() {
        service = b
            .resource_attributes
            .get("aws.ecs.service.name")
            .cloned()
            .unwrap_or_default();
    }
    if service.is_empty() {
        return Err(SampleError::NoService);
    }
    let cluster = cluster_of(container, &b.resource_attributes).to_string();
    let task_arn = b
        .resource_attributes
        .get("aws.ecs.task.arn")
        .or_else(|| container.and_then(|c| c.labels.get("com.amazonaws.ecs.task-arn")))
        .cloned()
        .unwrap_or_default();
    let is_task = container.is_none() && b.resource.source_kind == SourceKind::EcsTaskMetadata;
    if is_task {
        if task_arn.is_empty() {
            return Err(SampleError::NoIdentity);
        }
        let s = StatSample {
            service,
            cluster,
            task_arn: task_arn.clone(),
            is_task,
            start_ns: b.start_ns,
            cpu_used: b.value(ecs_names::CPU_UTILIZED),
            cpu_reserved: b.value(ecs_names::CPU_RESERVED),
            mem_used: b.value(ecs_names::MEMORY_UTILIZED).map(|v| v * MIB),
            mem_reserved: b.value(ecs_names::MEMORY_RESERVED).map(|v| v * MIB),
            counters: [None; 4],
        };
        return Ok((format!("task:{task_arn}"), b.time_ns, s));
    }
    let Some(c) = container else {
        return Err(SampleError::NoIdentity);
    };
    let cpu_reserved = match (b.value(names::CPU_LIMIT), b.value(names::CPU_SHARES)) {
        (Some(cpus), _) if cpus > 0.0 => cpus * CPU_UNITS_PER_VCPU,
        // ECS writes the container's `cpu` units into CpuShares (2 when unset).
        (_, Some(shares)) if !task_arn.is_empty() && shares > 2.0 => shares,
        // No limit: one vCPU, the reference of `docker stats`' CPU %.
        _ => CPU_UNITS_PER_VCPU,
    };
    let cpu_used = b
        .value(names::CPU_UTILIZATION)
        .map(|pct| pct / 100.0 * CPU_UNITS_PER_VCPU);
    let mem_reserved = b
        .value(names::MEMORY_RESERVATION)
        .filter(|v| *v > 0.0)
        .or_else(|| b.value(names::MEMORY_USAGE_LIMIT));
    let s = StatSample {
        service,
        cluster,
        task_arn,
        is_task,
        start_ns: b.start_ns,
        cpu_used,
        cpu_reserved: cpu_used.map(|_| cpu_reserved),
        mem_used: b.value(names::MEMORY_USAGE_TOTAL),
        mem_reserved,
        counters: [
            b.value(names::NETWORK_RX_BYTES),
            b.value(names::NETWORK_TX_BYTES),
            b.value(names::BLOCKIO_READ_BYTES),
            b.value(names::BLOCKIO_WRITE_BYTES),
        ],
    };
    Ok((c.id.clone(), b.time_ns, s))
}

/// Samples per unit, by sample time (Unix ns).
pub type History = BTreeMap<String, BTreeMap<u64, StatSample>>;

/// Increase of counter `i` from the unit's previous sample to `cur`: the difference, or
/// the whole value after a reset (value went down or the start time changed), as
/// Prometheus' `increase`; for a unit's first sample, its whole value when the unit
/// started inside the window (`start_ns >= window_start_ns`), else 0.
fn increase(
    prev: Option<&StatSample>,
    cur: &StatSample,
    i: usize,
    window_start_ns: u64,
) -> Option<f64> {
    let c = cur.counters[i]?;
    Some(match prev.and_then(|p| p.counters[i].map(|v| (p, v))) {
        Some((p, pv)) if p.start_ns == cur.start_ns && c >= pv => c - pv,
        Some(_) => c,
        None if cur.start_ns > 0 && cur.start_ns >= window_start_ns => c,
        None => 0.0,
    })
}

#[derive(Default)]
struct Acc {
    cpu_sum: f64,
    cpu_n: u32,
    cpu_res_sum: f64,
    cpu_res_n: u32,
    mem_sum: f64,
    mem_n: u32,
    mem_res_sum: f64,
    mem_res_n: u32,
}

fn mean(sum: f64, n: u32) -> f64 {
    if n == 0 {
        0.0
    } else {
        sum / f64::from(n)
    }
}

/// The metric values of every service key for the window `[start_ms, end_ms)`:
/// - `cpu_*`/`memory_*`: per unit the mean of its samples in the window, summed over
///   units; a container whose ECS task sent a task batch in the window is left to the task;
/// - counters: per container the sum of its [`increase`]s with sample time in the window;
///   containers of one ECS task count the largest network increase among them once (with
///   `awsvpc` they all report the task's interface), block I/O is summed;
/// - `running_tasks`: distinct task ARNs, plus container IDs of non-ECS containers.
///
/// Computed from samples in sorted order, so the result does not depend on arrival order.
pub fn compute_window(
    history: &History,
    start_ms: i64,
    end_ms: i64,
) -> BTreeMap<SeriesKey, MetricValues> {
    let (s_ns, e_ns) = (ms_to_ns(start_ms), ms_to_ns(end_ms));
    // Tasks with task-level samples in the window, per key.
    let mut task_level: BTreeSet<(SeriesKey, &str)> = BTreeSet::new();
    for samples in history.values() {
        for s in samples
            .range(s_ns..e_ns)
            .map(|(_, s)| s)
            .filter(|s| s.is_task)
        {
            task_level.insert((key_of(s), s.task_arn.as_str()));
        }
    }
    let mut out: BTreeMap<SeriesKey, (MetricValues, Acc, BTreeSet<String>)> = BTreeMap::new();
    // Network increase per (key, task): the largest container's.
    let mut task_net: BTreeMap<(SeriesKey, String), [f64; 2]> = BTreeMap::new();
    for (unit, samples) in history {
        let mut in_window = samples.range(s_ns..e_ns).peekable();
        if in_window.peek().is_none() {
            continue;
        }
        let mut units: BTreeMap<SeriesKey, (Acc, [f64; 4], bool, &str)> = BTreeMap::new();
        for (&t, s) in in_window {
            let key = key_of(s);
            let skip_cpu_mem = !s.is_task
                && !s.task_arn.is_empty()
                && task_level.contains(&(key.clone(), s.task_arn.as_str()));
            let e = units
                .entry(key)
                .or_insert_with(|| (Acc::default(), [0.0; 4], false, s.task_arn.as_str()));
            if !skip_cpu_mem {
                if let Some(v) = s.cpu_used {
                    e.0.cpu_sum += v;
                    e.0.cpu_n += 1;
                }
                if let Some(v) = s.cpu_reserved {
                    e.0.cpu_res_sum += v;
                    e.0.cpu_res_n += 1;
                }
                if let Some(v) = s.mem_used {
                    e.0.mem_sum += v;
                    e.0.mem_n += 1;
                }
                if let Some(v) = s.mem_reserved {
                    e.0.mem_res_sum += v;
                    e.0.mem_res_n += 1;
                }
            }
            let prev = samples.range(..t).next_back().map(|(_, p)| p);
            for i in 0..4 {
                if let Some(inc) = increase(prev, s, i, s_ns) {
                    e.1[i] += inc;
                    e.2 = true;
                }
            }
        }
        for (key, (acc, incs, has_counters, task)) in units {
            let (m, _, running) = out
                .entry(key.clone())
                .or_insert_with(|| (MetricValues::default(), Acc::default(), BTreeSet::new()));
            running.insert(if task.is_empty() {
                unit.clone()
            } else {
                format!("task:{task}")
            });
            if acc.cpu_n > 0 {
                m.has_cpu = true;
                m.cpu_used_units += mean(acc.cpu_sum, acc.cpu_n);
                m.cpu_reserved_units += mean(acc.cpu_res_sum, acc.cpu_res_n);
            }
            if acc.mem_n > 0 {
                m.has_memory = true;
                m.memory_used_bytes += mean(acc.mem_sum, acc.mem_n);
                m.memory_reserved_bytes += mean(acc.mem_res_sum, acc.mem_res_n);
            }
            if has_counters {
                if task.is_empty() {
                    m.network_rx_bytes += incs[0];
                    m.network_tx_bytes += incs[1];
                } else {
                    let n = task_net.entry((key, task.to_string())).or_default();
                    n[0] = n[0].max(incs[0]);
                    n[1] = n[1].max(incs[1]);
                }
                m.storage_read_bytes += incs[2];
                m.storage_write_bytes += incs[3];
            }
        }
    }
    for ((key, _), [rx, tx]) in task_net {
        if let Some((m, _, _)) = out.get_mut(&key) {
            m.network_rx_bytes += rx;
            m.network_tx_bytes += tx;
        }
    }
    out.into_iter()
        .map(|(k, (mut m, _, running))| {
            m.running_tasks = running.len() as u64;
            (k, m)
        })
        .collect()
}

fn key_of(s: &StatSample) -> SeriesKey {
    SeriesKey {
        service: s.service.clone(),
        cluster: s.cluster.clone(),
    }
}

/// Unix ms → ns, clamped at 0.
pub fn ms_to_ns(ms: i64) -> u64 {
    (ms.max(0) as u64).saturating_mul(1_000_000)
}
