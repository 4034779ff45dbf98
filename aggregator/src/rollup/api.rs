//! HTTP route of the rollups (axum), with the query API's error shape
//! ([`sightline_query::ApiError`]).
//!
//! ```text
//! GET /api/v1/rollups?metric=error_count&service=checkout&from=&to=
//! GET /api/v1/rollups?metric=request_latency_seconds&service=checkout&quantile=0.99
//! 200 {"metric":"error_count","from_ms":…,"to_ms":…,
//!      "series":[{"labels":{"__name__":"error_count","service":"checkout"},
//!                 "samples":[[1763701210000,3.0],…]}]}
//! 200 {"metric":"request_latency_seconds","quantile":0.99,…,
//!      "series":[{"labels":{"service":"checkout"},"value":0.412}]}
//! 400 {"error":"bad request","reason":"unknown metric `cpu`; one of cpu_utilization, …"}
//! ```
//!
//! `from`/`to`: RFC 3339 or Unix ns (default: the last hour). Label filters: `service`,
//! `cluster`, `level`, `pattern` (exact). Samples are `[window end in Unix ms, value]`, 10 s
//! windows within the 10 s retention, 1 min windows beyond.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sightline_query::ApiError;

use super::{names, SharedRollups};
use crate::series::{MatchOp, Matcher, SeriesSource};

/// Query parameters of `GET /api/v1/rollups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupParams {
    metric: Option<String>,
    service: Option<String>,
    cluster: Option<String>,
    level: Option<String>,
    pattern: Option<String>,
    from: Option<String>,
    to: Option<String>,
    quantile: Option<f64>,
}

/// The rollups route, with `store` as state. Merge into the main router.
pub fn router(store: SharedRollups) -> Router {
    Router::new()
        .route("/api/v1/rollups", get(series))
        .with_state(store)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn time_ms(name: &'static str, v: Option<&str>, default: i64) -> Result<i64, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => Ok(sightline_query::reader::parse_time(name, s)? / 1_000_000),
    }
}

async fn series(
    State(store): State<SharedRollups>,
    params: Result<Query<RollupParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let metric = p
        .metric
        .ok_or_else(|| ApiError::BadRequest("missing parameter `metric`".into()))?;
    if !names::ALL.contains(&metric.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "unknown metric `{metric}`; one of {}",
            names::ALL.join(", ")
        )));
    }
    let to_ms = time_ms("to", p.to.as_deref(), now_ms())?;
    let from_ms = time_ms("from", p.from.as_deref(), to_ms - 3_600_000)?;
    if from_ms >= to_ms {
        return Err(ApiError::BadRequest("`from` must be before `to`".into()));
    }
    let matchers: Vec<Matcher> = [
        ("service", p.service),
        ("cluster", p.cluster),
        ("level", p.level),
        ("pattern", p.pattern),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.map(|v| (name, v)))
    .map(|(name, v)| Matcher::new(name, MatchOp::Equal, &v))
    .collect::<Result<_, _>>()
    .map_err(ApiError::BadRequest)?;
    if let Some(q) = p.quantile {
        if !(0.0..=1.0).contains(&q) {
            return Err(ApiError::BadRequest(
                "`quantile` must be between 0 and 1".into(),
            ));
        }
        let rows = store.quantile(&metric, &matchers, q, from_ms, to_ms);
        let series: Vec<_> = rows
            .into_iter()
            .map(|(labels, value)| serde_json::json!({ "labels": labels, "value": value }))
            .collect();
        return Ok(Json(serde_json::json!({
            "metric": metric, "quantile": q, "from_ms": from_ms, "to_ms": to_ms, "series": series,
        })));
    }
    let series: Vec<_> = store
        .select(&metric, &matchers, from_ms, to_ms)
        .into_iter()
        .map(|s| {
            let labels: BTreeMap<_, _> = s.labels;
            let samples: Vec<(i64, f64)> = s.samples.iter().map(|x| (x.ts_ms, x.value)).collect();
            serde_json::json!({ "labels": labels, "samples": samples })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "metric": metric, "from_ms": from_ms, "to_ms": to_ms, "series": series,
    })))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use sightline_model::{EventId, Level, LogEvent};
    use tower::ServiceExt;

    use super::*;
    use crate::rollup::{RollupConfig, RollupStore};

    async fn get(store: &SharedRollups, uri: &str) -> (StatusCode, serde_json::Value) {
        let resp = router(store.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn serves_exact_series_and_rejects_bad_parameters() {
        let mut store = RollupStore::new(RollupConfig::default()).unwrap();
        let t0_ms = 1_763_700_000_000i64; // a 10 s boundary
        let events: Vec<LogEvent> = (0..10u64)
            .map(|i| LogEvent {
                event_id: EventId::derive(7, i),
                timestamp_ns: (t0_ms as u64 + 1_000) * 1_000_000 + i,
                service: "checkout".into(),
                level: Some(if i < 4 { Level::Error } else { Level::Info }),
                message: format!("line {i}"),
                ..Default::default()
            })
            .collect();
        store.apply_logs(&events, None);
        let shared = SharedRollups(Arc::new(RwLock::new(store)));
        let from = (t0_ms - 60_000) * 1_000_000;
        let to = (t0_ms + 60_000) * 1_000_000;
        let (status, body) = get(
            &shared,
            &format!("/api/v1/rollups?metric=error_count&service=checkout&from={from}&to={to}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let total: f64 = body["series"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["samples"].as_array().unwrap().iter())
            .map(|x| x[1].as_f64().unwrap())
            .sum();
        assert_eq!(total, 4.0, "{body}");
        let (status, body) = get(
            &shared,
            &format!("/api/v1/rollups?metric=error_count&service=cart&from={from}&to={to}"),
        )
        .await;
        assert_eq!(
            (status, body["series"].as_array().unwrap().len()),
            (StatusCode::OK, 0)
        );
        for bad in [
            "/api/v1/rollups",
            "/api/v1/rollups?metric=cpu",
            "/api/v1/rollups?metric=error_count&quantile=2",
            "/api/v1/rollups?metric=error_count&from=yesterday",
            "/api/v1/rollups?metric=error_count&colour=blue",
        ] {
            let (status, body) = get(&shared, bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
    }
}
