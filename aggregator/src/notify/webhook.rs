//! The generic webhook: Alertmanager's payload version `"4"` (`notify/webhook/webhook.go`
//! `Message`, which embeds `template.Data`), plus two per-alert fields of Sightline's:
//! `value` and `samples` (log lines with correlation IDs and links). Receivers that
//! decode Alertmanager payloads ignore unknown fields.

use serde::Serialize;

use crate::series::Labels;

use super::config::WebhookConfig;
use super::data::{rfc3339_ms, status_str, Data, SampleOut, GO_ZERO_TIME};
use super::dispatch::Notification;

/// The payload (field order and names as Alertmanager's JSON).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    /// Receiver name.
    pub receiver: String,
    /// `firing` or `resolved` (resolved only when every alert is).
    pub status: &'static str,
    /// The alerts (at most `max_alerts`).
    pub alerts: Vec<WebhookAlert>,
    /// The group's labels.
    pub group_labels: Labels,
    /// Labels shared by all alerts.
    pub common_labels: Labels,
    /// Annotations shared by all alerts.
    pub common_annotations: Labels,
    /// Sightline's external URL.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// Always `"4"`.
    pub version: &'static str,
    /// `"<route key>:<group labels>"`.
    pub group_key: String,
    /// Alerts left out by `max_alerts`.
    pub truncated_alerts: u64,
}

/// One alert of the payload.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// Labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339; `0001-01-01T00:00:00Z` while firing.
    pub ends_at: String,
    /// Link to the rule in Sightline.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// 16 hex digits identifying the label set.
    pub fingerprint: String,
    /// Sightline: the rule expression's value at the last evaluation (`null` if NaN).
    pub value: f64,
    /// Sightline: sample log lines of a firing alert (empty once resolved).
    pub samples: Vec<SampleOut>,
}

/// Builds the JSON body for `n`.
pub fn payload(n: &Notification, cfg: &WebhookConfig, external_url: &str) -> WebhookMessage {
    let data = Data::new(n, external_url);
    let max = usize::try_from(cfg.max_alerts).unwrap_or(usize::MAX);
    let keep = if max == 0 {
        n.alerts.len()
    } else {
        n.alerts.len().min(max)
    };
    let alerts = n.alerts[..keep]
        .iter()
        .map(|a| {
            let firing = a.status == crate::alert::AlertStatus::Firing;
            WebhookAlert {
                status: status_str(a.status),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: rfc3339_ms(a.starts_at_ms),
                ends_at: match a.ends_at_ms {
                    Some(ms) if !firing => rfc3339_ms(ms),
                    _ => GO_ZERO_TIME.to_string(),
                },
                generator_url: a.generator_url.clone(),
                fingerprint: a.fingerprint(),
                value: a.value,
                samples: if firing {
                    a.samples
                        .iter()
                        .map(|s| SampleOut::new(s, external_url))
                        .collect()
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    WebhookMessage {
        receiver: n.receiver.clone(),
        status: status_str(data.status),
        alerts,
        group_labels: n.group_labels.clone(),
        common_labels: data.common_labels,
        common_annotations: data.common_annotations,
        external_url: external_url.to_string(),
        version: "4",
        group_key: n.group_key.clone(),
        truncated_alerts: (n.alerts.len() - keep) as u64,
    }
}
