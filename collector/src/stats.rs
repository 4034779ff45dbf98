//! Collector counters (read by the `/metrics` endpoint, see [`crate::telemetry`], and by
//! tests).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use std::sync::Arc;

use crate::checkpoint::FileCheckpoint;
use crate::sinks::spooled::SpoolHandle;

/// Monotonic counters since start, the Kafka delivery latency, and the acknowledged position
/// of every tailed file.
#[derive(Debug)]
pub struct Stats {
    /// Seconds from handing a log batch to the producer to Kafka's acknowledgement; buckets
    /// 1 ms × 2ⁿ up to ~16 s.
    pub delivery_seconds: Histogram,
    /// The last stored checkpoint of each tailed file, by container ID (lag = file size −
    /// offset).
    acked: Mutex<BTreeMap<String, FileCheckpoint>>,
    /// The log spool, for its size and spooled-event count.
    spool: Mutex<Option<Arc<SpoolHandle>>>,
    bytes_read: AtomicU64,
    events_read: AtomicU64,
    events_sent: AtomicU64,
    parse_errors: AtomicU64,
    batches_sent: AtomicU64,
    send_retries: AtomicU64,
    checkpoint_errors: AtomicU64,
    metrics_read: AtomicU64,
    metrics_sent: AtomicU64,
    audit_read: AtomicU64,
    audit_sent: AtomicU64,
    engine_errors: AtomicU64,
    redactions: AtomicU64,
    metric_samples: AtomicU64,
    throttled_reads: AtomicU64,
    throttle_delay_ns: AtomicU64,
    batches_split: AtomicU64,
    events_truncated: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            delivery_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            acked: Mutex::new(BTreeMap::new()),
            spool: Mutex::new(None),
            bytes_read: AtomicU64::new(0),
            events_read: AtomicU64::new(0),
            events_sent: AtomicU64::new(0),
            parse_errors: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            send_retries: AtomicU64::new(0),
            checkpoint_errors: AtomicU64::new(0),
            metrics_read: AtomicU64::new(0),
            metrics_sent: AtomicU64::new(0),
            audit_read: AtomicU64::new(0),
            audit_sent: AtomicU64::new(0),
            engine_errors: AtomicU64::new(0),
            redactions: AtomicU64::new(0),
            metric_samples: AtomicU64::new(0),
            throttled_reads: AtomicU64::new(0),
            throttle_delay_ns: AtomicU64::new(0),
            batches_split: AtomicU64::new(0),
            events_truncated: AtomicU64::new(0),
        }
    }
}

impl Stats {
    /// Records `reads` reads delayed by the rate limits, for `delay` in all.
    pub fn add_throttled(&self, reads: u64, delay: Duration) {
        self.add_throttled_reads(reads);
        self.add_throttle_delay_ns(delay.as_nanos() as u64);
    }

    /// Records one Kafka delivery's latency.
    pub fn observe_delivery(&self, d: Duration) {
        self.delivery_seconds.observe(d.as_secs_f64());
    }

    /// Replaces the acknowledged positions (called when checkpoints are stored).
    pub fn set_acked(&self, files: &BTreeMap<String, FileCheckpoint>) {
        if let Ok(mut a) = self.acked.lock() {
            a.clone_from(files);
        }
    }

    /// Attaches the log spool (for `/metrics`), or detaches it (`None`, before a reload
    /// opens the spool again).
    pub fn set_spool(&self, spool: Option<Arc<SpoolHandle>>) {
        if let Ok(mut s) = self.spool.lock() {
            *s = spool;
        }
    }

    /// (un-acknowledged bytes in the spool, events spooled since start, spooling now);
    /// zeros without a spool.
    pub fn spool_state(&self) -> (u64, u64, bool) {
        match self.spool.lock().ok().and_then(|s| s.clone()) {
            Some(h) => (
                h.bytes(),
                h.events_spooled.load(Ordering::Relaxed),
                h.spooling(),
            ),
            None => (0, 0, false),
        }
    }

    /// The acknowledged positions, by container ID.
    pub fn acked(&self) -> BTreeMap<String, FileCheckpoint> {
        self.acked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// A point-in-time copy of [`Stats`]' counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Bytes read from log files.
    pub bytes_read: u64,
    /// Events built from those bytes.
    pub events_read: u64,
    /// Events acknowledged by Kafka.
    pub events_sent: u64,
    /// Events shipped with a parse-error mark.
    pub parse_errors: u64,
    /// Kafka messages acknowledged.
    pub batches_sent: u64,
    /// Kafka messages sent again after a delivery failure.
    pub send_retries: u64,
    /// Failed checkpoint writes (retried on the next acknowledgement).
    pub checkpoint_errors: u64,
    /// Metric points sampled (container stats, ECS task metrics).
    pub metrics_read: u64,
    /// Metric points acknowledged by Kafka.
    pub metrics_sent: u64,
    /// Audit events read (Docker events, ECS credentials audit log).
    pub audit_read: u64,
    /// Audit events acknowledged by Kafka.
    pub audit_sent: u64,
    /// Failed Docker Engine API requests (retried).
    pub engine_errors: u64,
    /// Secrets masked by redaction rules.
    pub redactions: u64,
    /// Container stats samples taken (one per container per round).
    pub metric_samples: u64,
    /// Reads delayed by `[rate_limit]`.
    pub throttled_reads: u64,
    /// Total delay imposed by `[rate_limit]`, ns.
    pub throttle_delay_ns: u64,
    /// Log batches Kafka refused as too large, split (or their one event cut) and sent again.
    pub batches_split: u64,
    /// Events whose message was cut because alone they were larger than Kafka accepts.
    pub events_truncated: u64,
}

macro_rules! adders {
    ($($add:ident => $field:ident),* $(,)?) => {
        impl Stats {
            $(
                #[doc = concat!("Adds to `", stringify!($field), "`.")]
                pub fn $add(&self, n: u64) {
                    self.$field.fetch_add(n, Ordering::Relaxed);
                }
            )*

            /// Reads every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($field: self.$field.load(Ordering::Relaxed)),* }
            }
        }
    };
}

adders!(
    add_bytes_read => bytes_read,
    add_events_read => events_read,
    add_events_sent => events_sent,
    add_parse_errors => parse_errors,
    add_batches_sent => batches_sent,
    add_send_retries => send_retries,
    add_checkpoint_errors => checkpoint_errors,
    add_metrics_read => metrics_read,
    add_metrics_sent => metrics_sent,
    add_audit_read => audit_read,
    add_audit_sent => audit_sent,
    add_engine_errors => engine_errors,
    add_redactions => redactions,
    add_metric_samples => metric_samples,
    add_throttled_reads => throttled_reads,
    add_throttle_delay_ns => throttle_delay_ns,
    add_batches_split => batches_split,
    add_events_truncated => events_truncated,
);
