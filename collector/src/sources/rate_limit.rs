//! Per-container read throttling: token buckets for lines/s and bytes/s that delay reading
//! instead of dropping lines (unlike rsyslog's `MaxLinesPerMinute`, which drops the excess).
//!
//! One [`RateLimiter`] per container tailer. After each read the tailer reports what it read
//! with [`RateLimiter::take`] and waits the returned time before reading again. A bucket
//! holds at most `rate × burst_seconds` tokens and refills at `rate` tokens per second;
//! a read takes its tokens even when that drives the bucket below zero (debt), so a large
//! read is always admitted whole and the wait that follows is `debt / rate`. A container
//! writing faster than the limit is read at exactly the limit (its backlog stays in its
//! log file, where Docker's rotation may eventually remove it: size `max-file` for that).
//!
//! Arithmetic is exact: tokens are counted in nano-tokens (10⁻⁹ token) in `i128`, and a
//! wait is rounded up to the next nanosecond, so over any run the time spent waiting is
//! within 1 ns of `(read − burst) / rate`.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::ConfigError;

/// Read rate limits of one container (TOML table, every key optional; no limit by default).
///
/// ```toml
/// lines_per_sec = 5000
/// bytes_per_sec = 2097152   # 2 MiB/s
/// burst_seconds = 2.0
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Most lines (json-file lines) read per second, on average. Default none (no limit).
    pub lines_per_sec: Option<u64>,
    /// Most bytes (of the log file) read per second, on average. Default none (no limit).
    pub bytes_per_sec: Option<u64>,
    /// How many seconds' worth of lines/bytes may be read at once after an idle period
    /// (the bucket size is `rate × burst_seconds`). Default 1.0; between 0.001 and 3600.
    pub burst_seconds: f64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            lines_per_sec: None,
            bytes_per_sec: None,
            burst_seconds: 1.0,
        }
    }
}

/// Largest accepted rate (per second): keeps the nano-token arithmetic far from overflow.
const MAX_RATE: u64 = 1 << 40;

impl RateLimitConfig {
    /// Checks every value; pure. Errors name the field (`rate_limit.lines_per_sec`, …).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("lines_per_sec", self.lines_per_sec),
            ("bytes_per_sec", self.bytes_per_sec),
        ] {
            if let Some(v) = v {
                if !(1..=MAX_RATE).contains(&v) {
                    return Err(ConfigError::Invalid {
                        field: format!("rate_limit.{field}"),
                        message: format!(
                            "must be between 1 and {MAX_RATE} (leave it out for no limit)"
                        ),
                    });
                }
            }
        }
        if !(self.burst_seconds.is_finite() && (0.001..=3600.0).contains(&self.burst_seconds)) {
            return Err(ConfigError::Invalid {
                field: "rate_limit.burst_seconds".into(),
                message: "must be between 0.001 and 3600".into(),
            });
        }
        Ok(())
    }
}

const NANO: i128 = 1_000_000_000;

/// One token bucket, in nano-tokens.
#[derive(Clone, Debug)]
struct Bucket {
    /// Tokens per second (= nano-tokens per ns).
    rate: i128,
    /// Capacity, nano-tokens.
    cap: i128,
    /// Current level, nano-tokens; negative = debt.
    level: i128,
}

impl Bucket {
    fn new(rate: u64, burst_ns: i128) -> Self {
        let rate = i128::from(rate.clamp(1, MAX_RATE));
        let cap = rate * burst_ns;
        Bucket {
            rate,
            cap,
            level: cap,
        }
    }

    fn refill(&mut self, elapsed_ns: i128) {
        self.level = self
            .level
            .saturating_add(elapsed_ns.saturating_mul(self.rate))
            .min(self.cap);
    }

    /// Takes `n` tokens; returns the ns to wait until the level is back at zero.
    fn take(&mut self, n: u64) -> i128 {
        self.level -= i128::from(n) * NANO;
        if self.level >= 0 {
            0
        } else {
            // ceil(debt / rate)
            (-self.level + self.rate - 1) / self.rate
        }
    }
}

/// Token buckets of one container. Not shared between threads: one per tailer.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    lines: Option<Bucket>,
    bytes: Option<Bucket>,
    last: Option<Instant>,
    delayed_total: Duration,
    throttled_reads: u64,
    admitted_lines: u64,
    admitted_bytes: u64,
}

impl RateLimiter {
    /// Buckets for `cfg` (which must have passed [`RateLimitConfig::validate`]; out-of-range
    /// values are clamped), full: the first `burst` is read without waiting.
    pub fn new(cfg: &RateLimitConfig) -> Self {
        let burst_ns = if cfg.burst_seconds.is_finite() {
            (cfg.burst_seconds.clamp(0.001, 3600.0) * 1e9).round() as i128
        } else {
            NANO
        };
        RateLimiter {
            lines: cfg.lines_per_sec.map(|r| Bucket::new(r, burst_ns)),
            bytes: cfg.bytes_per_sec.map(|r| Bucket::new(r, burst_ns)),
            last: None,
            delayed_total: Duration::ZERO,
            throttled_reads: 0,
            admitted_lines: 0,
            admitted_bytes: 0,
        }
    }

    /// True when no limit is configured ([`RateLimiter::take`] always returns zero).
    pub fn is_unlimited(&self) -> bool {
        self.lines.is_none() && self.bytes.is_none()
    }

    /// Records a read of `lines` lines and `bytes` bytes done at `now`, and returns how long
    /// the caller must wait before its next read (zero when within the limits). The read is
    /// always admitted: there is no drop path. A `now` earlier than a previous one counts as
    /// no time passing.
    pub fn take(&mut self, lines: u64, bytes: u64, now: Instant) -> Duration {
        self.admitted_lines = self.admitted_lines.saturating_add(lines);
        self.admitted_bytes = self.admitted_bytes.saturating_add(bytes);
        if self.is_unlimited() {
            return Duration::ZERO;
        }
        let elapsed = match self.last {
            Some(t) => now.saturating_duration_since(t),
            None => Duration::ZERO,
        };
        if self.last.is_none_or(|t| now > t) {
            self.last = Some(now);
        }
        let elapsed_ns = i128::try_from(elapsed.as_nanos()).unwrap_or(i128::MAX);
        let mut wait_ns = 0i128;
        for (bucket, n) in [(&mut self.lines, lines), (&mut self.bytes, bytes)] {
            if let Some(b) = bucket {
                b.refill(elapsed_ns);
                wait_ns = wait_ns.max(b.take(n));
            }
        }
        if wait_ns == 0 {
            return Duration::ZERO;
        }
        let wait = Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(u64::MAX));
        self.throttled_reads += 1;
        self.delayed_total = self.delayed_total.saturating_add(wait);
        wait
    }

    /// Sum of all waits returned by [`RateLimiter::take`].
    pub fn delayed_total(&self) -> Duration {
        self.delayed_total
    }

    /// Number of reads after which a wait was returned.
    pub fn throttled_reads(&self) -> u64 {
        self.throttled_reads
    }

    /// Lines reported through [`RateLimiter::take`] (all admitted).
    pub fn admitted_lines(&self) -> u64 {
        self.admitted_lines
    }

    /// Bytes reported through [`RateLimiter::take`] (all admitted).
    pub fn admitted_bytes(&self) -> u64 {
        self.admitted_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(lines: Option<u64>, bytes: Option<u64>, burst: f64) -> RateLimiter {
        let cfg = RateLimitConfig {
            lines_per_sec: lines,
            bytes_per_sec: bytes,
            burst_seconds: burst,
        };
        cfg.validate().unwrap();
        RateLimiter::new(&cfg)
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn steady_state_reads_at_exactly_the_rate() {
        let mut r = limiter(Some(1000), None, 1.0);
        let t0 = Instant::now();
        let mut now = t0;
        let mut waits = Vec::new();
        // A container that always has 100 lines ready: read, wait, read, …
        for _ in 0..60 {
            let w = r.take(100, 10_000, now);
            waits.push(w);
            now += w;
        }
        // The burst (1000 lines) goes through at once, then 100 lines per 100 ms.
        assert!(waits[..10].iter().all(|w| w.is_zero()));
        assert!(waits[10..].iter().all(|w| *w == 100 * MS));
        assert_eq!(
            now - t0,
            Duration::from_secs(5),
            "6000 lines − 1000 burst at 1000/s"
        );
        assert_eq!(r.delayed_total(), Duration::from_secs(5));
        assert_eq!(r.throttled_reads(), 50);
    }

    #[test]
    fn fractional_rates_stay_within_a_nanosecond() {
        let mut r = limiter(Some(3), None, 1.0);
        let t0 = Instant::now();
        let mut now = t0;
        for _ in 0..3003 {
            now += r.take(1, 0, now);
        }
        // 3000 lines past the burst at 3/s: 1000 s, rounded up by at most 1 ns in total.
        let spent = now - t0;
        assert!(spent >= Duration::from_secs(1000), "{spent:?}");
        assert!(
            spent <= Duration::from_secs(1000) + Duration::from_nanos(1),
            "{spent:?}"
        );
    }

    #[test]
    fn burst_is_honoured_and_refills_only_up_to_it() {
        let mut r = limiter(Some(1000), None, 2.0);
        let t0 = Instant::now();
        assert_eq!(r.take(2000, 0, t0), Duration::ZERO);
        assert_eq!(r.take(1, 0, t0), MS, "one line past the burst: 1 ms");
        // Idle for a minute: the bucket holds 2 s worth, not 60.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(r.take(2000, 0, t1), Duration::ZERO);
        assert_eq!(r.take(1000, 0, t1), Duration::from_secs(1));
    }

    #[test]
    fn huge_single_read_is_admitted_and_followed_by_a_proportional_wait() {
        let mut r = limiter(None, Some(1024 * 1024), 1.0);
        let t0 = Instant::now();
        // 11 MiB at once with a 1 MiB/s limit and a 1 MiB burst: 10 s of debt.
        assert_eq!(r.take(5, 11 * 1024 * 1024, t0), Duration::from_secs(10));
        // Reading again before the wait is over adds to the debt.
        assert_eq!(
            r.take(1, 512 * 1024, t0 + Duration::from_secs(4)),
            Duration::from_millis(6500)
        );
        assert_eq!(
            r.take(0, 0, t0 + Duration::from_millis(10_500)),
            Duration::ZERO
        );
    }

    #[test]
    fn the_stricter_limit_decides() {
        let mut r = limiter(Some(100), Some(1000), 1.0);
        let t0 = Instant::now();
        // 50 lines (half the line burst) but 3000 bytes (2000 over): 2 s.
        assert_eq!(r.take(50, 3000, t0), Duration::from_secs(2));
        let mut r = limiter(Some(100), Some(1_000_000), 1.0);
        assert_eq!(r.take(300, 3000, t0), Duration::from_secs(2));
    }

    #[test]
    fn no_limit_never_waits() {
        let mut r = RateLimiter::new(&RateLimitConfig::default());
        assert!(r.is_unlimited());
        let t0 = Instant::now();
        for i in 0..100 {
            assert_eq!(
                r.take(1_000_000, u64::MAX / 200, t0 + i * MS),
                Duration::ZERO
            );
        }
        assert_eq!(
            (r.delayed_total(), r.throttled_reads()),
            (Duration::ZERO, 0)
        );
        assert_eq!(r.admitted_lines(), 100_000_000);
    }

    #[test]
    fn clock_going_backwards_counts_as_no_time() {
        let mut r = limiter(Some(10), None, 1.0);
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(r.take(10, 0, t0), Duration::ZERO);
        assert_eq!(
            r.take(10, 0, t0 - Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        // Measured from t0, not from the earlier instant.
        assert_eq!(r.take(0, 0, t0 + Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(
            r.take(10, 0, t0 + Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn nothing_is_dropped_whatever_the_pattern() {
        // Accounting: every line and byte reported is admitted, and the time the reads took
        // (reads done as soon as allowed) matches the debt at the rate.
        let mut r = limiter(Some(500), Some(50_000), 0.5);
        let t0 = Instant::now();
        let mut now = t0;
        let (mut lines, mut bytes) = (0u64, 0u64);
        for i in 0..500u64 {
            let (l, b) = ((i * 7919) % 300, (i * 104_729) % 40_000);
            lines += l;
            bytes += b;
            now += r.take(l, b, now);
        }
        assert_eq!((r.admitted_lines(), r.admitted_bytes()), (lines, bytes));
        assert_eq!(now - t0, r.delayed_total());
        // The reads' total over the time taken never beats either rate beyond the burst.
        let secs = (now - t0).as_secs_f64();
        assert!(lines as f64 <= 500.0 * (secs + 0.5) + 300.0);
        assert!(bytes as f64 <= 50_000.0 * (secs + 0.5) + 40_000.0);
        assert!(r.throttled_reads() > 0);
    }

    #[test]
    fn config_validation() {
        let cfg: RateLimitConfig = toml::from_str("lines_per_sec = 5000\n").unwrap();
        assert_eq!(cfg.lines_per_sec, Some(5000));
        assert_eq!((cfg.bytes_per_sec, cfg.burst_seconds), (None, 1.0));
        cfg.validate().unwrap();
        let err = toml::from_str::<RateLimitConfig>("line_per_sec = 1\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `line_per_sec`"),
            "{err}"
        );
        let field = |c: RateLimitConfig| match c.validate().unwrap_err() {
            ConfigError::Invalid { field, .. } => field,
            e => panic!("{e}"),
        };
        let base = RateLimitConfig::default();
        assert_eq!(
            field(RateLimitConfig {
                lines_per_sec: Some(0),
                ..base.clone()
            }),
            "rate_limit.lines_per_sec"
        );
        assert_eq!(
            field(RateLimitConfig {
                bytes_per_sec: Some(MAX_RATE + 1),
                ..base.clone()
            }),
            "rate_limit.bytes_per_sec"
        );
        for burst in [0.0, -1.0, f64::NAN, f64::INFINITY, 3601.0] {
            assert_eq!(
                field(RateLimitConfig {
                    burst_seconds: burst,
                    ..base.clone()
                }),
                "rate_limit.burst_seconds"
            );
        }
    }
}
