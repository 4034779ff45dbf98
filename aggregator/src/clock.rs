//! Time for rules, notifications and autoscaling: one injectable clock, so tests drive
//! evaluations, timers and backoffs without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A sleep future.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Wall-clock time (Unix ms) and sleeping.
pub trait Clock: Send + Sync {
    /// Now, Unix ms.
    fn now_ms(&self) -> i64;
    /// Completes after `d`.
    fn sleep(&self, d: Duration) -> Sleep<'_>;
}

/// The system clock and tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }
    fn sleep(&self, d: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told. With [`ManualClock::auto_advancing`], every sleep
/// moves it forward by its duration and returns at once (for retry tests); otherwise
/// sleeps wait for [`ManualClock::advance`]. Every requested sleep is recorded.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    auto: bool,
    notify: tokio::sync::Notify,
    sleeps: Mutex<Vec<Duration>>,
}

impl ManualClock {
    /// A clock at `now_ms` whose sleeps wait for [`advance`](Self::advance).
    pub fn new(now_ms: i64) -> Self {
        ManualClock {
            now: AtomicI64::new(now_ms),
            auto: false,
            notify: tokio::sync::Notify::new(),
            sleeps: Mutex::new(Vec::new()),
        }
    }

    /// A clock at `now_ms` whose sleeps advance it and return at once.
    pub fn auto_advancing(now_ms: i64) -> Self {
        ManualClock {
            auto: true,
            ..ManualClock::new(now_ms)
        }
    }

    /// Moves time forward, waking the sleeps that are due.
    pub fn advance(&self, d: Duration) {
        let add = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.now.fetch_add(add, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Sets the time (sleeps that are due wake up).
    pub fn set(&self, now_ms: i64) {
        self.now.store(now_ms, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Moves time forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// The sleeps requested so far.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) -> Sleep<'_> {
        self.sleeps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(d);
        if self.auto {
            self.advance(d);
            return Box::pin(std::future::ready(()));
        }
        let deadline = self
            .now_ms()
            .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Box::pin(async move {
            loop {
                let woken = self.notify.notified();
                if self.now_ms() >= deadline {
                    return;
                }
                woken.await;
            }
        })
    }
}
