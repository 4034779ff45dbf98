//! Finds containers under the containers directory and runs one [`Tailer`] thread for each;
//! a container whose folder disappears gets its remaining lines read, then is let go.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::container::{read_container, service_name};
use super::tailer::{Tailer, TailerContext, REMOVED, RUN, SHUTDOWN};
use crate::checkpoint::FileCheckpoint;
use crate::config::DockerConfig;
use crate::parse::app::Extractor;
use crate::sources::Chunk;
use crate::stats::Stats;

/// Whether a checkpoint key is a Docker container ID (64 lowercase hex digits).
pub fn is_container_id(key: &str) -> bool {
    key.len() == 64
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

struct Running {
    stop: Arc<AtomicU8>,
    handle: JoinHandle<()>,
}

/// The Docker json-file source.
pub struct DockerJsonSource {
    /// Source settings.
    pub cfg: DockerConfig,
    /// Host name stamped on events.
    pub host: String,
    /// Compiled extraction rules.
    pub extractor: Arc<Extractor>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Partitions of the Kafka topic, once known.
    pub partitions: crate::sinks::topics::Partitions,
    /// Largest encoded part, bytes (`batch.max_bytes`).
    pub max_part_bytes: usize,
    /// Multiline rules, `None` when `[multiline]` is off.
    pub multiline: Option<Arc<crate::parse::multiline::MultilineRules>>,
    /// Redaction rules.
    pub redactor: Arc<crate::parse::redact::Redactor>,
    /// Per-container read rate limits.
    pub rate_limit: crate::sources::rate_limit::RateLimitConfig,
    /// Rescan now (the Docker event stream saw a container created, started or destroyed),
    /// instead of waiting for the next `discovery_interval_ms`.
    pub wake: Arc<tokio::sync::Notify>,
}

impl DockerJsonSource {
    /// Scans every `discovery_interval_ms` until `shutdown` turns true, then stops all
    /// tailers (their checkpoints stay). Checkpoints of containers that no longer exist are
    /// dropped (a `done` chunk is sent for them).
    pub async fn run(
        self,
        mut checkpoints: BTreeMap<String, FileCheckpoint>,
        tx: mpsc::Sender<Chunk>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut first = true;
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.discovery_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            let Some(present) = self.scan().await else {
                continue; // the directory could not be listed: change nothing this round
            };
            for (id, dir) in &present {
                if running.contains_key(id) {
                    continue;
                }
                match read_container(dir) {
                    Ok((container, true)) => {
                        let cp = checkpoints.get(id).cloned();
                        match self.spawn(container, dir.clone(), cp, tx.clone()) {
                            Ok(r) => {
                                checkpoints.remove(id);
                                running.insert(id.clone(), r);
                            }
                            Err(e) => {
                                tracing::error!(container = %id, error = %e, "cannot start a tailer thread; retrying")
                            }
                        }
                    }
                    Ok((_, false)) => {
                        if first {
                            tracing::info!(container = %id, "log driver is not json-file; not tailed");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "container metadata not readable yet"),
                }
            }
            if first {
                // Only container checkpoints (64 hex digits): other sources (`ecs:…`) share
                // the file.
                let stale: Vec<String> = checkpoints
                    .keys()
                    .filter(|id| is_container_id(id) && !present.contains_key(*id))
                    .cloned()
                    .collect();
                for id in stale {
                    checkpoints.remove(&id);
                    let chunk = Chunk {
                        key: Arc::from(id.as_str()),
                        resource: Arc::default(),
                        parts: Vec::new(),
                        checkpoint: None,
                        done: true,
                    };
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
                first = false;
            }
            running.retain(|id, r| {
                // Gone from the listing and its folder really absent: removed.
                if !present.contains_key(id) && !self.cfg.containers_dir.join(id).exists() {
                    r.stop.store(REMOVED, Ordering::Release);
                }
                !r.handle.is_finished()
            });
        }
        for r in running.values() {
            r.stop.store(SHUTDOWN, Ordering::Release);
        }
        for (_, r) in running {
            let _ = tokio::task::spawn_blocking(move || r.handle.join()).await;
        }
    }

    /// Container folders by ID; `None` when the directory cannot be listed.
    async fn scan(&self) -> Option<HashMap<String, PathBuf>> {
        let dir = self.cfg.containers_dir.clone();
        tokio::task::spawn_blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot list containers directory");
                    return None;
                }
            };
            let mut found = HashMap::new();
            for e in entries.flatten() {
                let path = e.path();
                if path.join("config.v2.json").exists() {
                    found.insert(e.file_name().to_string_lossy().into_owned(), path);
                }
            }
            Some(found)
        })
        .await
        .ok()
        .flatten()
    }

    fn spawn(
        &self,
        container: sightline_model::Container,
        dir: PathBuf,
        checkpoint: Option<FileCheckpoint>,
        tx: mpsc::Sender<Chunk>,
    ) -> std::io::Result<Running> {
        let id = container.id.clone();
        let log_path = dir.join(format!("{id}-json.log"));
        let service = service_name(&container, self.cfg.service_label.as_deref());
        tracing::info!(container = %id, name = %container.name, %service, "tailing container log");
        let ctx = TailerContext {
            container: Arc::new(container),
            service,
            host: self.host.clone(),
            log_path,
            // Its own copy: regex caches are then never shared between tailer threads.
            extractor: Arc::new(Extractor::clone(&self.extractor)),
            cfg: self.cfg.clone(),
            stats: self.stats.clone(),
            partitions: self.partitions.clone(),
            max_part_bytes: self.max_part_bytes,
            multiline: self.multiline.clone(),
            redactor: self.redactor.clone(),
            rate_limit: self.rate_limit.clone(),
        };
        let stop = Arc::new(AtomicU8::new(RUN));
        let tailer = Tailer::new(ctx, tx, stop.clone());
        let short: String = id.chars().take(12).collect();
        let handle = std::thread::Builder::new()
            .name(format!("tail-{short}"))
            .spawn(move || tailer.run(checkpoint))?;
        Ok(Running { stop, handle })
    }
}
