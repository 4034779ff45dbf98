//! ECS sidecar source: polls the task metadata endpoint v4 of the task the collector runs in
//! (`$ECS_CONTAINER_METADATA_URI_V4/task` and `/task/stats`) and turns each poll into metric
//! batches: the task's CloudWatch Container Insights set plus `docker_stats` metrics per
//! container (shapes and formulas in [`insights`]).
//!
//! ```toml
//! [ecs_metadata]
//! enabled = true                # default: on when $ECS_CONTAINER_METADATA_URI_V4 is set
//! endpoint = "http://169.254.170.2/v4/0123abcd"   # default: $ECS_CONTAINER_METADATA_URI_V4
//! interval_ms = 10000
//! timeout_ms = 2000
//! ```
//!
//! Endpoint failures (connection refused, timeouts, non-2xx answers, bodies that are not the
//! JSON documented) are logged and retried with backoff; the source only stops on shutdown
//! or when the batch receiver is gone.

pub mod client;
pub mod insights;

use std::time::Duration;

use serde::Deserialize;
use sightline_model::MetricBatch;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::ConfigError;
pub use client::{
    ContainerMetadata, EcsMetadataClient, EcsMetadataError, Limits, NetworkRateStats,
    TaskContainerStats, TaskMetadata, TaskStats,
};
pub use insights::{container_insights, task_batches};

/// The environment variable the ECS agent (≥ 1.39.0) and Fargate (platform ≥ 1.4.0) set in
/// every container of a task.
pub const ENDPOINT_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// Longest wait between retries after repeated failures (unless the interval is longer).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `[ecs_metadata]`: the ECS task metadata source (sidecar mode).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EcsMetadataConfig {
    /// `true` / `false` turn the source on / off; unset (default) turns it on exactly when an
    /// endpoint is known (configured, or `$ECS_CONTAINER_METADATA_URI_V4` set).
    pub enabled: Option<bool>,
    /// Task metadata endpoint v4 base URL (`http://…`, no TLS). Default:
    /// `$ECS_CONTAINER_METADATA_URI_V4`.
    pub endpoint: Option<String>,
    /// Time between polls, ms. Default 10000 (10 s).
    pub interval_ms: u64,
    /// Timeout of one request (connect, send and read), ms. Default 2000.
    pub timeout_ms: u64,
}

impl Default for EcsMetadataConfig {
    fn default() -> Self {
        EcsMetadataConfig {
            enabled: None,
            endpoint: None,
            interval_ms: 10_000,
            timeout_ms: 2_000,
        }
    }
}

fn invalid(field: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        field: format!("ecs_metadata.{field}"),
        message: message.to_string(),
    }
}

impl EcsMetadataConfig {
    /// Checks the values alone (no environment, no network).
    ///
    /// Errors: [`ConfigError::Invalid`] naming `ecs_metadata.interval_ms` or `timeout_ms`
    /// when 0, or `ecs_metadata.endpoint` when it is not an `http://` URL with a host.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval_ms == 0 {
            return Err(invalid("interval_ms", "must be greater than 0"));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("timeout_ms", "must be greater than 0"));
        }
        if let Some(e) = &self.endpoint {
            match e.strip_prefix("http://") {
                Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {}
                _ => {
                    return Err(invalid(
                        "endpoint",
                        "must be an http:// URL with a host, e.g. http://169.254.170.2/v4/<id>",
                    ))
                }
            }
        }
        Ok(())
    }

    /// The endpoint to poll, or `None` when the source is off: `enabled = false`, or no
    /// endpoint configured and `env` (the value of `$ECS_CONTAINER_METADATA_URI_V4`) unset
    /// or empty. With `enabled = true` a `None` here is a start-up error for the caller.
    pub fn resolve_endpoint(&self, env: Option<String>) -> Option<String> {
        if self.enabled == Some(false) {
            return None;
        }
        self.endpoint
            .clone()
            .or(env)
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
    }
}

/// Who the task is, for enriching other events in sidecar mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIdentity {
    /// `Cluster` as the agent reports it (short name or ARN).
    pub cluster: String,
    /// `ServiceName`; `None` for a task not started by a service (or agent < 1.63.1).
    pub service_name: Option<String>,
    /// `TaskARN`.
    pub task_arn: String,
    /// Task definition `Family`.
    pub family: String,
}

impl From<&TaskMetadata> for TaskIdentity {
    fn from(t: &TaskMetadata) -> Self {
        TaskIdentity {
            cluster: t.cluster.clone(),
            service_name: t.service_name.clone().filter(|s| !s.is_empty()),
            task_arn: t.task_arn.clone(),
            family: t.family.clone(),
        }
    }
}

/// One `GET {endpoint}/task`, reduced to the task's identity.
///
/// Errors: [`EcsMetadataError`] when the request fails or the body is not task metadata.
pub async fn task_identity(
    endpoint: &str,
    timeout: Duration,
) -> Result<TaskIdentity, EcsMetadataError> {
    let task = EcsMetadataClient::new(endpoint, timeout).task().await?;
    Ok(TaskIdentity::from(&task))
}

/// Wait after the `failures`-th failure in a row: the interval, doubled per further failure,
/// at most 60 s (or the interval, when that is longer).
fn backoff(interval: Duration, failures: u32) -> Duration {
    let doubled = interval.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(MAX_BACKOFF.max(interval))
}

/// Resolves once `shutdown` is true or its sender is gone.
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

async fn poll(client: &EcsMetadataClient) -> Result<(TaskMetadata, TaskStats), EcsMetadataError> {
    tokio::try_join!(client.task(), client.task_stats())
}

/// Polls the endpoint every `cfg.interval_ms` and sends each poll's batches
/// ([`task_batches`]: task batch first, then one per container) on `tx`. The first poll
/// takes CPU against the agent's `precpu_stats`; later ones against the previous poll.
///
/// Errors of the endpoint are logged at `warn` and retried after the interval, doubled per
/// failure in a row up to 60 s (or the interval, if longer). The function returns when
/// `shutdown` turns true (or its sender is dropped), when `tx` is closed, or at once when no
/// endpoint resolves ([`EcsMetadataConfig::resolve_endpoint`] with
/// `$ECS_CONTAINER_METADATA_URI_V4`). `cfg` must have passed [`EcsMetadataConfig::validate`].
pub async fn run(
    cfg: EcsMetadataConfig,
    host: String,
    tx: mpsc::Sender<Vec<MetricBatch>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(endpoint) = cfg.resolve_endpoint(std::env::var(ENDPOINT_ENV).ok()) else {
        tracing::info!("ECS task metadata source off: no endpoint");
        return;
    };
    let interval = Duration::from_millis(cfg.interval_ms.max(1));
    let client = EcsMetadataClient::new(&endpoint, Duration::from_millis(cfg.timeout_ms.max(1)));
    tracing::info!(endpoint = %endpoint, interval_ms = cfg.interval_ms, "ECS task metadata source started");
    let mut prev: Option<TaskStats> = None;
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = poll(&client) => r,
            _ = shutdown_signalled(&mut shutdown) => return,
        };
        let wait = match result {
            Ok((task, stats)) => {
                if failures > 0 {
                    tracing::info!(
                        after_failures = failures,
                        "ECS task metadata endpoint answering again"
                    );
                }
                failures = 0;
                let batches = task_batches(&task, &stats, prev.as_ref(), &host);
                prev = Some(stats);
                tokio::select! {
                    sent = tx.send(batches) => if sent.is_err() { return },
                    _ = shutdown_signalled(&mut shutdown) => return,
                }
                interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(interval, failures);
                tracing::warn!(error = %e, failures, retry_in_ms = wait.as_millis() as u64, "ECS task metadata poll failed");
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(started + wait) => {}
            _ = shutdown_signalled(&mut shutdown) => return,
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: EcsMetadataConfig = toml::from_str("").unwrap();
        assert_eq!(c, EcsMetadataConfig::default());
        assert_eq!(
            (c.interval_ms, c.timeout_ms, c.enabled),
            (10_000, 2_000, None)
        );
        let err = toml::from_str::<EcsMetadataConfig>("interval = 5").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `interval`"),
            "{err}"
        );
    }

    #[test]
    fn validate_names_the_field() {
        let bad = |c: EcsMetadataConfig| c.validate().unwrap_err().to_string();
        let d = EcsMetadataConfig::default();
        assert!(d.validate().is_ok());
        assert_eq!(
            bad(EcsMetadataConfig {
                interval_ms: 0,
                ..d.clone()
            }),
            "invalid config: ecs_metadata.interval_ms: must be greater than 0"
        );
        assert_eq!(
            bad(EcsMetadataConfig {
                timeout_ms: 0,
                ..d.clone()
            }),
            "invalid config: ecs_metadata.timeout_ms: must be greater than 0"
        );
        for e in [
            "https://169.254.170.2/v4/x",
            "169.254.170.2",
            "http://",
            "http:///v4",
        ] {
            let c = EcsMetadataConfig {
                endpoint: Some(e.into()),
                ..d.clone()
            };
            assert!(
                bad(c).starts_with("invalid config: ecs_metadata.endpoint:"),
                "{e}"
            );
        }
        let ok = EcsMetadataConfig {
            endpoint: Some("http://169.254.170.2/v4/ab".into()),
            ..d
        };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn endpoint_resolution() {
        let env = || Some("http://169.254.170.2/v4/abc/".to_string());
        let d = EcsMetadataConfig::default();
        assert_eq!(
            d.resolve_endpoint(env()).as_deref(),
            Some("http://169.254.170.2/v4/abc")
        );
        assert_eq!(d.resolve_endpoint(None), None);
        assert_eq!(d.resolve_endpoint(Some(String::new())), None);
        let off = EcsMetadataConfig {
            enabled: Some(false),
            ..d.clone()
        };
        assert_eq!(off.resolve_endpoint(env()), None);
        let own = EcsMetadataConfig {
            endpoint: Some("http://127.0.0.1:9/v4".into()),
            ..d
        };
        assert_eq!(
            own.resolve_endpoint(env()).as_deref(),
            Some("http://127.0.0.1:9/v4")
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        let waits: Vec<_> = (1..=6).map(|n| backoff(s(10), n)).collect();
        assert_eq!(waits, [s(10), s(20), s(40), s(60), s(60), s(60)]);
        assert_eq!(backoff(s(120), 3), s(120));
        assert_eq!(
            backoff(Duration::from_millis(50), 2),
            Duration::from_millis(100)
        );
        assert_eq!(backoff(s(10), u32::MAX), s(60));
    }
}
