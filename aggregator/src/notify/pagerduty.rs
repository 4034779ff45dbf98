//! PagerDuty Events API v2 (`POST /v2/enqueue`), as Alertmanager's
//! `notify/pagerduty/pagerduty.go`: `trigger` while any alert fires, `resolve` when the
//! group resolved, `dedup_key` = SHA-256 hex of the group key (so the resolve closes the
//! incident the trigger opened), summary ≤ 1024 characters, custom details replaced by a
//! note when the event exceeds 512,000 bytes. Sightline adds the alerts with their log
//! samples to `custom_details` and correlation links to `links`.

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::config::PagerdutyConfig;
use super::data::{rfc3339_ms, status_str, Data, SampleOut};
use super::dispatch::Notification;
use crate::alert::AlertStatus;

/// Largest event PagerDuty accepts, bytes.
pub const MAX_EVENT_BYTES: usize = 512_000;
/// Longest summary, characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// Most correlation links per event.
pub const MAX_LINKS: usize = 10;

/// Alertmanager's `notify.Key.Hash()`: SHA-256 of the group key, lowercase hex.
pub fn dedup_key(group_key: &str) -> String {
    hex::encode(Sha256::digest(group_key.as_bytes()))
}

/// An Events API v2 event.
#[derive(Clone, Debug, Serialize)]
pub struct PagerdutyEvent {
    /// The integration key.
    pub routing_key: String,
    /// `trigger` or `resolve`.
    pub event_action: &'static str,
    /// [`dedup_key`] of the group key.
    pub dedup_key: String,
    /// The alert (trigger only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<PagerdutyPayload>,
    /// Always `Sightline`.
    pub client: String,
    /// Sightline's external URL.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_url: String,
    /// Links to the correlation views of the samples.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
}

/// `payload` of a trigger.
#[derive(Clone, Debug, Serialize)]
pub struct PagerdutyPayload {
    /// Alertmanager's subject, ≤ 1024 characters.
    pub summary: String,
    /// The common `service` label, else `sightline`.
    pub source: String,
    /// From the config.
    pub severity: String,
    /// Start of the earliest firing alert, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The common `alertname`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// `firing`/`resolved` text and counts (as Alertmanager), plus `alerts`.
    pub custom_details: Value,
}

/// A link.
#[derive(Clone, Debug, Serialize)]
pub struct Link {
    /// URL.
    pub href: String,
    /// Label.
    pub text: String,
}

fn instances<'a>(alerts: impl Iterator<Item = &'a crate::alert::Alert>) -> String {
    // Alertmanager's "pagerduty.default.instances": labels and annotations per alert.
    let mut out = String::new();
    for a in alerts {
        out.push_str("Labels:\n");
        for (k, v) in &a.labels {
            out.push_str(&format!(" - {k} = {v}\n"));
        }
        out.push_str("Annotations:\n");
        for (k, v) in &a.annotations {
            out.push_str(&format!(" - {k} = {v}\n"));
        }
        out.push_str(&format!("Source: {}\n", a.generator_url));
    }
    out
}

/// Builds the event for `n`.
pub fn event(n: &Notification, cfg: &PagerdutyConfig, external_url: &str) -> PagerdutyEvent {
    let data = Data::new(n, external_url);
    let firing = data.status == AlertStatus::Firing;
    let links = if firing {
        data.correlation_links(MAX_LINKS)
            .into_iter()
            .map(|(id, href)| Link {
                href,
                text: format!("Correlation {id}"),
            })
            .collect()
    } else {
        Vec::new()
    };
    let payload =
        firing.then(|| {
            let alerts: Vec<Value> = n
            .alerts
            .iter()
            .map(|a| {
                let samples: Vec<SampleOut> =
                    a.samples.iter().map(|s| SampleOut::new(s, external_url)).collect();
                json!({
                    "status": status_str(a.status),
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339_ms(a.starts_at_ms),
                    "value": a.value,
                    "generatorURL": a.generator_url,
                    "fingerprint": a.fingerprint(),
                    "samples": if a.status == AlertStatus::Firing { samples } else { Vec::new() },
                })
            })
            .collect();
            PagerdutyPayload {
                summary: super::data::truncate_chars(&data.subject(), MAX_SUMMARY_CHARS),
                source: data
                    .common_labels
                    .get("service")
                    .cloned()
                    .unwrap_or_else(|| "sightline".to_string()),
                severity: cfg.severity.clone(),
                timestamp: data.firing().map(|a| a.starts_at_ms).min().map(rfc3339_ms),
                class: data.common_labels.get("alertname").cloned(),
                custom_details: json!({
                    "firing": instances(data.firing()),
                    "resolved": instances(data.resolved()),
                    "num_firing": data.firing().count().to_string(),
                    "num_resolved": data.resolved().count().to_string(),
                    "alerts": alerts,
                }),
            }
        });
    let mut ev = PagerdutyEvent {
        routing_key: cfg.routing_key.expose().to_string(),
        event_action: if firing { "trigger" } else { "resolve" },
        dedup_key: dedup_key(&n.group_key),
        payload,
        client: "Sightline".to_string(),
        client_url: external_url.to_string(),
        links,
    };
    if serde_json::to_vec(&ev).map_or(0, |b| b.len()) > MAX_EVENT_BYTES {
        if let Some(p) = ev.payload.as_mut() {
            p.custom_details = json!({
                "error": format!(
                    "Custom details have been removed because the original event exceeds the maximum size of {MAX_EVENT_BYTES} bytes"
                )
            });
        }
    }
    ev
}
