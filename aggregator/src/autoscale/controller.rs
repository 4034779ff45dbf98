//! The controller: evaluates the policies of each service, applies the guards and the
//! provider call, and records every decision.
//!
//! Per service and evaluation (App Auto Scaling's rules, `docs/autoscaling.md`):
//! 1. the provider's **running** count is the baseline (desired count for direction);
//! 2. each policy recommends a count: target tracking from its metric (none on missing
//!    data), step scaling from its firing alert; clamped to `[min, max]`; a scale-in goes
//!    no lower than the highest recommendation of the stabilization window;
//! 3. scale out if **any** policy wants to (the largest count wins); scale in only if
//!    **all** policies with an opinion agree (the least reduction wins); policies with
//!    `disable_scale_in` and step policies not firing have no opinion;
//! 4. cooldowns ([`Cooldowns`]), then the provider call (not in dry run).
//!
//! At most one action per service is in flight; a concurrent evaluation of a busy service
//! is skipped (`in_progress`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sightline_model::audit::{Actor, AuditEvent};
use sightline_model::event::{LogEvent, SourceKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::{AutoscaleConfig, AutoscaleConfigError, PolicyConfig, ProviderKind};
use super::policy::{self, Cooldowns, Direction, SkipReason, Stabilizer};
use super::provider::{Capacity, MetricSource, ProviderError, ScaleContext, ScalingProvider};
use crate::alert::{ActionLog, Alert, AlertStatus};
use crate::rules::Clock;

/// The alert label naming the policy an alert triggers.
pub const SCALE_POLICY_LABEL: &str = "scale_policy";

/// What became of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The provider accepted the new desired count.
    Updated,
    /// Dry run: computed and recorded, the provider not called.
    DryRun,
    /// No change made (see `skip_reason`).
    Skipped,
    /// The provider call failed (see `reason`).
    Failed,
}

/// One decision about one service, as recorded in the history and the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// When, Unix ms.
    pub time_ms: i64,
    /// The service.
    pub service: String,
    /// The policy that decided (for skips without a deciding policy: the service's first).
    pub policy: String,
    /// Where the count is applied.
    pub provider: ProviderKind,
    /// The deciding policy's metric (target tracking) or alert value (step scaling).
    pub metric_value: Option<f64>,
    /// Desired count before (unknown when the provider failed).
    pub current_desired: Option<u32>,
    /// Running count before.
    pub current_running: Option<u32>,
    /// The desired count decided (set, or that would have been set).
    pub desired: Option<u32>,
    /// Direction of the wanted change, if any.
    pub direction: Option<Direction>,
    /// Outcome.
    pub outcome: Outcome,
    /// Why nothing was changed (with `outcome = skipped`).
    pub skip_reason: Option<SkipReason>,
    /// Human-readable explanation.
    pub reason: String,
    /// The policy is in dry-run mode.
    pub dry_run: bool,
}

/// Why a [`Controller`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] AutoscaleConfigError),
    /// A policy's provider was not supplied.
    #[error("autoscale: no {0} provider supplied for policy {1:?}")]
    MissingProvider(&'static str, String),
}

#[derive(Default)]
struct ServiceState {
    cooldowns: Cooldowns,
    busy: bool,
    /// Desired count we last set (for providers that cannot report it).
    last_set: Option<u32>,
    /// Last skip reason recorded in the audit trail (repeats are not re-recorded).
    last_audited_skip: Option<SkipReason>,
}

#[derive(Default)]
struct PolicyState {
    stabilizer: Stabilizer,
    /// Firing alerts triggering this (step) policy: fingerprint → (value, when last
    /// received, Unix ms).
    firing: BTreeMap<String, (f64, i64)>,
}

#[derive(Default)]
struct State {
    services: HashMap<String, ServiceState>,
    policies: HashMap<String, PolicyState>,
    history: VecDeque<Decision>,
}

/// One policy's vote.
enum Vote {
    Out(u32),
    In(u32),
    /// Blocks scale-in (has data and wants no change, or no data, or stabilization).
    Hold(SkipReason, String),
    /// No opinion (step policy not firing, `disable_scale_in`).
    Abstain(Option<(SkipReason, String)>),
}

/// The autoscaling controller. Build with [`Controller::new`]; drive with
/// [`Controller::run`] (production) or [`Controller::evaluate`] and
/// [`Controller::handle_alerts`] (tests, manual triggers).
pub struct Controller {
    config: AutoscaleConfig,
    providers: BTreeMap<ProviderKind, Arc<dyn ScalingProvider>>,
    metrics: Arc<dyn MetricSource>,
    log: Arc<dyn ActionLog>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl Controller {
    /// Validates `config` and checks that every policy's provider is in `providers`.
    ///
    /// Errors: [`ControllerError`].
    pub fn new(
        config: AutoscaleConfig,
        providers: BTreeMap<ProviderKind, Arc<dyn ScalingProvider>>,
        metrics: Arc<dyn MetricSource>,
        log: Arc<dyn ActionLog>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ControllerError> {
        config.validate()?;
        for p in &config.policies {
            if !providers.contains_key(&p.provider) {
                return Err(ControllerError::MissingProvider(
                    p.provider.as_str(),
                    p.name.clone(),
                ));
            }
        }
        Ok(Controller {
            config,
            providers,
            metrics,
            log,
            clock,
            state: Mutex::new(State::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AutoscaleConfig {
        &self.config
    }

    /// Recent decisions, oldest first (at most `history_limit`).
    pub fn history(&self) -> Vec<Decision> {
        self.lock().history.iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The services with policies, in configuration order.
    pub fn services(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.config.policies {
            if !out.contains(&p.service) {
                out.push(p.service.clone());
            }
        }
        out
    }

    /// Evaluates every service once (the periodic evaluation) and returns the decisions.
    /// Services whose only policies are step policies that are not firing give none.
    pub async fn evaluate(&self) -> Vec<Decision> {
        let mut out = Vec::new();
        for s in self.services() {
            if let Some(d) = self.evaluate_service(&s).await {
                out.push(d);
            }
        }
        out
    }

    /// Takes alerts from the rule evaluator: an alert whose `scale_policy` label names a
    /// step policy starts (firing) or stops (resolved) triggering it; then every service
    /// named by a firing alert is evaluated at once. Returns those decisions.
    pub async fn handle_alerts(&self, alerts: &[Alert]) -> Vec<Decision> {
        let mut services: Vec<String> = Vec::new();
        let now = self.clock.now_ms();
        {
            let mut st = self.lock();
            for a in alerts {
                let Some(name) = a.labels.get(SCALE_POLICY_LABEL) else {
                    continue;
                };
                let Some(p) = self.config.policies.iter().find(|p| &p.name == name) else {
                    tracing::warn!(policy = %name, "alert names an unknown scaling policy");
                    continue;
                };
                let ps = st.policies.entry(p.name.clone()).or_default();
                match a.status {
                    AlertStatus::Firing => {
                        ps.firing.insert(a.fingerprint(), (a.value, now));
                        if !services.contains(&p.service) {
                            services.push(p.service.clone());
                        }
                    }
                    AlertStatus::Resolved => {
                        ps.firing.remove(&a.fingerprint());
                    }
                }
            }
        }
        let mut out = Vec::new();
        for s in services {
            if let Some(d) = self.evaluate_service(&s).await {
                out.push(d);
            }
        }
        out
    }

    /// Evaluates every `interval` and on each alert batch until `shutdown` is cancelled.
    pub async fn run(
        self: Arc<Self>,
        mut alerts: mpsc::Receiver<Vec<Alert>>,
        shutdown: CancellationToken,
    ) {
        let period = Duration::from_millis(u64::try_from(self.config.interval).unwrap_or(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut alerts_open = true;
        loop {
            // Provider calls are raced against shutdown too: a stalled orchestrator API
            // must not keep the aggregator from stopping.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.evaluate() => {}
                    }
                }
                batch = alerts.recv(), if alerts_open => match batch {
                    Some(b) => {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = self.handle_alerts(&b) => {}
                        }
                    }
                    None => alerts_open = false,
                },
            }
        }
    }

    /// Evaluates one service (see the module docs). `None` when no policy has an opinion
    /// (only step policies, none firing) or the service has no policy.
    pub async fn evaluate_service(&self, service: &str) -> Option<Decision> {
        let policies: Vec<&PolicyConfig> = self
            .config
            .policies
            .iter()
            .filter(|p| p.service == service)
            .collect();
        let first = *policies.first()?;
        let provider = self.providers.get(&first.provider)?.clone();
        let now = self.clock.now_ms();
        let skip = |p: &PolicyConfig, reason: SkipReason, text: String| Decision {
            time_ms: now,
            service: service.to_string(),
            policy: p.name.clone(),
            provider: p.provider,
            metric_value: None,
            current_desired: None,
            current_running: None,
            desired: None,
            direction: None,
            outcome: Outcome::Skipped,
            skip_reason: Some(reason),
            reason: text,
            dry_run: p.dry_run,
        };
        {
            let mut st = self.lock();
            let ss = st.services.entry(service.to_string()).or_default();
            if ss.busy {
                let d = skip(
                    first,
                    SkipReason::InProgress,
                    "another action is in flight".into(),
                );
                return Some(self.finish(d, false));
            }
            ss.busy = true;
        }
        let d = self
            .evaluate_locked(service, &policies, provider.as_ref(), now)
            .await;
        let d = d.map(|d| self.finish(d, true));
        d.or_else(|| {
            self.lock()
                .services
                .entry(service.to_string())
                .or_default()
                .busy = false;
            None
        })
    }

    async fn evaluate_locked(
        &self,
        service: &str,
        policies: &[&PolicyConfig],
        provider: &dyn ScalingProvider,
        now: i64,
    ) -> Option<Decision> {
        let first = policies[0];
        let mut d = Decision {
            time_ms: now,
            service: service.to_string(),
            policy: first.name.clone(),
            provider: first.provider,
            metric_value: None,
            current_desired: None,
            current_running: None,
            desired: None,
            direction: None,
            outcome: Outcome::Skipped,
            skip_reason: None,
            reason: String::new(),
            dry_run: first.dry_run,
        };
        // Baseline: the provider's counts (or, if it cannot tell, the rollup).
        let cap = match provider.current(service).await {
            Ok(c) => c,
            Err(ProviderError::CountUnknown) => match self.metrics.running_count(service, now) {
                Some(r) if r.is_finite() && r >= 0.0 => {
                    let running = r.round().min(f64::from(u32::MAX)) as u32;
                    let last = self.lock().services.get(service).and_then(|s| s.last_set);
                    Capacity {
                        desired_count: last.unwrap_or(running),
                        running_count: running,
                    }
                }
                _ => {
                    d.skip_reason = Some(SkipReason::NoData);
                    d.reason = "running count unknown (no running_task_count data)".into();
                    return Some(d);
                }
            },
            Err(e) => {
                d.skip_reason = Some(SkipReason::ProviderError);
                d.reason = format!("reading the current count: {e}");
                return Some(d);
            }
        };
        d.current_desired = Some(cap.desired_count);
        d.current_running = Some(cap.running_count);

        // Votes.
        let mut votes: Vec<(&PolicyConfig, Option<f64>, Vote)> = Vec::new();
        {
            let mut st = self.lock();
            for p in policies {
                let ps = st.policies.entry(p.name.clone()).or_default();
                let (value, vote) = self.vote(p, ps, cap, now);
                votes.push((p, value, vote));
            }
        }
        let out = votes
            .iter()
            .filter_map(|(p, v, vote)| match vote {
                Vote::Out(n) => Some((*p, *v, *n)),
                _ => None,
            })
            .max_by_key(|(_, _, n)| *n);
        let hold = votes.iter().find_map(|(p, v, vote)| match vote {
            Vote::Hold(r, t) => Some((*p, *v, *r, t.clone())),
            _ => None,
        });
        let ins: Vec<(&PolicyConfig, Option<f64>, u32)> = votes
            .iter()
            .filter_map(|(p, v, vote)| match vote {
                Vote::In(n) => Some((*p, *v, *n)),
                _ => None,
            })
            .collect();
        let (p, value, target, dir) = if let Some((p, v, n)) = out {
            (p, v, n, Direction::ScaleOut)
        } else if let Some((p, v, reason, text)) = hold {
            d.policy = p.name.clone();
            d.dry_run = p.dry_run;
            d.metric_value = v;
            if ins.is_empty() {
                d.skip_reason = Some(reason);
                d.reason = text;
            } else {
                d.skip_reason = Some(SkipReason::ScaleInNotAgreed);
                d.reason = format!("policy {} does not agree to scale in: {text}", p.name);
            }
            return Some(d);
        } else if let Some(&(p, v, n)) = ins.iter().max_by_key(|(_, _, n)| *n) {
            (p, v, n, Direction::ScaleIn)
        } else {
            let (p, v, r) = votes.iter().find_map(|(p, v, vote)| match vote {
                Vote::Abstain(Some(r)) => Some((*p, *v, r.clone())),
                _ => None,
            })?;
            d.policy = p.name.clone();
            d.dry_run = p.dry_run;
            d.metric_value = v;
            d.skip_reason = Some(r.0);
            d.reason = r.1;
            return Some(d);
        };
        d.policy = p.name.clone();
        d.dry_run = p.dry_run;
        d.metric_value = value;
        d.desired = Some(target);
        d.direction = Some(dir);
        let why = self.explain(p, value, cap, target);
        let check = self
            .lock()
            .services
            .entry(service.to_string())
            .or_default()
            .cooldowns
            .check(dir, now);
        if let Err(r) = check {
            d.skip_reason = Some(r);
            d.reason = format!("{why}; blocked by {}", r.as_str());
            return Some(d);
        }
        d.reason = why.clone();
        if p.dry_run {
            d.outcome = Outcome::DryRun;
        } else {
            let ctx = ScaleContext {
                policy: p.name.clone(),
                current: cap.desired_count,
                running: cap.running_count,
                reason: why.clone(),
            };
            match provider.set_desired(service, target, &ctx).await {
                Ok(()) => d.outcome = Outcome::Updated,
                Err(e) => {
                    d.outcome = Outcome::Failed;
                    d.reason = format!("{why}; provider: {e}");
                    return Some(d);
                }
            }
        }
        let mut st = self.lock();
        let ss = st.services.entry(service.to_string()).or_default();
        ss.cooldowns.started(dir, now, p);
        if d.outcome == Outcome::Updated {
            ss.last_set = Some(target);
        }
        Some(d)
    }

    fn vote(
        &self,
        p: &PolicyConfig,
        ps: &mut PolicyState,
        cap: Capacity,
        now: i64,
    ) -> (Option<f64>, Vote) {
        let desired = cap.desired_count;
        let running = cap.running_count;
        let (value, rec) = if let Some(t) = &p.target_tracking {
            let Some(v) = self.metrics.metric(p, now) else {
                let text = format!("no data for {}", t.metric);
                return (None, Vote::Hold(SkipReason::NoData, text));
            };
            // Within tolerance: the recommendation is the current desired count.
            let raw = policy::target_tracking(running, v, t).unwrap_or(desired);
            let rec = policy::clamp(raw, p);
            let stable = ps.stabilizer.push(now, p.scale_in_stabilization, rec);
            if rec < desired {
                if t.disable_scale_in {
                    let text = "scale-in disabled (disable_scale_in)".to_string();
                    return (
                        Some(v),
                        Vote::Abstain(Some((SkipReason::ScaleInNotAgreed, text))),
                    );
                }
                if stable >= desired {
                    let text = format!(
                        "recommendation {rec} held at {desired} by the stabilization window"
                    );
                    return (Some(v), Vote::Hold(SkipReason::Stabilization, text));
                }
            }
            let rec = if rec < desired { stable } else { rec };
            (Some(v), rec)
        } else if let Some(s) = &p.step_scaling {
            // Alerts not re-sent within `alert_timeout` no longer trigger the policy.
            let fresh = now.saturating_sub(self.config.alert_timeout);
            let Some(v) = ps
                .firing
                .values()
                .filter(|(_, seen)| *seen >= fresh)
                .map(|(v, _)| *v)
                .reduce(f64::max)
            else {
                return (None, Vote::Abstain(None));
            };
            let Some(raw) = policy::step(running, v, s) else {
                let text = format!("no step matches breach {}", v - s.threshold);
                return (Some(v), Vote::Abstain(Some((SkipReason::NoChange, text))));
            };
            (Some(v), policy::clamp(raw, p))
        } else {
            return (None, Vote::Abstain(None));
        };
        let vote = match rec.cmp(&desired) {
            std::cmp::Ordering::Greater => Vote::Out(rec),
            std::cmp::Ordering::Less => Vote::In(rec),
            std::cmp::Ordering::Equal => Vote::Hold(
                SkipReason::NoChange,
                format!("desired count {desired} already matches"),
            ),
        };
        (value, vote)
    }

    fn explain(&self, p: &PolicyConfig, value: Option<f64>, cap: Capacity, target: u32) -> String {
        let v = value.map_or_else(|| "-".to_string(), |v| format!("{v}"));
        let from = format!(
            "desired {} (running {}) -> {target}",
            cap.desired_count, cap.running_count
        );
        if let Some(t) = &p.target_tracking {
            format!("{} = {v} vs target {}: {from}", t.metric, t.target_value)
        } else if let Some(s) = &p.step_scaling {
            format!("alert value {v} vs threshold {}: {from}", s.threshold)
        } else {
            from
        }
    }

    /// Releases the service (when `release`), keeps the decision in the history and
    /// records it in the audit trail (skips: only reasons other than `no_change`, and a
    /// repeated reason only once until the decision changes).
    fn finish(&self, d: Decision, release: bool) -> Decision {
        let audit = {
            let mut st = self.lock();
            let ss = st.services.entry(d.service.clone()).or_default();
            if release {
                ss.busy = false;
            }
            let audit = match d.skip_reason {
                None => {
                    ss.last_audited_skip = None;
                    true
                }
                Some(SkipReason::NoChange) => {
                    ss.last_audited_skip = None;
                    false
                }
                Some(r) => ss.last_audited_skip.replace(r) != Some(r),
            };
            st.history.push_back(d.clone());
            while st.history.len() > self.config.history_limit {
                st.history.pop_front();
            }
            audit
        };
        if audit {
            self.log.record(audit_event(&d));
        }
        d
    }
}

/// The audit record of a decision: action `scaling.update_desired_count` (outcome
/// `updated`, `dry_run` or `failed`) or `scaling.skipped` (outcome = the skip reason).
pub fn audit_event(d: &Decision) -> AuditEvent {
    let time_ns = u64::try_from(d.time_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let (action, outcome) = match (d.outcome, d.skip_reason) {
        (Outcome::Skipped, r) => (
            "scaling.skipped",
            r.map_or("skipped", SkipReason::as_str).to_string(),
        ),
        (Outcome::Updated, _) => ("scaling.update_desired_count", "updated".to_string()),
        (Outcome::DryRun, _) => ("scaling.update_desired_count", "dry_run".to_string()),
        (Outcome::Failed, _) => ("scaling.update_desired_count", "failed".to_string()),
    };
    let opt = |v: Option<u32>| v.map_or_else(String::new, |v| v.to_string());
    let mut attributes = BTreeMap::from([
        ("scaling.policy".to_string(), d.policy.clone()),
        (
            "scaling.provider".to_string(),
            d.provider.as_str().to_string(),
        ),
        (
            "scaling.current_desired".to_string(),
            opt(d.current_desired),
        ),
        (
            "scaling.current_running".to_string(),
            opt(d.current_running),
        ),
        ("scaling.desired".to_string(), opt(d.desired)),
        ("scaling.dry_run".to_string(), d.dry_run.to_string()),
        ("scaling.reason".to_string(), d.reason.clone()),
    ]);
    if let Some(v) = d.metric_value {
        attributes.insert("scaling.metric_value".into(), v.to_string());
    }
    let time_s = d.time_ms.to_string();
    AuditEvent {
        event_id: AuditEvent::content_id(&[action, &d.service, &d.policy, &time_s, &outcome]),
        time_ns,
        observed_ns: time_ns,
        resource: LogEvent {
            service: d.service.clone(),
            source_kind: SourceKind::Sightline,
            ..Default::default()
        },
        action: action.into(),
        actor: Actor {
            kind: "sightline".into(),
            id: "autoscaler".into(),
            name: "autoscaler".into(),
        },
        outcome: Some(outcome.clone()),
        message: format!("{} {}: {} ({outcome})", action, d.service, d.reason),
        attributes,
    }
}
