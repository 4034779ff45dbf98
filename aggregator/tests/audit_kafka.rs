//! The audit trail fed from the audit topic (rdkafka's mock cluster): every event stored
//! once across a restart and a replay, undecodable messages kept as marked records, and the
//! trail served by the aggregator's API.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::wait_until;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sightline_aggregator::{Aggregator, AggregatorConfig};
use sightline_model::audit::{Actor, AuditEvent};
use sightline_model::{encode_audit, LogEvent};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const AUDIT_TOPIC: &str = "sightline.audit";

fn config(brokers: &str, data_dir: &std::path::Path) -> AggregatorConfig {
    let mut c = common::mock_config(brokers, data_dir, "audit-test");
    c.audit.commit_interval_ms = 100;
    c
}

fn audit_event(action: &str, container: &str, n: u64) -> AuditEvent {
    AuditEvent {
        event_id: AuditEvent::content_id(&[action, container, &n.to_string()]),
        time_ns: 1_763_700_000_000_000_000 + n * 1_000_000_000,
        observed_ns: 1_763_700_000_000_000_000 + n * 1_000_000_000,
        resource: LogEvent {
            service: "checkout".into(),
            host: "ip-10-0-1-17".into(),
            ..Default::default()
        },
        action: action.into(),
        actor: Actor {
            kind: "container".into(),
            id: container.into(),
            name: format!("{container}-name"),
        },
        outcome: None,
        message: format!("{action} {container}"),
        attributes: BTreeMap::new(),
    }
}

async fn produce(p: &FutureProducer, payload: &[u8]) {
    let rec: FutureRecord<'_, (), [u8]> = FutureRecord::to(AUDIT_TOPIC).payload(payload);
    p.send(rec, Duration::from_secs(10)).await.unwrap();
}

async fn get_json(app: &axum::Router, uri: &str) -> serde_json::Value {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{uri}");
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_topic_is_stored_once_across_restart_and_replay_and_served() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(AUDIT_TOPIC, 1, 1).unwrap();
    mock.create_topic("sightline.logs", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let kill = audit_event("kill", "c1", 1);
    let die = audit_event("die", "c1", 2);
    let exec = audit_event("exec_start", "c2", 3);
    // The collector may send an event twice (re-sent after a lost acknowledgement).
    produce(&p, &encode_audit(&[kill.clone(), die.clone()])).await;
    produce(&p, &encode_audit(std::slice::from_ref(&die))).await;
    produce(&p, b"\xff\x00 not protobuf").await;

    let agg = Aggregator::open(config(&brokers, tmp.path())).unwrap();
    let store = agg.audit_store().unwrap();
    let app = agg.app();
    let stop = CancellationToken::new();
    let task = tokio::spawn(agg.run(stop.clone()));
    assert!(
        wait_until(Duration::from_secs(60), || store.head().0 >= 3).await,
        "stored {}",
        store.head().0
    );
    let page = get_json(&app, "/api/v1/audit?service=checkout").await;
    let actions: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["die", "kill"], "{page}");
    let bad = get_json(&app, "/api/v1/audit?action=sightline.undecodable").await;
    assert_eq!(bad["count"], 1, "{bad}");
    stop.cancel();
    task.await.unwrap().unwrap();
    drop(app);
    drop(store);

    // Restart: the positions were stored with the records, so nothing is read twice;
    // a replayed event (same ID) is skipped; a new one is stored.
    produce(&p, &encode_audit(&[kill.clone(), exec.clone()])).await;
    let agg = Aggregator::open(config(&brokers, tmp.path())).unwrap();
    let store = agg.audit_store().unwrap();
    let app = agg.app();
    let stop = CancellationToken::new();
    let task = tokio::spawn(agg.run(stop.clone()));
    assert!(wait_until(Duration::from_secs(60), || store.head().0 >= 4).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store.head().0,
        4,
        "exactly kill, die, undecodable, exec_start"
    );
    let all = get_json(&app, "/api/v1/audit").await;
    assert_eq!(all["total"], 4, "{all}");
    let verify = get_json(&app, "/api/v1/audit/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["records"], 4, "{verify}");
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// With `[api]` tokens, the aggregator's whole API (query, audit, rollups, alerting) needs a
/// bearer token, `/healthz` excepted; each use lands in the audit trail under the token's
/// name, and the token itself never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_required_and_each_use_is_audited() {
    use sightline_aggregator::api_auth::ApiToken;
    use sightline_aggregator::notify::Secret;

    let mock = MockCluster::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&mock.bootstrap_servers(), dir.path());
    c.api.tokens = vec![ApiToken {
        name: "grafana".into(),
        token: Secret::new("s3cr3t-token-for-grafana"),
    }];
    let aggregator = Aggregator::open(c).unwrap();
    let store = aggregator.audit_store().unwrap();
    let app = aggregator.app();
    let call = |uri: &'static str, token: Option<&'static str>| {
        let app = app.clone();
        async move {
            let mut req = Request::get(uri);
            if let Some(t) = token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            app.oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(call("/healthz", None).await, StatusCode::OK);
    for uri in [
        "/api/v1/search?q=x",
        "/api/v1/audit",
        "/api/v1/rollups?metric=error_count",
    ] {
        assert_eq!(call(uri, None).await, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(
            call(uri, Some("not-the-token-at-all")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        call("/api/v1/search?q=x", Some("s3cr3t-token-for-grafana")).await,
        StatusCode::OK
    );
    assert_eq!(
        call("/api/v1/audit/verify", Some("s3cr3t-token-for-grafana")).await,
        StatusCode::OK
    );
    let q = sightline_aggregator::audit::AuditQuery {
        action: Some("api.request".into()),
        ..Default::default()
    };
    assert!(
        wait_until(Duration::from_secs(10), || store
            .query(&q)
            .is_ok_and(|p| p.total == 2))
        .await,
        "two audited token uses"
    );
    let page = store.query(&q).unwrap();
    let paths: Vec<&str> = page
        .events
        .iter()
        .map(|e| e.attributes["url.path"].as_str())
        .collect();
    assert_eq!(paths, ["/api/v1/audit/verify", "/api/v1/search"]);
    assert!(page.events.iter().all(|e| e.actor.name == "grafana"
        && e.actor.kind == "api_token"
        && e.outcome.as_deref() == Some("200")));
    let text = std::fs::read_dir(aggregator.config().audit_dir())
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap_or_default())
        .collect::<String>();
    assert!(!text.contains("s3cr3t"), "the token is not in the trail");
    drop((app, aggregator));
}
