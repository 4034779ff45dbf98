//! Alerting, wired into the running aggregator: the rule evaluator over the rollups, its
//! alerts enriched with log samples from the index, then fanned out to the notifier and
//! the autoscaling controller; both record what they do in the audit trail.
//!
//! ```text
//! rollups ──► RuleManager (every group interval) ──► LogSampler (index) ──┬─► Notifier ──► webhook / PagerDuty / Slack
//!                                                                         └─► Controller ──► ECS / webhook
//!                     each delivery and scaling decision ──► ActionLog ──► audit trail
//! ```
//!
//! Files:
//! - `mod.rs`: [`Alerting`] (built from the config while the aggregator opens) and its run
//!   loop; [`AlertingHandle`], what the API and the SIGHUP handler hold.
//! - [`samples`]: [`samples::LogSampler`], sample log lines with correlation IDs.
//! - [`api`]: `GET /api/v1/rules`, `GET /api/v1/alerts`, `GET /api/v1/scaling`,
//!   `POST /-/reload`.

pub mod api;
pub mod samples;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sightline_query::QueryEngine;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alert::{ActionLog, Alert};
use crate::autoscale::{providers_from_config, Controller, RulesMetricSource};
use crate::config::AggregatorConfig;
use crate::notify::Notifier;
use crate::rollup::SharedRollups;
use crate::rules::{Clock, RuleManager, SystemClock};

pub use samples::LogSampler;

/// Why alerting could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AlertingError {
    /// A rule file or the `[rules]` table is invalid.
    #[error(transparent)]
    Rules(#[from] crate::rules::RuleManagerError),
    /// The `[notify]` table is invalid or its HTTP client could not be built.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// The `[autoscale]` table is invalid.
    #[error(transparent)]
    Autoscale(#[from] crate::autoscale::ControllerError),
    /// A scaling provider could not be built.
    #[error("autoscale provider: {0}")]
    Provider(#[from] crate::autoscale::ProviderError),
}

/// What the API and signal handlers hold: the rules' status, scaling history, reloads.
#[derive(Clone)]
pub struct AlertingHandle {
    rules: Option<Arc<Mutex<RuleManager>>>,
    controller: Option<Arc<Controller>>,
}

impl AlertingHandle {
    /// The rule manager (`None` without `[rules]`).
    pub fn rules(&self) -> Option<MutexGuard<'_, RuleManager>> {
        self.rules
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The autoscaling controller (`None` without `[autoscale]`).
    pub fn controller(&self) -> Option<&Arc<Controller>> {
        self.controller.as_ref()
    }

    /// Re-reads the rule files (as on SIGHUP or `POST /-/reload`), on a blocking thread.
    /// Rules whose file, group, name and labels are unchanged keep their state; on error
    /// the current rules stay.
    ///
    /// Errors: the rule-file error (`file:line:column: problem`), or "no rules configured".
    pub async fn reload(&self) -> Result<usize, String> {
        let Some(rules) = self.rules.clone() else {
            return Err("no [rules] section is configured".into());
        };
        tokio::task::spawn_blocking(move || {
            let mut m = rules.lock().unwrap_or_else(|p| p.into_inner());
            m.reload().map_err(|e| e.to_string())?;
            Ok(m.status().len())
        })
        .await
        .map_err(|e| format!("reload task failed: {e}"))?
    }
}

/// Rules, notifier and autoscaler, built and ready to [`run`](Alerting::run).
pub struct Alerting {
    handle: AlertingHandle,
    clock: Arc<dyn Clock>,
    notifier: Option<Notifier>,
    sampler: LogSampler,
}

impl Alerting {
    /// Builds what `config` asks for (`None` when it has neither `[rules]` nor
    /// `[autoscale]`): the rule manager over `rollups` (rules files loaded, state
    /// restored), the notifier, and the autoscaling controller with its providers. Their
    /// actions (deliveries, scaling decisions) are recorded in `log`.
    ///
    /// Errors: [`AlertingError`] (rule files, receivers, policies, providers).
    pub fn build(
        config: &AggregatorConfig,
        rollups: Option<&SharedRollups>,
        engine: Arc<QueryEngine>,
        log: Arc<dyn ActionLog>,
    ) -> Result<Option<Self>, AlertingError> {
        let rules_cfg = config.rules_config();
        let (Some(rollups), true) = (rollups, rules_cfg.is_some() || config.autoscale.is_some())
        else {
            return Ok(None);
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (per_alert, window_ms) = rules_cfg
            .as_ref()
            .map_or((0, 60_000), |r| (r.log_samples, r.lookback_ms));
        let rules = rules_cfg
            .map(|r| RuleManager::new(r, Arc::new(rollups.clone()), clock.clone()))
            .transpose()?
            .map(|m| Arc::new(Mutex::new(m)));
        if let Some(m) = &rules {
            let m = m.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = m.restore_error() {
                tracing::warn!(error = %e, "alert state not restored");
            }
            tracing::info!(rules = m.status().len(), "alert rules loaded");
        }
        let notifier = config
            .notify_config()
            .map(|n| Notifier::new(n, log.clone(), clock.clone()))
            .transpose()?;
        let controller = match &config.autoscale {
            Some(a) => {
                let providers = providers_from_config(a)?;
                let metrics = Arc::new(RulesMetricSource::new(rollups.clone()));
                Some(Arc::new(Controller::new(
                    a.clone(),
                    providers,
                    metrics,
                    log,
                    clock.clone(),
                )?))
            }
            None => None,
        };
        Ok(Some(Alerting {
            handle: AlertingHandle { rules, controller },
            clock,
            notifier,
            sampler: LogSampler::new(engine, per_alert, window_ms),
        }))
    }

    /// The handle for the API and reloads.
    pub fn handle(&self) -> AlertingHandle {
        self.handle.clone()
    }

    /// Evaluates rules when due, attaches log samples to firing alerts, and hands each
    /// group's alerts to the notifier and the controller, until `shutdown` is cancelled.
    /// On the way out, deliveries under way finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let Alerting {
            handle,
            clock,
            notifier,
            sampler,
        } = self;
        let mut tasks = tokio::task::JoinSet::new();
        let notify_tx = notifier.map(|n| {
            let (tx, rx) = mpsc::channel::<Vec<Alert>>(256);
            tasks.spawn(n.run(rx, shutdown.clone()));
            tx
        });
        let scale_tx = handle.controller.clone().map(|c| {
            let (tx, rx) = mpsc::channel::<Vec<Alert>>(256);
            tasks.spawn(c.run(rx, shutdown.clone()));
            tx
        });
        if let Some(rules) = handle.rules.clone() {
            evaluate_loop(rules, clock, sampler, notify_tx, scale_tx, &shutdown).await;
        } else {
            drop((notify_tx, scale_tx));
            shutdown.cancelled().await;
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// The rule loop: sleep until the next group is due, evaluate on a blocking thread (the
/// API reads the manager's status meanwhile only between evaluations), attach samples,
/// send. A full channel waits: alerts are not dropped.
async fn evaluate_loop(
    rules: Arc<Mutex<RuleManager>>,
    clock: Arc<dyn Clock>,
    sampler: LogSampler,
    notify_tx: Option<mpsc::Sender<Vec<Alert>>>,
    scale_tx: Option<mpsc::Sender<Vec<Alert>>>,
    shutdown: &CancellationToken,
) {
    loop {
        let next = rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_due_ms();
        let wait_ms = next.map_or(1_000, |due| (due - clock.now_ms()).clamp(0, 1_000));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
        }
        if next.is_none_or(|due| due > clock.now_ms()) {
            continue; // woke early (at most 1 s sleeps, so reloads are picked up)
        }
        let (r, s, c) = (rules.clone(), sampler.clone(), clock.clone());
        let batches = tokio::task::spawn_blocking(move || {
            let mut batches = r.lock().unwrap_or_else(|p| p.into_inner()).evaluate_due();
            let now = c.now_ms();
            for b in &mut batches {
                s.attach(b, now);
            }
            batches
        })
        .await;
        let batches = match batches {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "rule evaluation panicked; alerting stops");
                return;
            }
        };
        for alerts in batches.into_iter().filter(|b| !b.is_empty()) {
            // The autoscaler must not hold up alerting (a slow orchestrator API): when its
            // queue is full the batch is skipped; firing alerts are re-sent every
            // evaluation, and stale ones expire (`autoscale.alert_timeout`).
            if let Some(tx) = &scale_tx {
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(alerts.clone()) {
                    tracing::warn!("autoscaler busy: an alert batch was not handed to it");
                }
            }
            if let Some(tx) = &notify_tx {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.send(alerts) => {}
                }
            }
        }
    }
}

/// Re-reads the rule files on every SIGHUP until `shutdown` (Unix only; elsewhere a no-op).
pub async fn reload_on_sighup(handle: AlertingHandle, shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; rule reload only through POST /-/reload");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                s = hup.recv() => if s.is_none() { return },
            }
            match handle.reload().await {
                Ok(n) => tracing::info!(rules = n, "alert rules reloaded (SIGHUP)"),
                Err(e) => {
                    tracing::error!(error = %e, "alert rules not reloaded; the previous rules stay")
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (handle, shutdown);
    }
}
