//! HTTP routes of the audit trail (axum), with the query API's error shape
//! ([`sightline_query::ApiError`]).
//!
//! ```text
//! GET /api/v1/audit?from=&to=&service=&actor=&actor_kind=&action=&limit=
//! 200 {"total":12,"count":2,"events":[{"seq":41,"hash":"…","event_id":"…",
//!      "time":"2026-11-21T05:00:00.000000000Z","time_ns":…,"observed_ns":…,"host":"h1",
//!      "service":"web","container_id":"abc","container_name":"web-1",
//!      "action":"container.die","actor":{"kind":"container","id":"abc","name":"web-1"},
//!      "outcome":"137","message":"…","attributes":{"exit_code":"137"}}, …newest first]}
//!
//! GET /api/v1/audit/verify
//! 200 {"ok":true,"records":41,"last_seq":41,"last_hash":"…","head_seq":41,"head_hash":"…",
//!      "segments":1,"unsealed_records":0,"torn_tail":null,"problem":null}
//! 200 {"ok":false,…,"problem":{"kind":"tampered","seq":17,"file":"segment-…jsonl",
//!      "offset":5120,"expected":"hash …","found":"stored hash …"}}
//!
//! 400 {"error":"bad request","reason":"invalid parameter `limit`: must be between 1 and 1000, got 0"}
//! 500 {"error":"internal error"}
//! ```
//!
//! A failed verification is a successful request (200 with `"ok":false`); 500 is reserved
//! for I/O errors, whose detail is logged, not returned.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use sightline_query::ApiError;

use super::query::{AuditPage, AuditParams, AuditQuery};
use super::verify::{verify, VerifyReport};
use super::{AuditError, AuditStore};

/// The audit routes, with `store` as state. Merge into the main router; the query API's
/// layers (timeout, body limit, tracing) apply once merged there.
pub fn router(store: AuditStore) -> Router {
    Router::new()
        .route("/api/v1/audit", get(list))
        .route("/api/v1/audit/verify", get(verify_route))
        .with_state(store)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("audit task failed: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn list(
    State(store): State<AuditStore>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let q = AuditQuery::from_params(&p)?;
    Ok(Json(blocking(move || store.query(&q)).await?))
}

async fn verify_route(State(store): State<AuditStore>) -> Result<Json<VerifyReport>, ApiError> {
    let dir = store.dir().to_path_buf();
    Ok(Json(blocking(move || verify(&dir)).await?))
}
