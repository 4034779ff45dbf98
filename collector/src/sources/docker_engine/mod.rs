//! The Docker Engine API, over its unix socket with bollard: the event stream (audit events,
//! and a wake-up for container discovery) and container stats (metric samples).
//!
//! - [`events`]: `GET /events`, turned into [`sightline_model::AuditEvent`]s; reconnects with
//!   backoff and resumes with `since` = the last acknowledged event's time;
//! - [`stats`]: `GET /containers/{id}/stats` for every running container each interval,
//!   turned into [`sightline_model::MetricBatch`]es with `docker stats`' formulas.
//!
//! Log lines do not come through the API: the json-file tailer reads them from disk, which
//! survives engine restarts and costs the engine nothing (vectordotdev/vector#5404).

pub mod events;
pub mod stats;

use std::path::PathBuf;
use std::time::Duration;

use bollard::{Docker, API_DEFAULT_VERSION};
use serde::{Deserialize, Serialize};

/// `[docker_engine]`: how to reach the Docker Engine API and what to take from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerEngineConfig {
    /// Use the engine API at all. Default: on when `socket` or `$DOCKER_HOST` names the
    /// socket (the collector then waits for an engine that is not up yet, retrying with
    /// backoff), or when `/var/run/docker.sock` exists at start.
    pub enabled: Option<bool>,
    /// The engine's unix socket. Default: the path of `$DOCKER_HOST` when it is a
    /// `unix://` URL, else `/var/run/docker.sock`.
    pub socket: Option<PathBuf>,
    /// Seconds a single API request may take (bollard's timeout). Default 120.
    pub request_timeout_secs: u64,
    /// Longest wait between reconnection attempts, ms; the wait doubles from 250 ms up to
    /// this. Default 30000.
    pub max_backoff_ms: u64,
    /// The event stream, shipped as audit events.
    pub events: EventsConfig,
    /// Container stats, shipped as metric samples.
    pub stats: StatsConfig,
}

impl Default for DockerEngineConfig {
    fn default() -> Self {
        DockerEngineConfig {
            enabled: None,
            socket: None,
            request_timeout_secs: 120,
            max_backoff_ms: 30_000,
            events: EventsConfig::default(),
            stats: StatsConfig::default(),
        }
    }
}

/// `[docker_engine.events]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Ship Docker events as audit events. Default true.
    pub enabled: bool,
    /// Actions not shipped (matched on the action before any `: …` suffix). Default
    /// `["top", "resize", "exec_resize", "health_status"]`: frequent and not audit-worthy.
    pub exclude_actions: Vec<String>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            enabled: true,
            exclude_actions: ["top", "resize", "exec_resize", "health_status"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// `[docker_engine.stats]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Sample container stats. Default true.
    pub enabled: bool,
    /// Time between samples of each running container, ms. Default 10000.
    pub interval_ms: u64,
    /// Stats requests in flight at once. Default 32. The engine takes about a second to
    /// answer each (measured on Docker 20.10, even with `one-shot`), so a round over N
    /// containers takes about N / concurrency seconds; keep that under `interval_ms`.
    pub concurrency: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            enabled: true,
            interval_ms: 10_000,
            concurrency: 32,
        }
    }
}

/// A setting of `[docker_engine]` that cannot work.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EngineConfigError {
    /// `stats.interval_ms` is outside 100 ms ..= 1 h.
    #[error("docker_engine.stats.interval_ms must be between 100 and 3600000, got {0}")]
    StatsInterval(u64),
    /// `stats.concurrency` is 0 or above 256.
    #[error("docker_engine.stats.concurrency must be between 1 and 256, got {0}")]
    Concurrency(usize),
    /// `max_backoff_ms` is below 250 ms or above 10 min.
    #[error("docker_engine.max_backoff_ms must be between 250 and 600000, got {0}")]
    Backoff(u64),
    /// `request_timeout_secs` is 0.
    #[error("docker_engine.request_timeout_secs must be at least 1")]
    Timeout,
}

impl DockerEngineConfig {
    /// Checks the settings without touching the system.
    pub fn validate(&self) -> Result<(), EngineConfigError> {
        if !(100..=3_600_000).contains(&self.stats.interval_ms) {
            return Err(EngineConfigError::StatsInterval(self.stats.interval_ms));
        }
        if !(1..=256).contains(&self.stats.concurrency) {
            return Err(EngineConfigError::Concurrency(self.stats.concurrency));
        }
        if !(250..=600_000).contains(&self.max_backoff_ms) {
            return Err(EngineConfigError::Backoff(self.max_backoff_ms));
        }
        if self.request_timeout_secs == 0 {
            return Err(EngineConfigError::Timeout);
        }
        Ok(())
    }

    /// The socket path: [`DockerEngineConfig::socket`], else `$DOCKER_HOST` (`docker_host`)
    /// when it is `unix://…`, else `/var/run/docker.sock`.
    pub fn socket_path(&self, docker_host: Option<&str>) -> PathBuf {
        if let Some(s) = &self.socket {
            return s.clone();
        }
        match docker_host.and_then(|h| h.strip_prefix("unix://")) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from("/var/run/docker.sock"),
        }
    }

    /// Whether to use the engine: [`DockerEngineConfig::enabled`], else whether the socket
    /// was named (in `socket`, or by `docker_host` = `$DOCKER_HOST` as `unix://…`), else
    /// whether the default socket `socket` exists. A named socket that is missing is an
    /// engine not started yet: the event and stats sources retry until it answers.
    pub fn active(&self, socket: &std::path::Path, docker_host: Option<&str>) -> bool {
        self.enabled.unwrap_or_else(|| {
            self.socket.is_some()
                || docker_host
                    .and_then(|h| h.strip_prefix("unix://"))
                    .is_some_and(|p| !p.is_empty())
                || socket.exists()
        })
    }
}

/// What the engine tasks share.
#[derive(Clone, Debug)]
pub struct EngineContext {
    /// `[docker_engine]`.
    pub cfg: DockerEngineConfig,
    /// The socket ([`DockerEngineConfig::socket_path`]).
    pub socket: PathBuf,
    /// Host name stamped on records.
    pub host: String,
    /// `docker.service_label`: picks the service as for logs.
    pub service_label: Option<String>,
}

/// A client for the engine at `socket`. Connecting is lazy: errors show on first use.
pub fn client(
    socket: &std::path::Path,
    timeout_secs: u64,
) -> Result<Docker, bollard::errors::Error> {
    Docker::connect_with_unix(&socket.to_string_lossy(), timeout_secs, API_DEFAULT_VERSION)
}

/// Exponential backoff from 250 ms, doubling up to a ceiling.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at 250 ms; never waits longer than `max`.
    pub fn new(max: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(250).min(max),
            max,
        }
    }

    /// The wait before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// After a success: the next failure waits 250 ms again.
    pub fn reset(&mut self) {
        self.next = Duration::from_millis(250).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn socket_from_docker_host() {
        let c = DockerEngineConfig::default();
        assert_eq!(
            c.socket_path(Some("unix:///run/user/1000/docker.sock")),
            PathBuf::from("/run/user/1000/docker.sock")
        );
        assert_eq!(
            c.socket_path(Some("tcp://10.0.0.1:2375")),
            PathBuf::from("/var/run/docker.sock")
        );
        assert_eq!(c.socket_path(None), PathBuf::from("/var/run/docker.sock"));
    }

    #[test]
    fn a_named_socket_is_followed_before_the_engine_is_up() {
        let missing = Path::new("/nonexistent/docker.sock");
        let mut c = DockerEngineConfig::default();
        assert!(!c.active(missing, None), "default socket absent: off");
        assert!(!c.active(missing, Some("tcp://10.0.0.1:2375")));
        assert!(c.active(missing, Some("unix:///nonexistent/docker.sock")));
        assert!(!c.active(missing, Some("unix://")), "no path: the default");
        c.socket = Some(missing.to_path_buf());
        assert!(c.active(missing, None), "socket named in the config: on");
        c.enabled = Some(false);
        assert!(!c.active(missing, None), "enabled = false wins");
    }

    #[test]
    fn validation_names_the_setting() {
        let mut c = DockerEngineConfig::default();
        assert_eq!(c.validate(), Ok(()));
        c.stats.interval_ms = 5;
        assert_eq!(c.validate(), Err(EngineConfigError::StatsInterval(5)));
    }

    #[test]
    fn backoff_doubles_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1));
        let waits: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(waits, vec![250, 500, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }
}
