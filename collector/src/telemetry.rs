//! The collector's own HTTP endpoint (`[telemetry] listen`): `GET /metrics` in the
//! Prometheus text exposition format (OpenMetrics 1.0 text, which Prometheus scrapes
//! natively), encoded by the `prometheus-client` crate, and `GET /healthz`.
//!
//! Metrics (all prefixed `sightline_collector_`):
//! - `events_read_total{source}`, `events_sent_total{source}`: records read and acknowledged
//!   by Kafka, per source (`docker_json_file` log events, `docker_stats` metric points,
//!   `docker_events` audit events);
//! - `redactions_total`, `rate_limited_reads_total`, `rate_limit_delay_seconds_total`;
//! - `parse_errors_total`, `bytes_read_total` (bytes of log files), `kafka_messages_sent_total`,
//!   `kafka_send_retries_total`, `checkpoint_errors_total`, `engine_errors_total`;
//! - `kafka_batches_split_total`, `events_truncated_total`: batches Kafka refused as too
//!   large, split and sent again, and events cut because alone they were too large;
//! - `events_spooled_total`, `spool_bytes`, `spooling` (1 while batches go to the disk spool);
//! - `kafka_delivery_latency_seconds` (histogram: hand-off to the producer → acknowledgement);
//! - `file_lag_bytes{container_id,path}`: bytes of each tailed file after its acknowledged
//!   checkpoint (its size now − the stored offset), computed at scrape time.
//!
//! `/healthz` answers 200 `ok` while the process runs its pipeline.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::stats::Stats;

/// Content type of `/metrics` (OpenMetrics text, as `prometheus-client` encodes it).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(&[(&str, &str)], u64)],
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(0u64);
    let mut family = enc.encode_descriptor(name, help, None, c.metric_type())?;
    for (labels, v) in values {
        if labels.is_empty() {
            ConstCounter::new(*v).encode(family)?;
            return Ok(());
        }
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let m = family.encode_family(&labels)?;
        ConstCounter::new(*v).encode(m)?;
    }
    Ok(())
}

impl Collector for StatsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.snapshot();
        let logs: &[(&str, &str)] = &[("source", "docker_json_file")];
        let stats: &[(&str, &str)] = &[("source", "docker_stats")];
        let events: &[(&str, &str)] = &[("source", "docker_events")];
        counter(
            &mut enc,
            "sightline_collector_events_read",
            "Records read, per source (log events, metric points, audit events).",
            &[
                (logs, s.events_read),
                (stats, s.metrics_read),
                (events, s.audit_read),
            ],
        )?;
        counter(
            &mut enc,
            "sightline_collector_events_sent",
            "Records acknowledged by Kafka, per source.",
            &[
                (logs, s.events_sent),
                (stats, s.metrics_sent),
                (events, s.audit_sent),
            ],
        )?;
        for (name, help, v) in [
            (
                "sightline_collector_bytes_read",
                "Bytes read from container log files.",
                s.bytes_read,
            ),
            (
                "sightline_collector_parse_errors",
                "Events shipped with a parse-error mark.",
                s.parse_errors,
            ),
            (
                "sightline_collector_kafka_messages_sent",
                "Kafka messages acknowledged.",
                s.batches_sent,
            ),
            (
                "sightline_collector_kafka_send_retries",
                "Kafka messages sent again after a failed delivery.",
                s.send_retries,
            ),
            (
                "sightline_collector_kafka_batches_split",
                "Log batches Kafka refused as too large (MessageSizeTooLarge), split and sent again.",
                s.batches_split,
            ),
            (
                "sightline_collector_events_truncated",
                "Events alone larger than Kafka accepts, shipped with their message cut (marked sightline.truncated).",
                s.events_truncated,
            ),
            (
                "sightline_collector_checkpoint_errors",
                "Failed checkpoint writes (retried).",
                s.checkpoint_errors,
            ),
            (
                "sightline_collector_redactions",
                "Secrets masked by redaction rules before shipping.",
                s.redactions,
            ),
            (
                "sightline_collector_rate_limited_reads",
                "Reads delayed by the per-container rate limits (nothing is dropped).",
                s.throttled_reads,
            ),
            (
                "sightline_collector_engine_errors",
                "Failed Docker Engine API requests (retried).",
                s.engine_errors,
            ),
        ] {
            counter(&mut enc, name, help, &[(&[], v)])?;
        }
        let delay = ConstCounter::new(s.throttle_delay_ns as f64 / 1e9);
        delay.encode(enc.encode_descriptor(
            "sightline_collector_rate_limit_delay_seconds",
            "Seconds reads were delayed by the per-container rate limits.",
            None,
            delay.metric_type(),
        )?)?;
        let (spool_bytes, spooled, spooling) = self.0.spool_state();
        counter(
            &mut enc,
            "sightline_collector_events_spooled",
            "Log events written to the disk spool while Kafka was behind.",
            &[(&[], spooled)],
        )?;
        for (name, help, v) in [
            (
                "sightline_collector_spool_bytes",
                "Bytes in the disk spool not yet acknowledged by Kafka.",
                spool_bytes as i64,
            ),
            (
                "sightline_collector_spooling",
                "1 while log batches go to the disk spool instead of Kafka.",
                spooling as i64,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let h = &self.0.delivery_seconds;
        let m = enc.encode_descriptor(
            "sightline_collector_kafka_delivery_latency_seconds",
            "Seconds from handing a log batch to the Kafka producer to its acknowledgement.",
            None,
            h.metric_type(),
        )?;
        h.encode(m)?;
        let g = ConstGauge::new(0i64);
        let mut family = enc.encode_descriptor(
            "sightline_collector_file_lag_bytes",
            "Bytes of each tailed file after its acknowledged checkpoint.",
            None,
            g.metric_type(),
        )?;
        for (id, cp) in self.0.acked() {
            let Ok(meta) = std::fs::metadata(&cp.path) else {
                continue;
            };
            let lag = meta.len().saturating_sub(cp.offset) as i64;
            let labels = [
                ("container_id".to_string(), id),
                ("path".to_string(), cp.path.display().to_string()),
            ];
            ConstGauge::new(lag).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The registry behind `/metrics`.
pub fn registry(stats: Arc<Stats>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(StatsCollector(stats)));
    r
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics encoding failed\n".to_string(),
        ),
    }
}

/// `GET /metrics` and `GET /healthz`.
pub fn app(stats: Arc<Stats>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Arc::new(registry(stats)))
}

/// Serves [`app`] on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, app(stats))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::checkpoint::FileCheckpoint;

    #[tokio::test]
    async fn metrics_show_counters_histogram_and_lag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c1-json.log");
        std::fs::write(&path, vec![b'x'; 1000]).unwrap();
        let stats = Arc::new(Stats::default());
        stats.add_events_read(7);
        stats.add_events_sent(5);
        stats.add_audit_read(2);
        stats.observe_delivery(std::time::Duration::from_millis(3));
        stats.set_acked(
            &[(
                "c1".to_string(),
                FileCheckpoint {
                    path: path.clone(),
                    fingerprint: "00".into(),
                    offset: 400,
                },
            )]
            .into(),
        );
        let res = app(stats)
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains("sightline_collector_events_read_total{source=\"docker_json_file\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("sightline_collector_events_sent_total{source=\"docker_json_file\"} 5")
        );
        assert!(text.contains("sightline_collector_events_read_total{source=\"docker_events\"} 2"));
        assert!(text.contains("sightline_collector_kafka_delivery_latency_seconds_count 1"));
        assert!(
            text.contains("\nsightline_collector_parse_errors_total 0\n"),
            "{text}"
        );
        let lag = format!(
            "sightline_collector_file_lag_bytes{{container_id=\"c1\",path=\"{}\"}} 600",
            path.display()
        );
        assert!(text.contains(&lag), "{text}");
    }

    #[tokio::test]
    async fn healthz_is_ok() {
        let res = app(Arc::new(Stats::default()))
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
