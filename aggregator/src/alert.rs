//! What flows from the rule evaluator to notifications and autoscaling: [`Alert`]s, and the
//! [`ActionLog`] through which both record what Sightline did in the audit trail.

use sightline_model::audit::AuditEvent;

use crate::series::Labels;

/// Alertmanager-facing status of an alert (Prometheus sends `firing` alerts while they
/// fire and `resolved` ones, with `endsAt` in the past, for a while after).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The rule's condition holds (past its `for`).
    Firing,
    /// The condition stopped holding (past its `keep_firing_for`).
    Resolved,
}

/// A log line kept with a firing alert: one of up to N sample lines from the window that
/// fired it, with its correlation ID so on-call can open the request's whole story.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogSample {
    /// Event time, Unix ns.
    pub time_ns: u64,
    /// Service that logged it.
    pub service: String,
    /// Correlation ID, when the line has one.
    pub correlation_id: Option<String>,
    /// The log message (truncated to 1 KiB).
    pub message: String,
}

/// One alert instance: a rule's result for one label set, as sent to receivers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    /// Labels: the series' labels, the rule's `labels`, and `alertname`.
    pub labels: Labels,
    /// The rule's annotations, templated (`{{ $labels.service }}`, `{{ $value }}`).
    pub annotations: Labels,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// When it started firing, Unix ms.
    pub starts_at_ms: i64,
    /// When it resolved, Unix ms (`None` while firing).
    pub ends_at_ms: Option<i64>,
    /// The expression's value at the last evaluation.
    pub value: f64,
    /// Link back to Sightline for the rule (the `generatorURL` of Alertmanager payloads).
    pub generator_url: String,
    /// Sample log lines from the window that fired it (empty when none apply).
    pub samples: Vec<LogSample>,
}

impl Alert {
    /// The alert's identity: 16 hex digits of a 64-bit hash of its label set, as
    /// Alertmanager's `fingerprint` (stable across restarts and processes: xxh3 of the
    /// sorted `name\xffvalue\xff` pairs).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.labels)
    }
}

/// [`Alert::fingerprint`] of a label set.
pub fn fingerprint(labels: &Labels) -> String {
    let mut buf = Vec::new();
    for (k, v) in labels {
        buf.extend_from_slice(k.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(v.as_bytes());
        buf.push(0xff);
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&buf))
}

/// Where Sightline records its own actions (notifications sent, scaling decisions, API
/// tokens used) so they land in the tamper-evident audit trail next to Docker's and ECS's
/// events. Implementations must not block for long: they queue.
pub trait ActionLog: Send + Sync {
    /// Records one action. `event.resource.service` names the service it concerns,
    /// `event.actor` is Sightline's component (kind `sightline`, e.g. name `notifier`),
    /// `event.action` a dotted verb (`alert.notify`, `scaling.update_desired_count`).
    fn record(&self, event: AuditEvent);

    /// Reserves room for one record of lesser weight (an API request, recorded once it is
    /// answered): false when the log could not take it without crowding out the actions
    /// that must not be lost (notifications sent, desired counts changed), or cannot write
    /// at all. A `true` must be followed by exactly one [`ActionLog::record_admitted`] or
    /// [`ActionLog::cancel_admission`]. Default: always room.
    fn admit(&self) -> bool {
        true
    }

    /// Records an event whose room [`ActionLog::admit`] reserved.
    fn record_admitted(&self, event: AuditEvent) {
        self.record(event);
    }

    /// Gives back room [`ActionLog::admit`] reserved and no record used (the request was
    /// abandoned).
    fn cancel_admission(&self) {}
}

/// An [`ActionLog`] that keeps events in memory (tests, and the dry-run API).
#[derive(Default)]
pub struct MemoryActionLog(pub std::sync::Mutex<Vec<AuditEvent>>);

impl ActionLog for MemoryActionLog {
    fn record(&self, event: AuditEvent) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }
}

/// An [`ActionLog`] for when the audit trail is off: actions are logged (`info`), not kept.
pub struct TracingActionLog;

impl ActionLog for TracingActionLog {
    fn record(&self, event: AuditEvent) {
        tracing::info!(
            action = %event.action,
            actor = %event.actor.name,
            service = %event.resource.service,
            message = %event.message,
            "action (audit trail disabled)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_labels_only_and_is_stable() {
        let a: Labels = [("alertname", "HighCpu"), ("service", "checkout")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.insert("service".into(), "cart".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
        // "a"+"bc" must differ from "ab"+"c".
        let x: Labels = [("a".to_string(), "bc".to_string())].into();
        let y: Labels = [("ab".to_string(), "c".to_string())].into();
        assert_ne!(fingerprint(&x), fingerprint(&y));
    }
}
