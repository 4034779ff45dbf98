//! On-call notifications: routes the rule evaluator's [`Alert`]s into aggregation groups
//! with Alertmanager's semantics and delivers them to webhooks (Alertmanager payload v4),
//! PagerDuty (Events API v2) and Slack (incoming webhooks), with retries, each attempt
//! recorded in the audit trail through [`ActionLog`]. User documentation:
//! `docs/notifications.md`.
//!
//! Files:
//! - [`config`]: the `[notify]` TOML table ([`NotifyConfig`]) and its pure `validate()`;
//! - [`route`]: the compiled routing tree, route and group keys;
//! - [`dispatch`]: aggregation groups, `group_wait`/`group_interval`/`repeat_interval`,
//!   the notification log (a pure state machine on explicit timestamps);
//! - [`data`]: template data shared by the payloads (subject, common labels, links);
//! - [`webhook`], [`pagerduty`], [`slack`]: the payloads;
//! - [`retry`]: HTTP delivery with backoff and audit records;
//!
//! Use:
//!
//! ```no_run
//! # async fn demo(cfg: sightline_aggregator::notify::NotifyConfig,
//! #   log: std::sync::Arc<dyn sightline_aggregator::alert::ActionLog>,
//! #   rx: tokio::sync::mpsc::Receiver<Vec<sightline_aggregator::alert::Alert>>)
//! #   -> Result<(), Box<dyn std::error::Error>> {
//! use sightline_aggregator::notify::{Notifier, SystemClock};
//! let notifier = Notifier::new(cfg, log, std::sync::Arc::new(SystemClock))?;
//! notifier.run(rx, tokio_util::sync::CancellationToken::new()).await;
//! # Ok(()) }
//! ```

pub mod config;
pub mod data;
pub mod dispatch;
pub mod pagerduty;
pub mod retry;
pub mod route;
pub mod slack;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alert::{ActionLog, Alert};

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use config::{NotifyConfig, NotifyConfigError, Secret};
pub use dispatch::{Dispatcher, Flush, IntegrationId, IntegrationKind, Notification};
pub use retry::{AuditContext, Deliverer, DeliveryError, Request, RetryPolicy};
pub use route::RouteTree;

/// Longest wait on the way out for deliveries under way.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// Why a [`Notifier`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The `[notify]` table is invalid.
    #[error("notify config: {0}")]
    Config(#[from] NotifyConfigError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The notifier: a [`Dispatcher`] and a [`Deliverer`] on a [`Clock`].
///
/// Drive it with [`run`](Self::run) (production), or step by step with
/// [`ingest`](Self::ingest) and [`flush_due`](Self::flush_due) (tests, dry runs).
pub struct Notifier {
    config: Arc<NotifyConfig>,
    dispatcher: Dispatcher,
    deliverer: Arc<Deliverer>,
    clock: Arc<dyn Clock>,
    intervals: Vec<Duration>,
}

impl Notifier {
    /// A notifier with the default [`RetryPolicy`].
    ///
    /// Errors: [`NotifyError`].
    pub fn new(
        config: NotifyConfig,
        log: Arc<dyn ActionLog>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, NotifyError> {
        Self::with_policy(config, log, clock, RetryPolicy::default())
    }

    /// A notifier with a given retry policy.
    ///
    /// Errors: [`NotifyError`].
    pub fn with_policy(
        config: NotifyConfig,
        log: Arc<dyn ActionLog>,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
    ) -> Result<Self, NotifyError> {
        let tree = RouteTree::compile(&config)?;
        let intervals = tree.routes.iter().map(|r| r.group_interval).collect();
        let dispatcher =
            Dispatcher::new(tree, &config.receivers, config.resolve_timeout.as_millis());
        let deliverer = Arc::new(Deliverer::new(policy, log, clock.clone())?);
        Ok(Notifier {
            config: Arc::new(config),
            dispatcher,
            deliverer,
            clock,
            intervals,
        })
    }

    /// The dispatcher (group keys and counts, for status pages).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Takes in a batch of alerts at the clock's now.
    pub fn ingest(&mut self, alerts: Vec<Alert>) {
        self.dispatcher.ingest(alerts, self.clock.now_ms());
    }

    /// When the next group flush is due, Unix ms.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.dispatcher.next_due_ms()
    }

    /// Flushes the groups due now and delivers their notifications, waiting for the
    /// deliveries (retries included). Returns how many notifications were delivered.
    pub async fn flush_due(&mut self) -> usize {
        let flushes = self.dispatcher.take_due(self.clock.now_ms());
        let mut delivered = 0;
        for flush in flushes {
            let ok = deliver_flush(
                self.deliverer.clone(),
                self.config.clone(),
                &flush,
                self.clock.now_ms(),
                self.flush_timeout(&flush),
            )
            .await;
            delivered += ok.iter().filter(|b| **b).count();
            self.dispatcher.complete(flush, &ok, self.clock.now_ms());
        }
        delivered
    }

    fn flush_timeout(&self, flush: &Flush) -> Duration {
        self.intervals
            .get(flush.route_id())
            .copied()
            .unwrap_or(Duration::from_secs(300))
    }

    /// Runs until `shutdown` is cancelled or `alerts` closes: takes in each batch as it
    /// arrives, flushes groups when due, delivers in the background (one task per group
    /// flush, bounded by the group's `group_interval`). Deliveries under way are awaited
    /// on the way out for at most [`SHUTDOWN_DRAIN`]; groups still waiting are dropped.
    pub async fn run(
        mut self,
        mut alerts: mpsc::Receiver<Vec<Alert>>,
        shutdown: CancellationToken,
    ) {
        let mut inflight: JoinSet<(Flush, Vec<bool>)> = JoinSet::new();
        let mut open = true;
        while open {
            let now = self.clock.now_ms();
            let wait = self
                .next_due_ms()
                .map(|t| Duration::from_millis(u64::try_from(t.saturating_sub(now)).unwrap_or(0)));
            let clock = self.clock.clone();
            let timer = async move {
                match wait {
                    Some(d) => clock.sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => open = false,
                batch = alerts.recv() => match batch {
                    Some(batch) => self.ingest(batch),
                    None => open = false,
                },
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    if let Ok((flush, ok)) = done {
                        self.dispatcher.complete(flush, &ok, self.clock.now_ms());
                    }
                }
                _ = timer => {
                    for flush in self.dispatcher.take_due(self.clock.now_ms()) {
                        let timeout = self.flush_timeout(&flush);
                        let (deliverer, config, now) =
                            (self.deliverer.clone(), self.config.clone(), self.clock.now_ms());
                        inflight.spawn(async move {
                            let ok = deliver_flush(deliverer, config, &flush, now, timeout).await;
                            (flush, ok)
                        });
                    }
                }
            }
        }
        // Deliveries under way get a bounded time to finish (retries included), so a
        // receiver that is down does not hold up the shutdown.
        let drain = async {
            while let Some(done) = inflight.join_next().await {
                if let Ok((flush, ok)) = done {
                    self.dispatcher.complete(flush, &ok, self.clock.now_ms());
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_DRAIN, drain).await.is_err() {
            tracing::warn!("notifications still being delivered at shutdown were abandoned");
        }
    }
}

/// Builds the HTTP request of a notification: the integration's URL and JSON body.
///
/// Errors: the receiver or integration is not in the config (a programming error).
pub fn build_request(config: &NotifyConfig, n: &Notification) -> Result<Request, String> {
    let receiver = config
        .receivers
        .iter()
        .find(|r| r.name == n.receiver)
        .ok_or_else(|| format!("unknown receiver {:?}", n.receiver))?;
    let missing = || format!("receiver {:?} has no {:?}", n.receiver, n.integration);
    let ext = config.external_url.as_str();
    let i = n.integration.index;
    let (url, body) = match n.integration.kind {
        IntegrationKind::Webhook => {
            let c = receiver.webhook_configs.get(i).ok_or_else(missing)?;
            (
                c.url.expose().to_string(),
                serde_json::to_vec(&webhook::payload(n, c, ext)),
            )
        }
        IntegrationKind::Pagerduty => {
            let c = receiver.pagerduty_configs.get(i).ok_or_else(missing)?;
            (
                c.url.clone(),
                serde_json::to_vec(&pagerduty::event(n, c, ext)),
            )
        }
        IntegrationKind::Slack => {
            let c = receiver.slack_configs.get(i).ok_or_else(missing)?;
            (
                c.api_url.expose().to_string(),
                serde_json::to_vec(&slack::message(n, c, ext)),
            )
        }
    };
    Ok(Request {
        url,
        body: body.map_err(|e| e.to_string())?,
    })
}

async fn deliver_flush(
    deliverer: Arc<Deliverer>,
    config: Arc<NotifyConfig>,
    flush: &Flush,
    now_ms: i64,
    timeout: Duration,
) -> Vec<bool> {
    let deadline = now_ms.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
    let sends = flush.notifications.iter().map(|n| {
        let deliverer = deliverer.clone();
        let config = config.clone();
        async move {
            let ctx = AuditContext {
                receiver: n.receiver.clone(),
                integration: format!("{}[{}]", n.integration.kind.as_str(), n.integration.index),
                group_key: n.group_key.clone(),
                alert_count: n.alerts.len(),
                service: data::Data::new(n, "")
                    .common_labels
                    .get("service")
                    .cloned()
                    .unwrap_or_default(),
            };
            let req = match build_request(&config, n) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "notification not built");
                    return false;
                }
            };
            match deliverer.deliver(&req, &ctx, deadline).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(receiver = %ctx.receiver, integration = %ctx.integration,
                        group_key = %ctx.group_key, error = %e, "notification failed");
                    false
                }
            }
        }
    });
    futures::future::join_all(sends).await
}
