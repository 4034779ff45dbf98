//! Autoscaling (issue 4): target-tracking and step-scaling policies evaluated over the
//! rollups and alerts, applied to Amazon ECS, a generic HTTP webhook or Docker Compose,
//! with App Auto Scaling's and the HPA's anti-flapping guards. Every decision is recorded in
//! the audit trail ([`crate::alert::ActionLog`]) and kept for the API. User documentation:
//! `docs/autoscaling.md`.
//!
//! Files:
//! - [`config`]: the `[autoscale]` TOML table ([`AutoscaleConfig`]) and its pure
//!   `validate()`;
//! - [`policy`]: the math, pure: target tracking, step adjustments, clamping,
//!   stabilization window, cooldowns;
//! - [`provider`]: the [`ScalingProvider`] and [`MetricSource`] traits, and
//!   [`RulesMetricSource`] (policy metrics through the rules evaluator);
//! - [`controller`]: [`Controller`]: evaluation, guards, provider calls, records;
//! - [`ecs`]: [`EcsProvider`] (AWS SDK: `DescribeServices`, `UpdateService`);
//! - [`docker`]: [`DockerProvider`] (Engine API: replicas as `docker compose --scale`);
//! - [`webhook`]: [`WebhookProvider`] (JSON POST with retries);
//! - `tests.rs`: policy math, guards (manual clock) and property tests.
//!
//! Use:
//!
//! ```no_run
//! # async fn demo(cfg: sightline_aggregator::autoscale::AutoscaleConfig,
//! #   metrics: std::sync::Arc<dyn sightline_aggregator::autoscale::MetricSource>,
//! #   log: std::sync::Arc<dyn sightline_aggregator::alert::ActionLog>,
//! #   alerts: tokio::sync::mpsc::Receiver<Vec<sightline_aggregator::alert::Alert>>)
//! #   -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sightline_aggregator::autoscale::{providers_from_config, Controller};
//! use sightline_aggregator::rules::SystemClock;
//! let providers = providers_from_config(&cfg)?;
//! let controller = Arc::new(Controller::new(cfg, providers, metrics, log, Arc::new(SystemClock))?);
//! controller.run(alerts, tokio_util::sync::CancellationToken::new()).await;
//! # Ok(()) }
//! ```

pub mod config;
pub mod controller;
pub mod docker;
pub mod ecs;
pub mod policy;
pub mod provider;
pub mod webhook;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use config::{
    AutoscaleConfig, AutoscaleConfigError, DockerConfig, EcsConfig, PolicyConfig, ProviderKind,
    StepAdjustment, StepScaling, TargetTracking, WebhookConfig,
};
pub use controller::{
    audit_event, Controller, ControllerError, Decision, Outcome, SCALE_POLICY_LABEL,
};
pub use docker::DockerProvider;
pub use ecs::{EcsProvider, LazyEcsProvider};
pub use policy::{Cooldowns, Direction, SkipReason, Stabilizer};
pub use provider::{
    metric_expr, Capacity, MetricSource, ProviderError, RulesMetricSource, ScaleContext,
    ScalingProvider,
};
pub use webhook::WebhookProvider;

/// Builds the providers configured in `cfg` (`[autoscale.ecs]`, `[autoscale.webhook]`).
/// The ECS client's region and credentials are resolved at its first call
/// ([`LazyEcsProvider`]), so this needs no async context.
///
/// Errors: [`ProviderError::Api`] when a client cannot be built.
pub fn providers_from_config(
    cfg: &AutoscaleConfig,
) -> Result<BTreeMap<ProviderKind, Arc<dyn ScalingProvider>>, ProviderError> {
    let mut out: BTreeMap<ProviderKind, Arc<dyn ScalingProvider>> = BTreeMap::new();
    if let Some(e) = &cfg.ecs {
        out.insert(ProviderKind::Ecs, Arc::new(LazyEcsProvider::new(e.clone())));
    }
    if let Some(w) = &cfg.webhook {
        out.insert(ProviderKind::Webhook, Arc::new(WebhookProvider::new(w)?));
    }
    if let Some(d) = &cfg.docker {
        out.insert(ProviderKind::Docker, Arc::new(DockerProvider::new(d)?));
    }
    Ok(out)
}
