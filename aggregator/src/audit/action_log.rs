//! [`StoreActionLog`]: the [`ActionLog`] that appends Sightline's own actions (notifications
//! sent, desired counts changed, …) to the audit store without blocking the caller.
//!
//! `record` puts the event on a bounded queue ([`StoreActionLog::DEFAULT_CAPACITY`]) and
//! returns at once; a writer thread appends what has queued up as one batch (one fsync and
//! one head commit per batch). When the queue is full the event is dropped, logged at
//! `error` level and counted ([`StoreActionLog::dropped`]): a stalled disk must not stall
//! alerting or scaling. Half the queue is kept for those actions: once it is half full,
//! [`ActionLog::saturated`] says so, and the API answers 503 rather than add its request
//! records (`api_auth`), so a flood of API calls cannot crowd them out.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Events queued and not yet appended.
    queued: Arc<AtomicUsize>,
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
        let (f, q) = (failed.clone(), queued.clone());
        let worker = std::thread::Builder::new()
            .name("audit-action-log".into())
            .spawn(move || writer(store, rx, f, q))?;
        Ok(StoreActionLog {
            tx: Mutex::new(Some(tx)),
            queued,
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

impl ActionLog for StoreActionLog {
    /// Queues `event`. An `event_id` of 0 (unset) is replaced by a content ID of the event
    /// plus a per-process counter, so two identical actions are both kept.
    fn record(&self, mut event: AuditEvent) {
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
        // Counted before the send, so the writer never sees more appended than queued.
        self.queued.fetch_add(1, Ordering::Relaxed);
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

    /// True once half the queue is taken.
    fn saturated(&self) -> bool {
        self.queued.load(Ordering::Relaxed) >= self.capacity.div_ceil(2)
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

    /// With the writer stalled (a disk that does not answer), the log says it is saturated
    /// once half its queue is taken, while the other half still takes actions; when the
    /// writer catches up, everything queued is appended and the log is no longer saturated.
    #[test]
    fn half_the_queue_is_kept_for_actions() {
        let tmp = tempfile::tempdir().unwrap();
        let store = AuditStore::open(tmp.path(), AuditConfig::default()).unwrap();
        let log = StoreActionLog::with_capacity(store.clone(), 8).unwrap();
        // Stall the writer: it blocks handing this flush's acknowledgement over until the
        // test takes it.
        let (ack_tx, ack_rx) = mpsc::sync_channel(0);
        log.tx
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .send(Msg::Flush(ack_tx))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        for n in 0..3 {
            log.record(action(n));
            assert!(!log.saturated(), "{n} queued");
        }
        log.record(action(3));
        assert!(log.saturated(), "4 of 8 queued: API requests wait");
        for n in 4..8 {
            log.record(action(n));
        }
        assert_eq!(log.dropped(), 0, "the kept half takes actions");
        ack_rx.recv().unwrap();
        log.flush();
        assert!(!log.saturated());
        assert_eq!(store.head().0, 8, "every action appended");
    }
}
