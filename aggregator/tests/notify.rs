//! On-call notifications end to end: a real local HTTP server (axum on 127.0.0.1:0)
//! records what the notifier POSTs; time is a manual clock (no sleeping).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use sightline_aggregator::alert::{Alert, AlertStatus, LogSample, MemoryActionLog};
use sightline_aggregator::notify::pagerduty::dedup_key;
use sightline_aggregator::notify::{Clock, ManualClock, Notifier, NotifyConfig};

/// 2026-11-21T05:00:00Z in ms.
const T0: i64 = 1_795_237_200_000;

/// A scripted reply: HTTP status and `Retry-After`.
type Reply = (u16, Option<&'static str>);

#[derive(Default)]
struct Hooks {
    /// (path, body) of every request, in order.
    received: Mutex<Vec<(String, Value)>>,
    /// Scripted (status, Retry-After) per path; 200 when empty.
    script: Mutex<BTreeMap<String, VecDeque<Reply>>>,
}

impl Hooks {
    fn script(&self, path: &str, replies: &[Reply]) {
        self.script
            .lock()
            .unwrap()
            .insert(format!("/{path}"), replies.iter().copied().collect());
    }
    fn bodies(&self, path: &str) -> Vec<Value> {
        let want = format!("/{path}");
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| *p == want)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

async fn record(
    State(hooks): State<Arc<Hooks>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let path = format!("/{path}");
    assert_eq!(headers["content-type"], "application/json");
    let value: Value = serde_json::from_str(&body).expect("JSON body");
    hooks.received.lock().unwrap().push((path.clone(), value));
    let reply = hooks
        .script
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let (status, retry_after) = reply.unwrap_or((200, None));
    let mut out = HeaderMap::new();
    if let Some(r) = retry_after {
        out.insert("retry-after", r.parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), out, "reply")
}

async fn server() -> (String, Arc<Hooks>) {
    let hooks = Arc::new(Hooks::default());
    let app = Router::new()
        .route("/{*path}", post(record))
        .with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hooks)
}

fn config(base: &str, extra_receiver: &str) -> NotifyConfig {
    let text = format!(
        r##"
        external_url = "https://sightline.example.com"
        [route]
        receiver = "ops"
        group_by = ["alertname", "service"]
        [[receivers]]
        name = "ops"
        {extra_receiver}
        "##
    )
    .replace("BASE", base);
    let c: NotifyConfig = toml::from_str(&text).unwrap();
    c.validate().unwrap();
    c
}

fn alert(name: &str, instance: &str, status: AlertStatus) -> Alert {
    Alert {
        labels: [
            ("alertname", name),
            ("service", "checkout"),
            ("cluster", "prod"),
            ("instance", instance),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        annotations: [("summary".to_string(), "CPU above 90%".to_string())].into(),
        status,
        starts_at_ms: T0,
        ends_at_ms: (status == AlertStatus::Resolved).then_some(T0 + 120_000),
        value: 97.5,
        generator_url: "https://sightline.example.com/rules/HighCpu".into(),
        samples: vec![LogSample {
            time_ns: 1_795_237_199_500_000_000,
            service: "checkout".into(),
            correlation_id: Some("req-42".into()),
            message: "upstream timeout after 30s".into(),
        }],
    }
}

struct Rig {
    notifier: Notifier,
    clock: Arc<ManualClock>,
    log: Arc<MemoryActionLog>,
    hooks: Arc<Hooks>,
}

async fn rig(receiver_toml: &str) -> Rig {
    let (base, hooks) = server().await;
    let clock = Arc::new(ManualClock::auto_advancing(T0));
    let log = Arc::new(MemoryActionLog::default());
    let notifier = Notifier::new(config(&base, receiver_toml), log.clone(), clock.clone()).unwrap();
    Rig {
        notifier,
        clock,
        log,
        hooks,
    }
}

impl Rig {
    /// Ingests at now, then moves the clock by `after` and flushes.
    async fn step(&mut self, alerts: Vec<Alert>, after: Duration) -> usize {
        self.notifier.ingest(alerts);
        self.clock.advance(after);
        self.notifier.flush_due().await
    }
    fn outcomes(&self) -> Vec<String> {
        self.log
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.outcome.clone().unwrap())
            .collect()
    }
}

const GROUP_KEY: &str = "{}:{alertname=\"HighCpu\", service=\"checkout\"}";

#[tokio::test]
async fn webhook_v4_payload_for_a_firing_group_then_its_resolution() {
    let mut r = rig("[[receivers.webhook_configs]]\nurl = \"BASE/hook\"").await;
    let firing = vec![
        alert("HighCpu", "a", AlertStatus::Firing),
        alert("HighCpu", "b", AlertStatus::Firing),
    ];
    assert_eq!(
        r.step(firing.clone(), Duration::from_secs(29)).await,
        0,
        "group_wait"
    );
    assert_eq!(r.step(vec![], Duration::from_secs(1)).await, 1);
    let bodies = r.hooks.bodies("hook");
    assert_eq!(
        bodies.len(),
        1,
        "two alerts of one service in one notification"
    );
    let fp = |i: &str| {
        sightline_aggregator::alert::fingerprint(&alert("HighCpu", i, AlertStatus::Firing).labels)
    };
    let expected_alert = |i: &str| {
        json!({
            "status": "firing",
            "labels": {"alertname": "HighCpu", "cluster": "prod", "instance": i, "service": "checkout"},
            "annotations": {"summary": "CPU above 90%"},
            "startsAt": "2026-11-21T05:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://sightline.example.com/rules/HighCpu",
            "fingerprint": fp(i),
            "value": 97.5,
            "samples": [{
                "time": "2026-11-21T04:59:59.5Z",
                "service": "checkout",
                "correlationId": "req-42",
                "correlationURL": "https://sightline.example.com/api/v1/correlations/req-42",
                "message": "upstream timeout after 30s",
            }],
        })
    };
    assert_eq!(
        bodies[0],
        json!({
            "receiver": "ops",
            "status": "firing",
            "alerts": [expected_alert("a"), expected_alert("b")],
            "groupLabels": {"alertname": "HighCpu", "service": "checkout"},
            "commonLabels": {"alertname": "HighCpu", "cluster": "prod", "service": "checkout"},
            "commonAnnotations": {"summary": "CPU above 90%"},
            "externalURL": "https://sightline.example.com",
            "version": "4",
            "groupKey": GROUP_KEY,
            "truncatedAlerts": 0,
        })
    );

    // Both resolve: one resolved notification at the next group_interval, then the group
    // is gone.
    let resolved = vec![
        alert("HighCpu", "a", AlertStatus::Resolved),
        alert("HighCpu", "b", AlertStatus::Resolved),
    ];
    assert_eq!(r.step(resolved, Duration::from_secs(300)).await, 1);
    let bodies = r.hooks.bodies("hook");
    assert_eq!(bodies.len(), 2);
    let b = &bodies[1];
    assert_eq!(b["status"], "resolved");
    assert_eq!(b["groupKey"], GROUP_KEY);
    for a in b["alerts"].as_array().unwrap() {
        assert_eq!(a["status"], "resolved");
        assert_eq!(a["endsAt"], "2026-11-21T05:02:00Z");
        assert_eq!(a["samples"], json!([]));
    }
    assert_eq!(r.notifier.dispatcher().group_count(), 0);

    // Audit: one record per delivery, with receiver, group key, count and status.
    let events = r.log.0.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    let e = &events[0];
    assert_eq!(e.action, "alert.notify");
    assert_eq!(e.actor.kind, "sightline");
    assert_eq!(e.outcome.as_deref(), Some("200"));
    assert_eq!(e.resource.service, "checkout");
    assert_eq!(e.attributes["receiver"], "ops");
    assert_eq!(e.attributes["group_key"], GROUP_KEY);
    assert_eq!(e.attributes["alert_count"], "2");
    assert_eq!(e.attributes["integration"], "webhook[0]");
    assert_eq!(e.time_ns, (T0 as u64 + 30_000) * 1_000_000);
}

#[tokio::test]
async fn an_alert_resolved_within_group_wait_is_never_sent() {
    let mut r = rig("[[receivers.webhook_configs]]\nurl = \"BASE/hook\"").await;
    r.step(
        vec![alert("HighCpu", "a", AlertStatus::Firing)],
        Duration::from_secs(10),
    )
    .await;
    r.step(
        vec![alert("HighCpu", "a", AlertStatus::Resolved)],
        Duration::from_secs(20),
    )
    .await;
    r.step(vec![], Duration::from_secs(600)).await;
    assert!(r.hooks.bodies("hook").is_empty());
    assert!(r.log.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn webhook_max_alerts_truncates() {
    let mut r = rig("[[receivers.webhook_configs]]\nurl = \"BASE/hook\"\nmax_alerts = 1").await;
    let firing = vec![
        alert("HighCpu", "a", AlertStatus::Firing),
        alert("HighCpu", "b", AlertStatus::Firing),
    ];
    r.step(firing, Duration::from_secs(30)).await;
    let b = &r.hooks.bodies("hook")[0];
    assert_eq!(b["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(b["truncatedAlerts"], 1);
}

#[tokio::test]
async fn pagerduty_trigger_then_resolve_with_the_same_dedup_key() {
    let mut r = rig(
        "[[receivers.pagerduty_configs]]\nrouting_key = \"0123456789abcdef0123456789abcdef\"\nurl = \"BASE/v2/enqueue\"\nseverity = \"critical\"",
    )
    .await;
    r.step(
        vec![alert("HighCpu", "a", AlertStatus::Firing)],
        Duration::from_secs(30),
    )
    .await;
    r.step(
        vec![alert("HighCpu", "a", AlertStatus::Resolved)],
        Duration::from_secs(300),
    )
    .await;
    let bodies = r.hooks.bodies("v2/enqueue");
    assert_eq!(bodies.len(), 2);
    let (t, res) = (&bodies[0], &bodies[1]);
    let key = dedup_key(GROUP_KEY);
    assert_eq!(key.len(), 64, "SHA-256 hex of the group key");
    assert_eq!(t["routing_key"], "0123456789abcdef0123456789abcdef");
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(t["dedup_key"], key.as_str());
    assert_eq!(t["client"], "Sightline");
    assert_eq!(t["client_url"], "https://sightline.example.com");
    let p = &t["payload"];
    assert_eq!(p["summary"], "[FIRING:1] HighCpu checkout (prod a)");
    assert_eq!(p["source"], "checkout");
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["class"], "HighCpu");
    assert_eq!(p["timestamp"], "2026-11-21T05:00:00Z");
    assert_eq!(p["custom_details"]["num_firing"], "1");
    let a = &p["custom_details"]["alerts"][0];
    assert_eq!(a["labels"]["instance"], "a");
    assert_eq!(a["samples"][0]["correlationId"], "req-42");
    assert_eq!(
        t["links"],
        json!([{"href": "https://sightline.example.com/api/v1/correlations/req-42", "text": "Correlation req-42"}])
    );
    assert_eq!(res["event_action"], "resolve");
    assert_eq!(res["dedup_key"], key.as_str());
    assert!(res.get("payload").is_none());
}

#[tokio::test]
async fn slack_message_has_text_blocks_samples_and_links() {
    let mut r =
        rig("[[receivers.slack_configs]]\napi_url = \"BASE/services/T/B/X\"\nchannel = \"#ops\"")
            .await;
    r.step(
        vec![alert("HighCpu", "a", AlertStatus::Firing)],
        Duration::from_secs(30),
    )
    .await;
    let bodies = r.hooks.bodies("services/T/B/X");
    assert_eq!(bodies.len(), 1);
    let b = &bodies[0];
    assert_eq!(b["channel"], "#ops");
    assert_eq!(b["text"], "[FIRING:1] HighCpu checkout (prod a)");
    let blocks = b["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        "[FIRING:1] HighCpu checkout (prod a)"
    );
    assert_eq!(
        blocks[1]["text"]["text"],
        ":red_circle: *HighCpu* — CPU above 90%\n`cluster=prod` `instance=a` `service=checkout`\n<https://sightline.example.com/rules/HighCpu|Rule>"
    );
    assert_eq!(
        blocks[2]["text"]["text"],
        "*Log samples*\n`checkout` upstream timeout after 30s <https://sightline.example.com/api/v1/correlations/req-42|req-42>"
    );
    // send_resolved defaults to false for Slack: no resolution message.
    r.step(
        vec![alert("HighCpu", "a", AlertStatus::Resolved)],
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(r.hooks.bodies("services/T/B/X").len(), 1);
    assert_eq!(r.notifier.dispatcher().group_count(), 0);
}

#[tokio::test]
async fn a_500_is_retried_with_backoff_and_every_attempt_audited() {
    let mut r = rig("[[receivers.webhook_configs]]\nurl = \"BASE/hook\"").await;
    r.hooks.script("hook", &[(500, None), (503, None)]);
    assert_eq!(
        r.step(
            vec![alert("HighCpu", "a", AlertStatus::Firing)],
            Duration::from_secs(30)
        )
        .await,
        1
    );
    assert_eq!(r.hooks.bodies("hook").len(), 3);
    assert_eq!(
        r.clock.sleeps(),
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
    assert_eq!(r.outcomes(), ["500", "503", "200"]);
    let attempts: Vec<String> = r
        .log
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.attributes["attempt"].clone())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
}

#[tokio::test]
async fn a_400_is_not_retried_and_the_group_tries_again_at_the_next_interval() {
    let mut r = rig("[[receivers.webhook_configs]]\nurl = \"BASE/hook\"").await;
    r.hooks.script("hook", &[(400, None)]);
    let firing = vec![alert("HighCpu", "a", AlertStatus::Firing)];
    assert_eq!(r.step(firing.clone(), Duration::from_secs(30)).await, 0);
    assert_eq!(r.hooks.bodies("hook").len(), 1);
    assert!(r.clock.sleeps().is_empty());
    assert_eq!(r.outcomes(), ["400"]);
    // Not logged as notified: the next flush (the rules re-sending meanwhile) sends it
    // again.
    assert_eq!(r.step(firing.clone(), Duration::from_secs(299)).await, 0);
    assert_eq!(r.step(firing, Duration::from_secs(1)).await, 1);
    assert_eq!(r.outcomes(), ["400", "200"]);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let mut r = rig("[[receivers.webhook_configs]]\nurl = \"BASE/hook\"").await;
    r.hooks.script("hook", &[(429, Some("7"))]);
    assert_eq!(
        r.step(
            vec![alert("HighCpu", "a", AlertStatus::Firing)],
            Duration::from_secs(30)
        )
        .await,
        1
    );
    assert_eq!(r.clock.sleeps(), [Duration::from_secs(7)]);
    assert_eq!(r.outcomes(), ["429", "200"]);
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit_and_network_errors_are_audited() {
    // A closed port: connection refused on every attempt.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let clock = Arc::new(ManualClock::auto_advancing(T0));
    let log = Arc::new(MemoryActionLog::default());
    let cfg = config(
        &closed,
        "[[receivers.webhook_configs]]\nurl = \"BASE/hook\"",
    );
    let mut n = Notifier::new(cfg, log.clone(), clock.clone()).unwrap();
    n.ingest(vec![alert("HighCpu", "a", AlertStatus::Firing)]);
    clock.advance(Duration::from_secs(30));
    assert_eq!(n.flush_due().await, 0);
    let events = log.0.lock().unwrap().clone();
    // Default policy: 6 attempts (1+2+4+8+16 s of backoff, within group_interval).
    assert_eq!(events.len(), 6);
    assert!(events
        .iter()
        .all(|e| e.outcome.as_deref().unwrap().starts_with("error: ")));
    assert_eq!(clock.sleeps().len(), 5);
}

#[tokio::test]
async fn run_loop_delivers_batches_from_the_channel() {
    let (base, hooks) = server().await;
    let clock = Arc::new(ManualClock::new(T0));
    let log = Arc::new(MemoryActionLog::default());
    let cfg = config(&base, "[[receivers.webhook_configs]]\nurl = \"BASE/hook\"");
    let notifier = Notifier::new(cfg, log.clone(), clock.clone()).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(notifier.run(rx, shutdown.clone()));
    tx.send(vec![
        alert("HighCpu", "a", AlertStatus::Firing),
        alert("HighCpu", "b", AlertStatus::Firing),
    ])
    .await
    .unwrap();
    // Move time in 1 s steps until the notification arrives (bounded).
    for _ in 0..200 {
        if !hooks.bodies("hook").is_empty() {
            break;
        }
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bodies = hooks.bodies("hook");
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["alerts"].as_array().unwrap().len(), 2);
    assert!(clock.now_ms() >= T0 + 30_000, "not before group_wait");
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(log.0.lock().unwrap().len(), 1);
}
