//! Reading a topic back in tests: every message from the beginning of every partition.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sightline_model::{decode_audit, decode_metrics, AuditEvent, MetricBatch};

/// The payloads of every message now in `topic` (all partitions, from the beginning),
/// reading until no message came for `idle` or `max` passed. Empty when the topic does not
/// exist yet.
pub fn read_all(brokers: &str, topic: &str, idle: Duration, max: Duration) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("sightline-test-{}", crate::run_id()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let Ok(meta) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return Vec::new();
    };
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    if tpl.count() == 0 {
        return Vec::new();
    }
    consumer.assign(&tpl).expect("assign");
    let start = Instant::now();
    let mut last = Instant::now();
    let mut out = Vec::new();
    while last.elapsed() < idle && start.elapsed() < max {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(m.payload().unwrap_or_default().to_vec());
                last = Instant::now();
            }
            Some(Err(e)) => eprintln!("test consumer: {e}"),
            None => {}
        }
    }
    out
}

/// Every record now in `topic` (see [`read_all`]; idle 2 s, at most 20 s), each message
/// decoded with `decode`. Panics, naming `what`, when a message does not decode.
fn decode_all<T, E: std::fmt::Debug>(
    brokers: &str,
    topic: &str,
    decode: fn(&[u8]) -> Result<Vec<T>, E>,
    what: &str,
) -> Vec<T> {
    read_all(
        brokers,
        topic,
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .iter()
    .flat_map(|p| decode(p).unwrap_or_else(|e| panic!("{what} payload: {e:?}")))
    .collect()
}

/// The audit events now in `topic`.
pub fn audit_events(brokers: &str, topic: &str) -> Vec<AuditEvent> {
    decode_all(brokers, topic, decode_audit, "audit")
}

/// The metric batches of container `container` now in `topic`.
pub fn container_metrics(brokers: &str, topic: &str, container: &str) -> Vec<MetricBatch> {
    let mut batches = decode_all(brokers, topic, decode_metrics, "metrics");
    batches.retain(|b| {
        b.resource
            .container
            .as_ref()
            .is_some_and(|c| c.id == container)
    });
    batches
}
