//! HTTP API (axum).
//!
//! Routes:
//! - `GET /api/v1/correlations/{id}?limit=N` → [`CorrelationResult`] JSON;
//! - `GET /api/v1/search?q=&service=&level=&from=&to=&limit=` → [`SearchResult`] JSON;
//! - `GET /healthz` → `{"status":"ok","num_docs":N}`.
//!
//! Shapes (abridged; events are [`crate::EventView`]s, absent optionals omitted):
//!
//! ```text
//! GET /api/v1/correlations/req-42?limit=100
//! 200 {"correlation_id":"req-42","total":3,"truncated":false,
//!      "services":["gateway","checkout"],
//!      "events":[{"event_id":"9f…","timestamp":"2026-11-21T05:00:00.001000000Z",
//!                 "timestamp_ns":1795237200001000000,"service":"gateway","host":"h1",
//!                 "container_id":"…","container_name":"gateway-1","image":"gw:1",
//!                 "stream":"stdout","level":"info","message":"GET /checkout",
//!                 "correlation_ids":["req-42"],"hop":0,"source_kind":"docker_json_file"}, …]}
//!
//! GET /api/v1/search?q=timeout&service=checkout&level=error,warn&from=2026-11-21T05:00:00Z&limit=50
//! 200 {"total":120,"count":50,"hits":[…newest first…]}
//!
//! 400 {"error":"invalid query","reason":"Syntax Error: (("}
//! 400 {"error":"bad request","reason":"invalid parameter `from`: …"}
//! 404 {"error":"not found","reason":"no such endpoint"}
//! 500 {"error":"internal error"}
//! ```
//!
//! Errors are [`ApiError`] JSON bodies (see [`error`]). Queries run on
//! `tokio::task::spawn_blocking`. Layers: request tracing, a [`REQUEST_TIMEOUT`] timeout
//! (503 with an empty body when hit) and a [`MAX_REQUEST_BODY_BYTES`] body limit.

pub mod error;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::reader::{
    parse_limit, CorrelationResult, QueryEngine, QueryError, SearchRequest, SearchResult,
};

/// Longest accepted correlation ID, in bytes.
pub const MAX_CORRELATION_ID_BYTES: usize = 512;
/// Per-request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest accepted request body, in bytes (all routes are GETs).
pub const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024;

/// Shared state of the API: the query engine. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    engine: Arc<QueryEngine>,
}

impl AppState {
    /// Wraps an engine.
    pub fn new(engine: QueryEngine) -> Self {
        Self::from_arc(Arc::new(engine))
    }

    /// Wraps an already shared engine.
    pub fn from_arc(engine: Arc<QueryEngine>) -> Self {
        AppState { engine }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<QueryEngine> {
        &self.engine
    }
}

/// Body of `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `"ok"`.
    pub status: String,
    /// Documents visible to searches.
    pub num_docs: u64,
}

/// Builds the router with all routes and layers.
pub fn app(state: AppState) -> Router {
    app_with(state, Router::new())
}

/// [`app`] plus `extra` routes (e.g. the aggregator's audit and alert endpoints), under the
/// same layers: body limit, timeout, JSON error shape, tracing.
pub fn app_with(state: AppState, extra: Router) -> Router {
    Router::new()
        .route("/api/v1/correlations/{id}", get(correlation))
        .route("/api/v1/search", get(search))
        .route("/healthz", get(healthz))
        .with_state(state)
        .merge(extra)
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(TraceLayer::new_for_http())
}

/// Gives the bare error responses of tower layers and the router (timeout, body limit, wrong
/// method) the API's JSON error shape.
async fn json_errors(resp: axum::response::Response) -> axum::response::Response {
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    match ApiError::from_layer_status(resp.status()) {
        Some(e) if !is_json => axum::response::IntoResponse::into_response(e),
        _ => resp,
    }
}

/// Serves [`app`] on `listener` until `shutdown` completes, then drains in-flight requests.
///
/// Errors: I/O errors of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_app(listener, app(state), shutdown).await
}

/// Serves a router built by [`app_with`] until `shutdown` completes.
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[derive(Deserialize)]
struct CorrelationParams {
    limit: Option<String>,
}

#[derive(Deserialize)]
struct SearchParams {
    q: Option<String>,
    service: Option<String>,
    level: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?
        .map_err(ApiError::from)
}

async fn correlation(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<CorrelationParams>, QueryRejection>,
) -> Result<Json<CorrelationResult>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if id.trim().is_empty() {
        return Err(ApiError::BadRequest("correlation ID is empty".into()));
    }
    if id.len() > MAX_CORRELATION_ID_BYTES {
        return Err(ApiError::BadRequest(format!(
            "correlation ID is {} bytes long; at most {MAX_CORRELATION_ID_BYTES} allowed",
            id.len()
        )));
    }
    let max = state.engine.limits().max_correlation_events;
    let limit = params
        .limit
        .as_deref()
        .map(|l| parse_limit(l, max))
        .transpose()?;
    let engine = state.engine.clone();
    Ok(Json(
        blocking(move || engine.correlation(&id, limit)).await?,
    ))
}

async fn search(
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<SearchResult>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let req = SearchRequest::from_params(
        p.q.as_deref(),
        p.service.as_deref(),
        p.level.as_deref(),
        p.from.as_deref(),
        p.to.as_deref(),
        p.limit.as_deref(),
        state.engine.limits().max_search_hits,
    )?;
    let engine = state.engine.clone();
    Ok(Json(blocking(move || engine.search(&req)).await?))
}

async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        num_docs: state.engine.num_docs(),
    })
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
