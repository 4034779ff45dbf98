//! The log sink's disk spool: where batches go while Kafka is unreachable or slow, and the
//! task that drains them, oldest first, once it answers again.
//!
//! The sink switches to *spooling* when a batch is not acknowledged within
//! `spool.spill_after_ms` (or its delivery fails): that batch, the rest of its generation and
//! every later batch are appended to the [`Spool`] (fsynced) instead of produced, and their
//! checkpoints advance once they are on disk — so the tailers keep reading (Docker's
//! rotation cannot delete unread lines) until the spool is full, and then stop (backpressure;
//! nothing is dropped). The drain task produces spooled batches in order and removes them
//! once Kafka acknowledged them; when the spool is empty the sink produces directly again.
//!
//! Batches read before the log topic's partition count was known (Kafka unreachable at
//! start-up) are spooled with partition [`UNASSIGNED`] (-1): the drain task holds them, and
//! everything after them, until the count is known, then splits them by partition.
//!
//! Batches handed to the producer before the switch may still be delivered by librdkafka
//! when Kafka returns, besides their spooled copy: the same events twice, with the same event
//! IDs, which the aggregator drops (at-least-once, deduplicated downstream).
//!
//! Spool record (version 1): `[u8 version][i32 LE partition][u64 LE events][u32 LE key
//! length, u32::MAX = no key][key bytes][OTLP LogsData payload]`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::{watch, Notify};

use super::kafka::Batch;
use super::oversize::{shrink, too_large};
use super::producer::{Delivery, KafkaProducer, ProducerHandle};
use super::topics::{repartition, Partitions, UNASSIGNED};
use crate::sources::docker_engine::Backoff;
use crate::spool::{Spool, SpoolError};
use crate::stats::Stats;

const RECORD_VERSION: u8 = 1;

impl std::fmt::Debug for SpoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolHandle")
            .field("spooling", &self.spooling())
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

/// Encodes a batch as a spool record (see the module docs).
pub(crate) fn encode_record(b: &Batch) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.payload.len() + 32);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&b.partition.to_le_bytes());
    out.extend_from_slice(&b.events.to_le_bytes());
    match &b.key {
        Some(k) => {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k.as_bytes());
        }
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
    out.extend_from_slice(&b.payload);
    out
}

/// Decodes a spool record; `None` when it is not a version-1 record.
pub(crate) fn decode_record(r: &[u8]) -> Option<Batch> {
    if r.first() != Some(&RECORD_VERSION) || r.len() < 17 {
        return None;
    }
    let partition = i32::from_le_bytes(r[1..5].try_into().ok()?);
    let events = u64::from_le_bytes(r[5..13].try_into().ok()?);
    let klen = u32::from_le_bytes(r[13..17].try_into().ok()?);
    let (key, rest) = if klen == u32::MAX {
        (None, &r[17..])
    } else {
        let end = 17usize.checked_add(klen as usize)?;
        let k = std::str::from_utf8(r.get(17..end)?).ok()?.to_string();
        (Some(k), &r[end..])
    };
    Some(Batch {
        partition,
        key,
        payload: rest.to_vec().into(),
        events,
    })
}

/// The spool shared by the sink (appends) and its drain task.
pub struct SpoolHandle {
    spool: Mutex<Spool>,
    spooling: AtomicBool,
    has_data: Notify,
    freed: Notify,
    bytes: AtomicU64,
    /// Events appended since start.
    pub events_spooled: AtomicU64,
    /// The collector's shutdown signal: a full spool then stops waiting for room.
    closing: watch::Receiver<bool>,
    /// Batches decided for the spool but not appended yet: spooling mode must not end
    /// while there are any, or newer batches would be produced before them.
    pending: AtomicU64,
}

impl SpoolHandle {
    /// Wraps an opened spool; starts in spooling mode when it holds records (a previous run
    /// left them), so they go out before anything newer.
    /// `closing` is the collector's shutdown signal.
    pub fn new(spool: Spool, closing: watch::Receiver<bool>) -> Arc<Self> {
        let pending = !spool.is_empty();
        let bytes = spool.bytes();
        Arc::new(SpoolHandle {
            spool: Mutex::new(spool),
            spooling: AtomicBool::new(pending),
            has_data: Notify::new(),
            freed: Notify::new(),
            bytes: AtomicU64::new(bytes),
            events_spooled: AtomicU64::new(0),
            closing,
            pending: AtomicU64::new(0),
        })
    }

    /// Whether new batches must go to the spool (Kafka did not keep up, or the spool still
    /// holds older batches).
    pub fn spooling(&self) -> bool {
        self.spooling.load(Ordering::Acquire)
    }

    /// Un-acknowledged bytes in the spool.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Announces batches that may go to the spool; call before deciding (before reading
    /// [`SpoolHandle::spooling`] or calling [`SpoolHandle::start_spooling`]), and
    /// [`SpoolHandle::end_pending`] once they are appended or produced.
    pub fn begin_pending(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// See [`SpoolHandle::begin_pending`].
    pub fn end_pending(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Switches to spooling (Kafka did not acknowledge in time).
    pub fn start_spooling(&self) {
        self.start_spooling_because("Kafka is not acknowledging in time");
    }

    /// Switches to spooling, logging `why` when it was not spooling already.
    pub fn start_spooling_because(&self, why: &str) {
        if !self.spooling.swap(true, Ordering::AcqRel) {
            tracing::warn!("{why}: spooling to disk");
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Spool) -> T) -> T {
        let mut g = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut g);
        self.bytes.store(g.bytes(), Ordering::Relaxed);
        out
    }

    /// Appends batches durably, in order; waits while the spool is full (backpressure).
    /// Returns true when every batch is on disk; false when one could not be spooled — the
    /// spool stayed full (or failed) after shutdown began, or a batch is larger than a
    /// segment — and the caller must then not advance any checkpoint past it (those lines
    /// are read again on the next start).
    pub(crate) async fn append(self: &Arc<Self>, batches: Vec<Batch>) -> bool {
        for b in batches {
            let record = encode_record(&b);
            loop {
                let this = self.clone();
                let rec = record.clone();
                let res = tokio::task::spawn_blocking(move || {
                    this.with(|s| s.append(&rec).and_then(|_| s.sync()))
                })
                .await
                .unwrap_or_else(|e| {
                    Err(SpoolError::Io {
                        path: Default::default(),
                        source: std::io::Error::other(e.to_string()),
                    })
                });
                match res {
                    Ok(()) => {
                        self.events_spooled.fetch_add(b.events, Ordering::Relaxed);
                        self.has_data.notify_one();
                        break;
                    }
                    Err(e @ SpoolError::RecordTooLarge { .. }) => {
                        tracing::error!(error = %e, "batch larger than a spool segment: not spooled; its lines will be read again after a restart");
                        return false;
                    }
                    Err(e) if *self.closing.borrow() => {
                        tracing::warn!(error = %e, "shutting down with the spool full or failing: the rest is read again on the next start");
                        return false;
                    }
                    Err(SpoolError::Full { .. }) => {
                        // Wait for the drain task to free space (or re-check shortly).
                        let _ = tokio::time::timeout(Duration::from_secs(1), self.freed.notified())
                            .await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write to the spool; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        true
    }

    /// Produces spooled batches in order until `shutdown` (the caller raises it once the log
    /// sink has finished, so the sink can still make room while it drains); acknowledges
    /// them in the spool once Kafka did; leaves spooling mode when the spool is empty. A
    /// delivery still pending at shutdown is abandoned: its records stay in the spool.
    /// Batches of [`UNASSIGNED`] events wait, and everything after them, until `partitions`
    /// is known; they are then split by partition (`repartition`).
    pub async fn drain(
        self: Arc<Self>,
        producer: Arc<ProducerHandle>,
        topic: String,
        partitions: Partitions,
        stats: Arc<Stats>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(Duration::from_secs(5));
        loop {
            if *shutdown.borrow() {
                return;
            }
            let this = self.clone();
            let read = tokio::task::spawn_blocking(move || {
                this.with(|s| {
                    if !s.is_empty() {
                        return s.read_next(64, 8 << 20);
                    }
                    // Empty, under the spool's lock, and nothing on its way in: newer
                    // batches may go to Kafka directly again.
                    if this.pending.load(Ordering::Acquire) == 0
                        && this.spooling.swap(false, Ordering::AcqRel)
                    {
                        tracing::info!("spool drained: producing to Kafka directly again");
                    }
                    Ok(Vec::new())
                })
            })
            .await
            .unwrap_or_else(|_| Ok(Vec::new()));
            let records = match read {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool; retrying");
                    if sleep_or_shutdown(&mut shutdown, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            };
            if records.is_empty() {
                tokio::select! {
                    _ = self.has_data.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let decoded: Vec<_> = records
                .iter()
                .map(|(id, rec)| (*id, decode_record(rec)))
                .collect();
            let waits = decoded
                .iter()
                .any(|(_, b)| b.as_ref().is_some_and(|b| b.partition == UNASSIGNED));
            let count = partitions.get();
            if waits && count.is_none() {
                // Read before the partition count was known: nothing goes before them.
                self.with(|s| s.rewind());
                tokio::select! {
                    _ = partitions.wait(&mut shutdown) => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            // One producer for the whole round: its outcome is judged on that producer.
            let (generation, kafka) = producer.get();
            let mut pending = VecDeque::with_capacity(records.len());
            let mut last = None;
            let mut events = 0;
            for (id, b) in decoded {
                let Some(b) = b else {
                    tracing::error!("spool record of an unknown version; skipped");
                    last = Some(id);
                    continue;
                };
                events += b.events;
                let batches = match (b.partition, count) {
                    (UNASSIGNED, Some(n)) => repartition(&b, n).unwrap_or_else(|e| {
                        tracing::error!(error = %e, "malformed spooled batch; sent to partition 0 as it is");
                        vec![Batch { partition: 0, ..b }]
                    }),
                    _ => vec![b],
                };
                for b in batches {
                    enqueue(b, &kafka, &topic, &stats, &mut pending).await;
                }
                last = Some(id);
            }
            let mut ok = true;
            let mut error = None;
            while let Some((b, f)) = pending.pop_front() {
                let Some(f) = f else {
                    ok = false;
                    continue;
                };
                let outcome = tokio::select! {
                    r = f => r,
                    _ = shutdown.changed() => {
                        self.with(|s| s.rewind());
                        return;
                    }
                };
                match outcome {
                    Ok(Ok(_)) => stats.add_batches_sent(1),
                    Ok(Err(e)) if too_large(&e) => match shrink(&b, &stats) {
                        Some(parts) => {
                            // Its parts are sent, and waited for, in its place.
                            let mut sent = VecDeque::new();
                            for part in parts {
                                enqueue(part, &kafka, &topic, &stats, &mut sent).await;
                            }
                            while let Some(s) = sent.pop_back() {
                                pending.push_front(s);
                            }
                        }
                        None => {
                            ok = false;
                            error = Some(e);
                        }
                    },
                    Ok(Err(e)) => {
                        ok = false;
                        error = Some(e);
                    }
                    Err(_) => ok = false,
                }
            }
            if !ok {
                stats.add_send_retries(1);
                producer.recover(generation, error.as_ref());
                tracing::warn!("Kafka did not take spooled batches; retrying");
                self.with(|s| s.rewind());
                if sleep_or_shutdown(&mut shutdown, backoff.next_delay()).await {
                    return;
                }
                continue;
            }
            backoff.reset();
            stats.add_events_sent(events);
            if let Some(id) = last {
                let this = self.clone();
                let res = tokio::task::spawn_blocking(move || this.with(|s| s.ack(id))).await;
                if let Ok(Err(e)) = res {
                    tracing::error!(error = %e, "cannot acknowledge in the spool");
                }
                self.freed.notify_waiters();
            }
        }
    }
}

/// Enqueues `b` on `kafka`, split while the producer refuses it as too large ([`shrink`]);
/// appends what was enqueued to `out`, in order, with its delivery future (`None`: it could
/// not be enqueued, and the round is retried).
async fn enqueue(
    b: Batch,
    kafka: &KafkaProducer,
    topic: &str,
    stats: &Stats,
    out: &mut VecDeque<(Batch, Option<Delivery>)>,
) {
    let mut todo = vec![b];
    while let Some(b) = todo.pop() {
        loop {
            match b.send_on(kafka, topic) {
                Ok(f) => {
                    out.push_back((b, Some(f)));
                    break;
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => {
                    if too_large(&e) {
                        if let Some(parts) = shrink(&b, stats) {
                            todo.extend(parts.into_iter().rev());
                            break;
                        }
                    }
                    tracing::warn!(error = %e, "cannot enqueue a spooled batch");
                    out.push_back((b, None));
                    break;
                }
            }
        }
    }
}

async fn sleep_or_shutdown(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        for key in [None, Some("req-1".to_string()), Some(String::new())] {
            let b = Batch {
                partition: 3,
                key: key.clone(),
                payload: vec![1, 2, 3, 0, 255].into(),
                events: 42,
            };
            let back = decode_record(&encode_record(&b)).unwrap();
            assert_eq!(
                (back.partition, back.key, back.payload.to_vec(), back.events),
                (3, key, vec![1, 2, 3, 0, 255], 42)
            );
        }
        assert!(decode_record(&[2, 0, 0]).is_none());
        assert!(decode_record(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0]).is_none());
    }
}
