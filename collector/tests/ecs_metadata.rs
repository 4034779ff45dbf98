//! The ECS task metadata source against a local HTTP server that serves AWS's documented v4
//! `/task` and `/task/stats` examples (fixtures/ecs_metadata/README.md gives the sources and
//! what was derived). Every expected value is computed here from the fixture numbers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sightline_collector::sources::ecs_metadata::client::parse_task_stats;
use sightline_collector::sources::ecs_metadata::{
    container_insights, run, task_identity, EcsMetadataConfig, TaskIdentity, TaskMetadata,
};
use sightline_model::metric::{ecs_names, names};
use sightline_model::{
    decode_metrics, encode_metrics, Container, MetricBatch, MetricPoint, SourceKind,
};
use tokio::sync::{mpsc, watch};

const PAUSE_ID: &str = "598cba581fe3f939459eaba1e071d5c93bb2c49b7d1ba7db6bb19deeb70d8e38";
const CURL_ID: &str = "ee08638adaaf009d78c248913f629e38299471d45fe7dc944d1039077e3424ca";
const TASK_ARN: &str =
    "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c";
const WAIT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/ecs_metadata/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

/// A stats fixture with AWS's stats keys mapped onto the `/task` example's DockerIds.
fn stats_fixture(name: &str) -> String {
    fixture(name)
        .replace(
            "01999f2e5c6cf4df3873f28950e6278813408f281c54778efec860d0caad4854",
            PAUSE_ID,
        )
        .replace(
            "5fc21e5b015f899d22618f8aede80b6d70d71b2a75465ea49d9462c8f3d2d3af",
            CURL_ID,
        )
}

struct Endpoint {
    /// `/task/stats` answers, in order; the last one repeats.
    stats: Vec<(StatusCode, String)>,
    stats_calls: AtomicUsize,
    task_calls: AtomicUsize,
}

async fn task(State(s): State<Arc<Endpoint>>) -> (StatusCode, String) {
    s.task_calls.fetch_add(1, Ordering::SeqCst);
    (StatusCode::OK, fixture("task.json"))
}

async fn task_stats(State(s): State<Arc<Endpoint>>) -> (StatusCode, String) {
    let n = s.stats_calls.fetch_add(1, Ordering::SeqCst);
    s.stats[n.min(s.stats.len() - 1)].clone()
}

/// Serves the endpoint on 127.0.0.1; returns its base URL.
async fn serve(ep: Arc<Endpoint>) -> String {
    let app = Router::new()
        .route("/v4/abc/task", get(task))
        .route("/v4/abc/task/stats", get(task_stats))
        .with_state(ep);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v4/abc")
}

fn config(endpoint: String) -> EcsMetadataConfig {
    EcsMetadataConfig {
        enabled: Some(true),
        endpoint: Some(endpoint),
        interval_ms: 50,
        timeout_ms: 2000,
    }
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn task_attrs() -> BTreeMap<String, String> {
    attrs(&[
        ("aws.ecs.cluster.name", "default"),
        ("aws.ecs.task.arn", TASK_ARN),
        ("aws.ecs.task.family", "curltest"),
        ("aws.ecs.task.revision", "26"),
        ("aws.ecs.launchtype", "ec2"),
        ("cloud.availability_zone", "us-west-2d"),
    ])
}

fn curl_container() -> Container {
    Container {
        id: CURL_ID.into(),
        name: "ecs-curltest-26-curl-a0e7dba5aca6d8cb2e00".into(),
        image: "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest".into(),
        labels: attrs(&[
            ("com.amazonaws.ecs.cluster", "default"),
            ("com.amazonaws.ecs.container-name", "curl"),
            ("com.amazonaws.ecs.task-arn", TASK_ARN),
            ("com.amazonaws.ecs.task-definition-family", "curltest"),
            ("com.amazonaws.ecs.task-definition-version", "26"),
        ]),
    }
}

fn g(name: &str, unit: &str, v: f64) -> MetricPoint {
    MetricPoint::gauge(name, unit, v)
}

fn s(name: &str, unit: &str, v: f64) -> MetricPoint {
    MetricPoint::sum(name, unit, v)
}

/// Checks the task batch and the curl batch of one poll (the pause container, `CNI_PAUSE`,
/// only counts towards the task).
fn check_poll(
    batches: &[MetricBatch],
    task_points: Vec<MetricPoint>,
    curl: (u64, Vec<MetricPoint>),
) {
    assert_eq!(batches.len(), 2, "{batches:#?}");
    let t = &batches[0];
    assert_eq!(t.resource.host, "host-1");
    assert_eq!(t.resource.service, "curltest"); // no ServiceName: the Family
    assert_eq!(t.resource.source_kind, SourceKind::EcsTaskMetadata);
    assert_eq!(t.resource.container, None);
    assert_eq!(t.resource_attributes, task_attrs());
    // Earliest StartedAt of the containers with stats: the pause container's.
    assert_eq!(t.start_ns, 1_601_599_386_076_707_576);
    assert_eq!(t.points, task_points);

    let c = &batches[1];
    assert_eq!(c.resource.service, "curltest");
    assert_eq!(c.resource.source_kind, SourceKind::EcsTaskMetadata);
    assert_eq!(c.resource.container.as_deref(), Some(&curl_container()));
    // Task ARN, family, revision come from the labels; the container ARN is added.
    assert_eq!(
        c.resource_attributes,
        attrs(&[
            ("aws.ecs.cluster.name", "default"),
            ("aws.ecs.launchtype", "ec2"),
            ("cloud.availability_zone", "us-west-2d"),
            (
                "aws.ecs.container.arn",
                "arn:aws:ecs:us-west-2:111122223333:container/abb51bdd-11b4-467f-8f6c-adcfe1fe059d"
            ),
        ])
    );
    assert_eq!(c.time_ns, curl.0);
    assert_eq!(c.start_ns, 1_601_599_386_767_535_449);
    assert_eq!(c.points, curl.1);

    // Through OTLP and back: same resources, no attribute duplicated or lost.
    let back = decode_metrics(&encode_metrics(batches)).unwrap();
    assert_eq!(back[0], batches[0]);
    assert_eq!(back[1].resource, batches[1].resource);
    assert_eq!(back[1].resource_attributes, batches[1].resource_attributes);
    assert_eq!(back[1].points.len(), batches[1].points.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_documented_responses_and_survives_errors() {
    let ep = Arc::new(Endpoint {
        stats: vec![
            (StatusCode::INTERNAL_SERVER_ERROR, "agent not ready".into()),
            (StatusCode::OK, "garbage{".into()),
            (StatusCode::OK, stats_fixture("task_stats.json")),
            (StatusCode::OK, stats_fixture("task_stats_2.json")),
        ],
        stats_calls: AtomicUsize::new(0),
        task_calls: AtomicUsize::new(0),
    });
    let url = serve(ep.clone()).await;
    let (tx, mut rx) = mpsc::channel(4);
    let (stop, shutdown) = watch::channel(false);
    let handle = tokio::spawn(run(config(url), "host-1".into(), tx, shutdown));

    // Poll with the AWS example: CPU against the agent's precpu_stats.
    let first = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        ep.stats_calls.load(Ordering::SeqCst) >= 3,
        "the 500 and the garbage were retried"
    );
    assert!(!handle.is_finished());
    assert_eq!(first[0].time_ns, 1_601_599_892_514_677_030); // latest `read` (pause)
                                                             // pause: total_usage unchanged (0); curl: 379075681 - 378825197 over
                                                             // 13977800000000 - 13975800000000 on 2 CPUs.
    let curl_cpus = 250_484.0 / 2_000_000_000.0 * 2.0;
    check_poll(
        &first,
        vec![
            g(
                ecs_names::CPU_UTILIZED,
                "{cpu_units}",
                (0.0 + curl_cpus) * 1024.0,
            ),
            g(ecs_names::CPU_RESERVED, "{cpu_units}", 0.0 + 10.0), // no task Limits: Σ containers
            g(
                ecs_names::MEMORY_UTILIZED,
                "MiBy",
                (532_480 + 1_814_528) as f64 / 1_048_576.0,
            ),
            g(ecs_names::MEMORY_RESERVED, "MiBy", 0.0 + 128.0),
            g(ecs_names::NETWORK_RX_BYTES, "By/s", 0.0), // network_rate_stats
            g(ecs_names::NETWORK_TX_BYTES, "By/s", 0.0),
            s(ecs_names::STORAGE_READ_BYTES, "By", 0.0),
            s(ecs_names::STORAGE_WRITE_BYTES, "By", 0.0),
        ],
        (
            1_601_599_892_512_771_349,
            vec![
                g(names::CPU_UTILIZATION, "%", curl_cpus * 100.0),
                s(names::CPU_USAGE_TOTAL, "ns", 379_075_681.0),
                g(names::CPU_SHARES, "1", 10.0),
                g(names::MEMORY_USAGE_TOTAL, "By", 1_814_528.0),
                g(names::MEMORY_USAGE_LIMIT, "By", 134_217_728.0),
                g(
                    names::MEMORY_PERCENT,
                    "%",
                    1_814_528.0 / 134_217_728.0 * 100.0,
                ),
                s(names::NETWORK_RX_BYTES, "By", 84.0),
                s(names::NETWORK_TX_BYTES, "By", 84.0),
                s(names::BLOCKIO_READ_BYTES, "By", 0.0),
                s(names::BLOCKIO_WRITE_BYTES, "By", 0.0),
                g(names::PIDS_COUNT, "{pids}", 3.0),
            ],
        ),
    );
    assert!((first[0].value(ecs_names::CPU_UTILIZED).unwrap() - 0.256_495_616).abs() < 1e-12);

    // Second poll, 10 s later: CPU against the first poll (not the new precpu_stats).
    let second = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second[0].time_ns, 1_601_599_902_514_677_030);
    let pause_cpus = 1_000_000.0 / 20_000_000_000.0 * 2.0;
    let curl_cpus = 500_000_000.0 / 20_000_000_000.0 * 2.0;
    let curl_used = 2_863_104u64 - 524_288; // usage - total_inactive_file
    check_poll(
        &second,
        vec![
            g(
                ecs_names::CPU_UTILIZED,
                "{cpu_units}",
                (pause_cpus + curl_cpus) * 1024.0,
            ),
            g(ecs_names::CPU_RESERVED, "{cpu_units}", 10.0),
            g(
                ecs_names::MEMORY_UTILIZED,
                "MiBy",
                (532_480 + curl_used) as f64 / 1_048_576.0,
            ),
            g(ecs_names::MEMORY_RESERVED, "MiBy", 128.0),
            // No network_rate_stats: (20564 - 84) / 10 s and (10324 - 84) / 10 s, once for
            // the shared awsvpc interface (the largest container value, not the sum).
            g(ecs_names::NETWORK_RX_BYTES, "By/s", 2048.0),
            g(ecs_names::NETWORK_TX_BYTES, "By/s", 1024.0),
            // curl's cgroup v1 entries: Read 4096, Write 8192 (Sync/Async/Total ignored).
            s(ecs_names::STORAGE_READ_BYTES, "By", 4096.0),
            s(ecs_names::STORAGE_WRITE_BYTES, "By", 8192.0),
        ],
        (
            1_601_599_902_512_771_349,
            vec![
                g(names::CPU_UTILIZATION, "%", curl_cpus * 100.0),
                s(names::CPU_USAGE_TOTAL, "ns", 879_075_681.0),
                g(names::CPU_SHARES, "1", 10.0),
                g(names::MEMORY_USAGE_TOTAL, "By", curl_used as f64),
                g(names::MEMORY_USAGE_LIMIT, "By", 134_217_728.0),
                g(
                    names::MEMORY_PERCENT,
                    "%",
                    curl_used as f64 / 134_217_728.0 * 100.0,
                ),
                s(names::NETWORK_RX_BYTES, "By", 20564.0),
                s(names::NETWORK_TX_BYTES, "By", 10324.0),
                s(names::BLOCKIO_READ_BYTES, "By", 4096.0),
                s(names::BLOCKIO_WRITE_BYTES, "By", 8192.0),
                g(names::PIDS_COUNT, "{pids}", 4.0),
            ],
        ),
    );
    assert!((second[0].value(ecs_names::CPU_UTILIZED).unwrap() - 51.3024).abs() < 1e-9);
    assert_eq!(
        second[1].value(names::CPU_UTILIZATION),
        Some(curl_cpus * 100.0)
    );
    assert!((curl_cpus * 100.0 - 5.0).abs() < 1e-12);

    stop.send(true).unwrap();
    tokio::time::timeout(WAIT, handle).await.unwrap().unwrap();
    assert!(ep.task_calls.load(Ordering::SeqCst) >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_retried_until_shutdown() {
    // A port that was just free: connection refused on every poll.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (tx, mut rx) = mpsc::channel(4);
    let (stop, shutdown) = watch::channel(false);
    let cfg = config(format!("http://127.0.0.1:{port}/v4/abc"));
    let handle = tokio::spawn(run(cfg, "host-1".into(), tx, shutdown));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !handle.is_finished(),
        "endpoint errors must not stop the source"
    );
    assert!(rx.try_recv().is_err());
    stop.send(true).unwrap();
    tokio::time::timeout(WAIT, handle).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_when_the_receiver_is_gone() {
    let ep = Arc::new(Endpoint {
        stats: vec![(StatusCode::OK, stats_fixture("task_stats.json"))],
        stats_calls: AtomicUsize::new(0),
        task_calls: AtomicUsize::new(0),
    });
    let url = serve(ep).await;
    let (tx, rx) = mpsc::channel(4);
    drop(rx);
    let (_stop, shutdown) = watch::channel(false);
    tokio::time::timeout(WAIT, run(config(url), "h".into(), tx, shutdown))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_of_the_documented_task() {
    let ep = Arc::new(Endpoint {
        stats: vec![(StatusCode::OK, "{}".into())],
        stats_calls: AtomicUsize::new(0),
        task_calls: AtomicUsize::new(0),
    });
    let url = serve(ep).await;
    let id = task_identity(&url, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        id,
        TaskIdentity {
            cluster: "default".into(),
            service_name: None,
            task_arn: TASK_ARN.into(),
            family: "curltest".into(),
        }
    );
    let bad = task_identity(&format!("{url}/nowhere"), Duration::from_secs(2)).await;
    let err = bad.unwrap_err().to_string();
    assert!(err.contains("HTTP 404"), "{err}");
}

/// A Fargate-style variant of the documented task: a service, task-level limits, a cluster
/// ARN, bridge networking (summed), a stopped container (`null` stats) and one unreadable
/// stats value.
#[test]
fn task_limits_service_and_bridge_networking() {
    let mut task: serde_json::Value = serde_json::from_str(&fixture("task.json")).unwrap();
    task["ServiceName"] = "MyService".into();
    task["Cluster"] = "arn:aws:ecs:us-west-2:111122223333:cluster/default".into();
    task["LaunchType"] = "FARGATE".into();
    task["Limits"] = serde_json::json!({"CPU": 0.25, "Memory": 512});
    for c in task["Containers"].as_array_mut().unwrap() {
        c["Networks"][0]["NetworkMode"] = "bridge".into();
    }
    let mut stopped = task["Containers"][1].clone();
    stopped["DockerId"] = "stopped1".into();
    let mut odd = task["Containers"][1].clone();
    odd["DockerId"] = "odd1".into();
    task["Containers"]
        .as_array_mut()
        .unwrap()
        .extend([stopped, odd]);
    let task: TaskMetadata = serde_json::from_value(task).unwrap();

    let mut stats: serde_json::Value =
        serde_json::from_str(&stats_fixture("task_stats.json")).unwrap();
    stats[PAUSE_ID]["network_rate_stats"] =
        serde_json::json!({"rx_bytes_per_sec": 10.5, "tx_bytes_per_sec": 1.25});
    stats[CURL_ID]["network_rate_stats"] =
        serde_json::json!({"rx_bytes_per_sec": 20.0, "tx_bytes_per_sec": 2.5});
    stats["stopped1"] = serde_json::Value::Null;
    stats["odd1"] = serde_json::json!({"cpu_stats": "not an object"});
    let stats = parse_task_stats("test", stats.to_string().as_bytes()).unwrap();
    assert_eq!(stats.len(), 4);
    assert!(stats["stopped1"].is_none() && stats["odd1"].is_none());
    assert!(stats[CURL_ID].is_some());

    let b = container_insights(&task, &stats, None, "host-2");
    assert_eq!(b.resource.service, "MyService");
    let mut expected = task_attrs();
    expected.insert(
        "aws.ecs.cluster.arn".into(),
        "arn:aws:ecs:us-west-2:111122223333:cluster/default".into(),
    );
    expected.insert("aws.ecs.service.name".into(), "MyService".into());
    expected.insert("aws.ecs.launchtype".into(), "fargate".into());
    assert_eq!(b.resource_attributes, expected);
    assert_eq!(b.value(ecs_names::CPU_RESERVED), Some(0.25 * 1024.0));
    assert_eq!(b.value(ecs_names::MEMORY_RESERVED), Some(512.0));
    // Only the two running containers count.
    assert_eq!(
        b.value(ecs_names::MEMORY_UTILIZED),
        Some((532_480 + 1_814_528) as f64 / 1_048_576.0)
    );
    assert_eq!(b.value(ecs_names::NETWORK_RX_BYTES), Some(10.5 + 20.0));
    assert_eq!(b.value(ecs_names::NETWORK_TX_BYTES), Some(1.25 + 2.5));

    // Garbage is an error, not an empty map.
    assert!(parse_task_stats("test", b"garbage{").is_err());
    assert!(parse_task_stats("test", b"[]").is_err());
}
