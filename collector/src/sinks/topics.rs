//! The topics, found (or created) in the background, and their partition counts.
//!
//! The collector does not wait for Kafka to start: its sources read at once. A log event's
//! partition is [`partition_for_key`] of its key over the log topic's partition count, so
//! until the broker has told that count the sources tag their events [`UNASSIGNED`]; the sink
//! sends such batches to the disk spool (or, without one, holds them), and they are split
//! by partition (`repartition`) only once the count is known — nothing goes to Kafka
//! partitioned with a guessed count. [`discover`] makes sure the logs, metrics and audit
//! topics exist, retrying until the broker answers or the collector stops, and publishes
//! each topic's count in a [`Partitions`].

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer;
use sightline_model::kafka::partition_for_key;
use sightline_model::{DecodeError, LogEvent};
use tokio::sync::watch;

use super::kafka::{producer_config, Batch, SinkError};
use super::oversize::batch_of;
use super::producer::KafkaProducer;
use crate::config::KafkaConfig;

/// The partition of events read before the log topic's partition count was known.
pub const UNASSIGNED: i32 = -1;

/// A topic's partition count, unknown until the broker told it; shared by whoever needs it.
#[derive(Clone, Debug)]
pub struct Partitions(Arc<watch::Sender<i32>>);

impl Default for Partitions {
    fn default() -> Self {
        Partitions::unknown()
    }
}

impl Partitions {
    /// Not known yet.
    pub fn unknown() -> Self {
        Partitions(Arc::new(watch::Sender::new(0)))
    }

    /// Known to be `n` (≥ 1).
    pub fn known(n: i32) -> Self {
        let p = Partitions::unknown();
        p.set(n);
        p
    }

    /// The count, once known.
    pub fn get(&self) -> Option<i32> {
        Some(*self.0.borrow()).filter(|n| *n > 0)
    }

    /// Publishes the count (values below 1 are ignored).
    pub fn set(&self, n: i32) {
        if n > 0 {
            self.0.send_replace(n);
        }
    }

    /// The partition of `key`: [`partition_for_key`] over the count, [`UNASSIGNED`] while
    /// the count is unknown.
    pub fn partition_for(&self, key: &str) -> i32 {
        match self.get() {
            Some(n) => partition_for_key(key.as_bytes(), n),
            None => UNASSIGNED,
        }
    }

    /// Waits until the count is known; `None` when `shutdown` is or turns true first.
    pub async fn wait(&self, shutdown: &mut watch::Receiver<bool>) -> Option<i32> {
        tokio::select! {
            biased;
            n = self.until_known() => Some(n),
            _ = wait_true(shutdown) => self.get(),
        }
    }

    /// Waits until the count is known.
    pub async fn until_known(&self) -> i32 {
        let mut rx = self.0.subscribe();
        let n = rx.wait_for(|n| *n > 0).await.map(|n| *n);
        match n {
            Ok(n) => n,
            Err(_) => std::future::pending().await, // the sender lives in `self`
        }
    }
}

/// The partition counts of the three topics (see [`discover`]).
#[derive(Clone, Debug, Default)]
pub struct Topics {
    /// `kafka.topic`.
    pub logs: Partitions,
    /// `kafka.metrics_topic`.
    pub metrics: Partitions,
    /// `kafka.audit_topic`.
    pub audit: Partitions,
}

/// Starts making sure the logs, metrics and audit topics exist, in the background, each
/// retried until the broker answers or `shutdown` turns true; returns the handles their
/// partition counts appear in, and the task.
pub fn discover(
    producer: &KafkaProducer,
    cfg: &KafkaConfig,
    shutdown: watch::Receiver<bool>,
) -> (Topics, tokio::task::JoinHandle<()>) {
    let topics = Topics::default();
    let mut jobs = Vec::new();
    for (name, handle) in [
        (&cfg.topic, &topics.logs),
        (&cfg.metrics_topic, &topics.metrics),
        (&cfg.audit_topic, &topics.audit),
    ] {
        let (producer, handle, mut shutdown) = (producer.clone(), handle.clone(), shutdown.clone());
        let mut cfg = cfg.clone();
        cfg.topic = name.clone();
        jobs.push(async move {
            if let Ok(n) = ensure_topic(&producer, &cfg, &mut shutdown).await {
                tracing::info!(topic = %cfg.topic, partitions = n, brokers = %cfg.brokers, "connected to Kafka");
                handle.set(n);
            }
        });
    }
    let task = tokio::spawn(async move {
        futures::future::join_all(jobs).await;
    });
    (topics, task)
}

/// Makes sure the topic exists (creating it with `kafka.partitions` partitions when the
/// broker supports CreateTopics) and returns its partition count. Retries with backoff until
/// the broker answers or `shutdown` turns true ([`SinkError::Interrupted`]).
pub async fn ensure_topic(
    producer: &KafkaProducer,
    cfg: &KafkaConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<i32, SinkError> {
    let mut backoff = Duration::from_millis(200);
    let mut tried_create = false;
    loop {
        let client = producer.clone();
        let topic = cfg.topic.clone();
        // A thread of its own rather than the runtime's blocking pool: shutdown does not
        // wait for a metadata request to time out.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let meta = client
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .map(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map_or(0, |t| t.partitions().len() as i32)
                });
            let _ = tx.send(meta);
        });
        let meta = tokio::select! {
            m = rx => m,
            _ = wait_true(shutdown) => return Err(SinkError::Interrupted(cfg.topic.clone())),
        };
        match meta {
            Ok(Ok(n)) if n > 0 => return Ok(n),
            Ok(Ok(_)) if !tried_create => {
                tried_create = true;
                tokio::select! {
                    _ = create_topic(cfg) => {}
                    _ = wait_true(shutdown) => return Err(SinkError::Interrupted(cfg.topic.clone())),
                }
                continue;
            }
            Ok(Ok(_)) => tracing::warn!(topic = %cfg.topic, "topic has no partitions yet"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, topic = %cfg.topic, brokers = %cfg.brokers, "Kafka not reachable yet")
            }
            Err(_) => tracing::warn!(topic = %cfg.topic, "metadata request lost"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = wait_true(shutdown) => {}
        }
        if *shutdown.borrow() {
            return Err(SinkError::Interrupted(cfg.topic.clone()));
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Resolves once `shutdown` is true (never when its sender is gone while false).
async fn wait_true(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn create_topic(cfg: &KafkaConfig) {
    let admin: AdminClient<DefaultClientContext> = match producer_config(cfg).create() {
        Ok(a) => a,
        Err(e) => return tracing::warn!(error = %e, "cannot create admin client"),
    };
    let topic = NewTopic::new(&cfg.topic, cfg.partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    match admin.create_topics([&topic], &opts).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(t) => {
                        tracing::info!(topic = %t, partitions = cfg.partitions, "created topic")
                    }
                    Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        tracing::debug!(topic = %t, "topic exists")
                    }
                    Err((t, e)) => tracing::warn!(topic = %t, error = %e, "cannot create topic"),
                }
            }
        }
        Err(e) => {
            tracing::info!(error = %e, "CreateTopics not available; relying on broker auto-creation")
        }
    }
}

/// Splits a batch of [`UNASSIGNED`] events into one batch per partition of `partitions`,
/// each event going where [`partition_for_key`] of its key puts it, in the original order
/// (each part is no larger than the batch, so no part passes `batch.max_bytes`).
///
/// Errors: the payload is not a well-formed `LogsData` (the caller then sends it as it is).
pub(crate) fn repartition(batch: &Batch, partitions: i32) -> Result<Vec<Batch>, DecodeError> {
    let events = sightline_model::decode::decode_logs_fast(&batch.payload)?;
    let mut by_partition: Vec<(i32, Vec<&LogEvent>)> = Vec::new();
    for ev in &events {
        let p = partition_for_key(ev.partition_key().as_bytes(), partitions);
        match by_partition.iter_mut().find(|(q, _)| *q == p) {
            Some((_, evs)) => evs.push(ev),
            None => by_partition.push((p, vec![ev])),
        }
    }
    Ok(by_partition
        .into_iter()
        .map(|(p, evs)| batch_of(p, &evs))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_model::encode::{encode_resource, put_log_record_field, LogsDataBuilder};
    use sightline_model::event::{Container, EventId, SourcePosition};

    fn event(container: &str, key: Option<&str>, offset: u64) -> LogEvent {
        LogEvent {
            event_id: EventId::derive(7, offset),
            timestamp_ns: 1_000 + offset,
            host: "h".into(),
            position: SourcePosition {
                source_id: 7,
                offset,
            },
            container: Some(Arc::new(Container {
                id: container.into(),
                name: container.into(),
                image: "img".into(),
                labels: Default::default(),
            })),
            service: format!("svc-{container}"),
            stream: "stdout".into(),
            message: format!("line {offset}"),
            correlation_ids: key.map(|k| vec![k.to_string()]).unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn repartition_puts_each_event_in_its_keys_partition_in_order() {
        let mut events = Vec::new();
        for i in 0..60u64 {
            let container = if i % 3 == 0 { "c1" } else { "c2" };
            let key = format!("req-{}", i % 5);
            events.push(event(container, (i % 4 != 0).then_some(&key), i));
        }
        // As the sink builds batches: runs of records, each with its resource, interleaved.
        let mut builder = LogsDataBuilder::default();
        let mut scratch = Vec::new();
        for run in events.chunk_by(|a, b| a.container == b.container) {
            let mut records = Vec::new();
            for e in run {
                put_log_record_field(&mut records, &mut scratch, e);
            }
            builder.add(&encode_resource(&run[0]), &records);
        }
        let batch = Batch {
            partition: UNASSIGNED,
            key: None,
            payload: builder.finish().into(),
            events: 60,
        };
        assert_eq!(
            sightline_model::decode_logs(&batch.payload).unwrap(),
            events
        );
        let parts = repartition(&batch, 3).unwrap();
        let mut seen = Vec::new();
        for p in &parts {
            let got = sightline_model::decode_logs(&p.payload).unwrap();
            assert_eq!(got.len() as u64, p.events);
            assert!(p.payload.len() <= batch.payload.len());
            for e in &got {
                assert_eq!(
                    partition_for_key(e.partition_key().as_bytes(), 3),
                    p.partition
                );
            }
            let keys: std::collections::BTreeSet<_> =
                got.iter().map(|e| e.partition_key()).collect();
            assert_eq!(p.key.is_some(), keys.len() == 1);
            // In the original order within the partition.
            let offsets: Vec<u64> = got.iter().map(|e| e.position.offset).collect();
            assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
            seen.extend(got);
        }
        seen.sort_by_key(|e| e.position.offset);
        let mut want = sightline_model::decode_logs(&batch.payload).unwrap();
        want.sort_by_key(|e| e.position.offset);
        assert_eq!(seen, want, "the same events, nothing lost or changed");
    }

    #[test]
    fn repartition_of_garbage_is_an_error_not_a_panic() {
        let batch = Batch {
            partition: UNASSIGNED,
            key: None,
            payload: vec![0x0a, 0xff, 0xff, 0xff].into(),
            events: 1,
        };
        assert!(repartition(&batch, 3).is_err());
    }

    #[tokio::test]
    async fn partitions_wait_returns_the_count_or_none_on_shutdown() {
        let p = Partitions::unknown();
        assert_eq!(p.partition_for("k"), UNASSIGNED);
        let (_stop, mut rx) = watch::channel(false);
        let q = p.clone();
        let waiter = tokio::spawn(async move { q.wait(&mut rx).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.set(0); // ignored
        assert!(!waiter.is_finished());
        p.set(4);
        assert_eq!(waiter.await.unwrap(), Some(4));
        assert_eq!(p.partition_for("k"), partition_for_key(b"k", 4));

        let unknown = Partitions::unknown();
        let (stop, mut rx) = watch::channel(false);
        let u = unknown.clone();
        let waiter = tokio::spawn(async move { u.wait(&mut rx).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.send(true).unwrap();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
