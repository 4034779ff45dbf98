//! Kafka conventions: topic names, headers and partitioning.
//!
//! Each Kafka message on [`LOGS_TOPIC`] holds one OTLP `LogsData` protobuf (many events).
//! The collector groups events by partition, where an event's partition is
//! [`partition_for_key`] of its [`LogEvent::partition_key`](crate::LogEvent::partition_key)
//! (primary correlation ID, else container ID): all events of one request land in one
//! partition, in the order they were read. The message key is the batch's common key
//! when all its events share one, else absent.

/// Default topic for log events.
pub const LOGS_TOPIC: &str = "sightline.logs";

/// Default topic for metric samples: OTLP `MetricsData` (see [`crate::metric`]), keyed by
/// container ID (or ECS task ARN).
pub const METRICS_TOPIC: &str = "sightline.metrics";

/// Default topic for audit events: OTLP `LogsData` (see [`crate::audit`]), keyed by the
/// actor's ID.
pub const AUDIT_TOPIC: &str = "sightline.audit";

/// Payload encoding of [`METRICS_TOPIC`]: an OTLP `MetricsData` protobuf.
pub const CONTENT_TYPE_OTLP_METRICS: &str = "application/x-protobuf; otlp=MetricsData";

/// Header carrying [`crate::SCHEMA_VERSION`] as decimal ASCII.
pub const SCHEMA_HEADER: &str = "sightline-schema-version";

/// Header naming the payload encoding; value [`CONTENT_TYPE_OTLP_LOGS`].
pub const CONTENT_TYPE_HEADER: &str = "content-type";

/// Payload encoding: an OTLP `LogsData` protobuf, as the OpenTelemetry Collector's
/// Kafka exporter writes with `encoding: otlp_proto`.
pub const CONTENT_TYPE_OTLP_LOGS: &str = "application/x-protobuf; otlp=LogsData";

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`, also librdkafka's
/// `murmur2` partitioners), seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition the Java client's default partitioner picks for `key`:
/// `(murmur2(key) & 0x7fffffff) % partitions`. `partitions` must be ≥ 1.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let p = partitions.max(1) as u32;
    ((murmur2(key) & 0x7fff_ffff) % p) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_java_client_vectors() {
        // Test vectors from Kafka's UtilsTest.testMurmur2 (Java ints shown as u32).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn partition_is_in_range() {
        for k in ["a", "req-1", "", "0123456789abcdef"] {
            let p = partition_for_key(k.as_bytes(), 6);
            assert!((0..6).contains(&p));
        }
    }
}
