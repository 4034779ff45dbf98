//! Log samples for firing alerts: the lines on-call reads first. For each firing alert
//! with a `service` label, up to N lines of that service's logs from the `lookback` before
//! the evaluation, error and fatal lines first, then any lines, newest first, each with
//! its correlation ID (the first of the line's IDs) so the receiver can link to the
//! request's whole story (`/api/v1/correlations/<id>`).

use std::collections::BTreeMap;
use std::sync::Arc;

use sightline_model::Level;
use sightline_query::{EventView, QueryEngine, SearchRequest};

use crate::alert::{Alert, AlertStatus, LogSample};

/// Longest message kept in a sample, bytes (cut on a character boundary).
pub const MAX_SAMPLE_MESSAGE_BYTES: usize = 1024;

/// Finds sample lines in the index.
#[derive(Clone)]
pub struct LogSampler {
    engine: Arc<QueryEngine>,
    per_alert: usize,
    window_ms: i64,
}

impl LogSampler {
    /// Up to `per_alert` lines per alert (0: none) from the `window_ms` before evaluation.
    pub fn new(engine: Arc<QueryEngine>, per_alert: usize, window_ms: i64) -> Self {
        LogSampler {
            engine,
            per_alert,
            window_ms,
        }
    }

    /// Sets `samples` of every firing alert that has a `service` label, from the logs of
    /// `[now_ms − window, now_ms]`. One index search (two when errors are fewer than N)
    /// per service, shared by that service's alerts. A failed search leaves the alert
    /// without samples (logged): samples never hold up a notification.
    pub fn attach(&self, alerts: &mut [Alert], now_ms: i64) {
        if self.per_alert == 0 {
            return;
        }
        let mut by_service: BTreeMap<String, Vec<LogSample>> = BTreeMap::new();
        for alert in alerts.iter_mut() {
            if alert.status != AlertStatus::Firing {
                continue;
            }
            let Some(service) = alert.labels.get("service") else {
                continue;
            };
            if !by_service.contains_key(service) {
                let found = self.samples(service, now_ms);
                by_service.insert(service.clone(), found);
            }
            alert.samples = by_service[service].clone();
        }
    }

    /// The sample lines of one service: error and fatal lines first, then any others,
    /// newest first within each kind, at most `per_alert`.
    pub fn samples(&self, service: &str, now_ms: i64) -> Vec<LogSample> {
        let from_ns = now_ms
            .saturating_sub(self.window_ms)
            .saturating_mul(1_000_000);
        let mut req = SearchRequest {
            services: vec![service.to_string()],
            levels: vec![Level::Error, Level::Fatal],
            from_ns: Some(from_ns),
            to_ns: Some(now_ms.saturating_mul(1_000_000)),
            limit: Some(self.per_alert),
            ..SearchRequest::default()
        };
        let mut hits: Vec<EventView> = match self.engine.search(&req) {
            Ok(r) => r.hits,
            Err(e) => {
                tracing::warn!(service, error = %e, "log samples: error-line search failed");
                Vec::new()
            }
        };
        if hits.len() < self.per_alert {
            req.levels.clear();
            req.limit = Some(self.per_alert * 2);
            match self.engine.search(&req) {
                Ok(r) => {
                    for h in r.hits {
                        if hits.len() >= self.per_alert {
                            break;
                        }
                        if !hits.iter().any(|x| x.event_id == h.event_id) {
                            hits.push(h);
                        }
                    }
                }
                Err(e) => tracing::warn!(service, error = %e, "log samples: search failed"),
            }
        }
        hits.into_iter().map(sample_of).collect()
    }
}

fn sample_of(e: EventView) -> LogSample {
    let mut message = e.message;
    if message.len() > MAX_SAMPLE_MESSAGE_BYTES {
        let mut cut = MAX_SAMPLE_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    LogSample {
        time_ns: u64::try_from(e.timestamp_ns).unwrap_or(0),
        service: e.service,
        correlation_id: e.correlation_ids.into_iter().next(),
        message,
    }
}
