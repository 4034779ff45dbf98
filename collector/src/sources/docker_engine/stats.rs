//! Container stats → metric samples.
//!
//! Every `stats.interval_ms`, for every running container (`GET /containers/json`), one
//! `GET /containers/{id}/stats?stream=false&one-shot=true`, at most `stats.concurrency` at
//! once (the engine answers each in about a second, so requests overlap; a round longer than
//! the interval is logged). CPU % is computed between this reading and the previous one of the same container
//! (so it is the average over the interval, with `docker stats`' formula); a container's
//! first reading asks the engine for a two-cycle sample instead (`one-shot=false`), whose
//! `precpu_stats` give a first CPU %. Limits (`NanoCpus`, `CpuQuota`/`CpuPeriod`,
//! `CpuShares`, `MemoryReservation`) and the start time come from one inspect per container.
//!
//! The points and their formulas are in [`crate::sources::stats_math`]; each container's
//! batch carries the container (ID, name, image, labels, so ECS and compose identities) and
//! its service, as its log events do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions, StatsOptions};
use bollard::Docker;
use futures::StreamExt;
use sightline_model::{Container, LogEvent, MetricBatch, SourceKind};
use tokio::sync::{mpsc, watch};

use super::events::wait;
use super::{client, Backoff, EngineContext};
use crate::parse::timestamp::{now_ns, parse_rfc3339_ns};
use crate::sources::docker_json::container::service_name;
use crate::sources::stats_math::{container_points, reading, ContainerLimits};
use crate::stats::Stats;

/// What stays known about a container between readings.
struct Known {
    container: Arc<Container>,
    service: String,
    limits: ContainerLimits,
    start_ns: u64,
    prev: Option<ContainerStatsResponse>,
}

/// Samples every running container each interval and sends one batch per container;
/// engine errors are counted, logged and retried next interval (with backoff while the
/// engine is unreachable).
pub async fn run(
    ctx: EngineContext,
    stats: Arc<Stats>,
    tx: mpsc::Sender<Vec<MetricBatch>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(ctx.cfg.stats.interval_ms);
    let mut backoff = Backoff::new(Duration::from_millis(ctx.cfg.max_backoff_ms));
    let mut known: HashMap<String, Known> = HashMap::new();
    let mut docker: Option<Docker> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let d = match &docker {
            Some(d) => d.clone(),
            None => match client(&ctx.socket, ctx.cfg.request_timeout_secs) {
                Ok(d) => {
                    docker = Some(d.clone());
                    d
                }
                Err(e) => {
                    stats.add_engine_errors(1);
                    tracing::warn!(error = %e, "cannot reach the Docker engine for stats");
                    if wait(&mut shutdown, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let running = match d
            .list_containers(Some(ListContainersOptions {
                all: false,
                ..Default::default()
            }))
            .await
        {
            Ok(list) => list,
            Err(e) => {
                stats.add_engine_errors(1);
                tracing::warn!(error = %e, "cannot list containers for stats");
                if wait(&mut shutdown, backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        let ids: Vec<String> = running.iter().filter_map(|c| c.id.clone()).collect();
        known.retain(|id, _| ids.contains(id));
        for c in running {
            let Some(id) = c.id.clone() else { continue };
            if known.contains_key(&id) {
                continue;
            }
            let container = Container {
                id: id.clone(),
                name: c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                image: c.image.clone().unwrap_or_default(),
                labels: c.labels.clone().unwrap_or_default().into_iter().collect(),
            };
            let (limits, start_ns) = inspect(&d, &id).await;
            known.insert(
                id,
                Known {
                    service: service_name(&container, ctx.service_label.as_deref()),
                    container: Arc::new(container),
                    limits,
                    start_ns,
                    prev: None,
                },
            );
        }
        // One request per container, `concurrency` at a time.
        let round = std::time::Instant::now();
        let requests: Vec<(String, bool)> = known
            .iter()
            .map(|(id, k)| (id.clone(), k.prev.is_none()))
            .collect();
        let readings: Vec<(String, Option<ContainerStatsResponse>)> =
            futures::stream::iter(requests)
                .map(|(id, first)| {
                    let d = d.clone();
                    async move {
                        let opts = StatsOptions {
                            stream: false,
                            one_shot: !first,
                        };
                        let r = d.stats(&id, Some(opts)).next().await;
                        (id, r)
                    }
                })
                .buffer_unordered(ctx.cfg.stats.concurrency)
                .map(|(id, r)| match r {
                    Some(Ok(s)) => (id, Some(s)),
                    Some(Err(e)) => {
                        stats.add_engine_errors(1);
                        tracing::debug!(container = %id, error = %e, "stats request failed");
                        (id, None)
                    }
                    None => (id, None),
                })
                .collect()
                .await;
        let mut batches = Vec::with_capacity(readings.len());
        for (id, cur) in readings {
            let (Some(cur), Some(k)) = (cur, known.get_mut(&id)) else {
                continue;
            };
            let r = reading(&cur, k.prev.as_ref());
            let points = container_points(&r, &k.limits);
            stats.add_metrics_read(points.len() as u64);
            batches.push(MetricBatch {
                resource: LogEvent {
                    host: ctx.host.clone(),
                    service: k.service.clone(),
                    source_kind: SourceKind::DockerStats,
                    container: Some(k.container.clone()),
                    ..Default::default()
                },
                resource_attributes: Default::default(),
                time_ns: if r.read_ns > 0 { r.read_ns } else { now_ns() },
                start_ns: k.start_ns,
                points,
            });
            k.prev = Some(cur);
        }
        stats.add_metric_samples(batches.len() as u64);
        let took = round.elapsed();
        tracing::debug!(
            containers = known.len(),
            samples = batches.len(),
            took_ms = took.as_millis() as u64,
            "stats round"
        );
        if took > interval {
            tracing::warn!(
                containers = known.len(),
                took_ms = took.as_millis() as u64,
                "a stats round took longer than docker_engine.stats.interval_ms; raise docker_engine.stats.concurrency"
            );
        }
        if !batches.is_empty() && tx.send(batches).await.is_err() {
            return;
        }
    }
}

/// Limits and start time (Unix ns) of a container; defaults when inspect fails.
async fn inspect(d: &Docker, id: &str) -> (ContainerLimits, u64) {
    let none = ContainerLimits {
        cpus: None,
        cpu_shares: None,
        memory_reservation_bytes: None,
    };
    let Ok(info) = d
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    else {
        return (none, 0);
    };
    let start_ns = info
        .state
        .as_ref()
        .and_then(|s| s.started_at.as_deref())
        .and_then(parse_rfc3339_ns)
        .unwrap_or(0);
    let Some(hc) = info.host_config else {
        return (none, start_ns);
    };
    let cpus = match (hc.nano_cpus, hc.cpu_quota, hc.cpu_period) {
        (Some(n), _, _) if n > 0 => Some(n as f64 / 1e9),
        (_, Some(q), Some(p)) if q > 0 && p > 0 => Some(q as f64 / p as f64),
        (_, Some(q), None) if q > 0 => Some(q as f64 / 100_000.0),
        _ => None,
    };
    let limits = ContainerLimits {
        cpus,
        cpu_shares: hc.cpu_shares.filter(|s| *s > 0).map(|s| s as u64),
        memory_reservation_bytes: hc.memory_reservation.filter(|m| *m > 0).map(|m| m as u64),
    };
    (limits, start_ns)
}
