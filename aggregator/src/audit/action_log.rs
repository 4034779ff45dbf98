//! [`StoreActionLog`]: the [`ActionLog`] that appends Sightline's own actions (notifications
//! sent, desired counts changed, …) to the audit store without blocking the caller.
//!
//! `record` puts the event on a bounded queue ([`StoreActionLog::DEFAULT_CAPACITY`]) and
//! returns at once; a writer thread appends what has queued up as one batch (one fsync and
//! one head commit per batch). When the queue is full the event is dropped, logged at
//! `error` level and counted ([`StoreActionLog::dropped`]): a stalled disk must not stall
//! alerting or scaling. Half the queue is kept for those actions: API requests reserve
//! their record's room before they run ([`ActionLog::admit`]), at most half the queue, and
//! the API answers 503 when there is none (`api_auth`), so a flood of API calls cannot
//! crowd them out. If the writer thread has died, nothing is admitted.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sightline_model::audit::AuditEvent;
use sightline_model::event::EventId;

use super::AuditStore;
use crate::alert::ActionLog;

enum Msg {
    Event(Box<AuditEvent>),
    Flush(SyncSender<()>),
}

/// An [`ActionLog`] backed by an [`AuditStore`]. Dropping it (or [`StoreActionLog::close`])
/// writes what is queued and stops the writer thread.
pub struct StoreActionLog {
    tx: Mutex<Option<SyncSender<Msg>>>,
    /// Events queued and not yet appended, plus rooms reserved by `admit`.
    queued: Arc<AtomicUsize>,
    /// Cleared when the writer thread ends (a panic included).
    alive: Arc<AtomicBool>,
    capacity: usize,
    dropped: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    counter: AtomicU64,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// Largest batch the writer appends at once.
const MAX_BATCH: usize = 512;

impl StoreActionLog {
    /// Queue capacity used by [`StoreActionLog::new`], in events.
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// Starts the writer thread with a queue of [`Self::DEFAULT_CAPACITY`] events.
    ///
    /// Errors: the OS error when the thread cannot be spawned.
    pub fn new(store: AuditStore) -> std::io::Result<Self> {
        Self::with_capacity(store, Self::DEFAULT_CAPACITY)
    }

    /// Starts the writer thread with a queue of `capacity` events (at least 1).
    ///
    /// Errors: the OS error when the thread cannot be spawned.
    pub fn with_capacity(store: AuditStore, capacity: usize) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let failed = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let alive = Arc::new(AtomicBool::new(true));
        let (f, q, a) = (failed.clone(), queued.clone(), alive.clone());
        let worker = std::thread::Builder::new()
            .name("audit-action-log".into())
            .spawn(move || {
                let _alive = AliveGuard(a);
                writer(store, rx, f, q)
            })?;
        Ok(StoreActionLog {
            tx: Mutex::new(Some(tx)),
            queued,
            alive,
            capacity,
            dropped: Arc::new(AtomicU64::new(0)),
            failed,
            counter: AtomicU64::new(0),
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Events dropped because the queue was full or the writer had stopped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events the writer could not append (I/O errors; logged).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Blocks until every event recorded before the call is appended (or failed). For
    /// shutdown and tests; not for hot paths.
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|tx| tx.send(Msg::Flush(ack_tx)).is_ok());
        if sent {
            let _ = ack_rx.recv();
        }
    }

    /// Writes what is queued and stops the writer thread.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

impl Drop for StoreActionLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Clears its flag when dropped: when the writer thread ends, by return or by panic.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl StoreActionLog {
    /// Queues `event`, whose place in `queued` is already counted.
    fn enqueue(&self, mut event: AuditEvent) {
        if event.event_id == EventId::default() {
            let n = self.counter.fetch_add(1, Ordering::Relaxed).to_string();
            let pid = std::process::id().to_string();
            event.event_id = AuditEvent::content_id(&[
                "sightline",
                &pid,
                &n,
                &event.time_ns.to_string(),
                &event.action,
                &event.actor.kind,
                &event.actor.id,
                &event.actor.name,
                &event.resource.service,
                &event.message,
            ]);
        }
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let result = match guard.as_ref() {
            Some(tx) => tx.try_send(Msg::Event(Box::new(event))),
            None => Err(TrySendError::Disconnected(Msg::Event(Box::default()))),
        };
        if let Err(e) = result {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            let why = match e {
                TrySendError::Full(_) => "queue full",
                TrySendError::Disconnected(_) => "writer stopped",
            };
            tracing::error!(reason = why, "audit action log: dropping an action record");
        }
    }
}

impl ActionLog for StoreActionLog {
    /// Queues `event`. An `event_id` of 0 (unset) is replaced by a content ID of the event
    /// plus a per-process counter, so two identical actions are both kept.
    fn record(&self, event: AuditEvent) {
        // Counted before the send, so the writer never subtracts more than was added.
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.enqueue(event);
    }

    /// Room while less than half the queue is taken (queued events and reservations) and
    /// the writer runs.
    fn admit(&self) -> bool {
        if !self.alive.load(Ordering::Relaxed) {
            return false;
        }
        let half = self.capacity.div_ceil(2);
        self.queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                (q < half).then_some(q + 1)
            })
            .is_ok()
    }

    fn record_admitted(&self, event: AuditEvent) {
        self.enqueue(event);
    }

    fn cancel_admission(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

fn writer(store: AuditStore, rx: Receiver<Msg>, failed: Arc<AtomicU64>, queued: Arc<AtomicUsize>) {
    let no_positions = Default::default();
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e) => batch.push(*e),
                Msg::Flush(ack) => acks.push(ack),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if let Err(e) = store.append_batch(&batch, &no_positions) {
                failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e, events = batch.len(), "audit action log: append failed");
            }
            queued.fetch_sub(batch.len(), Ordering::Relaxed);
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditConfig;
    use sightline_model::audit::Actor;

    fn action(n: u32) -> AuditEvent {
        AuditEvent {
            action: "alert.notify".into(),
            actor: Actor {
                kind: "sightline".into(),
                id: "notifier".into(),
                name: "notifier".into(),
            },
            message: format!("sent {n}"),
            ..Default::default()
        }
    }

    /// With the writer stalled (a disk that does not answer), API records are admitted only
    /// while less than half the queue is taken, and the other half still takes actions;
    /// when the writer catches up, everything queued is appended and room is back.
    #[test]
    fn half_the_queue_is_kept_for_actions() {
        let tmp = tempfile::tempdir().unwrap();
        let store = AuditStore::open(tmp.path(), AuditConfig::default()).unwrap();
        let log = StoreActionLog::with_capacity(store.clone(), 16).unwrap();
        // Stall the writer: it blocks handing this flush's acknowledgement over until the
        // test takes it. Records it takes along before blocking are appended and no longer
        // queued, so the test fills the queue until admission stops, whatever the timing.
        let (ack_tx, ack_rx) = mpsc::sync_channel(0);
        log.tx
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .send(Msg::Flush(ack_tx))
            .unwrap();
        let mut recorded = 0;
        let mut admitted = 0;
        while log.admit() {
            admitted += 1;
            log.record_admitted(action(recorded));
            recorded += 1;
            assert!(recorded < 100, "the stalled writer never filled the queue");
        }
        assert!(admitted >= 8);
        // Half the queue taken: no more API records, but actions still go in (7, not 8: the
        // flush message may still hold a slot if the writer has not taken it yet).
        for _ in 0..7 {
            log.record(action(recorded));
            recorded += 1;
        }
        assert!(!log.admit());
        assert_eq!(log.dropped(), 0, "the kept half takes actions");
        // A reservation given back leaves no trace.
        ack_rx.recv().unwrap();
        log.flush();
        assert!(log.admit());
        log.cancel_admission();
        assert_eq!(log.queued.load(Ordering::Relaxed), 0);
        assert_eq!(store.head().0, recorded as u64, "every record appended");
        // A writer that has ended admits nothing.
        log.close();
        assert!(!log.admit());
    }
}
