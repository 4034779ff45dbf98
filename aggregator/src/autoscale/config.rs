//! The `[autoscale]` TOML table: providers and `[[autoscale.policies]]`, with a pure
//! [`AutoscaleConfig::validate`].
//!
//! Field names and defaults follow AWS Application Auto Scaling's `PutScalingPolicy`
//! (`TargetTrackingScalingPolicyConfiguration`, `StepScalingPolicyConfiguration`, cooldowns
//! of 300 s for ECS) and the Kubernetes HPA (tolerance 0.1, scale-in stabilization window
//! of 5 minutes). Durations use Prometheus syntax (`30s`, `5m`, `1h30m`).
//!
//! ```toml
//! [autoscale]
//! interval = "15s"
//!
//! [autoscale.ecs]
//! cluster = "prod"
//! region = "eu-west-1"
//!
//! [[autoscale.policies]]
//! name = "checkout-cpu"
//! service = "checkout"
//! provider = "ecs"
//! min_capacity = 2
//! max_capacity = 20
//! [autoscale.policies.target_tracking]
//! metric = "cpu_utilization"
//! target_value = 70.0
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::notify::Secret;
use crate::rules::duration::serde_ms;

/// An invalid `[autoscale]` table; the message names the policy and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("autoscale: {0}")]
pub struct AutoscaleConfigError(pub String);

/// Where a policy's desired count is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Amazon ECS `UpdateService` (`[autoscale.ecs]`).
    Ecs,
    /// A generic HTTP webhook (`[autoscale.webhook]`).
    Webhook,
    /// Docker Compose services on this host (`[autoscale.docker]`).
    Docker,
}

impl ProviderKind {
    /// `ecs`, `webhook` or `docker`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Ecs => "ecs",
            ProviderKind::Webhook => "webhook",
            ProviderKind::Docker => "docker",
        }
    }
}

fn default_interval() -> i64 {
    15_000
}
fn default_cooldown() -> i64 {
    300_000
}
fn default_alert_timeout() -> i64 {
    300_000
}
fn default_history() -> usize {
    500
}
fn default_tolerance() -> f64 {
    0.1
}
fn default_cluster() -> String {
    "default".into()
}

/// The `[autoscale]` table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleConfig {
    /// How often every target-tracking policy (and every step policy whose alert is
    /// firing) is evaluated, ms (TOML: a duration, default `15s` as the HPA sync period).
    #[serde(default = "default_interval", with = "serde_ms")]
    pub interval: i64,
    /// Decisions kept in memory for the API (oldest dropped first). Default 500.
    #[serde(default = "default_history")]
    pub history_limit: usize,
    /// A firing alert that triggers a step policy and is not re-sent by the rules for this
    /// long stops triggering it, ms (TOML: a duration, default `5m`, as Alertmanager's
    /// `resolve_timeout`). Covers alerts that vanish without a resolved notice (a rule
    /// removed or changed on reload).
    #[serde(default = "default_alert_timeout", with = "serde_ms")]
    pub alert_timeout: i64,
    /// Amazon ECS provider settings (required when a policy uses `provider = "ecs"`).
    #[serde(default)]
    pub ecs: Option<EcsConfig>,
    /// Webhook provider settings (required when a policy uses `provider = "webhook"`).
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Docker provider settings (required when a policy uses `provider = "docker"`).
    #[serde(default)]
    pub docker: Option<DockerConfig>,
    /// The scaling policies.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

/// `[autoscale.ecs]`: one ECS cluster reached through the AWS SDK. Credentials come from
/// the SDK's default chain (environment, profile, SSO, web identity, ECS task role, IMDS)
/// unless both static keys are given. IAM: `ecs:DescribeServices`, `ecs:UpdateService`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcsConfig {
    /// Cluster name or ARN (default `default`, as ECS).
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// AWS region; default: the SDK's region chain (`AWS_REGION`, profile, IMDS).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (VPC endpoints, LocalStack, moto), e.g. `http://127.0.0.1:5000`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Static access key ID (with `secret_access_key`); omit to use the default chain.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Static secret access key (printed as `**REDACTED**`).
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
}

/// `[autoscale.webhook]`: POSTs the scaling request as JSON (see `docs/autoscaling.md`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where scaling requests are POSTed (may hold a token: printed as `**REDACTED**`).
    pub url: Secret,
    /// Optional `GET <status_url>?service=<name>` returning
    /// `{"desired_count": n, "running_count": n}`; without it the running count comes from
    /// the `running_task_count` rollup.
    #[serde(default)]
    pub status_url: Option<Secret>,
    /// Timeout of one request, ms (TOML: a duration, default `10s`).
    #[serde(default = "default_webhook_timeout", with = "serde_ms")]
    pub timeout: i64,
    /// Most attempts of one request (retries on 5xx, 429 and network errors). Default 4.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_webhook_timeout() -> i64 {
    10_000
}
fn default_attempts() -> u32 {
    4
}

/// `[autoscale.docker]`: Compose-style services on the local Docker engine (at
/// `DOCKER_HOST`, else `/var/run/docker.sock`), scaled as `docker compose up --scale`
/// does (see [`crate::autoscale::docker`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// Compose project (`com.docker.compose.project` label); default: any project.
    #[serde(default)]
    pub project: Option<String>,
}

/// One `[[autoscale.policies]]` entry: exactly one of `target_tracking` and
/// `step_scaling`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique policy name (alert rules reference it with the label `scale_policy`).
    pub name: String,
    /// The service scaled (ECS service name, Compose service, or the webhook's name).
    pub service: String,
    /// Where the desired count is applied.
    pub provider: ProviderKind,
    /// Lowest desired count Sightline sets (`MinCapacity`).
    pub min_capacity: u32,
    /// Highest desired count Sightline sets (`MaxCapacity`).
    pub max_capacity: u32,
    /// After a scale-out, no scale-in and no further scale-out for this long, ms (TOML: a
    /// duration, default `5m` as App Auto Scaling for ECS).
    #[serde(default = "default_cooldown", with = "serde_ms")]
    pub scale_out_cooldown: i64,
    /// After a scale-in, no further scale-in for this long, ms (a scale-out still
    /// proceeds). Default `5m`.
    #[serde(default = "default_cooldown", with = "serde_ms")]
    pub scale_in_cooldown: i64,
    /// Scale-in uses the highest recommendation of this window, ms (HPA's downscale
    /// stabilization; default `5m`, `0s` to disable).
    #[serde(default = "default_cooldown", with = "serde_ms")]
    pub scale_in_stabilization: i64,
    /// Compute and record decisions without calling the provider.
    #[serde(default)]
    pub dry_run: bool,
    /// Target tracking (`TargetTrackingScalingPolicyConfiguration`).
    #[serde(default)]
    pub target_tracking: Option<TargetTracking>,
    /// Step scaling (`StepScalingPolicyConfiguration`), triggered by alerts.
    #[serde(default)]
    pub step_scaling: Option<StepScaling>,
}

/// Keep `metric` at `target_value`: desired = ⌈running × metric / target⌉ (HPA's formula),
/// no change while |metric / target − 1| ≤ `tolerance`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTracking {
    /// A rollup metric name (`cpu_utilization`, averaged over the service's series) or a
    /// rules expression returning one series (`avg(memory_utilization{service="x"})`).
    pub metric: String,
    /// The value to hold the metric at, in the metric's unit (e.g. 70 for 70 % CPU); > 0.
    pub target_value: f64,
    /// Dead band around the target as a ratio (default 0.1, as the HPA).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Never scale in (`DisableScaleIn`).
    #[serde(default)]
    pub disable_scale_in: bool,
}

/// Step scaling: when an alert with label `scale_policy = <name>` fires, the breach
/// (`alert value − threshold`) selects one step.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepScaling {
    /// The alert rule's threshold; step bounds are relative to it (default 0: bounds are
    /// on the alert value itself).
    #[serde(default)]
    pub threshold: f64,
    /// For `percent_change_in_capacity`: change by at least this many tasks
    /// (`MinAdjustmentMagnitude`).
    #[serde(default)]
    pub min_adjustment_magnitude: Option<u32>,
    /// The steps: contiguous, non-overlapping ranges of the breach.
    pub adjustments: Vec<StepAdjustment>,
}

/// One step: applies when `lower_bound ≤ breach < upper_bound` for a breach ≥ 0, and
/// `lower_bound < breach ≤ upper_bound` for a breach < 0 (as `StepAdjustment`); a missing
/// bound is infinite. Exactly one of the three adjustments.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepAdjustment {
    /// Lower bound of the breach (none: −∞).
    #[serde(default)]
    pub lower_bound: Option<f64>,
    /// Upper bound of the breach (none: +∞).
    #[serde(default)]
    pub upper_bound: Option<f64>,
    /// Add (or, negative, remove) this many tasks (`ChangeInCapacity`).
    #[serde(default)]
    pub change_in_capacity: Option<i64>,
    /// Change by this percentage of the running count (`PercentChangeInCapacity`).
    #[serde(default)]
    pub percent_change_in_capacity: Option<f64>,
    /// Set exactly this many tasks (`ExactCapacity`).
    #[serde(default)]
    pub exact_capacity: Option<u32>,
}

impl AutoscaleConfig {
    /// Checks the whole table without side effects: interval > 0, unique policy names,
    /// `min ≤ max`, non-negative durations, one policy kind, a parsable metric, a positive
    /// target, tolerance in [0, 1), valid and contiguous steps, provider settings present.
    ///
    /// Errors: the first problem found, naming the policy.
    pub fn validate(&self) -> Result<(), AutoscaleConfigError> {
        let err = |m: String| Err(AutoscaleConfigError(m));
        if self.interval <= 0 {
            return err("interval must be positive".into());
        }
        if self.alert_timeout <= 0 {
            return err("alert_timeout must be positive".into());
        }
        if self.history_limit == 0 {
            return err("history_limit must be at least 1".into());
        }
        if let Some(ecs) = &self.ecs {
            if ecs.cluster.is_empty() {
                return err("ecs.cluster must not be empty".into());
            }
            if ecs.access_key_id.is_some() != ecs.secret_access_key.is_some() {
                return err(
                    "ecs: give both access_key_id and secret_access_key, or neither".into(),
                );
            }
            if let Some(u) = &ecs.endpoint_url {
                check_url("ecs.endpoint_url", u)?;
            }
        }
        if let Some(w) = &self.webhook {
            check_url("webhook.url", w.url.expose())?;
            if let Some(s) = &w.status_url {
                check_url("webhook.status_url", s.expose())?;
            }
            if w.timeout <= 0 || w.max_attempts == 0 {
                return err("webhook: timeout and max_attempts must be positive".into());
            }
        }
        let mut names = BTreeSet::new();
        let mut providers = std::collections::BTreeMap::new();
        for p in &self.policies {
            if let Some(other) = providers.insert(p.service.as_str(), p.provider) {
                if other != p.provider {
                    return err(format!(
                        "service {:?}: all its policies must use the same provider",
                        p.service
                    ));
                }
            }
            if !names.insert(p.name.as_str()) {
                return err(format!("duplicate policy name {:?}", p.name));
            }
            p.validate()?;
            let present = match p.provider {
                ProviderKind::Ecs => self.ecs.is_some(),
                ProviderKind::Webhook => self.webhook.is_some(),
                ProviderKind::Docker => self.docker.is_some(),
            };
            if !present {
                return err(format!(
                    "policy {:?}: provider {:?} needs an [autoscale.{}] table",
                    p.name,
                    p.provider.as_str(),
                    p.provider.as_str()
                ));
            }
        }
        Ok(())
    }
}

fn check_url(field: &str, u: &str) -> Result<(), AutoscaleConfigError> {
    match reqwest::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
        // Without the URL itself: it may hold a token.
        _ => Err(AutoscaleConfigError(format!(
            "{field} must be an http(s) URL"
        ))),
    }
}

impl PolicyConfig {
    /// Checks one policy (see [`AutoscaleConfig::validate`]).
    pub fn validate(&self) -> Result<(), AutoscaleConfigError> {
        let name = &self.name;
        let err = |m: &str| Err(AutoscaleConfigError(format!("policy {name:?}: {m}")));
        if name.is_empty() {
            return Err(AutoscaleConfigError("a policy has an empty name".into()));
        }
        if self.service.is_empty() {
            return err("service must not be empty");
        }
        if self.min_capacity > self.max_capacity {
            return err("min_capacity must not exceed max_capacity");
        }
        if self.provider == ProviderKind::Docker && self.min_capacity == 0 {
            // The replicas are the only record of the service: at 0 there is nothing left
            // to copy from when scaling out again.
            return err("min_capacity must be at least 1 with the docker provider");
        }
        if self.scale_out_cooldown < 0
            || self.scale_in_cooldown < 0
            || self.scale_in_stabilization < 0
        {
            return err("durations must not be negative");
        }
        match (&self.target_tracking, &self.step_scaling) {
            (Some(t), None) => {
                if let Err(e) = crate::rules::parse(&t.metric) {
                    return err(&format!("target_tracking.metric: {e}"));
                }
                if !(t.target_value.is_finite() && t.target_value > 0.0) {
                    return err("target_tracking.target_value must be a positive number");
                }
                if !(0.0..1.0).contains(&t.tolerance) {
                    return err("target_tracking.tolerance must be in [0, 1)");
                }
                Ok(())
            }
            (None, Some(s)) => s
                .validate()
                .map_err(|m| AutoscaleConfigError(format!("policy {name:?}: step_scaling: {m}"))),
            _ => err("give exactly one of target_tracking and step_scaling"),
        }
    }
}

impl StepScaling {
    fn validate(&self) -> Result<(), String> {
        if !self.threshold.is_finite() {
            return Err("threshold must be finite".into());
        }
        if self.adjustments.is_empty() {
            return Err("adjustments must not be empty".into());
        }
        for (i, a) in self.adjustments.iter().enumerate() {
            let kinds = usize::from(a.change_in_capacity.is_some())
                + usize::from(a.percent_change_in_capacity.is_some())
                + usize::from(a.exact_capacity.is_some());
            if kinds != 1 {
                return Err(format!(
                    "adjustments[{i}]: give exactly one of change_in_capacity, \
                     percent_change_in_capacity and exact_capacity"
                ));
            }
            if a.percent_change_in_capacity.is_some_and(|p| !p.is_finite()) {
                return Err(format!("adjustments[{i}]: percent must be finite"));
            }
            let lo = a.lower_bound.unwrap_or(f64::NEG_INFINITY);
            let hi = a.upper_bound.unwrap_or(f64::INFINITY);
            if lo.is_nan() || hi.is_nan() || lo >= hi {
                return Err(format!(
                    "adjustments[{i}]: lower_bound must be below upper_bound"
                ));
            }
        }
        // As StepAdjustment: ranges may neither overlap nor leave gaps.
        let mut sorted: Vec<(f64, f64)> = self
            .adjustments
            .iter()
            .map(|a| {
                (
                    a.lower_bound.unwrap_or(f64::NEG_INFINITY),
                    a.upper_bound.unwrap_or(f64::INFINITY),
                )
            })
            .collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in sorted.windows(2) {
            if w[0].1 != w[1].0 {
                return Err(format!(
                    "step ranges must be contiguous without overlap (upper bound {} vs next \
                     lower bound {})",
                    w[0].1, w[1].0
                ));
            }
        }
        Ok(())
    }
}
