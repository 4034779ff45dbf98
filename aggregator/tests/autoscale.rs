//! The webhook provider against a real local HTTP server (axum): the exact JSON body,
//! retries on 5xx and 429, no retry on other 4xx, and the status endpoint as baseline.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sightline_aggregator::alert::MemoryActionLog;
use sightline_aggregator::autoscale::{
    AutoscaleConfig, Controller, MetricSource, Outcome, PolicyConfig, ProviderKind,
    ScalingProvider, TargetTracking, WebhookConfig, WebhookProvider,
};
use sightline_aggregator::notify::{RetryPolicy, Secret};
use sightline_aggregator::rules::ManualClock;

#[derive(Default)]
struct Hook {
    bodies: Mutex<Vec<Value>>,
    statuses: Mutex<VecDeque<u16>>,
    status_queries: Mutex<Vec<String>>,
}

async fn scale(State(h): State<Arc<Hook>>, Json(body): Json<Value>) -> StatusCode {
    h.bodies.lock().unwrap().push(body);
    let code = h.statuses.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

async fn status(
    State(h): State<Arc<Hook>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Json<Value> {
    h.status_queries
        .lock()
        .unwrap()
        .push(q.get("service").cloned().unwrap_or_default());
    Json(json!({"desired_count": 3, "running_count": 2}))
}

async fn serve(h: Arc<Hook>) -> String {
    let app = Router::new()
        .route("/scale", post(scale))
        .route("/status", get(status))
        .with_state(h);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

struct Fixed(f64);
impl MetricSource for Fixed {
    fn metric(&self, _p: &PolicyConfig, _now: i64) -> Option<f64> {
        Some(self.0)
    }
}

fn config(base: &str) -> AutoscaleConfig {
    AutoscaleConfig {
        interval: 15_000,
        history_limit: 10,
        alert_timeout: 300_000,
        webhook: Some(WebhookConfig {
            url: Secret::new(format!("{base}/scale")),
            status_url: Some(Secret::new(format!("{base}/status"))),
            timeout: 5_000,
            max_attempts: 3,
        }),
        policies: vec![PolicyConfig {
            name: "checkout-cpu".into(),
            service: "checkout".into(),
            provider: ProviderKind::Webhook,
            min_capacity: 1,
            max_capacity: 10,
            scale_out_cooldown: 300_000,
            scale_in_cooldown: 300_000,
            scale_in_stabilization: 300_000,
            dry_run: false,
            target_tracking: Some(TargetTracking {
                metric: "cpu_utilization".into(),
                target_value: 70.0,
                tolerance: 0.1,
                disable_scale_in: false,
            }),
            step_scaling: None,
        }],
        ..Default::default()
    }
}

fn controller(cfg: AutoscaleConfig, metric: f64) -> (Controller, Arc<MemoryActionLog>) {
    let retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        request_timeout: Duration::from_secs(5),
    };
    let provider = WebhookProvider::with_retry(cfg.webhook.as_ref().unwrap(), retry).unwrap();
    let providers: BTreeMap<ProviderKind, Arc<dyn ScalingProvider>> = BTreeMap::from([(
        ProviderKind::Webhook,
        Arc::new(provider) as Arc<dyn ScalingProvider>,
    )]);
    let log = Arc::new(MemoryActionLog::default());
    let c = Controller::new(
        cfg,
        providers,
        Arc::new(Fixed(metric)),
        log.clone(),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    )
    .unwrap();
    (c, log)
}

#[tokio::test]
async fn webhook_receives_the_exact_body_and_retries_5xx_and_429() {
    let hook = Arc::new(Hook::default());
    hook.statuses.lock().unwrap().extend([503, 429]);
    let base = serve(hook.clone()).await;
    // Running 2 (from the status endpoint), 140 % vs 70: ceil(2 × 2) = 4.
    let (c, log) = controller(config(&base), 140.0);
    let d = c.evaluate().await;
    assert_eq!(d[0].outcome, Outcome::Updated, "{:?}", d[0]);
    assert_eq!(d[0].current_desired, Some(3));
    let expected = json!({
        "version": "1",
        "service": "checkout",
        "policy": "checkout-cpu",
        "current": 3,
        "running": 2,
        "desired": 4,
        "reason": "cpu_utilization = 140 vs target 70: desired 3 (running 2) -> 4",
    });
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies, vec![expected.clone(), expected.clone(), expected]);
    assert_eq!(*hook.status_queries.lock().unwrap(), vec!["checkout"]);
    let log = log.0.lock().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].action, "scaling.update_desired_count");
    assert_eq!(log[0].outcome.as_deref(), Some("updated"));
    assert!(
        !format!("{:?}", log[0]).contains(&base),
        "URL must not be logged"
    );
}

#[tokio::test]
async fn webhook_does_not_retry_other_4xx_and_gives_up_on_5xx() {
    let hook = Arc::new(Hook::default());
    hook.statuses.lock().unwrap().extend([400, 500, 500, 500]);
    let base = serve(hook.clone()).await;
    let (c, log) = controller(config(&base), 140.0);
    let d = c.evaluate().await.remove(0);
    assert_eq!(d.outcome, Outcome::Failed);
    assert!(d.reason.contains("rejected with HTTP 400"), "{}", d.reason);
    assert_eq!(hook.bodies.lock().unwrap().len(), 1);
    // A failed call starts no cooldown: the next evaluation tries again, 3 attempts.
    let d = c.evaluate().await.remove(0);
    assert_eq!(d.outcome, Outcome::Failed);
    assert!(
        d.reason.contains("gave up after 3 attempts"),
        "{}",
        d.reason
    );
    assert_eq!(hook.bodies.lock().unwrap().len(), 4);
    let outcomes: Vec<_> = log
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.outcome.clone())
        .collect();
    assert_eq!(outcomes, vec![Some("failed".into()), Some("failed".into())]);
}
