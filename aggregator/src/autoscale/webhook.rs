//! Generic HTTP webhook provider: POSTs each scaling request as JSON to a URL, for
//! orchestrators Sightline has no client for (Nomad, a deploy bot, a script).
//!
//! Request: `POST <url>`, `Content-Type: application/json`, body ([`WebhookBody`]):
//!
//! ```json
//! {"version":"1","service":"checkout","policy":"checkout-cpu","current":2,"running":2,
//!  "desired":4,"reason":"cpu_utilization = 140 vs target 70: desired 2 (running 2) -> 4"}
//! ```
//!
//! Any 2xx means done. 5xx, 429 (after `Retry-After` when given) and network errors are
//! retried with exponential backoff (1 s doubling, up to `max_attempts`); other 4xx are not
//! retried. The current count comes from `GET <status_url>?service=<name>` returning
//! `{"desired_count": n, "running_count": n}` when `status_url` is set, otherwise
//! [`ProviderError::CountUnknown`] (the controller then reads the `running_task_count`
//! rollup).

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::config::WebhookConfig;
use super::provider::{Capacity, ProviderError, ScaleContext, ScalingProvider};
use crate::notify::retry::{parse_retry_after, RetryPolicy};
use crate::notify::Secret;

/// The JSON body POSTed for one scaling request (format version `"1"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookBody {
    /// Body format version, `"1"`.
    pub version: String,
    /// The service to scale.
    pub service: String,
    /// The policy that decided.
    pub policy: String,
    /// Desired count before.
    pub current: u32,
    /// Running count before.
    pub running: u32,
    /// The new desired count.
    pub desired: u32,
    /// Why (human-readable).
    pub reason: String,
}

#[derive(Deserialize)]
struct StatusBody {
    desired_count: u32,
    running_count: u32,
}

/// POSTs scaling requests (see the module docs).
pub struct WebhookProvider {
    client: reqwest::Client,
    url: Secret,
    status_url: Option<Secret>,
    policy: RetryPolicy,
}

impl WebhookProvider {
    /// A provider from `[autoscale.webhook]` (rustls, system trust roots).
    ///
    /// Errors: [`ProviderError::Api`] when the HTTP client cannot be built.
    pub fn new(cfg: &WebhookConfig) -> Result<Self, ProviderError> {
        let policy = RetryPolicy {
            max_attempts: cfg.max_attempts.max(1),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_millis(u64::try_from(cfg.timeout).unwrap_or(1)),
        };
        Self::with_retry(cfg, policy)
    }

    /// [`Self::new`] with explicit retry settings (tests use millisecond backoffs).
    ///
    /// Errors: as [`Self::new`].
    pub fn with_retry(cfg: &WebhookConfig, policy: RetryPolicy) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .user_agent(concat!("Sightline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Api(format!("HTTP client: {e}")))?;
        Ok(WebhookProvider {
            client,
            url: cfg.url.clone(),
            status_url: cfg.status_url.clone(),
            policy,
        })
    }

    async fn status(&self, service: &str) -> Result<Capacity, ProviderError> {
        let Some(url) = &self.status_url else {
            return Err(ProviderError::CountUnknown);
        };
        let resp = self
            .client
            .get(url.expose())
            .query(&[("service", service)])
            .send()
            .await
            .map_err(|e| ProviderError::Api(format!("status request: {}", e.without_url())))?;
        let code = resp.status();
        if code == reqwest::StatusCode::NOT_FOUND {
            return Err(ProviderError::NotFound(service.to_string()));
        }
        if !code.is_success() {
            return Err(ProviderError::Api(format!(
                "status request: HTTP {}",
                code.as_u16()
            )));
        }
        let b: StatusBody = resp
            .json()
            .await
            .map_err(|e| ProviderError::Api(format!("status response: {}", e.without_url())))?;
        Ok(Capacity {
            desired_count: b.desired_count,
            running_count: b.running_count,
        })
    }

    async fn post(&self, body: &WebhookBody) -> Result<(), ProviderError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ProviderError::Api(e.to_string()))?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let sent = self
                .client
                .post(self.url.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone())
                .send()
                .await;
            let (last, after) = match sent {
                Err(e) => (format!("error: {}", e.without_url()), None),
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return Ok(());
                    }
                    let code = status.as_u16();
                    if code != 429 && !status.is_server_error() {
                        let text = resp.text().await.unwrap_or_default();
                        let body: String = text.chars().take(512).collect();
                        return Err(ProviderError::Rejected { status: code, body });
                    }
                    let after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, now_ms()));
                    (format!("HTTP {code}"), after)
                }
            };
            if attempt >= self.policy.max_attempts {
                return Err(ProviderError::GaveUp {
                    attempts: attempt,
                    last,
                });
            }
            let wait = after
                .unwrap_or_else(|| self.policy.backoff(attempt))
                .min(self.policy.max_backoff);
            tokio::time::sleep(wait).await;
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl ScalingProvider for WebhookProvider {
    fn current<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Capacity, ProviderError>> {
        Box::pin(self.status(service))
    }

    fn set_desired<'a>(
        &'a self,
        service: &'a str,
        desired: u32,
        ctx: &'a ScaleContext,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let body = WebhookBody {
                version: "1".into(),
                service: service.to_string(),
                policy: ctx.policy.clone(),
                current: ctx.current,
                running: ctx.running,
                desired,
                reason: ctx.reason.clone(),
            };
            self.post(&body).await
        })
    }
}
