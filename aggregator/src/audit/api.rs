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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::audit::tests::ev;
    use crate::audit::AuditConfig;

    async fn get(store: &AuditStore, uri: &str) -> (StatusCode, serde_json::Value) {
        let resp = router(store.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {bytes:?}"));
        (status, json)
    }

    fn store_with(n: u64) -> (tempfile::TempDir, AuditStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = AuditStore::open(tmp.path(), AuditConfig::default()).unwrap();
        let events: Vec<_> = (0..n).map(ev).collect();
        store.append_batch(&events, &Default::default()).unwrap();
        (tmp, store)
    }

    #[tokio::test]
    async fn list_filters_and_limits() {
        let (_tmp, store) = store_with(10);
        let (status, body) = get(&store, "/api/v1/audit?service=web&limit=2").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (body["total"].as_u64(), body["count"].as_u64()),
            (Some(5), Some(2))
        );
        let first = &body["events"][0];
        assert_eq!(first["seq"], 9);
        assert_eq!(first["service"], "web");
        assert_eq!(first["actor"]["name"], "web-8");
        assert_eq!(first["time"], "2026-11-21T05:00:08.000000000Z");
        assert_eq!(first["event_id"], ev(8).event_id.to_string());

        let (_, body) = get(
            &store,
            "/api/v1/audit?actor=db-3&action=container.die&from=2026-11-21T05:00:00Z",
        )
        .await;
        assert_eq!(body["count"], 1);
        assert_eq!(body["events"][0]["outcome"], "137");
    }

    #[tokio::test]
    async fn bad_parameters_are_400_with_a_reason() {
        let (_tmp, store) = store_with(1);
        for (uri, needle) in [
            ("/api/v1/audit?limit=0", "limit"),
            ("/api/v1/audit?limit=5000", "between 1 and 1000"),
            ("/api/v1/audit?from=yesterday", "from"),
            ("/api/v1/audit?from=20&to=10", "after"),
            ("/api/v1/audit?service=", "service"),
            ("/api/v1/audit?servce=web", "servce"),
            ("/api/v1/audit?action=*", "action"),
        ] {
            let (status, body) = get(&store, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(body["error"], "bad request", "{uri}");
            let reason = body["reason"].as_str().unwrap();
            assert!(reason.contains(needle), "{uri}: {reason}");
        }
    }

    #[tokio::test]
    async fn verify_reports_ok_then_the_tampered_record() {
        let (tmp, store) = store_with(5);
        let (status, body) = get(&store, "/api/v1/audit/verify").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (body["ok"].as_bool(), body["records"].as_u64()),
            (Some(true), Some(5))
        );
        assert_eq!(body["head_hash"], store.head().1.to_hex());

        let seg = tmp.path().join(crate::audit::verify::segment_name(1));
        let text = std::fs::read_to_string(&seg).unwrap();
        std::fs::write(&seg, text.replacen("event number 2 ", "event number 9 ", 1)).unwrap();
        let (status, body) = get(&store, "/api/v1/audit/verify").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["ok"], false);
        assert_eq!(body["problem"]["kind"], "tampered");
        assert_eq!(body["problem"]["seq"], 3);
    }

    #[tokio::test]
    async fn io_errors_are_500_without_internals() {
        let (tmp, store) = store_with(3);
        std::fs::remove_file(tmp.path().join(crate::audit::verify::segment_name(1))).unwrap();
        let (status, body) = get(&store, "/api/v1/audit").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, serde_json::json!({"error": "internal error"}));
    }
}
