//! The Kafka sink: batching, producing and acknowledgement-driven checkpoints.
//!
//! Sources hand over events already encoded per partition (`partition_for_key` of each
//! event's partitioning key, so all events of one correlation ID share a partition and keep
//! their order); the sink concatenates them into OTLP `LogsData` messages of at most
//! `batch.max_bytes`. A *generation* is what is sent together: the batches that filled up
//! (the others keep filling), or every open batch when `linger_ms` passes. A chunk's
//! checkpoint travels with the first generation that holds the last of its events. The
//! producer is idempotent with `acks=all`; a message that still
//! fails is sent again, forever, with backoff (never dropped). Checkpoints of a generation are
//! applied only after every message of it, and of every earlier generation, is acknowledged;
//! at most `max_in_flight` generations, and `max_in_flight_bytes` of sealed batches, wait,
//! after which reading stops (backpressure). Batch payloads are written once, into recycled
//! buffers, and shared with librdkafka rather than copied ([`super::buffers`]).
//!
//! Two exceptions to "sent again as it is": a batch Kafka refuses as too large
//! (`MessageSizeTooLarge`) is split instead, and later batches are sealed smaller
//! ([`super::oversize`]); and batches of events read before the topic's partition count was
//! known ([`UNASSIGNED`], Kafka unreachable since start-up) go to the spool, or without one
//! wait for the count and are split by partition ([`super::topics`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use sightline_model::encode::LogsDataBuilder;
use sightline_model::kafka::{CONTENT_TYPE_HEADER, CONTENT_TYPE_OTLP_LOGS, SCHEMA_HEADER};
use sightline_model::SCHEMA_VERSION;
use tokio::sync::{mpsc, watch};

use crate::checkpoint::{CheckpointStore, FileCheckpoint};
use crate::config::{BatchConfig, KafkaConfig};
use crate::sources::Chunk;
use crate::stats::Stats;

use super::oversize::{shrink, too_large};
use super::producer::{Delivery, KafkaProducer, OutRecord, Payload, ProducerHandle};
use super::spooled::SpoolHandle;
pub use super::topics::ensure_topic;
use super::topics::{repartition, Partitions, UNASSIGNED};

/// Sink start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The producer could not be created from the settings.
    #[error("invalid Kafka client settings: {0}")]
    Client(#[from] KafkaError),
    /// Shutdown was requested before the topic could be reached.
    #[error("shut down before Kafka topic {0} was reachable")]
    Interrupted(String),
}

/// Producer settings: Sightline's defaults, then the user's `kafka.client` overrides, then
/// the fixed `enable.idempotence=true` and `acks=all`.
pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("compression.type", &cfg.compression)
        .set("linger.ms", "5")
        .set("message.max.bytes", "4194304")
        .set("queue.buffering.max.kbytes", "32768")
        .set("message.timeout.ms", "120000");
    for (k, v) in &cfg.client {
        c.set(k, v);
    }
    if let (Some(user), Some(password)) = (&cfg.sasl_username, &cfg.sasl_password) {
        c.set("sasl.username", user)
            .set("sasl.password", password.expose());
    }
    c.set("enable.idempotence", "true").set("acks", "all");
    c
}

/// One Kafka message of log events: OTLP `LogsData` of one partition.
pub(crate) struct Batch {
    pub(crate) partition: i32,
    pub(crate) key: Option<String>,
    /// Shared with librdkafka while in flight (no copy).
    pub(crate) payload: Payload,
    pub(crate) events: u64,
}

impl Batch {
    /// Enqueues this batch on the current producer (see [`ProducerHandle::send`]).
    pub(crate) fn send(
        &self,
        producer: &ProducerHandle,
        topic: &str,
    ) -> Result<(u64, Delivery), KafkaError> {
        let (generation, p) = producer.get();
        self.send_on(&p, topic).map(|d| (generation, d))
    }

    /// Enqueues this batch on `producer`.
    pub(crate) fn send_on(
        &self,
        producer: &KafkaProducer,
        topic: &str,
    ) -> Result<Delivery, KafkaError> {
        let version = SCHEMA_VERSION.to_string();
        super::producer::produce(
            producer,
            &OutRecord {
                topic,
                partition: Some(self.partition),
                key: self.key.as_deref().map(str::as_bytes),
                headers: &[
                    (CONTENT_TYPE_HEADER, CONTENT_TYPE_OTLP_LOGS.as_bytes()),
                    (SCHEMA_HEADER, version.as_bytes()),
                ],
                payload: self.payload.clone(),
            },
        )
    }
}

struct Generation {
    batches: Vec<(Batch, (u64, Delivery))>,
    /// Batches for the spool (the sink is spooling): the ack loop appends them, so the spool
    /// receives generations in order.
    to_spool: Vec<Batch>,
    /// A [`SpoolHandle::begin_pending`] is held for `to_spool`.
    spool_pending: bool,
    checkpoints: Vec<(Arc<str>, Option<FileCheckpoint>, bool)>,
    /// When the batches were handed to the producer.
    sent_at: Instant,
    /// This generation's share of `max_in_flight_bytes`, released once it is done.
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A chunk's checkpoint waiting for all of the chunk's events to be in sent batches:
/// (chunk sequence number, source key, checkpoint, source done).
type PendingCheckpoint = (u64, Arc<str>, Option<FileCheckpoint>, bool);

/// A partition's batch being filled.
#[derive(Default)]
struct Open {
    /// Sequence number of the first chunk with events in this batch.
    first_chunk: Option<u64>,
    builder: LogsDataBuilder,
    events: u64,
    /// `None`: empty; `Some(None)`: events with different keys; `Some(Some(k))`: all `k`.
    key: Option<Option<String>>,
}

impl Open {
    fn seal(&mut self, partition: i32) -> Batch {
        let o = std::mem::take(self);
        Batch {
            partition,
            key: o.key.flatten(),
            payload: Payload::recycled(o.builder.finish()),
            events: o.events,
        }
    }
}

/// `max_in_flight_bytes` is counted in KiB permits (a semaphore holds at most `u32::MAX`).
fn budget_units(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

/// The running sink.
pub struct KafkaSink {
    /// The shared producer (replaced after a fatal error).
    pub producer: Arc<ProducerHandle>,
    /// Topic.
    pub topic: String,
    /// Partition count of the topic, once known (the sources tag events read before it was
    /// [`UNASSIGNED`]; see [`super::topics`]).
    pub partitions: Partitions,
    /// The collector's shutdown signal: without a spool, batches of [`UNASSIGNED`] events
    /// wait for the partition count until it turns true.
    pub shutdown: watch::Receiver<bool>,
    /// Batching settings.
    pub batch: BatchConfig,
    /// Checkpoint file.
    pub store: CheckpointStore,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The disk spool, when `spool.enabled` (see [`super::spooled`]).
    pub spool: Option<Arc<SpoolHandle>>,
    /// Spool a batch Kafka has not acknowledged after this long (`spool.spill_after_ms`).
    pub spill_after: Duration,
    /// Set once a batch could be neither delivered nor spooled (shutdown with a full spool):
    /// no checkpoint advances any more, so those lines are read again on the next start.
    pub stalled: std::sync::atomic::AtomicBool,
    /// Half the size of the smallest batch Kafka refused as too large (0: none yet): new
    /// batches are sealed below it, so a broker limit under `batch.max_bytes` is learnt
    /// once rather than met by every batch ([`super::oversize`]).
    pub learned_max_bytes: std::sync::atomic::AtomicUsize,
}

impl KafkaSink {
    /// Consumes chunks until the channel closes (all sources stopped), then flushes, waits
    /// for every acknowledgement and writes the final checkpoint.
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<Chunk>,
        checkpoints: BTreeMap<String, FileCheckpoint>,
    ) {
        let (gen_tx, gen_rx) = mpsc::channel::<Generation>(self.batch.max_in_flight);
        let budget = Arc::new(tokio::sync::Semaphore::new(budget_units(
            self.batch.max_in_flight_bytes,
        )));
        let this = Arc::new(self);
        let acker = tokio::spawn(this.clone().ack_loop(gen_rx, checkpoints));
        let mut open: HashMap<i32, Open> = HashMap::new();
        let mut sealed: Vec<Batch> = Vec::new();
        let mut cps: VecDeque<PendingCheckpoint> = VecDeque::new();
        let mut seq = 0u64;
        let linger = Duration::from_millis(this.batch.linger_ms);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + linger, linger);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                chunk = rx.recv() => {
                    let Some(chunk) = chunk else { break };
                    seq += 1;
                    for part in chunk.parts {
                        let o = open.entry(part.partition).or_default();
                        // Seal before the message would pass max_bytes.
                        // (each part adds the resource, the scope and framing: ~64 bytes more)
                        if !o.builder.is_empty()
                            && o.builder.len() + part.records.len() + chunk.resource.len() + 64
                                > this.max_bytes()
                        {
                            sealed.push(o.seal(part.partition));
                        }
                        if o.builder.is_empty() {
                            o.builder = LogsDataBuilder::with_buffer(super::buffers::take_buffer(
                                this.batch.max_bytes + 64 * 1024,
                            ));
                        }
                        o.builder.add(&chunk.resource, &part.records);
                        o.first_chunk.get_or_insert(seq);
                        o.events += part.count;
                        o.key = Some(match o.key.take() {
                            None => part.key,
                            Some(k) if k == part.key => k,
                            Some(_) => None,
                        });
                    }
                    cps.push_back((seq, chunk.key, chunk.checkpoint, chunk.done));
                    if !sealed.is_empty() {
                        // Only the full batches go; the others keep filling.
                        this.flush(&mut open, &mut sealed, &mut cps, &gen_tx, &budget, false).await;
                    }
                }
                _ = tick.tick() => {
                    if !cps.is_empty() {
                        this.flush(&mut open, &mut sealed, &mut cps, &gen_tx, &budget, true).await;
                    }
                }
            }
        }
        if !cps.is_empty() {
            this.flush(&mut open, &mut sealed, &mut cps, &gen_tx, &budget, true)
                .await;
        }
        drop(gen_tx);
        let _ = acker.await;
    }

    async fn flush(
        &self,
        open: &mut HashMap<i32, Open>,
        sealed: &mut Vec<Batch>,
        cps: &mut VecDeque<PendingCheckpoint>,
        gen_tx: &mpsc::Sender<Generation>,
        budget: &Arc<tokio::sync::Semaphore>,
        all: bool,
    ) {
        if all {
            for (p, o) in open.iter_mut() {
                if !o.builder.is_empty() {
                    sealed.push(o.seal(*p));
                }
            }
        }
        // A chunk's checkpoint goes with this generation only when none of its events is
        // still in an open batch: chunks older than every open batch's first chunk.
        let frontier = open
            .values()
            .filter_map(|o| o.first_chunk)
            .min()
            .unwrap_or(u64::MAX);
        let ready = cps.iter().take_while(|c| c.0 < frontier).count();
        let checkpoints = cps
            .drain(..ready)
            .map(|(_, key, cp, done)| (key, cp, done))
            .collect();
        // Waits while `max_in_flight_bytes` of earlier generations are unacknowledged.
        let bytes: usize = sealed.iter().map(|b| b.payload.len()).sum();
        let units = budget_units(bytes).clamp(1, budget_units(self.batch.max_in_flight_bytes));
        let permit = budget.clone().acquire_many_owned(units as u32).await.ok();
        let mut batches = Vec::with_capacity(sealed.len());
        let mut to_spool = Vec::new();
        let mut spool_pending = false;
        let unassigned = sealed.iter().any(|b| b.partition == UNASSIGNED);
        if let Some(spool) = &self.spool {
            spool.begin_pending(); // before looking, so spooling cannot end under us
            if unassigned {
                // Read before the partition count was known: split by partition only when
                // the spool is drained, after the count is known.
                spool.start_spooling_because("the topic's partition count is not known yet");
            }
            if spool.spooling() {
                // Kafka is behind: these go to disk after everything before them.
                to_spool = std::mem::take(sealed);
                spool_pending = true;
            } else {
                spool.end_pending();
            }
        }
        if unassigned && self.spool.is_none() {
            self.assign_partitions(sealed).await;
        }
        for batch in sealed.drain(..) {
            batches.extend(self.send(batch).await);
        }
        let generation = Generation {
            batches,
            to_spool,
            spool_pending,
            checkpoints,
            sent_at: Instant::now(),
            _budget: permit,
        };
        // Waits when max_in_flight generations are unacknowledged: backpressure.
        let _ = gen_tx.send(generation).await;
    }

    /// Without a spool: waits for the partition count, then splits the [`UNASSIGNED`]
    /// batches of `sealed` by partition. When shutdown comes first they are left out
    /// (dropped from `sealed`) and the sink stalls: no checkpoint advances any more, so
    /// their lines are read again on the next start.
    async fn assign_partitions(&self, sealed: &mut Vec<Batch>) {
        let mut shutdown = self.shutdown.clone();
        let Some(n) = self.partitions.wait(&mut shutdown).await else {
            tracing::warn!("shutting down before the topic's partition count was known: the lines not sent are read again on the next start");
            self.stalled
                .store(true, std::sync::atomic::Ordering::Release);
            sealed.retain(|b| b.partition != UNASSIGNED);
            return;
        };
        let mut out = Vec::with_capacity(sealed.len());
        for b in sealed.drain(..) {
            if b.partition != UNASSIGNED {
                out.push(b);
                continue;
            }
            match repartition(&b, n) {
                Ok(parts) => out.extend(parts),
                Err(e) => {
                    tracing::error!(error = %e, "malformed batch; sent to partition 0 as it is");
                    out.push(Batch { partition: 0, ..b });
                }
            }
        }
        *sealed = out;
    }

    /// `batch.max_bytes`, or less once Kafka refused a batch as too large.
    fn max_bytes(&self) -> usize {
        match self
            .learned_max_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => self.batch.max_bytes,
            n => n.min(self.batch.max_bytes),
        }
    }

    /// Kafka refused `b` as too large: later batches stay under half its size.
    fn learn_too_large(&self, b: &Batch) {
        let half = (b.payload.len() / 2).max(1);
        if b.events >= 2 && half < self.max_bytes() {
            self.learned_max_bytes
                .store(half, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                max_bytes = half,
                "Kafka refused a batch as too large: batches are now sealed at this size (set batch.max_bytes under the broker's message.max.bytes)"
            );
        }
    }

    /// Enqueues one message; waits while librdkafka's queue is full. A message the producer
    /// refuses as too large is split ([`shrink`]) and its parts enqueued in its place.
    /// Returns what was enqueued, in order, each with the producer generation that took it
    /// and its delivery future.
    async fn send(&self, batch: Batch) -> Vec<(Batch, (u64, Delivery))> {
        let mut todo = vec![batch];
        let mut out = Vec::new();
        while let Some(b) = todo.pop() {
            loop {
                match b.send(&self.producer, &self.topic) {
                    Ok(sent) => {
                        out.push((b, sent));
                        break;
                    }
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) if too_large(&e) => {
                        self.learn_too_large(&b);
                        if let Some(parts) = shrink(&b, &self.stats) {
                            todo.extend(parts.into_iter().rev());
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot enqueue Kafka message; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
        out
    }

    async fn ack_loop(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Generation>,
        mut checkpoints: BTreeMap<String, FileCheckpoint>,
    ) {
        let interval = Duration::from_millis(self.batch.checkpoint_interval_ms);
        let mut dirty = false;
        let mut last_save = Instant::now();
        loop {
            let generation = match tokio::time::timeout(interval, rx.recv()).await {
                Ok(Some(g)) => Some(g),
                Ok(None) => None,
                Err(_) => {
                    if dirty {
                        dirty = !self.save(&checkpoints).await;
                        last_save = Instant::now();
                    }
                    continue;
                }
            };
            let Some(generation) = generation else { break };
            let mut rest = generation.batches.into_iter();
            while let Some((batch, fut)) = rest.next() {
                let mut spill = self.await_delivery(batch, fut, generation.sent_at).await;
                if !spill.is_empty() {
                    // Not acknowledged in time: this batch and the rest of the generation go
                    // to the spool; their checkpoints then advance.
                    let spool = self.spool.as_ref().expect("only spilled with a spool");
                    spill.extend(rest.by_ref().map(|(b, _)| b));
                    spool.begin_pending();
                    spool.start_spooling();
                    if !spool.append(spill).await {
                        self.stalled
                            .store(true, std::sync::atomic::Ordering::Release);
                    }
                    spool.end_pending();
                }
            }
            if let (Some(spool), true) = (&self.spool, generation.spool_pending) {
                if !spool.append(generation.to_spool).await {
                    self.stalled
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                spool.end_pending();
            }
            if self.stalled.load(std::sync::atomic::Ordering::Acquire) {
                continue; // neither acknowledged nor spooled: these checkpoints must not move
            }
            for (key, cp, done) in generation.checkpoints {
                if done {
                    dirty |= checkpoints.remove(&*key).is_some();
                } else if let Some(cp) = cp {
                    checkpoints.insert(key.to_string(), cp);
                    dirty = true;
                }
            }
            if dirty && last_save.elapsed() >= interval {
                dirty = !self.save(&checkpoints).await;
                last_save = Instant::now();
            }
        }
        if dirty {
            self.save(&checkpoints).await;
        }
    }

    /// Waits for one batch's acknowledgement, sending it again after failures; a batch
    /// Kafka refuses as too large is split ([`shrink`]) and its parts sent and waited for in
    /// its place. With a spool, gives back what is not acknowledged (to be spooled, in
    /// order) when it is not acknowledged within `spill_after` of `sent_at` or its delivery
    /// failed; without one, retries forever. Empty: all acknowledged.
    async fn await_delivery(
        &self,
        batch: Batch,
        sent: (u64, Delivery),
        sent_at: Instant,
    ) -> Vec<Batch> {
        let mut backoff = Duration::from_millis(100);
        let mut queue = VecDeque::from([(batch, sent)]);
        let spill = |batch: Batch, queue: VecDeque<(Batch, (u64, Delivery))>| {
            let mut out = vec![batch];
            out.extend(queue.into_iter().map(|(b, _)| b));
            out
        };
        while let Some((batch, (generation, mut fut))) = queue.pop_front() {
            let outcome = match &self.spool {
                Some(_) => {
                    let deadline = sent_at + self.spill_after;
                    match tokio::time::timeout_at(deadline.into(), &mut fut).await {
                        Ok(r) => r,
                        Err(_) => return spill(batch, queue),
                    }
                }
                None => (&mut fut).await,
            };
            let error = match outcome {
                Ok(Ok(_)) => {
                    self.stats.observe_delivery(sent_at.elapsed());
                    self.stats.add_events_sent(batch.events);
                    self.stats.add_batches_sent(1);
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(Err(e)) if too_large(&e) => {
                    self.learn_too_large(&batch);
                    if let Some(parts) = shrink(&batch, &self.stats) {
                        // Enqueued in order, then waited for first, in order.
                        let mut sent = Vec::new();
                        for part in parts {
                            sent.extend(self.send(part).await);
                        }
                        for s in sent.into_iter().rev() {
                            queue.push_front(s);
                        }
                        continue;
                    }
                    Some(e) // cannot be made smaller: as any failed delivery
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, partition = batch.partition, "Kafka delivery failed");
                    Some(e)
                }
                Err(_) => {
                    tracing::warn!(partition = batch.partition, "delivery report lost");
                    None
                }
            };
            self.stats.add_send_retries(1);
            self.producer.recover(generation, error.as_ref());
            if self.spool.is_some() {
                return spill(batch, queue);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            for sent in self.send(batch).await.into_iter().rev() {
                queue.push_front(sent);
            }
        }
        Vec::new()
    }

    async fn save(&self, checkpoints: &BTreeMap<String, FileCheckpoint>) -> bool {
        let snapshot = checkpoints.clone();
        let store = self.store.clone();
        let res =
            tokio::task::spawn_blocking(move || store.save(&snapshot).map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = res {
            self.stats.add_checkpoint_errors(1);
            tracing::error!(error = %e, "checkpoint write failed; will retry");
            return false;
        }
        self.stats.set_acked(checkpoints);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Part;
    use rdkafka::mocking::MockCluster;

    fn chunk(key: &str, offset: u64, parts: &[(i32, usize)]) -> Chunk {
        Chunk {
            key: key.into(),
            resource: Arc::new(vec![1, 2, 3]),
            parts: parts
                .iter()
                .map(|&(partition, len)| Part {
                    partition,
                    records: vec![0x0a; len],
                    count: 1,
                    key: None,
                })
                .collect(),
            checkpoint: Some(FileCheckpoint {
                path: format!("/logs/{key}").into(),
                fingerprint: "00000000000000aa".into(),
                offset,
            }),
            done: false,
        }
    }

    /// A full batch goes out alone while the other partition's batch keeps filling; the
    /// checkpoint of a chunk with events in that still-open batch must wait for it.
    #[tokio::test]
    async fn checkpoint_waits_for_every_batch_holding_its_events() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("logs", 2, 1).unwrap();
        let kafka = KafkaConfig {
            brokers: cluster.bootstrap_servers(),
            topic: "logs".into(),
            ..KafkaConfig::default()
        };
        let data = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(data.path()).unwrap();
        let sink = KafkaSink {
            producer: ProducerHandle::new(producer_config(&kafka)).unwrap(),
            topic: "logs".into(),
            partitions: Partitions::known(2),
            shutdown: watch::channel(false).1,
            batch: BatchConfig {
                max_bytes: 100_000,
                linger_ms: 3_600_000, // no timed flush during the test
                checkpoint_interval_ms: 20,
                ..BatchConfig::default()
            },
            store: store.clone(),
            stats: Arc::new(Stats::default()),
            spool: None,
            spill_after: Duration::from_secs(5),
            stalled: Default::default(),
            learned_max_bytes: Default::default(),
        };
        let (tx, rx) = mpsc::channel(8);
        let run = tokio::spawn(sink.run(rx, BTreeMap::new()));
        // Chunk a: 60 kB in partition 0, a little in partition 1. Chunk b: 60 kB more in
        // partition 0, which fills it: partition 0's batch (a's part) is sent alone.
        tx.send(chunk("a", 100, &[(0, 60_000), (1, 100)]))
            .await
            .unwrap();
        tx.send(chunk("b", 200, &[(0, 60_000)])).await.unwrap();
        let saved_checkpoints = || store.load().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            assert!(
                saved_checkpoints().is_empty(),
                "a checkpoint advanced while its events sat in an open batch"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Closing flushes every open batch: now both checkpoints are written.
        drop(tx);
        run.await.unwrap();
        let saved = saved_checkpoints();
        assert_eq!(saved.get("a").map(|c| c.offset), Some(100));
        assert_eq!(saved.get("b").map(|c| c.offset), Some(200));
    }
}
