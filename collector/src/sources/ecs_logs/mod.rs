//! The Amazon ECS container agent's own log files on the host: `ecs-agent.log`,
//! `ecs-init.log` (log events, [`SourceKind::EcsAgentLog`](sightline_model::SourceKind)) and
//! the credentials audit log `audit.log` (audit events), each with its rotated copies
//! (research notes §3.1–3.2: seelog `rollingfile`, hourly `<name>.2026-11-21-07` or by size,
//! `ECS_LOG_MAX_ROLL_COUNT` 24 kept; agents ≤ 1.35.0 wrote `<name>.<timestamp>`).
//!
//! ```toml
//! [ecs_logs]
//! enabled = true            # default: on when `dir` exists at start-up
//! dir = "/var/log/ecs"
//! agent = true              # ecs-agent.log
//! init = true               # ecs-init.log
//! audit = true              # audit.log
//! poll_interval_ms = 250
//! max_line_bytes = 262144
//! ```
//!
//! One thread per file (family), with blocking reads ([`lines`]). Agent and init lines go to
//! the log sink as [`Chunk`]s under checkpoint keys [`AGENT_KEY`] and [`INIT_KEY`] of the main
//! checkpoint store ([`agent`]); audit lines go to the audit sink as [`AuditItem`]s whose
//! positions the audit sink stores under [`AUDIT_KEY`] in the audit-file store ([`audit`]).
//! Either way a file's checkpoint advances only after Kafka acknowledged everything before
//! it, so a crash replays (with the same event IDs) rather than loses.
//!
//! Event IDs are [`EventId::derive`](sightline_model::EventId::derive)`(source_id, offset)`
//! with `source_id` = [`source_id`](crate::sources::file_identity::source_id) of
//! (`<host>/<file name>`, the file's first-line fingerprint): stable across renames and
//! restarts, distinct between hosts whose files start alike.

pub mod agent;
pub mod audit;
pub mod lines;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::checkpoint::FileCheckpoint;
use crate::config::ConfigError;
use crate::parse::app::Extractor;
use crate::sinks::records::AuditItem;
use crate::sources::Chunk;
use crate::stats::Stats;
use agent::AgentLines;
use audit::AuditLines;
use lines::{Family, LineHandler, LineTailer, TailSettings};

/// The agent's log file name.
pub const AGENT_LOG: &str = "ecs-agent.log";
/// ecs-init's log file name.
pub const INIT_LOG: &str = "ecs-init.log";
/// The credentials audit log file name.
pub const AUDIT_LOG: &str = "audit.log";
/// Checkpoint key of `ecs-agent.log*` in the main checkpoint store (and [`Chunk::key`]).
pub const AGENT_KEY: &str = "ecs:ecs-agent.log";
/// Checkpoint key of `ecs-init.log*` in the main checkpoint store (and [`Chunk::key`]).
pub const INIT_KEY: &str = "ecs:ecs-init.log";
/// Checkpoint key of `audit.log*` in the audit-file store
/// ([`audit_file_store`](crate::sinks::records::audit_file_store)).
pub const AUDIT_KEY: &str = "ecs:audit.log";

/// Smallest accepted `max_line_bytes`.
pub const MIN_LINE_BYTES: usize = 1024;
/// Largest accepted `max_line_bytes`: the producer's `message.max.bytes` (4 MiB).
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// `[ecs_logs]`: the ECS agent's log files on the host.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EcsLogsConfig {
    /// `true` / `false` turn the source on / off; unset (default) turns it on exactly when
    /// `dir` exists at start-up. When on, a missing directory or file is waited for.
    pub enabled: Option<bool>,
    /// Directory of the agent's logs on the host (`ecs-init` mounts the agent container's
    /// `/log` there). Default `/var/log/ecs`.
    pub dir: PathBuf,
    /// Read `ecs-agent.log` and its rotated copies. Default true.
    pub agent: bool,
    /// Read `ecs-init.log` and its rotated copies. Default true.
    pub init: bool,
    /// Read the credentials audit log `audit.log` and its rotated copies (as audit events).
    /// Default true.
    pub audit: bool,
    /// How often a file at its end is looked at again for new lines, rotation and
    /// truncation, ms (also the wait for a missing directory). Default 250, 1–60000.
    pub poll_interval_ms: u64,
    /// Longest line, bytes: a longer one is shipped as several events (parts of at most this
    /// size, marked `sightline.split_part` = 1, 2, …), never dropped. Default 262144
    /// (256 KiB), 1024–4194304.
    pub max_line_bytes: usize,
}

impl Default for EcsLogsConfig {
    fn default() -> Self {
        EcsLogsConfig {
            enabled: None,
            dir: PathBuf::from("/var/log/ecs"),
            agent: true,
            init: true,
            audit: true,
            poll_interval_ms: 250,
            max_line_bytes: 256 * 1024,
        }
    }
}

fn invalid(field: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        field: format!("ecs_logs.{field}"),
        message: message.to_string(),
    }
}

impl EcsLogsConfig {
    /// Checks the values alone (no file system access).
    ///
    /// Errors: [`ConfigError::Invalid`] naming `ecs_logs.dir` when empty,
    /// `ecs_logs.poll_interval_ms` outside 1–60000 or `ecs_logs.max_line_bytes` outside
    /// [`MIN_LINE_BYTES`]–[`MAX_LINE_BYTES`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(invalid("dir", "must not be empty"));
        }
        if !(1..=60_000).contains(&self.poll_interval_ms) {
            return Err(invalid("poll_interval_ms", "must be 1-60000"));
        }
        if !(MIN_LINE_BYTES..=MAX_LINE_BYTES).contains(&self.max_line_bytes) {
            return Err(invalid("max_line_bytes", "must be 1024-4194304"));
        }
        Ok(())
    }

    /// Whether the source runs: `enabled`, or when unset whether `dir` is a directory now.
    pub fn active(&self) -> bool {
        self.enabled.unwrap_or_else(|| self.dir.is_dir())
    }
}

/// The ECS agent log source.
pub struct EcsLogsSource {
    /// Settings (must have passed [`EcsLogsConfig::validate`]).
    pub cfg: EcsLogsConfig,
    /// Host name stamped on events (and part of their source IDs).
    pub host: String,
    /// Compiled extraction rules (configured correlation patterns, trace IDs).
    pub extractor: Arc<Extractor>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Partitions of the log topic, once known (events are encoded per partition here).
    pub partitions: crate::sinks::topics::Partitions,
    /// Largest encoded part, bytes (`batch.max_bytes`).
    pub max_part_bytes: usize,
}

impl EcsLogsSource {
    /// Follows the configured files until `shutdown` turns true (or its sender is dropped),
    /// or until every reader stopped because its receiver is gone. Returns at once when the
    /// source is not [`EcsLogsConfig::active`].
    ///
    /// `checkpoints` is the main checkpoint store's content (only [`AGENT_KEY`] and
    /// [`INIT_KEY`] are used), `audit_checkpoints` the audit-file store's ([`AUDIT_KEY`]).
    /// Agent and init events go to `tx`, audit events to `audit_tx`. On shutdown the readers
    /// stop between reads; what they sent stays for the sinks to deliver.
    pub async fn run(
        self,
        checkpoints: BTreeMap<String, FileCheckpoint>,
        audit_checkpoints: BTreeMap<String, FileCheckpoint>,
        tx: mpsc::Sender<Chunk>,
        audit_tx: mpsc::Sender<AuditItem>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if !self.cfg.active() {
            tracing::info!(dir = %self.cfg.dir.display(), "ECS agent log source off");
            return;
        }
        tracing::info!(dir = %self.cfg.dir.display(), "following the ECS agent's log files");
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles: Vec<JoinHandle<()>> = Vec::new();
        for (on, name, key, service) in [
            (self.cfg.agent, AGENT_LOG, AGENT_KEY, "ecs-agent"),
            (self.cfg.init, INIT_LOG, INIT_KEY, "ecs-init"),
        ] {
            if !on {
                continue;
            }
            let handler = AgentLines::new(
                service,
                &self.host,
                key,
                // Its own copy: regex caches are never shared between threads.
                Extractor::clone(&self.extractor),
                self.stats.clone(),
                tx.clone(),
                self.partitions.clone(),
                self.max_part_bytes,
                self.cfg.max_line_bytes,
            );
            let cp = checkpoints.get(key).cloned();
            handles.extend(self.spawn(name, handler, cp, &stop));
        }
        if self.cfg.audit {
            let handler = AuditLines::new(
                &self.host,
                AUDIT_KEY,
                self.stats.clone(),
                audit_tx.clone(),
                self.cfg.max_line_bytes,
            );
            let cp = audit_checkpoints.get(AUDIT_KEY).cloned();
            handles.extend(self.spawn(AUDIT_LOG, handler, cp, &stop));
        }
        drop((tx, audit_tx));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            if *shutdown.borrow() || handles.iter().all(|h| h.is_finished()) {
                break;
            }
            tokio::select! {
                changed = shutdown.changed() => if changed.is_err() { break },
                _ = tick.tick() => {}
            }
        }
        stop.store(true, Ordering::Release);
        for h in handles {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    fn spawn<H: LineHandler + Send + 'static>(
        &self,
        name: &str,
        handler: H,
        checkpoint: Option<FileCheckpoint>,
        stop: &Arc<AtomicBool>,
    ) -> Option<JoinHandle<()>> {
        let tailer = LineTailer {
            family: Family {
                dir: self.cfg.dir.clone(),
                name: name.to_string(),
                owner: format!("{}/{name}", self.host),
            },
            settings: TailSettings {
                poll: Duration::from_millis(self.cfg.poll_interval_ms.max(1)),
                max_line_bytes: self.cfg.max_line_bytes.max(MIN_LINE_BYTES),
            },
            handler,
            stop: stop.clone(),
            stats: self.stats.clone(),
        };
        match std::thread::Builder::new()
            .name(format!("ecs-{name}"))
            .spawn(move || tailer.run(checkpoint))
        {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::error!(file = %name, error = %e, "cannot start a reader thread; this file is not read");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c: EcsLogsConfig = toml::from_str("").unwrap();
        assert_eq!(c, EcsLogsConfig::default());
        assert_eq!(c.dir, PathBuf::from("/var/log/ecs"));
        assert_eq!((c.agent, c.init, c.audit), (true, true, true));
        assert_eq!((c.poll_interval_ms, c.max_line_bytes), (250, 262_144));
        assert!(c.validate().is_ok());
        let err = toml::from_str::<EcsLogsConfig>("directory = \"/x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn validate_names_the_field() {
        let bad = |c: EcsLogsConfig| c.validate().unwrap_err().to_string();
        let d = EcsLogsConfig::default();
        assert_eq!(
            bad(EcsLogsConfig {
                poll_interval_ms: 0,
                ..d.clone()
            }),
            "invalid config: ecs_logs.poll_interval_ms: must be 1-60000"
        );
        assert_eq!(
            bad(EcsLogsConfig {
                max_line_bytes: 1023,
                ..d.clone()
            }),
            "invalid config: ecs_logs.max_line_bytes: must be 1024-4194304"
        );
        assert_eq!(
            bad(EcsLogsConfig {
                dir: PathBuf::new(),
                ..d.clone()
            }),
            "invalid config: ecs_logs.dir: must not be empty"
        );
        assert!(EcsLogsConfig {
            max_line_bytes: MAX_LINE_BYTES,
            poll_interval_ms: 60_000,
            ..d
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn auto_enable_follows_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let on = EcsLogsConfig {
            dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        assert!(on.active());
        let missing = EcsLogsConfig {
            dir: dir.path().join("absent"),
            ..Default::default()
        };
        assert!(!missing.active());
        assert!(EcsLogsConfig {
            enabled: Some(true),
            ..missing.clone()
        }
        .active());
        assert!(!EcsLogsConfig {
            enabled: Some(false),
            ..on
        }
        .active());
    }
}
