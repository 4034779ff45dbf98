//! End-to-end tests of the HTTP API over a real tantivy index in a temporary directory.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sightline_model::{Container, EventId, Level, LogEvent, SourceKind, SourcePosition};
use sightline_query::{
    app, AppState, CorrelationResult, EventView, IndexSchema, QueryEngine, QueryLimits,
    SearchResult,
};
use tower::ServiceExt;

/// 2026-11-21T05:00:00Z in ns.
const T: u64 = 1_795_237_200_000_000_000;
const MS: u64 = 1_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
}

fn ev(
    i: u64,
    service: &str,
    ts: u64,
    hop: Option<u32>,
    level: Option<Level>,
    cids: &[&str],
    message: &str,
) -> LogEvent {
    LogEvent {
        event_id: EventId::derive(7, i * 100),
        timestamp_ns: ts,
        observed_ns: ts + 5,
        host: "host-a".into(),
        source_kind: SourceKind::DockerJsonFile,
        position: SourcePosition {
            source_id: 7,
            offset: i * 100,
        },
        container: Some(Arc::new(Container {
            id: format!("{service}-cid"),
            name: format!("{service}-1"),
            image: format!("{service}:latest"),
            labels: BTreeMap::new(),
        })),
        service: service.into(),
        stream: "stdout".into(),
        level,
        message: message.into(),
        correlation_ids: cids.iter().map(|s| s.to_string()).collect(),
        trace_id: None,
        span_id: None,
        hop,
        parse_error: None,
        attributes: BTreeMap::new(),
    }
}

fn id(i: u64) -> String {
    EventId::derive(7, i * 100).to_string()
}

fn events() -> Vec<LogEvent> {
    use Level::*;
    let mut e3 = ev(
        3,
        "payment",
        T + 3 * MS,
        Some(2),
        Some(Error),
        &["req-1"],
        "payment declined: card expired",
    );
    e3.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    e3.span_id = Some("00f067aa0ba902b7".into());
    e3.attributes.insert("region".into(), "eu-west-1".into());
    let mut e10 = ev(
        10,
        "unknown",
        T - 2 * 3_600_000 * MS,
        None,
        None,
        &[],
        "\u{fffd}garbage",
    );
    e10.parse_error = Some("undecodable".into());
    e10.container = None;
    e10.stream = String::new();
    vec![
        ev(
            1,
            "gateway",
            T + MS,
            Some(0),
            Some(Info),
            &["req-1"],
            "GET /checkout received",
        ),
        ev(
            2,
            "checkout",
            T + 2 * MS,
            Some(1),
            Some(Info),
            &["req-1"],
            "calling payment service",
        ),
        e3,
        ev(
            4,
            "checkout",
            T + 3 * MS,
            None,
            Some(Warn),
            &["req-1"],
            "payment failed, retrying",
        ),
        ev(
            6,
            "auth",
            T + 2 * MS,
            Some(0),
            Some(Debug),
            &["req-1"],
            "token ok",
        ),
        ev(
            7,
            "billing",
            T + 10 * MS,
            None,
            Some(Info),
            &["req-2", "req-1"],
            "invoice queued",
        ),
        ev(
            8,
            "checkout",
            T + 20 * MS,
            None,
            Some(Error),
            &["req-2"],
            "timeout talking to db",
        ),
        ev(
            9,
            "cron",
            T - 3_600_000 * MS,
            None,
            Some(Debug),
            &[],
            "nightly job started",
        ),
        e10,
    ]
}

fn fixture(limits: QueryLimits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let schema = IndexSchema::new();
    let index = schema.open_or_create(&dir.path().join("index")).unwrap();
    let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for e in events() {
        writer.add_document(schema.to_document(&e)).unwrap();
    }
    writer.commit().unwrap();
    let reader = index.reader().unwrap();
    let engine = QueryEngine::new(&index, reader, limits).unwrap();
    Fixture {
        _dir: dir,
        state: AppState::new(engine),
    }
}

async fn get(f: &Fixture, uri: &str) -> (StatusCode, Value) {
    let resp = app(f.state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: body is not JSON ({e}): {bytes:?}"));
    (status, json)
}

async fn search(f: &Fixture, query: &str) -> SearchResult {
    let (status, body) = get(f, &format!("/api/v1/search?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    serde_json::from_value(body).unwrap()
}

fn ids(hits: &[EventView]) -> Vec<String> {
    hits.iter().map(|h| h.event_id.clone()).collect()
}

fn expect_ids(list: &[u64]) -> Vec<String> {
    list.iter().map(|&i| id(i)).collect()
}

#[tokio::test]
async fn correlation_returns_request_path_in_order() {
    let f = fixture(QueryLimits::default());
    let (status, body) = get(&f, "/api/v1/correlations/req-1").await;
    assert_eq!(status, StatusCode::OK);
    let r: CorrelationResult = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(r.correlation_id, "req-1");
    assert_eq!(r.total, 6);
    assert!(!r.truncated);
    // Timestamp, then hop (6 before 2 at T+2ms; 3 with hop before 4 without at T+3ms).
    assert_eq!(ids(&r.events), expect_ids(&[1, 6, 2, 3, 4, 7]));
    assert_eq!(
        r.services,
        vec!["gateway", "auth", "checkout", "payment", "billing"]
    );
    // Exact payload of one event, and absent optionals omitted from the JSON.
    let e3 = &r.events[3];
    assert_eq!(
        e3,
        &EventView {
            event_id: id(3),
            timestamp: "2026-11-21T05:00:00.003000000Z".into(),
            timestamp_ns: (T + 3 * MS) as i64,
            service: "payment".into(),
            host: "host-a".into(),
            container_id: Some("payment-cid".into()),
            container_name: Some("payment-1".into()),
            image: Some("payment:latest".into()),
            stream: Some("stdout".into()),
            level: Some("error".into()),
            message: "payment declined: card expired".into(),
            correlation_ids: vec!["req-1".into()],
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            hop: Some(2),
            parse_error: None,
            source_kind: Some("docker_json_file".into()),
            attributes: BTreeMap::from([("region".to_string(), "eu-west-1".to_string())]),
        }
    );
    let raw4 = &body["events"][4];
    assert!(
        raw4.get("hop").is_none() && raw4.get("trace_id").is_none(),
        "{raw4}"
    );
    assert!(raw4.get("parse_error").is_none() && raw4.get("attributes").is_none());
    assert_eq!(raw4["correlation_ids"], serde_json::json!(["req-1"]));
    // Secondary correlation IDs are found too.
    assert_eq!(
        body["events"][5]["correlation_ids"],
        serde_json::json!(["req-2", "req-1"])
    );
}

#[tokio::test]
async fn correlation_limit_truncates_and_unknown_id_is_empty() {
    let f = fixture(QueryLimits::default());
    let (status, body) = get(&f, "/api/v1/correlations/req-1?limit=3").await;
    assert_eq!(status, StatusCode::OK);
    let r: CorrelationResult = serde_json::from_value(body).unwrap();
    assert_eq!((r.total, r.truncated), (6, true));
    assert_eq!(ids(&r.events), expect_ids(&[1, 6, 2]));
    assert_eq!(r.services, vec!["gateway", "auth", "checkout"]);

    let (status, body) = get(&f, "/api/v1/correlations/req-2").await;
    assert_eq!(status, StatusCode::OK);
    let r: CorrelationResult = serde_json::from_value(body).unwrap();
    assert_eq!(ids(&r.events), expect_ids(&[7, 8]));
    assert_eq!(r.services, vec!["billing", "checkout"]);

    // Exact match only: a prefix finds nothing.
    let (status, body) = get(&f, "/api/v1/correlations/req").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 0);
    assert_eq!(body["events"], serde_json::json!([]));
    assert_eq!(body["truncated"], false);
}

#[tokio::test]
async fn correlation_rejects_bad_input() {
    let f = fixture(QueryLimits {
        max_correlation_events: 5,
        max_search_hits: 10,
    });
    let long = "x".repeat(513);
    let cases = [
        format!("/api/v1/correlations/{long}"),
        "/api/v1/correlations/%20%20".to_string(),
        "/api/v1/correlations/req-1?limit=0".to_string(),
        "/api/v1/correlations/req-1?limit=6".to_string(),
        "/api/v1/correlations/req-1?limit=ten".to_string(),
    ];
    for uri in &cases {
        let (status, body) = get(&f, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"], "bad request", "{uri}");
        assert!(
            body["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{uri}"
        );
    }
    let (_, body) = get(&f, "/api/v1/correlations/req-1?limit=6").await;
    assert_eq!(
        body["reason"],
        "invalid parameter `limit`: must be between 1 and 5, got 6"
    );
    // Exactly 512 bytes is accepted; the default limit is capped by the configured max.
    let (status, _) = get(&f, &format!("/api/v1/correlations/{}", "x".repeat(512))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = get(&f, "/api/v1/correlations/req-1").await;
    assert_eq!(body["events"].as_array().unwrap().len(), 5);
    assert_eq!(body["truncated"], true);
}

#[tokio::test]
async fn search_is_newest_first_with_filters() {
    let f = fixture(QueryLimits::default());
    let all = search(&f, "").await;
    assert_eq!((all.total, all.count), (9, 9));
    assert_eq!(all.hits[0].event_id, id(8));
    assert_eq!(all.hits[8].event_id, id(10));
    assert!(all
        .hits
        .windows(2)
        .all(|w| w[0].timestamp_ns >= w[1].timestamp_ns));

    let r = search(&f, "level=error").await;
    assert_eq!(ids(&r.hits), expect_ids(&[8, 3]));
    let r = search(&f, "level=WARNING,err").await;
    assert_eq!(r.total, 3);
    let r = search(&f, "service=checkout").await;
    assert_eq!(ids(&r.hits), expect_ids(&[8, 4, 2]));
    let r = search(&f, "service=checkout&level=info").await;
    assert_eq!(ids(&r.hits), expect_ids(&[2]));
    let r = search(&f, "q=payment").await;
    assert_eq!(r.total, 3);
    assert_eq!(r.hits[2].event_id, id(2));
    let r = search(&f, "q=payment%20-declined").await;
    assert_eq!(ids(&r.hits), expect_ids(&[4, 2]));
    let r = search(&f, "q=%22payment%20declined%22").await;
    assert_eq!(ids(&r.hits), expect_ids(&[3]));
    // Bare terms are ANDed.
    let r = search(&f, "q=payment%20card").await;
    assert_eq!(ids(&r.hits), expect_ids(&[3]));
    // Field-qualified terms on raw fields, and attributes.
    let r = search(&f, "q=service:checkout%20AND%20payment").await;
    assert_eq!(ids(&r.hits), expect_ids(&[4, 2]));
    let r = search(&f, "q=attributes.region:eu-west-1").await;
    assert_eq!(ids(&r.hits), expect_ids(&[3]));
    let r = search(&f, "q=correlation_id:req-2").await;
    assert_eq!(ids(&r.hits), expect_ids(&[8, 7]));
    // Limit keeps the newest.
    let r = search(&f, "limit=2").await;
    assert_eq!((r.total, r.count), (9, 2));
    assert_eq!(ids(&r.hits), expect_ids(&[8, 7]));
}

#[tokio::test]
async fn search_time_range_accepts_rfc3339_and_ns() {
    let f = fixture(QueryLimits::default());
    let to = T + 3 * MS;
    let r = search(&f, &format!("from=2026-11-21T05:00:00.002Z&to={to}")).await;
    assert_eq!(r.total, 4);
    let mut got = ids(&r.hits);
    got.sort();
    let mut want = expect_ids(&[6, 2, 3, 4]);
    want.sort();
    assert_eq!(got, want);
    // Offsets are honoured: 06:00:00.01+01:00 == 05:00:00.010Z, inclusive.
    let r = search(&f, "from=2026-11-21T06:00:00.010%2B01:00").await;
    assert_eq!(ids(&r.hits), expect_ids(&[8, 7]));
    let r = search(&f, "to=2026-11-21T04:00:00Z").await;
    assert_eq!(ids(&r.hits), expect_ids(&[9, 10]));
}

#[tokio::test]
async fn search_rejects_bad_input_with_reason() {
    let f = fixture(QueryLimits::default());
    let (status, body) = get(&f, "/api/v1/search?q=payment%20AND%20(").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid query");
    assert!(
        body["reason"].as_str().unwrap().contains("Syntax Error"),
        "{body}"
    );
    let (status, body) = get(&f, "/api/v1/search?q=nosuchfield:x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["reason"], "Field does not exist: 'nosuchfield'");

    let cases = [
        ("from=yesterday", "`from`"),
        ("to=2026-13-01T00:00:00Z", "`to`"),
        ("from=3&to=2", "`from`"),
        ("level=loud", "`level`"),
        ("limit=0", "`limit`"),
        ("limit=10001", "`limit`"),
        ("limit=abc", "`limit`"),
        ("q=a&q=b", "duplicate field"),
    ];
    for (query, needle) in cases {
        let (status, body) = get(&f, &format!("/api/v1/search?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"], "bad request", "{query}");
        let reason = body["reason"].as_str().unwrap();
        assert!(reason.contains(needle), "{query}: {reason}");
    }
    // Odd but valid-looking inputs never panic: each is a 200 or a 400.
    for q in [
        "*",
        "\"",
        "((((",
        "a:b:c",
        "timestamp:[1 TO 2]",
        "hop:>1",
        "~",
        "AND",
        "-x",
    ] {
        let uri = format!(
            "/api/v1/search?q={}",
            q.replace('"', "%22")
                .replace(' ', "%20")
                .replace('>', "%3E")
                .replace('[', "%5B")
                .replace(']', "%5D")
        );
        let (status, _) = get(&f, &uri).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{q}: {status}"
        );
    }
}

#[tokio::test]
async fn search_rejects_costly_or_unrunnable_queries_with_400() {
    let f = fixture(QueryLimits::default());
    // Nine levels of parentheses: tantivy's parser would double its work per level.
    let deep = format!("{}x{}", "(".repeat(9), ")".repeat(9));
    let eight = format!("{}x{}", "(".repeat(8), ")".repeat(8));
    let long = "x ".repeat(1100);
    let enc = |q: &str| {
        q.replace('(', "%28")
            .replace(')', "%29")
            .replace(' ', "%20")
            .replace('[', "%5B")
            .replace(']', "%5D")
    };
    let (status, body) = get(&f, &format!("/api/v1/search?q={}", enc(&deep))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("nested deeper than 8"),
        "{body}"
    );
    let (status, body) = get(&f, &format!("/api/v1/search?q={}", enc(&eight))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(&f, &format!("/api/v1/search?q={}", enc(&long))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("longer than 2048"),
        "{body}"
    );
    // Parses, but cannot run on this schema (set query on a fast-only field): 400, not 500.
    let (status, body) = get(
        &f,
        &format!("/api/v1/search?q={}", enc("timestamp: IN [1]")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid query");
}

#[tokio::test]
async fn layer_errors_are_json_too() {
    let f = fixture(QueryLimits::default());
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/api/v1/search")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = sightline_query::app(f.state.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"], "method not allowed");
}

#[tokio::test]
async fn health_and_not_found() {
    let f = fixture(QueryLimits::default());
    let (status, body) = get(&f, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"status": "ok", "num_docs": 9}));
    let (status, body) = get(&f, "/api/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        serde_json::json!({"error": "not found", "reason": "no such endpoint"})
    );
}

#[tokio::test]
async fn serve_answers_over_tcp_and_shuts_down() {
    let f = fixture(QueryLimits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sightline_query::serve(listener, f.state.clone(), async {
        let _ = rx.await;
    }));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.ends_with(r#"{"status":"ok","num_docs":9}"#), "{out}");
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[test]
fn truncation_keeps_hop_order_among_tied_timestamps() {
    // Nine events of one request share a timestamp; hops are added in reverse. With a
    // limit of 3 the first three by (timestamp, hop) are hops 0, 1, 2, whichever the
    // timestamp-only top-k happened to fetch.
    let dir = tempfile::tempdir().unwrap();
    let schema = IndexSchema::new();
    let index = schema.open_or_create(&dir.path().join("index")).unwrap();
    let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for hop in (0..9u32).rev() {
        let e = ev(100 + hop as u64, "svc", T, Some(hop), None, &["tie"], "m");
        writer.add_document(schema.to_document(&e)).unwrap();
    }
    writer.commit().unwrap();
    let engine = QueryEngine::new(&index, index.reader().unwrap(), QueryLimits::default()).unwrap();
    let r = engine.correlation("tie", Some(3)).unwrap();
    assert_eq!((r.total, r.truncated), (9, true));
    let hops: Vec<Option<u64>> = r.events.iter().map(|e| e.hop).collect();
    assert_eq!(hops, [Some(0), Some(1), Some(2)]);
}
