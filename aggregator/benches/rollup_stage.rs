//! Rollup stage benchmark (issue 4): the real `RollupStage::handle` (OTLP decode + apply),
//! which `rollup_throughput` does not time (it applies already-decoded events).
//!
//! the rollup stage decodes each
//! Kafka message (OTLP protobuf) before applying it, which `rollup_throughput` does not
//! time. This mode builds the same event mix as `rollup_throughput` (N events, 20
//! services) with the resource fields the collector sets (host, ECS container with labels,
//! stream, position), encodes them with `sightline_model::encode_logs` in 2,000-event
//! messages, and times (1) the real `RollupStage::handle` (decode + apply) over the
//! messages, (2) `decode_logs_fast` alone, (3) `apply_logs` alone on the decoded events
//! (stores persisted in temp directories, as `rollup_throughput`'s). Rates are per
//! CPU-second (`/proc/self/stat`) in events, MB of log text, MB of OTLP, and MB of the
//! Docker json-file lines the events came from (the collector's unit; computed outside the
//! timed part, as `index_throughput` does).
//!
//! ```text
//! cargo bench -p sightline-aggregator --bench rollup_stage -- --events 1000000
//! ```

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sightline_aggregator::consumer::Stage;
use sightline_aggregator::indexer::KafkaRecord;
use sightline_aggregator::rollup::stage::{CaughtUp, Feed, RollupStage};
use sightline_aggregator::rollup::SharedRollups;
use sightline_model::{Container, EventId, LogEvent, SourceKind, SourcePosition};

mod common;

use common::rollup::{apply_messages, mix_event, mix_timestamp_ns, rollup_store};
use common::{arg, cpu_seconds, mix};

/// The event mix of `rollup_throughput` (same messages, levels, services and timestamps),
/// with the resource fields the collector sets.
fn throughput_events(n: usize) -> Vec<LogEvent> {
    let containers: Vec<Arc<Container>> = (0..20)
        .map(|s| {
            Arc::new(Container {
                id: format!("{:016x}{:048x}", mix(s), 0),
                name: format!("ecs-svc{s}-7-app-{:016x}", mix(s + 100)),
                image: format!("111122223333.dkr.ecr.us-east-1.amazonaws.com/svc{s}:7"),
                labels: [
                    (
                        "com.amazonaws.ecs.cluster",
                        "arn:aws:ecs:us-east-1:111122223333:cluster/prod-a".to_string(),
                    ),
                    (
                        "com.amazonaws.ecs.task-arn",
                        format!(
                            "arn:aws:ecs:us-east-1:111122223333:task/prod-a/{:032x}",
                            mix(s + 200)
                        ),
                    ),
                    (
                        "com.amazonaws.ecs.task-definition-family",
                        format!("svc{s}"),
                    ),
                    ("com.amazonaws.ecs.task-definition-version", "7".into()),
                    ("com.amazonaws.ecs.container-name", "app".into()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            })
        })
        .collect();
    (0..n)
        .map(|i| {
            let (x, message, level) = mix_event(i);
            let svc = x % 20;
            let ts = mix_timestamp_ns(i);
            LogEvent {
                event_id: EventId::derive(x % 97, i as u64),
                timestamp_ns: ts,
                observed_ns: ts + 150_000_000,
                host: format!("ip-10-0-1-{}", svc % 4),
                source_kind: SourceKind::DockerJsonFile,
                position: SourcePosition {
                    source_id: x % 97,
                    offset: i as u64,
                },
                container: Some(containers[svc as usize].clone()),
                service: format!("svc{svc}"),
                stream: "stdout".into(),
                level,
                message,
                ..Default::default()
            }
        })
        .collect()
}

fn decode_cost(n: usize) {
    let events = throughput_events(n);
    let text: usize = events.iter().map(|e| e.message.len()).sum();
    // The Docker json-file lines the events were read from: the collector's MB/s unit.
    let json_file: usize = events
        .iter()
        .map(|e| {
            let line = serde_json::json!({"log": format!("{}\n", e.message), "stream": e.stream, "time": "2024-05-01T00:00:00.123456789Z"});
            line.to_string().len() + 1
        })
        .sum();
    let payloads: Vec<Vec<u8>> = events
        .chunks(2_000)
        .map(|c| sightline_model::encode_logs(c.to_vec()))
        .collect();
    drop(events);
    let otlp: usize = payloads.iter().map(Vec::len).sum();
    let (mb, json_mb, otlp_mb) = (text as f64 / 1e6, json_file as f64 / 1e6, otlp as f64 / 1e6);
    println!(
        "decode cost: {n} events (rollup_throughput's mix, collector resources), {mb:.1} MB of log text = {json_mb:.1} MB as Docker json-file lines, {otlp_mb:.1} MB of OTLP in {} messages",
        payloads.len()
    );
    println!("  per CPU-second:                                                     events/s  text MB/s  json-file MB/s  OTLP MB/s");
    let report = |what: &str, wall: f64, cpu: f64| {
        let cpu = cpu.max(1e-9);
        println!(
            "  {what:<38} {wall:>5.2} s wall {cpu:>5.2} s CPU  {:>9.0}  {:>9.1}  {:>14.1}  {:>9.1}",
            n as f64 / cpu,
            mb / cpu,
            json_mb / cpu,
            otlp_mb / cpu
        );
    };

    // (1) The real consume stage: decode + apply per Kafka message.
    let (dir1, store) = rollup_store();
    let store = SharedRollups(Arc::new(RwLock::new(store)));
    let mut stage = RollupStage::new(
        store.clone(),
        &CaughtUp::default(),
        Feed::Logs,
        "sightline.logs",
        Duration::from_secs(3_600),
    );
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for (k, p) in payloads.iter().enumerate() {
        stage
            .handle(&KafkaRecord {
                topic: "sightline.logs",
                partition: 0,
                offset: k as i64,
                payload: p,
                timestamp_ms: None,
            })
            .expect("handle");
    }
    report(
        "RollupStage::handle (decode + apply)",
        wall.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
    );
    assert_eq!(stage.undecodable, 0);
    let staged = store
        .0
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .counters()
        .clone();
    assert_eq!(staged.applied_events, n as u64);
    drop(stage);
    drop(store);
    drop(dir1);

    // (2) Decode alone, (3) apply alone on the decoded events (what rollup_throughput times).
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let decoded: Vec<Vec<LogEvent>> = payloads
        .iter()
        .map(|p| sightline_model::decode_logs_fast(p).expect("decode"))
        .collect();
    report(
        "decode_logs_fast alone",
        wall.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
    );
    let (_dir2, mut store) = rollup_store();
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    apply_messages(&mut store, decoded.iter().map(Vec::as_slice));
    report(
        "apply_logs alone (decoded events)",
        wall.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
    );
    assert_eq!(store.counters(), &staged, "stage and direct apply agree");
}

fn main() {
    decode_cost(arg("--events", 1_000_000));
}
