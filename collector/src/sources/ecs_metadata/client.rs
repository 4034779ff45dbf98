//! HTTP client and response types of the ECS task metadata endpoint v4
//! (AWS, "Amazon ECS task metadata endpoint version 4", and its "examples" page).
//!
//! - `GET {endpoint}/task` → [`TaskMetadata`];
//! - `GET {endpoint}/task/stats` → [`TaskStats`]: Docker ID → Engine API stats sample
//!   (`null` for a container that is not running), plus ECS's `network_rate_stats`.
//!
//! The endpoint is plain HTTP on a link-local address (`http://169.254.170.2/v4/<id>` on
//! EC2, the same form on Fargate). Requests use `ureq` (blocking) on Tokio's blocking pool.
//! Field names are AWS's PascalCase; unknown fields are ignored, since AWS adds fields to v4
//! over time ("We will not remove any existing metadata or change the metadata field names").

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::Duration;

use bollard::models::ContainerStatsResponse;
use serde::Deserialize;

/// Longest response body read, bytes (a task has at most 10 containers of ~4 KiB stats each).
const MAX_BODY_BYTES: u64 = 8 << 20;

/// Why a metadata request failed.
#[derive(Debug, thiserror::Error)]
pub enum EcsMetadataError {
    /// Connection, timeout or protocol failure.
    #[error("GET {url}: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// What ureq reported.
        source: Box<ureq::Error>,
    },
    /// The endpoint answered with a non-2xx status.
    #[error("GET {url}: HTTP {status}: {body}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (at most 256 bytes, lossy UTF-8).
        body: String,
    },
    /// The body is not the JSON expected.
    #[error("GET {url}: invalid JSON: {source}")]
    Json {
        /// The URL requested.
        url: String,
        /// What serde_json reported (with line and column).
        source: serde_json::Error,
    },
    /// The blocking request task panicked or was cancelled.
    #[error("metadata request task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// `Limits` of a task or container. Task level: `CPU` in vCPUs (e.g. `0.25`), `Memory` in
/// MiB. Container level: `CPU` in CPU units (1024 = one vCPU), `Memory` in MiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Limits {
    /// CPU limit (vCPUs at task level, CPU units at container level).
    #[serde(rename = "CPU")]
    pub cpu: Option<f64>,
    /// Memory limit, MiB.
    pub memory: Option<f64>,
}

/// One entry of a container's `Networks`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerNetwork {
    /// `awsvpc`, `bridge`, `host`, `none`.
    pub network_mode: Option<String>,
    /// The container's IPv4 addresses on that network.
    #[serde(rename = "IPv4Addresses", default)]
    pub ipv4_addresses: Vec<String>,
}

/// One container of `/task` (`Containers[]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerMetadata {
    /// Docker container ID (64 hex digits on EC2; `<task id>-<n>` on Fargate): the key of
    /// `/task/stats`.
    pub docker_id: String,
    /// Container name in the task definition.
    #[serde(default)]
    pub name: String,
    /// Name given to Docker, e.g. `ecs-curltest-26-curl-a0e7dba5aca6d8cb2e00`.
    #[serde(default)]
    pub docker_name: String,
    /// Image reference.
    #[serde(default)]
    pub image: String,
    /// Image digest (`sha256:…`).
    #[serde(rename = "ImageID")]
    pub image_id: Option<String>,
    /// Docker labels (`com.amazonaws.ecs.*` and the task definition's own).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Desired status, e.g. `RUNNING`.
    pub desired_status: Option<String>,
    /// Known status, e.g. `RUNNING`, `STOPPED`, `RESOURCES_PROVISIONED`.
    pub known_status: Option<String>,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// Container-level limits (CPU units, MiB).
    #[serde(default)]
    pub limits: Limits,
    /// RFC 3339 creation time.
    pub created_at: Option<String>,
    /// RFC 3339 start time.
    pub started_at: Option<String>,
    /// RFC 3339 stop time.
    pub finished_at: Option<String>,
    /// `NORMAL` for task-definition containers; `CNI_PAUSE` etc. for the agent's own.
    #[serde(rename = "Type")]
    pub container_type: Option<String>,
    /// Full container ARN (agent ≥ 1.45.0).
    #[serde(rename = "ContainerARN")]
    pub container_arn: Option<String>,
    /// Network attachments.
    #[serde(default)]
    pub networks: Vec<ContainerNetwork>,
}

/// The `/task` response.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskMetadata {
    /// Cluster short name or ARN (whatever the agent was configured with).
    #[serde(default)]
    pub cluster: String,
    /// ECS service that started the task (agent ≥ 1.63.1); absent for standalone tasks.
    pub service_name: Option<String>,
    /// Full task ARN.
    #[serde(rename = "TaskARN", default)]
    pub task_arn: String,
    /// Task definition family.
    #[serde(default)]
    pub family: String,
    /// Task definition revision (a string, e.g. `"26"`).
    #[serde(default)]
    pub revision: String,
    /// Desired status, e.g. `RUNNING`.
    pub desired_status: Option<String>,
    /// Known status.
    pub known_status: Option<String>,
    /// Task-level limits (vCPUs, MiB); absent when only containers have limits.
    pub limits: Option<Limits>,
    /// RFC 3339 start of the first image pull.
    pub pull_started_at: Option<String>,
    /// RFC 3339 end of the last image pull.
    pub pull_stopped_at: Option<String>,
    /// Availability Zone, e.g. `us-west-2d`.
    pub availability_zone: Option<String>,
    /// `EC2` or `FARGATE` (agent ≥ 1.45.0).
    pub launch_type: Option<String>,
    /// The task's containers.
    #[serde(default)]
    pub containers: Vec<ContainerMetadata>,
}

/// ECS's addition to a stats sample (agent ≥ 1.43.0, `awsvpc` and `bridge` modes): the
/// agent's own receive / send rates, bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct NetworkRateStats {
    /// Bytes received per second.
    pub rx_bytes_per_sec: Option<f64>,
    /// Bytes sent per second.
    pub tx_bytes_per_sec: Option<f64>,
}

/// One container's value in `/task/stats`: the Engine API sample and ECS's rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskContainerStats {
    /// The Engine API stats sample.
    pub stats: ContainerStatsResponse,
    /// `network_rate_stats`, when the agent sends it.
    pub network_rate: Option<NetworkRateStats>,
}

/// `/task/stats`: Docker ID → sample; `None` where the endpoint sent `null` (a container that
/// is not running) or a value that is not a stats object (logged at `warn`).
pub type TaskStats = HashMap<String, Option<TaskContainerStats>>;

/// Parses a `/task/stats` body. A value that does not deserialize is kept as `None` and
/// logged, so one odd container does not hide the others.
///
/// Errors: [`EcsMetadataError::Json`] when the body is not a JSON object.
pub fn parse_task_stats(url: &str, body: &[u8]) -> Result<TaskStats, EcsMetadataError> {
    let raw: HashMap<String, Option<serde_json::Value>> =
        serde_json::from_slice(body).map_err(|source| EcsMetadataError::Json {
            url: url.to_string(),
            source,
        })?;
    let mut out = HashMap::with_capacity(raw.len());
    for (id, value) in raw {
        let parsed = value.and_then(|v| {
            let network_rate = v
                .get("network_rate_stats")
                .and_then(|r| NetworkRateStats::deserialize(r).ok());
            match ContainerStatsResponse::deserialize(&v) {
                Ok(stats) => Some(TaskContainerStats {
                    stats,
                    network_rate,
                }),
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "ECS task stats: unreadable stats value");
                    None
                }
            }
        });
        out.insert(id, parsed);
    }
    Ok(out)
}

/// A task metadata endpoint client (blocking requests, run on Tokio's blocking pool).
#[derive(Clone)]
pub struct EcsMetadataClient {
    agent: ureq::Agent,
    endpoint: String,
}

impl EcsMetadataClient {
    /// A client for `endpoint` (`$ECS_CONTAINER_METADATA_URI_V4`, trailing `/` ignored);
    /// each request gives up after `timeout` (connect, send and read together).
    pub fn new(endpoint: &str, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        EcsMetadataClient {
            agent,
            endpoint: endpoint.trim_end_matches('/').to_string(),
        }
    }

    /// The endpoint, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `GET {endpoint}/task`.
    pub async fn task(&self) -> Result<TaskMetadata, EcsMetadataError> {
        let url = format!("{}/task", self.endpoint);
        let body = self.get(url.clone()).await?;
        serde_json::from_slice(&body).map_err(|source| EcsMetadataError::Json { url, source })
    }

    /// `GET {endpoint}/task/stats`.
    pub async fn task_stats(&self) -> Result<TaskStats, EcsMetadataError> {
        let url = format!("{}/task/stats", self.endpoint);
        let body = self.get(url.clone()).await?;
        parse_task_stats(&url, &body)
    }

    async fn get(&self, url: String) -> Result<Vec<u8>, EcsMetadataError> {
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || get_blocking(&agent, url)).await?
    }
}

fn get_blocking(agent: &ureq::Agent, url: String) -> Result<Vec<u8>, EcsMetadataError> {
    let http = |url: &str, e: ureq::Error| EcsMetadataError::Http {
        url: url.to_string(),
        source: Box::new(e),
    };
    let mut resp = agent.get(&url).call().map_err(|e| http(&url, e))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let mut head = Vec::new();
        // The body is only for the error message: a failure to read it leaves it empty.
        let _ = resp.body_mut().as_reader().take(256).read_to_end(&mut head);
        return Err(EcsMetadataError::Status {
            url,
            status,
            body: String::from_utf8_lossy(&head).into_owned(),
        });
    }
    resp.body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
        .map_err(|e| http(&url, e))
}
