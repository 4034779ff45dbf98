//! Collector counters (read by the `/metrics` endpoint and by tests).

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    bytes_read: AtomicU64,
    events_read: AtomicU64,
    events_sent: AtomicU64,
    parse_errors: AtomicU64,
    batches_sent: AtomicU64,
    send_retries: AtomicU64,
    checkpoint_errors: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
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
);
