//! The ECS provider against a real ECS API implementation: moto's server mode
//! (`pip install 'moto[server]'`). The test starts `moto_server` on a free port, creates a
//! cluster and a service through the AWS SDK, lets the controller scale it out from a
//! metric above target, and checks `DescribeServices`; then that the cooldown blocks a
//! second scale-out and `max_capacity` caps the next. Skipped (with a message) when
//! `moto_server` is missing, unless `SIGHTLINE_E2E_REQUIRED=1`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::ContainerDefinition;
use sightline_aggregator::alert::MemoryActionLog;
use sightline_aggregator::autoscale::{
    AutoscaleConfig, Controller, EcsConfig, EcsProvider, MetricSource, Outcome, PolicyConfig,
    ProviderKind, ScalingProvider, SkipReason, TargetTracking,
};
use sightline_aggregator::notify::Secret;
use sightline_aggregator::rules::ManualClock;

/// Kills and reaps moto at the end of the test, also on panic.
struct Moto(Child);
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> Option<(Moto, String)> {
    let required = std::env::var("SIGHTLINE_E2E_REQUIRED").is_ok_and(|v| v == "1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        // New services report this many running tasks (moto's knob); UpdateService sets
        // running = desired.
        .env("MOTO_ECS_SERVICE_RUNNING", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            let why = format!("moto_server not runnable ({e}); pip install 'moto[server]'");
            if required {
                panic!("{why} (SIGHTLINE_E2E_REQUIRED=1)");
            }
            eprintln!("SKIPPED: {why}; set SIGHTLINE_E2E_REQUIRED=1 to make this a failure");
            return None;
        }
    };
    let moto = Moto(child);
    // Readiness: the port accepts connections (moto imports for a few seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start listening"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((moto, format!("http://127.0.0.1:{port}")))
}

struct Metric(Mutex<f64>);
impl MetricSource for Metric {
    fn metric(&self, _p: &PolicyConfig, _now: i64) -> Option<f64> {
        Some(*self.0.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_service_scales_out_with_cooldown_and_max() {
    let Some((_moto, endpoint)) = start_moto() else {
        return;
    };
    let ecs = EcsConfig {
        cluster: "prod".into(),
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint),
        access_key_id: Some("testing".into()),
        secret_access_key: Some(Secret::new("testing")),
    };
    let provider = EcsProvider::from_config(&ecs).await;
    let client = provider.client().clone();
    client
        .create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .unwrap();
    client
        .register_task_definition()
        .family("checkout")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("nginx:alpine")
                .memory(128)
                .build(),
        )
        .send()
        .await
        .unwrap();
    client
        .create_service()
        .cluster("prod")
        .service_name("checkout")
        .task_definition("checkout")
        .desired_count(2)
        .send()
        .await
        .unwrap();

    let cfg = AutoscaleConfig {
        interval: 15_000,
        history_limit: 10,
        alert_timeout: 300_000,
        ecs: Some(ecs),
        policies: vec![PolicyConfig {
            name: "checkout-cpu".into(),
            service: "checkout".into(),
            provider: ProviderKind::Ecs,
            min_capacity: 1,
            max_capacity: 6,
            scale_out_cooldown: 300_000,
            scale_in_cooldown: 300_000,
            scale_in_stabilization: 300_000,
            dry_run: false,
            target_tracking: Some(TargetTracking {
                metric: "cpu_utilization".into(),
                target_value: 80.0,
                tolerance: 0.1,
                disable_scale_in: false,
            }),
            step_scaling: None,
        }],
        ..Default::default()
    };
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let metric = Arc::new(Metric(Mutex::new(160.0)));
    let log = Arc::new(MemoryActionLog::default());
    let providers: BTreeMap<ProviderKind, Arc<dyn ScalingProvider>> = BTreeMap::from([(
        ProviderKind::Ecs,
        Arc::new(provider) as Arc<dyn ScalingProvider>,
    )]);
    let c = Controller::new(cfg, providers, metric.clone(), log.clone(), clock.clone()).unwrap();

    let described = || async {
        let out = client
            .describe_services()
            .cluster("prod")
            .services("checkout")
            .send()
            .await
            .unwrap();
        let s = &out.services()[0];
        (s.desired_count(), s.running_count())
    };
    assert_eq!(described().await, (2, 2));

    // 160 vs target 80 from 2 running: 4.
    let d = c.evaluate().await.remove(0);
    assert_eq!((d.outcome, d.desired), (Outcome::Updated, Some(4)), "{d:?}");
    assert_eq!((d.current_desired, d.current_running), (Some(2), Some(2)));
    assert_eq!(described().await.0, 4);

    // A minute later, still hot: the scale-out cooldown holds it.
    clock.advance_ms(60_000);
    let d = c.evaluate().await.remove(0);
    assert_eq!(d.skip_reason, Some(SkipReason::ScaleOutCooldown), "{d:?}");
    assert_eq!(described().await.0, 4);

    // After the cooldown, much hotter: ceil(4 × 5) = 20, capped at max_capacity 6.
    clock.advance_ms(300_000);
    *metric.0.lock().unwrap() = 400.0;
    let d = c.evaluate().await.remove(0);
    assert_eq!((d.outcome, d.desired), (Outcome::Updated, Some(6)), "{d:?}");
    assert_eq!(described().await.0, 6);

    let actions: Vec<_> = log
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.action.clone())
        .collect();
    assert_eq!(
        actions,
        vec![
            "scaling.update_desired_count",
            "scaling.skipped",
            "scaling.update_desired_count"
        ]
    );
}
