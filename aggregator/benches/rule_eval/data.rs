//! `rule_eval`'s synthetic fleet: per-service profiles, ECS containers, and the
//! `docker_stats` batches and log lines of each 10 s window.

use std::collections::BTreeMap;
use std::sync::Arc;

use sightline_model::metric::names;
use sightline_model::{
    Container, EventId, Level, LogEvent, MetricBatch, MetricPoint, SourceKind, SourcePosition,
};

use crate::common::mix;

/// 2024-05-01T00:00:00Z, a minute boundary.
pub const T0_MS: i64 = 1_714_521_600_000;
pub const WINDOW_MS: i64 = 10_000;
pub const CLUSTERS: [&str; 5] = ["prod-a", "prod-b", "prod-c", "prod-d", "prod-e"];
const GIB: f64 = 1_073_741_824.0;

/// A uniform number in [0, 1) from `x`.
fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

/// How one service behaves (fixed per service; most are healthy).
struct Profile {
    name: String,
    cluster: &'static str,
    cpu_pct: f64,
    mem_frac: f64,
    error_frac: f64,
    status_5xx_frac: f64,
    /// Upper bound of request durations, ms.
    slow_ms: u64,
    oom: bool,
    /// Window index after which the last task stops reporting (a lost task).
    task_lost_at: Option<i64>,
}

fn profile(i: usize, lost_at: i64) -> Profile {
    let h = i as u64;
    let hot_cpu = i % 37 == 5;
    let hot_mem = i % 41 == 7;
    let erroring = i % 29 == 3;
    let slow = i % 31 == 11;
    Profile {
        name: format!("svc-{i}"),
        cluster: CLUSTERS[i % CLUSTERS.len()],
        cpu_pct: if hot_cpu {
            86.0 + 10.0 * unit(h * 7 + 1)
        } else {
            8.0 + 55.0 * unit(h * 7 + 1)
        },
        mem_frac: if hot_mem {
            0.89 + 0.08 * unit(h * 7 + 2)
        } else {
            0.25 + 0.45 * unit(h * 7 + 2)
        },
        error_frac: if erroring {
            0.08 + 0.12 * unit(h * 7 + 3)
        } else {
            0.01 * unit(h * 7 + 3)
        },
        status_5xx_frac: if erroring {
            0.06 + 0.06 * unit(h * 7 + 4)
        } else {
            0.004 * unit(h * 7 + 4)
        },
        slow_ms: if slow {
            2_500
        } else {
            120 + (250.0 * unit(h * 7 + 5)) as u64
        },
        oom: i % 97 == 1,
        task_lost_at: (i % 53 == 13).then_some(lost_at),
    }
}

/// The fleet: per service its profile and its containers (one ECS task each).
pub struct Fleet {
    services: Vec<Profile>,
    containers: Vec<Vec<Arc<Container>>>,
    lines: usize,
}

impl Fleet {
    pub fn new(services: usize, tasks: usize, lines: usize, lost_at: i64) -> Self {
        let profiles: Vec<Profile> = (0..services).map(|i| profile(i, lost_at)).collect();
        let containers = profiles
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (0..tasks)
                    .map(|t| {
                        let task_id = format!("{:032x}", mix((i * 64 + t) as u64) as u128 * 7919);
                        let labels: BTreeMap<String, String> = [
                            (
                                "com.amazonaws.ecs.cluster",
                                format!("arn:aws:ecs:us-east-1:111122223333:cluster/{}", p.cluster),
                            ),
                            (
                                "com.amazonaws.ecs.task-arn",
                                format!(
                                    "arn:aws:ecs:us-east-1:111122223333:task/{}/{task_id}",
                                    p.cluster
                                ),
                            ),
                            ("com.amazonaws.ecs.task-definition-family", p.name.clone()),
                            ("com.amazonaws.ecs.task-definition-version", "42".into()),
                            ("com.amazonaws.ecs.container-name", "app".into()),
                        ]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect();
                        Arc::new(Container {
                            id: format!("{:016x}{:016x}{:032x}", mix(i as u64), mix(t as u64), 0),
                            name: format!("ecs-{}-42-app-{task_id}", p.name),
                            image: format!(
                                "111122223333.dkr.ecr.us-east-1.amazonaws.com/{}:42",
                                p.name
                            ),
                            labels,
                        })
                    })
                    .collect()
            })
            .collect();
        Fleet {
            services: profiles,
            containers,
            lines: lines.max(1),
        }
    }

    /// The stats batches and log events of 10 s window `w` (window start `T0 + w × 10 s`).
    pub fn window(&self, w: i64) -> (Vec<MetricBatch>, Vec<LogEvent>) {
        let start_ms = T0_MS + w * WINDOW_MS;
        let mut batches = Vec::new();
        let mut events = Vec::with_capacity(self.services.len() * self.lines);
        // Slow wave over time (10 min period) so range functions see varying data.
        let wave = |phase: f64| (std::f64::consts::TAU * (w as f64 / 60.0) + phase).sin();
        for (i, p) in self.services.iter().enumerate() {
            let conts = &self.containers[i];
            for (t, c) in conts.iter().enumerate() {
                let last_task = t + 1 == conts.len() && conts.len() > 1;
                if last_task && p.task_lost_at.is_some_and(|at| w >= at) {
                    continue;
                }
                let key = (i * 64 + t) as u64;
                let at_ms = start_ms + 500 + (mix(key) % 9_000) as i64;
                let noise = unit(key ^ ((w as u64) << 20)) - 0.5;
                let cpu = (p.cpu_pct + 6.0 * wave(i as f64) + 4.0 * noise).clamp(0.5, 100.0);
                let limit = GIB;
                let mem = (p.mem_frac + 0.02 * wave(i as f64 + 1.0)).clamp(0.05, 0.99) * limit;
                let elapsed = (w + 10_000) as f64;
                let rx = elapsed * (40_000.0 + 1_000.0 * (i % 50) as f64);
                batches.push(MetricBatch {
                    resource: LogEvent {
                        host: format!("ip-10-0-{}-{}", i % 16, t),
                        service: p.name.clone(),
                        source_kind: SourceKind::DockerStats,
                        container: Some(c.clone()),
                        ..Default::default()
                    },
                    resource_attributes: BTreeMap::new(),
                    time_ns: (at_ms * 1_000_000) as u64,
                    start_ns: ((T0_MS - 86_400_000) * 1_000_000) as u64,
                    points: vec![
                        MetricPoint::gauge(names::CPU_UTILIZATION, "%", cpu),
                        MetricPoint::sum(names::CPU_USAGE_TOTAL, "ns", elapsed * cpu * 1e8),
                        MetricPoint::gauge(names::CPU_SHARES, "1", 1024.0),
                        MetricPoint::gauge(names::MEMORY_USAGE_TOTAL, "By", mem),
                        MetricPoint::gauge(names::MEMORY_USAGE_LIMIT, "By", limit),
                        MetricPoint::gauge(names::MEMORY_PERCENT, "%", mem / limit * 100.0),
                        MetricPoint::sum(names::NETWORK_RX_BYTES, "By", rx),
                        MetricPoint::sum(names::NETWORK_TX_BYTES, "By", rx * 0.6),
                        MetricPoint::sum(names::BLOCKIO_READ_BYTES, "By", elapsed * 4096.0),
                        MetricPoint::sum(names::BLOCKIO_WRITE_BYTES, "By", elapsed * 8192.0),
                        MetricPoint::gauge(names::PIDS_COUNT, "{pids}", 23.0),
                    ],
                });
            }
            for k in 0..self.lines {
                let seq = (w as u64) * 1_000_000 + k as u64;
                let x = mix(((i as u64) << 40) ^ seq);
                let r = unit(x);
                let c = &conts[k % conts.len()];
                let ts_ms = start_ms + (k as i64 * WINDOW_MS) / self.lines as i64 + (x % 97) as i64;
                let (level, message) = if p.oom && k == 0 {
                    (
                        Level::Error,
                        "ERROR java.lang.OutOfMemoryError: Java heap space at com.example.orders.BatchWriter.flush(BatchWriter.java:88)".to_string(),
                    )
                } else if r < p.error_frac {
                    (
                        Level::Error,
                        format!(
                            "ERROR request {} failed: upstream {} timed out after 3000 ms",
                            x % 1_000_000,
                            CLUSTERS[(x % 5) as usize]
                        ),
                    )
                } else if r < p.error_frac + 0.03 {
                    (
                        Level::Warn,
                        format!(
                            "WARN retrying call to inventory (attempt {}) for order {}",
                            x % 3 + 1,
                            x % 100_000
                        ),
                    )
                } else if r < 0.65 {
                    let status = if unit(x ^ 0xABCD) < p.status_5xx_frac {
                        503
                    } else if x.is_multiple_of(23) {
                        404
                    } else {
                        200
                    };
                    (
                        Level::Info,
                        format!(
                            r#"{{"ts":"2024-05-01T00:00:00Z","level":"info","msg":"handled request","method":"GET","path":"/api/orders/{}","status":{status},"duration_ms":{},"correlation_id":"req-{:012x}"}}"#,
                            x % 10_000,
                            1 + (x >> 20) % p.slow_ms,
                            x >> 16
                        ),
                    )
                } else {
                    (
                        Level::Info,
                        format!("INFO order {} processed for customer {} in region us-east-1, items={} total=42.50", x % 1_000_000, x % 77_777, x % 9 + 1),
                    )
                };
                events.push(LogEvent {
                    event_id: EventId::derive(key_of(i, k % conts.len()), seq),
                    timestamp_ns: (ts_ms * 1_000_000) as u64,
                    observed_ns: (ts_ms * 1_000_000 + 150_000_000) as u64,
                    host: format!("ip-10-0-{}-{}", i % 16, k % conts.len()),
                    source_kind: SourceKind::DockerJsonFile,
                    position: SourcePosition {
                        source_id: key_of(i, k % conts.len()),
                        offset: seq * 200,
                    },
                    container: Some(c.clone()),
                    service: p.name.clone(),
                    stream: "stdout".into(),
                    level: Some(level),
                    message,
                    ..Default::default()
                });
            }
        }
        (batches, events)
    }
}

fn key_of(service: usize, task: usize) -> u64 {
    (service * 64 + task) as u64 + 1
}
