//! CloudWatch Container Insights task metrics ([`ecs_names`]) and per-container `docker_stats`
//! metrics ([`sightline_model::metric::names`]) from one `/task` + `/task/stats` poll.
//!
//! Task-level set (CloudWatch user guide, "Amazon ECS Container Insights metrics"; the
//! aggregation follows the OpenTelemetry Collector's `awsecscontainermetricsreceiver`,
//! `internal/awsecscontainermetrics/accumulator.go` and `metrics_helper.go`, which sums the
//! containers of `/task` that have stats and then applies the task-level limits):
//!
//! | metric | value |
//! |---|---|
//! | `CpuUtilized` | Σ containers `cpuDelta / systemDelta × onlineCPUs × 1024`, CPU units |
//! | `CpuReserved` | task `Limits.CPU` (vCPUs) × 1024, else Σ containers' `Limits.CPU` (units) |
//! | `MemoryUtilized` | Σ containers' memory used (as `docker stats`) / 2^20, MiB |
//! | `MemoryReserved` | task `Limits.Memory` (MiB), else Σ containers' `Limits.Memory` |
//! | `NetworkRxBytes`, `NetworkTxBytes` | bytes/s: `network_rate_stats`, else Δbytes / Δ`read` |
//! | `StorageReadBytes`, `StorageWriteBytes` | Σ containers' block I/O bytes (cumulative) |
//!
//! CPU units: `cpuDelta / systemDelta` is the container's share of all the host's CPU time
//! in the interval; × `onlineCPUs` turns it into CPUs busy (the `docker stats` CPU % / 100);
//! ECS counts 1024 units per vCPU. The OTel receiver divides `cpuDelta` by the wall time
//! between `preread` and `read` instead, which is the same quantity since `systemDelta` ≈
//! `onlineCPUs` × wall time; the system counter is used here so that the task figure and the
//! per-container CPU % come from one formula ([`stats_math::cpus_used`]). The interval is the
//! one between this poll and the previous poll of the same container (when that sample is
//! older), else the agent's `precpu_stats`.
//!
//! Network: with `awsvpc` (every Fargate task) all containers of a task share one network
//! namespace, so each reports the same interface counters; the task value is then the
//! largest container value rather than a sum (which would count the ENI once per container).
//! In other modes the containers' values are summed. A metric is left out when no container
//! provides its inputs (e.g. no previous poll and no `network_rate_stats`).
//!
//! Shapes of the batches ([`task_batches`]):
//! - one task batch: `resource.container` = `None`, `service` = `ServiceName` else `Family`,
//!   `source_kind` = `EcsTaskMetadata`, resource attributes `aws.ecs.cluster.name`,
//!   `aws.ecs.cluster.arn` (when `Cluster` is an ARN), `aws.ecs.service.name` (when known),
//!   `aws.ecs.task.arn`, `aws.ecs.task.family`, `aws.ecs.task.revision`, `aws.ecs.launchtype`
//!   (lowercase, `ec2` / `fargate`), `cloud.availability_zone` (each only when non-empty);
//!   time = latest `read` of its containers;
//! - one batch per `NORMAL` container with stats: `resource.container` = Docker ID,
//!   `DockerName`, `Image` and `Labels`; points from [`stats_math::container_points`] with
//!   `container.cpu.shares` = the container's CPU units; the task attributes above minus those
//!   the model already derives from the container's `com.amazonaws.ecs.*` labels, plus
//!   `aws.ecs.container.arn`; time = its `read`, start = its `StartedAt`.
//!
//! Containers of other types (`CNI_PAUSE`, …, "used for internal task resource provisioning")
//! count towards the task totals but get no batch of their own.

use std::collections::BTreeMap;
use std::sync::Arc;

use sightline_model::metric::ecs_names;
use sightline_model::{Container, LogEvent, MetricBatch, MetricPoint, SourceKind};

use super::client::{ContainerMetadata, TaskContainerStats, TaskMetadata, TaskStats};
use crate::parse::timestamp::{now_ns, parse_rfc3339_ns};
use crate::sources::stats_math::{self, ContainerLimits, StatsReading};

/// ECS CPU units per vCPU.
pub const CPU_UNITS_PER_VCPU: f64 = 1024.0;
const BYTES_PER_MIB: f64 = 1_048_576.0;

/// Resource attributes the model derives from container labels (`sightline_model::otlp`):
/// attribute → label. A container batch leaves them to the label.
const LABEL_DERIVED: [(&str, &str); 4] = [
    ("aws.ecs.task.arn", "com.amazonaws.ecs.task-arn"),
    (
        "aws.ecs.task.family",
        "com.amazonaws.ecs.task-definition-family",
    ),
    (
        "aws.ecs.task.revision",
        "com.amazonaws.ecs.task-definition-version",
    ),
    ("aws.ecs.cluster.arn", "com.amazonaws.ecs.cluster"),
];

/// `service.name` of a task: `ServiceName`, else the task definition `Family`.
pub fn task_service(task: &TaskMetadata) -> String {
    match task.service_name.as_deref() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => task.family.clone(),
    }
}

/// The cluster's short name: `Cluster` itself, or the part after the last `/` of an ARN
/// (`arn:aws:ecs:us-west-2:111122223333:cluster/default` → `default`).
pub fn cluster_name(cluster: &str) -> &str {
    if cluster.starts_with("arn:") {
        cluster.rsplit('/').next().unwrap_or(cluster)
    } else {
        cluster
    }
}

/// The task's resource attributes (see the module docs).
pub fn task_attributes(task: &TaskMetadata) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            a.insert(k.to_string(), v.to_string());
        }
    };
    put("aws.ecs.cluster.name", cluster_name(&task.cluster));
    if task.cluster.starts_with("arn:") {
        put("aws.ecs.cluster.arn", &task.cluster);
    }
    put(
        "aws.ecs.service.name",
        task.service_name.as_deref().unwrap_or(""),
    );
    put("aws.ecs.task.arn", &task.task_arn);
    put("aws.ecs.task.family", &task.family);
    put("aws.ecs.task.revision", &task.revision);
    put(
        "aws.ecs.launchtype",
        &task
            .launch_type
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase(),
    );
    put(
        "cloud.availability_zone",
        task.availability_zone.as_deref().unwrap_or(""),
    );
    a
}

/// True when the task's containers share one network namespace (`awsvpc` mode).
fn shared_network(task: &TaskMetadata) -> bool {
    task.containers
        .iter()
        .flat_map(|c| &c.networks)
        .any(|n| n.network_mode.as_deref() == Some("awsvpc"))
}

/// One container of the poll with its current and usable previous sample.
struct Sample<'a> {
    meta: &'a ContainerMetadata,
    cur: &'a TaskContainerStats,
    prev: Option<&'a TaskContainerStats>,
    reading: StatsReading,
}

fn samples<'a>(
    task: &'a TaskMetadata,
    stats: &'a TaskStats,
    prev: Option<&'a TaskStats>,
) -> Vec<Sample<'a>> {
    let mut out = Vec::new();
    for meta in &task.containers {
        let Some(Some(cur)) = stats.get(&meta.docker_id) else {
            continue;
        };
        let cur_read = cur.stats.read.as_deref().and_then(parse_rfc3339_ns);
        // The previous poll's sample, if strictly older (the agent may serve the same one).
        let prev = prev
            .and_then(|p| p.get(&meta.docker_id))
            .and_then(Option::as_ref)
            .filter(|p| {
                let prev_read = p.stats.read.as_deref().and_then(parse_rfc3339_ns);
                matches!((prev_read, cur_read), (Some(a), Some(b)) if a < b)
            });
        let reading = stats_math::reading(&cur.stats, prev.map(|p| &p.stats));
        out.push(Sample {
            meta,
            cur,
            prev,
            reading,
        });
    }
    out
}

/// CPUs busy over the sample's interval ([`stats_math::cpus_used`]).
fn cpus(s: &Sample) -> Option<f64> {
    let cur = s.cur.stats.cpu_stats.as_ref()?;
    let prev = match s.prev {
        Some(p) => p.stats.cpu_stats.as_ref()?,
        None => s.cur.stats.precpu_stats.as_ref()?,
    };
    stats_math::cpus_used(cur, prev)
}

/// (rx, tx) bytes per second of one container: `network_rate_stats`, else the counters'
/// change since the previous sample over the change of `read` (none on a counter reset).
fn network_rates(s: &Sample) -> (Option<f64>, Option<f64>) {
    let rate = s.cur.network_rate.unwrap_or_default();
    let delta = s.prev.and_then(|p| {
        p.stats.networks.as_ref()?;
        s.cur.stats.networks.as_ref()?;
        let before = stats_math::reading(&p.stats, None);
        let secs = s.reading.read_ns.checked_sub(before.read_ns)? as f64 / 1e9;
        let per_sec = |now: u64, then: u64| Some(now.checked_sub(then)? as f64 / secs);
        Some((
            per_sec(s.reading.network_rx_bytes, before.network_rx_bytes),
            per_sec(s.reading.network_tx_bytes, before.network_tx_bytes),
        ))
    });
    let (d_rx, d_tx) = delta.unwrap_or((None, None));
    (
        rate.rx_bytes_per_sec.or(d_rx),
        rate.tx_bytes_per_sec.or(d_tx),
    )
}

/// Sum of the `Some` values (or their maximum when `max`); `None` when there are none.
fn combine(values: impl Iterator<Item = Option<f64>>, max: bool) -> Option<f64> {
    values.flatten().fold(None, |acc, v| {
        Some(match acc {
            None => v,
            Some(a) if max => f64::max(a, v),
            Some(a) => a + v,
        })
    })
}

/// The Container Insights task batch of one poll (see the module docs for the formulas
/// and the shape). `prev` is the previous poll's `/task/stats`, if any.
pub fn container_insights(
    task: &TaskMetadata,
    stats: &TaskStats,
    prev: Option<&TaskStats>,
    host: &str,
) -> MetricBatch {
    task_batch(task, &samples(task, stats, prev), host)
}

/// The task batch followed by one batch per `NORMAL` container with stats.
pub fn task_batches(
    task: &TaskMetadata,
    stats: &TaskStats,
    prev: Option<&TaskStats>,
    host: &str,
) -> Vec<MetricBatch> {
    let samples = samples(task, stats, prev);
    let mut out = Vec::with_capacity(1 + samples.len());
    out.push(task_batch(task, &samples, host));
    let attrs = task_attributes(task);
    let service = task_service(task);
    for s in &samples {
        if s.meta
            .container_type
            .as_deref()
            .is_some_and(|t| t != "NORMAL")
        {
            continue;
        }
        out.push(container_batch(s, &attrs, &service, host));
    }
    out
}

fn task_batch(task: &TaskMetadata, samples: &[Sample], host: &str) -> MetricBatch {
    let mut points = Vec::with_capacity(8);
    let gauge = |name, unit, v| MetricPoint::gauge(name, unit, v);

    if let Some(v) = combine(samples.iter().map(cpus), false) {
        points.push(gauge(
            ecs_names::CPU_UTILIZED,
            "{cpu_units}",
            v * CPU_UNITS_PER_VCPU,
        ));
    }
    let task_limits = task.limits.unwrap_or_default();
    let container_cpu = combine(task.containers.iter().map(|c| c.limits.cpu), false);
    let cpu_reserved = task_limits
        .cpu
        .map(|v| v * CPU_UNITS_PER_VCPU)
        .or(container_cpu);
    if let Some(v) = cpu_reserved {
        points.push(gauge(ecs_names::CPU_RESERVED, "{cpu_units}", v));
    }
    let used: Vec<u64> = samples
        .iter()
        .filter_map(|s| s.reading.memory_used_bytes)
        .collect();
    if !used.is_empty() {
        let bytes = used.iter().fold(0u64, |a, b| a.saturating_add(*b));
        points.push(gauge(
            ecs_names::MEMORY_UTILIZED,
            "MiBy",
            bytes as f64 / BYTES_PER_MIB,
        ));
    }
    let container_mem = combine(task.containers.iter().map(|c| c.limits.memory), false);
    if let Some(v) = task_limits.memory.or(container_mem) {
        points.push(gauge(ecs_names::MEMORY_RESERVED, "MiBy", v));
    }
    let shared = shared_network(task);
    let rates: Vec<(Option<f64>, Option<f64>)> = samples.iter().map(network_rates).collect();
    if let Some(v) = combine(rates.iter().map(|r| r.0), shared) {
        points.push(gauge(ecs_names::NETWORK_RX_BYTES, "By/s", v));
    }
    if let Some(v) = combine(rates.iter().map(|r| r.1), shared) {
        points.push(gauge(ecs_names::NETWORK_TX_BYTES, "By/s", v));
    }
    if !samples.is_empty() {
        let sum = |f: fn(&StatsReading) -> u64| {
            samples
                .iter()
                .fold(0u64, |a, s| a.saturating_add(f(&s.reading))) as f64
        };
        points.push(MetricPoint::sum(
            ecs_names::STORAGE_READ_BYTES,
            "By",
            sum(|r| r.blkio_read_bytes),
        ));
        points.push(MetricPoint::sum(
            ecs_names::STORAGE_WRITE_BYTES,
            "By",
            sum(|r| r.blkio_write_bytes),
        ));
    }

    let time_ns = samples
        .iter()
        .map(|s| s.reading.read_ns)
        .max()
        .filter(|t| *t > 0)
        .unwrap_or_else(now_ns);
    let start_ns = samples
        .iter()
        .filter_map(|s| s.meta.started_at.as_deref().and_then(parse_rfc3339_ns))
        .min()
        .unwrap_or(0);
    MetricBatch {
        resource: LogEvent {
            host: host.to_string(),
            service: task_service(task),
            source_kind: SourceKind::EcsTaskMetadata,
            ..Default::default()
        },
        resource_attributes: task_attributes(task),
        time_ns,
        start_ns,
        points,
    }
}

fn container_batch(
    s: &Sample,
    task_attrs: &BTreeMap<String, String>,
    service: &str,
    host: &str,
) -> MetricBatch {
    let m = s.meta;
    let mut attrs = task_attrs.clone();
    for (attr, label) in LABEL_DERIVED {
        if m.labels.contains_key(label) {
            attrs.remove(attr);
        }
    }
    if let Some(arn) = m.container_arn.as_deref().filter(|a| !a.is_empty()) {
        attrs.insert("aws.ecs.container.arn".into(), arn.to_string());
    }
    let limits = ContainerLimits {
        cpus: None,
        cpu_shares: m.limits.cpu.filter(|c| *c > 0.0).map(|c| c.round() as u64),
        memory_reservation_bytes: None,
    };
    let name = if m.docker_name.is_empty() {
        &m.name
    } else {
        &m.docker_name
    };
    MetricBatch {
        resource: LogEvent {
            host: host.to_string(),
            service: service.to_string(),
            source_kind: SourceKind::EcsTaskMetadata,
            container: Some(Arc::new(Container {
                id: m.docker_id.clone(),
                name: name.trim_start_matches('/').to_string(),
                image: m.image.clone(),
                labels: m.labels.clone(),
            })),
            ..Default::default()
        },
        resource_attributes: attrs,
        time_ns: match s.reading.read_ns {
            0 => now_ns(),
            t => t,
        },
        start_ns: m
            .started_at
            .as_deref()
            .and_then(parse_rfc3339_ns)
            .unwrap_or(0),
        points: stats_math::container_points(&s.reading, &limits),
    }
}
