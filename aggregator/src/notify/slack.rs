//! Slack incoming webhooks: `{"text": …, "blocks": […]}` (Block Kit). `text` is
//! Alertmanager's subject and the notification fallback; the blocks give a header, one
//! section per alert (summary/description annotations, labels) and, for firing alerts,
//! their log samples with links to the correlation view. Slack's limits are kept:
//! 50 blocks, 3000 characters per section text, 150 per header.

use serde_json::{json, Value};

use super::config::SlackConfig;
use super::data::{correlation_url, Data};
use super::dispatch::Notification;
use crate::alert::AlertStatus;

/// Most blocks per message (Slack's limit).
pub const MAX_BLOCKS: usize = 50;
const MAX_SECTION_CHARS: usize = 3000;
const MAX_HEADER_CHARS: usize = 150;
const MAX_SAMPLES: usize = 5;

/// Escapes `&`, `<`, `>` for Slack's mrkdwn.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Builds the JSON body for `n`.
pub fn message(n: &Notification, cfg: &SlackConfig, external_url: &str) -> Value {
    let data = Data::new(n, external_url);
    let subject = data.subject();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": super::data::truncate_chars(&subject, MAX_HEADER_CHARS)},
    })];
    let per_alert_blocks = 2;
    let room = (MAX_BLOCKS - 2) / per_alert_blocks;
    for a in n.alerts.iter().take(room) {
        let icon = if a.status == AlertStatus::Firing {
            ":red_circle:"
        } else {
            ":large_green_circle:"
        };
        let name = a.labels.get("alertname").map_or("alert", String::as_str);
        let mut text = format!("{icon} *{}*", escape(name));
        if let Some(s) = a.annotations.get("summary") {
            text.push_str(&format!(" — {}", escape(s)));
        }
        if let Some(d) = a.annotations.get("description") {
            text.push_str(&format!("\n{}", escape(d)));
        }
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("`{k}={}`", escape(v)))
            .collect();
        if !labels.is_empty() {
            text.push_str(&format!("\n{}", labels.join(" ")));
        }
        if !a.generator_url.is_empty() {
            text.push_str(&format!("\n<{}|Rule>", a.generator_url));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": super::data::truncate_chars(&text, MAX_SECTION_CHARS)},
        }));
        if a.status == AlertStatus::Firing && !a.samples.is_empty() {
            let mut lines = String::from("*Log samples*");
            for s in a.samples.iter().take(MAX_SAMPLES) {
                let msg = super::data::truncate_chars(&s.message, 300).replace('`', "'");
                lines.push_str(&format!("\n`{}` {}", escape(&s.service), escape(&msg)));
                if let Some(id) = &s.correlation_id {
                    match correlation_url(external_url, id) {
                        Some(url) => lines.push_str(&format!(" <{url}|{}>", escape(id))),
                        None => lines.push_str(&format!(" ({})", escape(id))),
                    }
                }
            }
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": super::data::truncate_chars(&lines, MAX_SECTION_CHARS)},
            }));
        }
    }
    if n.alerts.len() > room {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("…and {} more alerts", n.alerts.len() - room)}],
        }));
    }
    let mut body = json!({ "text": subject, "blocks": blocks });
    if !cfg.channel.is_empty() {
        body["channel"] = json!(cfg.channel);
    }
    body
}
