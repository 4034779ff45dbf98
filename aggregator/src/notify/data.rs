//! What every integration's payload is built from: Alertmanager's template data
//! (`template/template.go` `Data`: receiver, status, group/common labels and annotations,
//! external URL) plus Sightline's log samples and correlation links.

use serde::Serialize;

use crate::alert::{Alert, AlertStatus, LogSample};
use crate::series::Labels;

use super::dispatch::Notification;

/// Path of the correlation view under `external_url`: the query API's
/// `GET /api/v1/correlations/{id}` (query/src/api), which returns the request's whole
/// story; a UI page, when one exists, can take over this path.
pub const CORRELATION_PATH: &str = "/api/v1/correlations/";

/// `"firing"` / `"resolved"`.
pub fn status_str(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    }
}

/// Unix ms as RFC 3339 in UTC with the fraction trimmed, as Go's `time.Time` JSON
/// (e.g. `2024-05-01T12:00:00.25Z`); out-of-range values give the Go zero time.
pub fn rfc3339_ms(ms: i64) -> String {
    let ns = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(ns)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| GO_ZERO_TIME.to_string())
}

/// The Go zero time Alertmanager puts in `endsAt` of firing alerts.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The link to a correlation ID's view: `<external_url>/api/v1/correlations/<id>`, the
/// ID percent-encoded; `None` without an external URL.
pub fn correlation_url(external_url: &str, id: &str) -> Option<String> {
    if external_url.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(external_url.len() + CORRELATION_PATH.len() + id.len());
    out.push_str(external_url.trim_end_matches('/'));
    out.push_str(CORRELATION_PATH);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

/// A log sample as sent to receivers (camelCase like the rest of the webhook payload).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleOut {
    /// Event time, RFC 3339.
    pub time: String,
    /// Service that logged it.
    pub service: String,
    /// Correlation ID, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Link to the correlation view, if there is an ID and an external URL.
    #[serde(rename = "correlationURL", skip_serializing_if = "Option::is_none")]
    pub correlation_url: Option<String>,
    /// The log line.
    pub message: String,
}

impl SampleOut {
    /// Converts a sample.
    pub fn new(s: &LogSample, external_url: &str) -> Self {
        let ms = i64::try_from(s.time_ns / 1_000_000).unwrap_or(i64::MAX);
        SampleOut {
            time: rfc3339_ms(ms),
            service: s.service.clone(),
            correlation_id: s.correlation_id.clone(),
            correlation_url: s
                .correlation_id
                .as_deref()
                .and_then(|id| correlation_url(external_url, id)),
            message: s.message.clone(),
        }
    }
}

/// The template data of one notification.
#[derive(Clone, Debug)]
pub struct Data<'a> {
    /// The notification.
    pub n: &'a Notification,
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// Labels every alert has with the same value.
    pub common_labels: Labels,
    /// Annotations every alert has with the same value.
    pub common_annotations: Labels,
    /// Sightline's external URL.
    pub external_url: &'a str,
}

impl<'a> Data<'a> {
    /// Builds the data of `n`.
    pub fn new(n: &'a Notification, external_url: &'a str) -> Self {
        Data {
            n,
            status: n.status(),
            common_labels: common(n.alerts.iter().map(|a| &a.labels)),
            common_annotations: common(n.alerts.iter().map(|a| &a.annotations)),
            external_url,
        }
    }

    /// Firing alerts.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.n
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
    }

    /// Resolved alerts.
    pub fn resolved(&self) -> impl Iterator<Item = &Alert> {
        self.n
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Resolved)
    }

    /// Alertmanager's default `__subject`: `[FIRING:2] <group label values> (<other common
    /// label values>)`, or `[RESOLVED] …`.
    pub fn subject(&self) -> String {
        let mut s = match self.status {
            AlertStatus::Firing => format!("[FIRING:{}]", self.firing().count()),
            AlertStatus::Resolved => "[RESOLVED]".to_string(),
        };
        let group: Vec<&str> = self.n.group_labels.values().map(String::as_str).collect();
        s.push(' ');
        s.push_str(&group.join(" "));
        if self.common_labels.len() > self.n.group_labels.len() {
            let rest: Vec<&str> = self
                .common_labels
                .iter()
                .filter(|(k, _)| !self.n.group_labels.contains_key(*k))
                .map(|(_, v)| v.as_str())
                .collect();
            s.push_str(&format!(" ({})", rest.join(" ")));
        }
        s
    }

    /// Distinct correlation links of the firing alerts' samples, in order, at most `max`.
    pub fn correlation_links(&self, max: usize) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for a in self.firing() {
            for s in &a.samples {
                let Some(id) = s.correlation_id.as_deref() else {
                    continue;
                };
                let Some(url) = correlation_url(self.external_url, id) else {
                    continue;
                };
                if out.len() < max && !out.iter().any(|(_, u)| *u == url) {
                    out.push((id.to_string(), url));
                }
            }
        }
        out
    }
}

fn common<'a>(mut sets: impl Iterator<Item = &'a Labels>) -> Labels {
    let Some(first) = sets.next() else {
        return Labels::new();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}

/// Truncates to at most `max` characters, ending with `…` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_links() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_714_564_800_250), "2024-05-01T12:00:00.25Z");
        assert_eq!(
            correlation_url("https://s.example/", "req 1/2").as_deref(),
            Some("https://s.example/api/v1/correlations/req%201%2F2")
        );
        assert_eq!(correlation_url("", "x"), None);
        assert_eq!(truncate_chars("héllo", 3), "hé…");
        assert_eq!(truncate_chars("hé", 3), "hé");
    }
}
