//! What the controller needs from an orchestrator ([`ScalingProvider`]) and from the
//! metrics ([`MetricSource`], with [`RulesMetricSource`] over the rollups).

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::config::PolicyConfig;
use crate::rules::{self, Expr};
use crate::series::SeriesSource;

/// Desired and running task counts of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// The count the orchestrator is converging to (`desiredCount`).
    pub desired_count: u32,
    /// Tasks running now (`runningCount`): the baseline of new recommendations.
    pub running_count: u32,
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The service does not exist (or is not active).
    #[error("service {0:?} not found")]
    NotFound(String),
    /// The provider cannot tell the current count (the controller then falls back to the
    /// `running_task_count` rollup, see [`MetricSource::running_count`]).
    #[error("current count unknown")]
    CountUnknown,
    /// The receiver refused the request (4xx other than 429): not retried.
    #[error("rejected with HTTP {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// Retryable failures until attempts ran out.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// An API or engine error (AWS error code and message, Docker error).
    #[error("{0}")]
    Api(String),
}

/// An orchestrator that runs a service's tasks.
pub trait ScalingProvider: Send + Sync {
    /// The service's desired and running counts.
    ///
    /// Errors: [`ProviderError`].
    fn current<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Capacity, ProviderError>>;

    /// Sets the desired count. `ctx` tells why (the webhook forwards it).
    ///
    /// Errors: [`ProviderError`].
    fn set_desired<'a>(
        &'a self,
        service: &'a str,
        desired: u32,
        ctx: &'a ScaleContext,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;
}

/// Why a desired count is being set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScaleContext {
    /// Policy name.
    pub policy: String,
    /// Desired count before the change.
    pub current: u32,
    /// Running count before the change.
    pub running: u32,
    /// Human-readable reason, e.g. `cpu_utilization 140 > target 70`.
    pub reason: String,
}

/// Where policy metrics come from.
pub trait MetricSource: Send + Sync {
    /// The value of `policy`'s target-tracking metric at `now_ms`, `None` when there is no
    /// data (no series, several ambiguous series, or not a number).
    fn metric(&self, policy: &PolicyConfig, now_ms: i64) -> Option<f64>;

    /// Tasks running for `service` (the `running_task_count` rollup), used when the
    /// provider cannot report it. Default: unknown.
    fn running_count(&self, _service: &str, _now_ms: i64) -> Option<f64> {
        None
    }
}

/// A [`MetricSource`] that evaluates policy metrics with the rules evaluator
/// ([`rules::eval`]) over a [`SeriesSource`] (the rollups). A bare metric name `m` is read
/// as `avg(m{service="<policy service>"})`; any other expression must return one series
/// (or several of which exactly one has `service="<policy service>"`).
pub struct RulesMetricSource<S> {
    source: S,
}

impl<S: SeriesSource> RulesMetricSource<S> {
    /// Wraps a series source.
    pub fn new(source: S) -> Self {
        RulesMetricSource { source }
    }

    fn query(&self, expr: &Expr, service: &str, now_ms: i64) -> Option<f64> {
        let out = rules::eval(expr, &self.source, now_ms).ok()?;
        let pick = match out.as_slice() {
            [(_, v)] => Some(*v),
            many => {
                let mut it = many
                    .iter()
                    .filter(|(l, _)| l.get("service").map(String::as_str) == Some(service));
                match (it.next(), it.next()) {
                    (Some((_, v)), None) => Some(*v),
                    _ => None,
                }
            }
        };
        pick.filter(|v| v.is_finite())
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The expression a policy metric stands for (see [`RulesMetricSource`]).
///
/// Errors: the expression's parse error (`line:column: message`).
pub fn metric_expr(metric: &str, service: &str) -> Result<Expr, rules::ParseError> {
    if is_metric_name(metric) {
        let escaped = service.replace('\\', "\\\\").replace('"', "\\\"");
        rules::parse(&format!("avg({metric}{{service=\"{escaped}\"}})"))
    } else {
        rules::parse(metric)
    }
}

impl<S: SeriesSource> MetricSource for RulesMetricSource<S> {
    fn metric(&self, policy: &PolicyConfig, now_ms: i64) -> Option<f64> {
        let t = policy.target_tracking.as_ref()?;
        let expr = metric_expr(&t.metric, &policy.service).ok()?;
        self.query(&expr, &policy.service, now_ms)
    }

    fn running_count(&self, service: &str, now_ms: i64) -> Option<f64> {
        // Summed over the service's series (one per cluster or host).
        let escaped = service.replace('\\', "\\\\").replace('"', "\\\"");
        let expr =
            rules::parse(&format!("sum(running_task_count{{service=\"{escaped}\"}})")).ok()?;
        self.query(&expr, service, now_ms)
    }
}
