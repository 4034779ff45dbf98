//! Delivery of one request with retries, each attempt recorded in the audit trail.
//!
//! Retried: HTTP 429 (after `Retry-After`, seconds or HTTP-date, when given), 5xx, and
//! network errors/timeouts, with exponential backoff (`initial_backoff` doubling up to
//! `max_backoff`), at most `max_attempts` attempts and never past the deadline (the
//! group's `group_interval`, which bounds a notification in Alertmanager too). Not
//! retried: other 4xx (PagerDuty: "400 … don't retry"), which the receiver will refuse
//! again. Every attempt is one `alert.notify` [`AuditEvent`] whose outcome is the HTTP
//! status or `error: …`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sightline_model::audit::{Actor, AuditEvent};
use sightline_model::event::{LogEvent, SourceKind};

use crate::alert::ActionLog;

use crate::clock::Clock;

/// Retry and timeout settings (not in the TOML: the defaults follow PagerDuty's and
/// Slack's guidance).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Most attempts per notification (≥ 1). Default 6.
    pub max_attempts: u32,
    /// First backoff. Default 1 s.
    pub initial_backoff: Duration,
    /// Backoff cap. Default 60 s.
    pub max_backoff: Duration,
    /// Timeout of one HTTP request. Default 30 s.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1` after `attempt` failures (1-based):
    /// `initial × 2^(attempt−1)`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A prepared request: JSON `body` POSTed to `url`.
#[derive(Clone)]
pub struct Request {
    /// Endpoint (may hold a secret: never logged).
    pub url: String,
    /// JSON body.
    pub body: Vec<u8>,
}

/// What the audit records of a delivery say about it.
#[derive(Clone, Debug, Default)]
pub struct AuditContext {
    /// Receiver name.
    pub receiver: String,
    /// Integration, e.g. `webhook[0]`.
    pub integration: String,
    /// Group key.
    pub group_key: String,
    /// Alerts in the notification.
    pub alert_count: usize,
    /// The group's `service` label, if all its alerts share one.
    pub service: String,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver refused the request with a 4xx other than 429: not retried.
    #[error("rejected with HTTP {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// Retryable failures until attempts or time ran out.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The request could not be built (invalid URL).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Sends requests with retries, recording each attempt.
pub struct Deliverer {
    client: reqwest::Client,
    policy: RetryPolicy,
    log: Arc<dyn ActionLog>,
    clock: Arc<dyn Clock>,
}

enum Attempt {
    Ok(u16),
    Retry {
        outcome: String,
        after: Option<Duration>,
    },
    Fatal(DeliveryError, String),
}

impl Deliverer {
    /// A deliverer with its own HTTP client (rustls, system trust roots).
    ///
    /// Errors: the TLS backend could not be initialised.
    pub fn new(
        policy: RetryPolicy,
        log: Arc<dyn ActionLog>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .user_agent(concat!("Sightline/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Deliverer {
            client,
            policy,
            log,
            clock,
        })
    }

    /// POSTs `req`, retrying as the module docs say until `deadline_ms` (Unix ms).
    /// Returns the accepted response's status (2xx).
    ///
    /// Errors: [`DeliveryError`].
    pub async fn deliver(
        &self,
        req: &Request,
        ctx: &AuditContext,
        deadline_ms: i64,
    ) -> Result<u16, DeliveryError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self.attempt(req).await;
            let outcome = match &result {
                Attempt::Ok(s) => s.to_string(),
                Attempt::Retry { outcome, .. } | Attempt::Fatal(_, outcome) => outcome.clone(),
            };
            self.record(ctx, attempt, &outcome);
            let (last, after) = match result {
                Attempt::Ok(s) => return Ok(s),
                Attempt::Fatal(e, _) => return Err(e),
                Attempt::Retry { outcome, after } => (outcome, after),
            };
            let wait = after.unwrap_or_else(|| self.policy.backoff(attempt));
            let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
            if attempt >= self.policy.max_attempts.max(1)
                || self.clock.now_ms().saturating_add(wait_ms) >= deadline_ms
            {
                return Err(DeliveryError::GaveUp {
                    attempts: attempt,
                    last,
                });
            }
            self.clock.sleep(wait).await;
        }
    }

    async fn attempt(&self, req: &Request) -> Attempt {
        let url = match reqwest::Url::parse(&req.url) {
            Ok(u) => u,
            Err(e) => {
                let e = DeliveryError::Invalid(e.to_string());
                return Attempt::Fatal(e, "error: invalid URL".into());
            }
        };
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(req.body.clone())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                // Without the URL: webhook URLs can hold tokens.
                let e = e.without_url();
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                return Attempt::Retry {
                    outcome: format!("error: {kind}: {e}"),
                    after: None,
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now_ms()));
        if resp.status().is_success() {
            return Attempt::Ok(status);
        }
        if status == 429 || resp.status().is_server_error() {
            return Attempt::Retry {
                outcome: status.to_string(),
                after: retry_after,
            };
        }
        let body = resp.text().await.unwrap_or_default();
        let body = super::data::truncate_chars(&body, 512);
        Attempt::Fatal(DeliveryError::Rejected { status, body }, status.to_string())
    }

    fn record(&self, ctx: &AuditContext, attempt: u32, outcome: &str) {
        let now_ms = self.clock.now_ms();
        let time_ns = u64::try_from(now_ms).unwrap_or(0).saturating_mul(1_000_000);
        let attempt_s = attempt.to_string();
        let count = ctx.alert_count.to_string();
        let mut attributes = BTreeMap::from([
            ("receiver".to_string(), ctx.receiver.clone()),
            ("integration".to_string(), ctx.integration.clone()),
            ("group_key".to_string(), ctx.group_key.clone()),
            ("alert_count".to_string(), count.clone()),
            ("attempt".to_string(), attempt_s.clone()),
        ]);
        if outcome.parse::<u16>().is_ok() {
            attributes.insert("http.response.status_code".into(), outcome.to_string());
        }
        let time_s = now_ms.to_string();
        self.log.record(AuditEvent {
            event_id: AuditEvent::content_id(&[
                "alert.notify",
                &ctx.receiver,
                &ctx.integration,
                &ctx.group_key,
                &attempt_s,
                &time_s,
            ]),
            time_ns,
            observed_ns: time_ns,
            resource: LogEvent {
                service: ctx.service.clone(),
                source_kind: SourceKind::Sightline,
                ..Default::default()
            },
            action: "alert.notify".into(),
            actor: Actor {
                kind: "sightline".into(),
                id: "notifier".into(),
                name: "notifier".into(),
            },
            outcome: Some(outcome.to_string()),
            message: format!(
                "notify {} via {} of {count} alert(s), attempt {attempt}: {outcome}",
                ctx.receiver, ctx.integration
            ),
            attributes,
        });
    }
}

/// `Retry-After` as a delay: delay-seconds, or an HTTP-date relative to `now_ms`
/// (RFC 9110 §10.2.3). `None` when unparsable.
pub fn parse_retry_after(v: &str, now_ms: i64) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    let now = u128::try_from(now_ms).unwrap_or(0);
    Some(Duration::from_millis(
        u64::try_from(at_ms.saturating_sub(now)).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(3), Duration::from_secs(4));
        assert_eq!(p.backoff(40), Duration::from_secs(60));
    }

    #[test]
    fn retry_after_seconds_or_date() {
        assert_eq!(parse_retry_after("7", 0), Some(Duration::from_secs(7)));
        let now = 784_111_777_000 - 10_000;
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }
}
