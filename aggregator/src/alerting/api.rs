//! HTTP routes of alerting (axum), with the query API's error shape
//! ([`sightline_query::ApiError`]).
//!
//! ```text
//! GET /api/v1/rules?group=&alert=          every rule's health and alerts (the alerts'
//! 200 {"rules":[{"file":"/etc/sightline/rules/checkout.yml","group":"checkout",
//!      "alert":"HighErrorRate","last_evaluation_ms":1763701210000,"last_error":null,
//!      "alerts":[{"labels":{…},"annotations":{…},"state":"firing","value":0.12,
//!                 "active_at_ms":…,"fired_at_ms":…,"resolved_at_ms":null,…}]}]}
//!
//! GET /api/v1/alerts?state=firing           pending and firing alerts (state: pending,
//! 200 {"alerts":[{"group":"checkout","alert":"HighErrorRate","labels":{…},…}]}   firing)
//!
//! GET /api/v1/scaling?service=checkout      autoscaling decisions, newest first
//! 200 {"decisions":[{"time_ms":…,"service":"checkout","policy":"checkout-cpu",
//!      "provider":"ecs","metric_value":140.0,"current_desired":2,"current_running":2,
//!      "desired":4,"direction":"out","outcome":"updated","skip_reason":null,
//!      "reason":"…","dry_run":false}]}
//!
//! POST /-/reload                            re-read the rule files (as SIGHUP; Prometheus'
//! 200 {"reloaded":true,"rules":12}          route, served with `api.enable_lifecycle`)
//! 400 {"error":"bad request","reason":"rules.yml:4:15: …"}
//! ```
//!
//! Without `[rules]` the rule routes answer with empty lists (reload: 400); without
//! `[autoscale]` the scaling route does.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sightline_query::ApiError;

use super::AlertingHandle;
use crate::autoscale::Decision;
use crate::rules::manager::RuleStatus;
use crate::rules::{ActiveAlert, AlertState};

/// The alerting routes, with `handle` as state; `POST /-/reload` only with `lifecycle`
/// (`api.enable_lifecycle`). Merge into the main router.
pub fn router(handle: AlertingHandle, lifecycle: bool) -> Router {
    let r = Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/scaling", get(scaling));
    let r = if lifecycle {
        r.route("/-/reload", post(reload))
    } else {
        r
    };
    r.with_state(handle)
}

/// Parameters of `GET /api/v1/rules`: exact group and alert names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesParams {
    group: Option<String>,
    alert: Option<String>,
}

/// Body of `GET /api/v1/rules`.
#[derive(Debug, Serialize)]
pub struct RulesPage {
    /// Rules in file and group order.
    pub rules: Vec<RuleStatus>,
}

async fn rules(
    State(h): State<AlertingHandle>,
    params: Result<Query<RulesParams>, QueryRejection>,
) -> Result<Json<RulesPage>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let all = statuses(&h).await?;
    let rules = all
        .into_iter()
        .filter(|r| p.group.as_ref().is_none_or(|g| *g == r.group))
        .filter(|r| p.alert.as_ref().is_none_or(|a| *a == r.alert))
        .collect();
    Ok(Json(RulesPage { rules }))
}

async fn statuses(h: &AlertingHandle) -> Result<Vec<RuleStatus>, ApiError> {
    let h = h.clone();
    // The manager's lock is held during an evaluation: wait for it off the runtime.
    tokio::task::spawn_blocking(move || h.rules().map(|m| m.status()).unwrap_or_default())
        .await
        .map_err(|e| ApiError::Internal(format!("rules status task failed: {e}")))
}

/// Parameters of `GET /api/v1/alerts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsParams {
    state: Option<String>,
}

/// One alert in `GET /api/v1/alerts`: the rule's group and name, then the alert.
#[derive(Debug, Serialize)]
pub struct AlertView {
    /// Group name.
    pub group: String,
    /// Alert rule name.
    pub alert: String,
    /// The alert instance.
    #[serde(flatten)]
    pub instance: ActiveAlert,
}

/// Body of `GET /api/v1/alerts`.
#[derive(Debug, Serialize)]
pub struct AlertsPage {
    /// Pending and firing alerts, in rule order.
    pub alerts: Vec<AlertView>,
}

async fn alerts(
    State(h): State<AlertingHandle>,
    params: Result<Query<AlertsParams>, QueryRejection>,
) -> Result<Json<AlertsPage>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let want = match p.state.as_deref() {
        None => None,
        Some("pending") => Some(AlertState::Pending),
        Some("firing") => Some(AlertState::Firing),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "invalid parameter `state`: {other:?} is not one of pending, firing"
            )))
        }
    };
    let alerts = statuses(&h)
        .await?
        .into_iter()
        .flat_map(|r| {
            let (group, alert) = (r.group, r.alert);
            r.alerts.into_iter().map(move |a| AlertView {
                group: group.clone(),
                alert: alert.clone(),
                instance: a,
            })
        })
        .filter(|a| a.instance.state != AlertState::Inactive)
        .filter(|a| want.is_none_or(|w| a.instance.state == w))
        .collect();
    Ok(Json(AlertsPage { alerts }))
}

/// Parameters of `GET /api/v1/scaling`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingParams {
    service: Option<String>,
}

/// Body of `GET /api/v1/scaling`.
#[derive(Debug, Serialize)]
pub struct ScalingPage {
    /// Decisions, newest first (the controller keeps `history_limit`).
    pub decisions: Vec<Decision>,
}

async fn scaling(
    State(h): State<AlertingHandle>,
    params: Result<Query<ScalingParams>, QueryRejection>,
) -> Result<Json<ScalingPage>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut decisions: Vec<Decision> = h
        .controller()
        .map(|c| c.history())
        .unwrap_or_default()
        .into_iter()
        .filter(|d| p.service.as_ref().is_none_or(|s| *s == d.service))
        .collect();
    decisions.reverse();
    Ok(Json(ScalingPage { decisions }))
}

/// Body of a successful `POST /-/reload`.
#[derive(Debug, Serialize)]
pub struct Reloaded {
    /// Always true.
    pub reloaded: bool,
    /// Rules now loaded.
    pub rules: usize,
}

async fn reload(State(h): State<AlertingHandle>) -> Result<Json<Reloaded>, ApiError> {
    let rules = h.reload().await.map_err(ApiError::BadRequest)?;
    Ok(Json(Reloaded {
        reloaded: true,
        rules,
    }))
}
