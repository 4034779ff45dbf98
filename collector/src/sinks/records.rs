//! The Kafka sink for metric samples and audit events: low-volume records on their own
//! topics (`kafka.metrics_topic`, `kafka.audit_topic`), encoded as OTLP (see
//! `sightline_model::metric` and `sightline_model::audit`).
//!
//! - Metrics: one message per [`MetricBatch`] (one container or task at one instant), keyed
//!   by container ID (else the task ARN, else the service), so a container's samples stay in
//!   order in one partition.
//! - Audit: the events waiting when the sink wakes go out in one message per actor ID (the
//!   key), in stream order. Once Kafka acknowledged them, their sources' positions are
//!   stored — the Docker event stream's last event time in the [`CursorStore`], a log
//!   file's offset (the ECS credentials audit log) in the audit-file checkpoint store
//!   ([`audit_file_store`]) — so a restart resumes after them.
//!
//! Nothing is sent to a topic before it is known to exist (Kafka may be unreachable at
//! start-up); the records wait, as a failing delivery does (the channels feeding the sink
//! are bounded: their sources then wait too). A failed delivery is retried with backoff
//! until it succeeds: records are never dropped while the collector runs. A record Kafka
//! refuses as too large is split or cut instead ([`super::oversize_records`]). On shutdown,
//! records Kafka has not acknowledged (or whose topic is not known) within `shutdown_grace`
//! are left; for audit events the cursor was not advanced, so they are read again from the
//! engine on the next start.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::oversize::too_large;
use super::oversize_records::{shrink_audit, shrink_metrics};
use super::producer::{OutRecord, Payload, ProducerHandle};
use super::topics::Partitions;
use sightline_model::kafka::{
    CONTENT_TYPE_HEADER, CONTENT_TYPE_OTLP_LOGS, CONTENT_TYPE_OTLP_METRICS, SCHEMA_HEADER,
};
use sightline_model::{encode_audit, encode_metrics, AuditEvent, MetricBatch, SCHEMA_VERSION};
use tokio::sync::{mpsc, watch};

use std::collections::BTreeMap;

use crate::checkpoint::{CheckpointError, CheckpointStore, CursorStore, FileCheckpoint};
use crate::sources::docker_engine::Backoff;
use crate::stats::Stats;

/// Name of the Docker event stream's cursor in [`CursorStore`].
pub const DOCKER_EVENTS_CURSOR: &str = "docker_events";

/// Where an audit event's source resumes once the event is acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditPosition {
    /// The Docker event stream: the event's `timeNano`.
    DockerEvents(u64),
    /// A log file (the ECS credentials audit log): its checkpoint key and checkpoint.
    File {
        /// Checkpoint key, e.g. `ecs:audit.log`.
        key: Arc<str>,
        /// Offset after this event's line.
        checkpoint: FileCheckpoint,
    },
}

/// An audit event on its way to Kafka.
#[derive(Debug, Clone)]
pub struct AuditItem {
    /// The event.
    pub event: AuditEvent,
    /// Its source's position after it.
    pub position: AuditPosition,
}

/// The checkpoints of log files read for audit events: `<data_dir>/audit-files/`.
pub fn audit_file_store(data_dir: &std::path::Path) -> Result<CheckpointStore, CheckpointError> {
    CheckpointStore::open(&data_dir.join("audit-files"))
}

/// Sends metric and audit records to Kafka.
#[derive(Clone)]
pub struct RecordSink {
    /// The producer (shared with the log sink).
    pub producer: Arc<ProducerHandle>,
    /// Topic for metric samples.
    pub metrics_topic: String,
    /// Topic for audit events.
    pub audit_topic: String,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Where the event stream's cursor is kept.
    pub cursors: CursorStore,
    /// Where audit log files' checkpoints are kept ([`audit_file_store`]).
    pub audit_files: CheckpointStore,
    /// How long to keep retrying after shutdown began.
    pub shutdown_grace: Duration,
    /// Set once `metrics_topic` exists (see [`super::topics::discover`]): nothing is sent
    /// to it before, so the broker cannot auto-create it with its own partition count.
    pub metrics_ready: Partitions,
    /// Set once `audit_topic` exists.
    pub audit_ready: Partitions,
}

/// The key of a metric batch: container ID, else `aws.ecs.task.arn`, else the service.
pub fn metric_key(b: &MetricBatch) -> String {
    if let Some(c) = &b.resource.container {
        return c.id.clone();
    }
    b.resource_attributes
        .get("aws.ecs.task.arn")
        .cloned()
        .unwrap_or_else(|| b.resource.service.clone())
}

/// How [`RecordSink::deliver`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Kafka acknowledged the message.
    Acked,
    /// Kafka refused it as too large: sending it again as it is would fail forever.
    TooLarge,
    /// Shutdown began and the grace period passed without an acknowledgement.
    GaveUp,
}

impl RecordSink {
    /// Sends one message, retrying until Kafka acknowledges it, refuses it as too large, or
    /// shutdown began and the grace period passed.
    async fn deliver(
        &self,
        (topic, ready): (&str, &Partitions),
        key: &str,
        payload: &Payload,
        content_type: &str,
        shutdown: &watch::Receiver<bool>,
    ) -> Delivery {
        let mut backoff = Backoff::new(Duration::from_secs(5));
        let mut deadline: Option<tokio::time::Instant> = None;
        if ready.get().is_none() && !self.wait_ready(topic, ready, shutdown, &mut deadline).await {
            return Delivery::GaveUp;
        }
        loop {
            let version = SCHEMA_VERSION.to_string();
            let record = OutRecord {
                topic,
                partition: None,
                key: Some(key.as_bytes()),
                headers: &[
                    (SCHEMA_HEADER, version.as_bytes()),
                    (CONTENT_TYPE_HEADER, content_type.as_bytes()),
                ],
                payload: payload.clone(),
            };
            let sent = loop {
                match self.producer.send(&record) {
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                        if *shutdown.borrow() {
                            let d = *deadline.get_or_insert_with(|| {
                                tokio::time::Instant::now() + self.shutdown_grace
                            });
                            if tokio::time::Instant::now() >= d {
                                return Delivery::GaveUp;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    other => break other,
                }
            };
            let outcome = match sent {
                Ok((generation, delivery)) => match delivery.await {
                    Ok(Ok(())) => {
                        self.stats.add_batches_sent(1);
                        return Delivery::Acked;
                    }
                    Ok(Err(e)) => Some((generation, e)),
                    Err(_) => None, // the producer was replaced before reporting
                },
                Err(e) => Some((self.producer.get().0, e)),
            };
            if let Some((_, e)) = &outcome {
                if too_large(e) {
                    return Delivery::TooLarge;
                }
            }
            self.stats.add_send_retries(1);
            match outcome {
                Some((generation, e)) => {
                    self.producer.recover(generation, Some(&e));
                    tracing::warn!(%topic, error = %e, "Kafka did not take the record; retrying");
                }
                None => tracing::warn!(%topic, "delivery report lost; retrying"),
            }
            if *shutdown.borrow() {
                let d = *deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + self.shutdown_grace);
                if tokio::time::Instant::now() >= d {
                    return Delivery::GaveUp;
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// After a record could not be made smaller: waits before it is sent again as it is
    /// (the limit may be raised meanwhile). False when shutdown began.
    async fn pause_unshrinkable(shutdown: &watch::Receiver<bool>) -> bool {
        let mut watch = shutdown.clone();
        let stop = async move {
            // A dropped sender is no shutdown signal: only the sleep ends the wait then.
            if watch.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => !*shutdown.borrow(),
            _ = stop => false,
        }
    }

    /// Waits until `topic` exists (Kafka unreachable since start-up), like a failing
    /// delivery: until shutdown began and `shutdown_grace` passed (false then).
    async fn wait_ready(
        &self,
        topic: &str,
        ready: &Partitions,
        shutdown: &watch::Receiver<bool>,
        deadline: &mut Option<tokio::time::Instant>,
    ) -> bool {
        tracing::info!(%topic, "waiting for Kafka before sending records");
        let mut shutdown = shutdown.clone();
        if ready.wait(&mut shutdown).await.is_some() {
            return true;
        }
        let d = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.shutdown_grace);
        tokio::time::timeout_at(d, ready.until_known())
            .await
            .is_ok()
    }

    /// Ships metric batches until `rx` closes.
    pub async fn run_metrics(
        self,
        mut rx: mpsc::Receiver<Vec<MetricBatch>>,
        shutdown: watch::Receiver<bool>,
    ) {
        while let Some(batches) = rx.recv().await {
            // A stack, so that the halves of a batch too large go first, in order.
            let mut todo: Vec<MetricBatch> = batches.into_iter().rev().collect();
            while let Some(b) = todo.pop() {
                let payload = Payload::from(encode_metrics(std::slice::from_ref(&b)));
                let n = b.points.len() as u64;
                let sent = self
                    .deliver(
                        (&self.metrics_topic, &self.metrics_ready),
                        &metric_key(&b),
                        &payload,
                        CONTENT_TYPE_OTLP_METRICS,
                        &shutdown,
                    )
                    .await;
                match sent {
                    Delivery::Acked => self.stats.add_metrics_sent(n),
                    Delivery::TooLarge => match shrink_metrics(&b, &self.stats) {
                        Some(parts) => todo.extend(parts.into_iter().rev()),
                        None if Self::pause_unshrinkable(&shutdown).await => todo.push(b),
                        None => return,
                    },
                    Delivery::GaveUp => {
                        tracing::warn!(
                            "shutdown: metric samples not acknowledged by Kafka were not sent"
                        );
                        return;
                    }
                }
            }
        }
    }

    /// Ships audit events until `rx` closes, storing their sources' positions after each
    /// acknowledged group.
    pub async fn run_audit(
        self,
        mut rx: mpsc::Receiver<AuditItem>,
        shutdown: watch::Receiver<bool>,
    ) {
        let mut files: BTreeMap<String, FileCheckpoint> =
            self.audit_files.load().unwrap_or_default();
        let mut pending = Vec::new();
        while let Some(first) = rx.recv().await {
            pending.push(first);
            while pending.len() < 512 {
                match rx.try_recv() {
                    Ok(a) => pending.push(a),
                    Err(_) => break,
                }
            }
            self.stats.add_audit_read(pending.len() as u64);
            // Runs of one actor go together, in stream order.
            let mut start = 0;
            while start < pending.len() {
                let key = pending[start].event.actor.id.clone();
                let mut end = start + 1;
                while end < pending.len() && pending[end].event.actor.id == key {
                    end += 1;
                }
                let events: Vec<_> = pending[start..end]
                    .iter()
                    .map(|a| a.event.clone())
                    .collect();
                if !self.deliver_audit_run(&key, events, &shutdown).await {
                    tracing::warn!("shutdown: audit events not acknowledged by Kafka will be read again from their source");
                    return;
                }
                self.store_positions(&pending[start..end], &mut files);
                start = end;
            }
            pending.clear();
        }
    }

    /// Sends one actor's run of audit events, split or cut when Kafka refuses it as too
    /// large. False when shutdown ended it before every event was acknowledged.
    async fn deliver_audit_run(
        &self,
        key: &str,
        events: Vec<AuditEvent>,
        shutdown: &watch::Receiver<bool>,
    ) -> bool {
        let mut todo = vec![events];
        while let Some(run) = todo.pop() {
            let payload = Payload::from(encode_audit(&run));
            let sent = self
                .deliver(
                    (&self.audit_topic, &self.audit_ready),
                    key,
                    &payload,
                    CONTENT_TYPE_OTLP_LOGS,
                    shutdown,
                )
                .await;
            match sent {
                Delivery::Acked => self.stats.add_audit_sent(run.len() as u64),
                Delivery::TooLarge => match shrink_audit(&run, &self.stats) {
                    Some(parts) => todo.extend(parts.into_iter().rev()),
                    None if Self::pause_unshrinkable(shutdown).await => todo.push(run),
                    None => return false,
                },
                Delivery::GaveUp => return false,
            }
        }
        true
    }

    /// Stores the last position of each source among `acked`.
    fn store_positions(&self, acked: &[AuditItem], files: &mut BTreeMap<String, FileCheckpoint>) {
        let mut docker = None;
        let mut file_changed = false;
        for item in acked {
            match &item.position {
                AuditPosition::DockerEvents(ns) => docker = Some(*ns),
                AuditPosition::File { key, checkpoint } => {
                    files.insert(key.to_string(), checkpoint.clone());
                    file_changed = true;
                }
            }
        }
        if let Some(ns) = docker {
            // One second back: the engine stamps an event before it publishes it, so the
            // stream is not strictly ordered by time; the re-read events keep their IDs.
            let ns = ns.saturating_sub(1_000_000_000);
            if let Err(e) = self.cursors.set(DOCKER_EVENTS_CURSOR, ns) {
                self.stats.add_checkpoint_errors(1);
                tracing::warn!(error = %e, "cannot store the Docker event cursor");
            }
        }
        if file_changed {
            if let Err(e) = self.audit_files.save(files) {
                self.stats.add_checkpoint_errors(1);
                tracing::warn!(error = %e, "cannot store audit log checkpoints");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::kafka::producer_config;
    use rdkafka::mocking::MockCluster;
    use sightline_model::MetricPoint;

    fn sink(brokers: &str, dir: &std::path::Path, metrics_ready: Partitions) -> RecordSink {
        sink_with(brokers, dir, metrics_ready, BTreeMap::new())
    }

    fn sink_with(
        brokers: &str,
        dir: &std::path::Path,
        metrics_ready: Partitions,
        client: BTreeMap<String, String>,
    ) -> RecordSink {
        let kafka = crate::config::KafkaConfig {
            brokers: brokers.into(),
            client,
            ..Default::default()
        };
        RecordSink {
            producer: ProducerHandle::new(producer_config(&kafka)).unwrap(),
            metrics_topic: "metrics".into(),
            audit_topic: "audit".into(),
            stats: Arc::new(Stats::default()),
            cursors: CursorStore::open(dir).unwrap(),
            audit_files: audit_file_store(dir).unwrap(),
            shutdown_grace: Duration::from_millis(300),
            metrics_ready,
            audit_ready: Partitions::unknown(),
        }
    }

    fn batch() -> Vec<MetricBatch> {
        vec![MetricBatch {
            points: vec![MetricPoint::gauge("container.pids.count", "1", 3.0)],
            ..Default::default()
        }]
    }

    /// Until the topic is known to exist nothing is sent; then the waiting samples go.
    #[tokio::test]
    async fn metrics_wait_for_their_topic_then_go() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("metrics", 1, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ready = Partitions::unknown();
        let s = sink(&cluster.bootstrap_servers(), dir.path(), ready.clone());
        let stats = s.stats.clone();
        let (tx, rx) = mpsc::channel(4);
        let (_stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(s.run_metrics(rx, shutdown));
        tx.send(batch()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            stats.snapshot().batches_sent,
            0,
            "sent before the topic was known"
        );
        ready.set(1);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stats.snapshot().metrics_sent, 1);
    }

    /// Every message of `topic` (one partition) until none came for a second.
    fn read_topic(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "records-test")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let mut idle = std::time::Instant::now();
        while idle.elapsed() < Duration::from_secs(1) {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                out.push(m.payload().unwrap_or_default().to_vec());
                idle = std::time::Instant::now();
            }
        }
        out
    }

    /// The producer's `message.max.bytes` below a record: audit runs are split, a lone
    /// event's longest text cut and marked, a metric batch split by points; every record
    /// arrives, in order, and the event cursor moves to the last one.
    #[tokio::test]
    async fn records_too_large_for_kafka_are_split_or_cut_never_stuck() {
        use crate::sinks::oversize_records::{TRUNCATED_ATTR, TRUNCATED_FIELD_ATTR};
        use sightline_model::{decode_audit, decode_metrics, Actor};
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("metrics", 1, 1).unwrap();
        cluster.create_topic("audit", 1, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let dir = tempfile::tempdir().unwrap();
        let client = BTreeMap::from([("message.max.bytes".to_string(), "1500".to_string())]);
        let mut s = sink_with(&brokers, dir.path(), Partitions::known(1), client);
        s.audit_ready = Partitions::known(1);
        let stats = s.stats.clone();
        let cursors = s.cursors.clone();
        let (atx, arx) = mpsc::channel(16);
        let (mtx, mrx) = mpsc::channel(4);
        let (_stop, shutdown) = watch::channel(false);
        let audit_task = tokio::spawn(s.clone().run_audit(arx, shutdown.clone()));
        let metrics_task = tokio::spawn(s.run_metrics(mrx, shutdown));

        // Six events of one actor (one run, ~1.8 kB together), the last with a 4 kB command.
        let events: Vec<AuditEvent> = (1..=6u64)
            .map(|i| AuditEvent {
                time_ns: i * 1_000_000_000,
                action: "container.exec_start".into(),
                actor: Actor {
                    id: "c1".into(),
                    ..Default::default()
                },
                message: format!("exec {i} {}", "m".repeat(200)),
                attributes: BTreeMap::from([(
                    "exec.command".to_string(),
                    if i == 6 {
                        "x".repeat(4000)
                    } else {
                        "sh".into()
                    },
                )]),
                ..Default::default()
            })
            .collect();
        for e in &events {
            atx.send(AuditItem {
                event: e.clone(),
                position: AuditPosition::DockerEvents(e.time_ns),
            })
            .await
            .unwrap();
        }
        // 60 points of ~60 bytes each: one message would be ~4 kB.
        let batch = MetricBatch {
            time_ns: 7,
            points: (0..60)
                .map(|i| {
                    MetricPoint::gauge(&format!("container.test.metric_{i:02}"), "1", i as f64)
                })
                .collect(),
            ..Default::default()
        };
        mtx.send(vec![batch.clone()]).await.unwrap();
        drop((atx, mtx));
        for t in [audit_task, metrics_task] {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("the sink is not stuck on records too large")
                .unwrap();
        }

        let got: Vec<AuditEvent> = read_topic(&brokers, "audit")
            .iter()
            .flat_map(|p| decode_audit(p).unwrap())
            .collect();
        assert_eq!(got.len(), 6, "every audit event, once");
        assert_eq!(
            &got[..5],
            &events[..5],
            "in order, the small ones as they were"
        );
        let cut = &got[5];
        assert_eq!(cut.time_ns, events[5].time_ns);
        assert!(cut.attributes["exec.command"].len() < 1500);
        assert!(events[5].attributes["exec.command"].starts_with(&cut.attributes["exec.command"]));
        assert_eq!(cut.attributes[TRUNCATED_ATTR], "4000");
        assert_eq!(cut.attributes[TRUNCATED_FIELD_ATTR], "exec.command");
        assert_eq!(
            cursors.load().unwrap()[DOCKER_EVENTS_CURSOR],
            6_000_000_000 - 1_000_000_000,
            "the cursor follows the last acknowledged event"
        );

        let parts: Vec<MetricBatch> = read_topic(&brokers, "metrics")
            .iter()
            .flat_map(|p| decode_metrics(p).unwrap())
            .collect();
        assert!(parts.len() >= 4, "split: {} messages", parts.len());
        let points: Vec<_> = parts.iter().flat_map(|b| b.points.clone()).collect();
        assert_eq!(points, batch.points, "every point, in order");
        let snap = stats.snapshot();
        assert_eq!((snap.audit_sent, snap.metrics_sent), (6, 60));
        assert_eq!(snap.events_truncated, 1);
    }

    /// Shutdown while the topic is still unknown: the sink gives up after the grace period.
    #[tokio::test]
    async fn shutdown_before_the_topic_is_known_ends_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink("127.0.0.1:1", dir.path(), Partitions::unknown());
        let stats = s.stats.clone();
        let (tx, rx) = mpsc::channel(4);
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(s.run_metrics(rx, shutdown));
        tx.send(batch()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = std::time::Instant::now();
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("prompt")
            .unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(stats.snapshot().metrics_sent, 0);
    }
}
