//! Metric samples: container stats and ECS task metrics, as OTLP `MetricsData` on
//! [`crate::kafka::METRICS_TOPIC`].
//!
//! A [`MetricBatch`] is the samples of one resource (one container, or one ECS task) taken at
//! one instant. Its mapping:
//! - one `ResourceMetrics` per batch, with the resource attributes of log events
//!   (`service.name`, `host.name`, `container.*`, `aws.ecs.*`, see [`crate::otlp`]) plus the
//!   batch's extra resource attributes (e.g. `aws.ecs.cluster.name`, `aws.ecs.service.name`);
//! - one `ScopeMetrics` with scope `sightline` and `sightline.schema_version`;
//! - one `Metric` per [`MetricPoint`], holding a single `NumberDataPoint` (`as_double`) with
//!   the point's attributes; a [`MetricKind::Gauge`] is an OTLP `Gauge`, a
//!   [`MetricKind::CumulativeSum`] an OTLP monotonic cumulative `Sum` whose
//!   `start_time_unix_nano` is the batch's `start_ns`.
//!
//! Names follow the OpenTelemetry Collector's `docker_stats` receiver for container stats
//! ([`names`]) and CloudWatch Container Insights for ECS task metrics ([`ecs_names`]).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Metric, MetricsData,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::event::{LogEvent, SourceKind};
use crate::otlp::{kv_str, resource_attributes, resource_fields, scope, DecodeError};

/// Container stats metric names (OpenTelemetry `docker_stats` receiver conventions).
pub mod names {
    /// CPU % as `docker stats` computes it: Δ`cpu_usage.total_usage` / Δ`system_cpu_usage`
    /// × `online_cpus` × 100 (100 % = one CPU busy). Gauge, unit `%`.
    pub const CPU_UTILIZATION: &str = "container.cpu.utilization";
    /// CPU time used since the container started (`cpu_usage.total_usage`). Sum, unit `ns`.
    pub const CPU_USAGE_TOTAL: &str = "container.cpu.usage.total";
    /// CPUs the container may use (`NanoCpus`, or `CpuQuota`/`CpuPeriod`); absent when
    /// unlimited. Gauge, unit `{cpus}`.
    pub const CPU_LIMIT: &str = "container.cpu.limit";
    /// Relative CPU weight (`CpuShares`; ECS sets CPU units here). Gauge, unit `1`.
    pub const CPU_SHARES: &str = "container.cpu.shares";
    /// Memory used excluding inactive file cache, as `docker stats` computes it:
    /// `usage - total_inactive_file` (cgroup v1) or `usage - inactive_file` (cgroup v2).
    /// Gauge, unit `By`.
    pub const MEMORY_USAGE_TOTAL: &str = "container.memory.usage.total";
    /// Memory limit (`memory_stats.limit`; the host's memory when unlimited). Gauge, `By`.
    pub const MEMORY_USAGE_LIMIT: &str = "container.memory.usage.limit";
    /// Memory used as % of the limit. Gauge, unit `%`.
    pub const MEMORY_PERCENT: &str = "container.memory.percent";
    /// Memory reservation (`MemoryReservation`, ECS's soft limit); absent when unset.
    /// Gauge, unit `By`.
    pub const MEMORY_RESERVATION: &str = "container.memory.reservation";
    /// Bytes received, summed over interfaces. Sum, unit `By`.
    pub const NETWORK_RX_BYTES: &str = "container.network.io.usage.rx_bytes";
    /// Bytes sent, summed over interfaces. Sum, unit `By`.
    pub const NETWORK_TX_BYTES: &str = "container.network.io.usage.tx_bytes";
    /// Block I/O bytes read (`io_service_bytes_recursive`, ops starting with `r`). Sum, `By`.
    pub const BLOCKIO_READ_BYTES: &str = "container.blockio.io_service_bytes_recursive.read";
    /// Block I/O bytes written (ops starting with `w`). Sum, unit `By`.
    pub const BLOCKIO_WRITE_BYTES: &str = "container.blockio.io_service_bytes_recursive.write";
    /// Processes and threads in the container (`pids_stats.current`). Gauge, `{pids}`.
    pub const PIDS_COUNT: &str = "container.pids.count";
}

/// ECS task metrics (CloudWatch Container Insights names, namespace `ECS/ContainerInsights`).
pub mod ecs_names {
    /// CPU units used by the task (1 vCPU = 1024 units). Gauge, unit `{cpu_units}`.
    pub const CPU_UTILIZED: &str = "CpuUtilized";
    /// CPU units reserved by the task (task or container limits). Gauge, `{cpu_units}`.
    pub const CPU_RESERVED: &str = "CpuReserved";
    /// Memory used by the task, MiB (Container Insights' `Megabytes`). Gauge, unit `MiBy`.
    pub const MEMORY_UTILIZED: &str = "MemoryUtilized";
    /// Memory reserved by the task, MiB. Gauge, unit `MiBy`.
    pub const MEMORY_RESERVED: &str = "MemoryReserved";
    /// Bytes received per second. Gauge, unit `By/s`.
    pub const NETWORK_RX_BYTES: &str = "NetworkRxBytes";
    /// Bytes sent per second. Gauge, unit `By/s`.
    pub const NETWORK_TX_BYTES: &str = "NetworkTxBytes";
    /// Bytes read from storage since the task started. Sum, unit `By`.
    pub const STORAGE_READ_BYTES: &str = "StorageReadBytes";
    /// Bytes written to storage since the task started. Sum, unit `By`.
    pub const STORAGE_WRITE_BYTES: &str = "StorageWriteBytes";
}

/// How a point's value behaves over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MetricKind {
    /// A value at an instant (CPU %, memory used).
    Gauge,
    /// A running total since `start_ns` (bytes sent, CPU ns): OTLP cumulative monotonic sum.
    CumulativeSum,
}

/// One sample of one metric.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricPoint {
    /// Metric name, e.g. [`names::CPU_UTILIZATION`].
    pub name: String,
    /// UCUM unit as OpenTelemetry writes it: `%`, `By`, `ns`, `{pids}`, `By/s`.
    pub unit: String,
    /// Gauge or cumulative sum.
    pub kind: MetricKind,
    /// The value.
    pub value: f64,
    /// Point attributes (e.g. `interface`); most metrics have none.
    pub attributes: BTreeMap<String, String>,
}

impl MetricPoint {
    /// A gauge point without attributes.
    pub fn gauge(name: &str, unit: &str, value: f64) -> Self {
        MetricPoint {
            name: name.into(),
            unit: unit.into(),
            kind: MetricKind::Gauge,
            value,
            attributes: BTreeMap::new(),
        }
    }

    /// A cumulative-sum point without attributes.
    pub fn sum(name: &str, unit: &str, value: f64) -> Self {
        MetricPoint {
            kind: MetricKind::CumulativeSum,
            ..MetricPoint::gauge(name, unit, value)
        }
    }
}

/// The samples of one resource taken at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricBatch {
    /// Who the samples describe: `host`, `service`, `container` and `source_kind` are read
    /// (as for a log event's resource); the other fields are ignored.
    pub resource: LogEvent,
    /// Extra resource attributes, e.g. `aws.ecs.cluster.name`, `aws.ecs.service.name`.
    pub resource_attributes: BTreeMap<String, String>,
    /// When the samples were read, Unix ns.
    pub time_ns: u64,
    /// Start of the cumulative sums (the container's start), Unix ns; 0 when unknown.
    pub start_ns: u64,
    /// The samples.
    pub points: Vec<MetricPoint>,
}

impl MetricBatch {
    /// The value of the first point named `name`, if any.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.points.iter().find(|p| p.name == name).map(|p| p.value)
    }
}

/// Encodes batches as one OTLP `MetricsData` protobuf (see the module docs).
pub fn encode_metrics(batches: &[MetricBatch]) -> Vec<u8> {
    let data = MetricsData {
        resource_metrics: batches.iter().map(resource_metrics).collect(),
    };
    data.encode_to_vec()
}

fn resource_metrics(b: &MetricBatch) -> ResourceMetrics {
    let mut attributes = resource_attributes(&b.resource);
    attributes.extend(b.resource_attributes.iter().map(|(k, v)| kv_str(k, v)));
    let metrics = b
        .points
        .iter()
        .map(|p| {
            let point = NumberDataPoint {
                attributes: p.attributes.iter().map(|(k, v)| kv_str(k, v)).collect(),
                start_time_unix_nano: match p.kind {
                    MetricKind::Gauge => 0,
                    MetricKind::CumulativeSum => b.start_ns,
                },
                time_unix_nano: b.time_ns,
                value: Some(number_data_point::Value::AsDouble(p.value)),
                ..Default::default()
            };
            let data = match p.kind {
                MetricKind::Gauge => Data::Gauge(Gauge {
                    data_points: vec![point],
                }),
                MetricKind::CumulativeSum => Data::Sum(Sum {
                    data_points: vec![point],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
            };
            Metric {
                name: p.name.clone(),
                unit: p.unit.clone(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ResourceMetrics {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(scope()),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

/// Decodes an OTLP `MetricsData` protobuf into batches: one batch per (resource, time) of
/// each `ResourceMetrics`. Gauges and sums with `as_double` or `as_int` values are read;
/// histograms and summaries are skipped. Resource attributes that are not part of the log
/// resource mapping land in [`MetricBatch::resource_attributes`].
///
/// Errors: [`DecodeError::Protobuf`] when the bytes are not a `MetricsData`.
pub fn decode_metrics(bytes: &[u8]) -> Result<Vec<MetricBatch>, DecodeError> {
    let data = MetricsData::decode(bytes)?;
    let mut out = Vec::new();
    for rm in data.resource_metrics {
        let attrs = rm.resource.map(|r| r.attributes).unwrap_or_default();
        let (resource, extra) = resource_fields(&attrs, SourceKind::DockerStats);
        let mut by_time: BTreeMap<(u64, u64), Vec<MetricPoint>> = BTreeMap::new();
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let (kind, points) = match m.data {
                    Some(Data::Gauge(g)) => (MetricKind::Gauge, g.data_points),
                    Some(Data::Sum(s)) => (MetricKind::CumulativeSum, s.data_points),
                    _ => continue,
                };
                for p in points {
                    let value = match p.value {
                        Some(number_data_point::Value::AsDouble(v)) => v,
                        Some(number_data_point::Value::AsInt(v)) => v as f64,
                        None => continue,
                    };
                    let attributes = p
                        .attributes
                        .iter()
                        .filter_map(
                            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(Value::StringValue(s)) => Some((kv.key.clone(), s.clone())),
                                _ => None,
                            },
                        )
                        .collect();
                    let start = if kind == MetricKind::CumulativeSum {
                        p.start_time_unix_nano
                    } else {
                        0
                    };
                    by_time
                        .entry((p.time_unix_nano, start))
                        .or_default()
                        .push(MetricPoint {
                            name: m.name.clone(),
                            unit: m.unit.clone(),
                            kind,
                            value,
                            attributes,
                        });
                }
            }
        }
        // Gauges (start 0) and sums of the same instant form one batch.
        let mut merged: BTreeMap<u64, (u64, Vec<MetricPoint>)> = BTreeMap::new();
        for ((time, start), points) in by_time {
            let e = merged.entry(time).or_default();
            e.0 = e.0.max(start);
            e.1.extend(points);
        }
        for (time_ns, (start_ns, points)) in merged {
            out.push(MetricBatch {
                resource: resource.clone(),
                resource_attributes: extra.clone(),
                time_ns,
                start_ns,
                points,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::Container;

    #[test]
    fn metrics_round_trip() {
        let container = Container {
            id: "abc123".into(),
            name: "web-1".into(),
            image: "busybox".into(),
            labels: [("com.amazonaws.ecs.cluster".to_string(), "prod".to_string())].into(),
        };
        let batch = MetricBatch {
            resource: LogEvent {
                host: "h1".into(),
                service: "web".into(),
                source_kind: SourceKind::DockerStats,
                container: Some(Arc::new(container)),
                ..Default::default()
            },
            resource_attributes: [("aws.ecs.service.name".to_string(), "web".to_string())].into(),
            time_ns: 1_700_000_000_000_000_000,
            start_ns: 1_600_000_000_000_000_000,
            points: vec![
                MetricPoint::gauge(names::CPU_UTILIZATION, "%", 57.5),
                MetricPoint::sum(names::NETWORK_RX_BYTES, "By", 1234.0),
            ],
        };
        let bytes = encode_metrics(std::slice::from_ref(&batch));
        let back = decode_metrics(&bytes).unwrap();
        assert_eq!(back, vec![batch]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_metrics(&[0xff, 0xff, 0xff]).is_err());
    }
}
