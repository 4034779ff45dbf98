//! The dispatcher: Alertmanager's aggregation groups and notification log as a pure state
//! machine driven by explicit timestamps (Unix ms), so timers are tested without sleeping.
//!
//! Semantics (`dispatch/dispatch.go`, `notify/notify.go` `DedupStage`):
//! - every alert goes to each route [`RouteTree::matching`] selects, into the group
//!   keyed by the route and the alert's group labels;
//! - a new group waits `group_wait` before its first flush (at once when its alert
//!   started more than `group_wait` ago), then flushes every `group_interval`;
//! - at a flush, each integration of the receiver is notified when, since its last
//!   successful notification, an alert started firing, or (with `send_resolved`) one
//!   resolved, or the group fully resolved after a firing notification, or
//!   `repeat_interval` passed; a group whose alerts all resolved before anything was sent
//!   notifies nobody (an alert resolved within `group_wait` is never sent);
//! - after a flush all of whose notifications succeeded, the resolved alerts that did not
//!   change meanwhile are dropped, and an empty group is dropped;
//! - a firing alert the rules stop re-sending resolves after `resolve_timeout`.
//!
//! Deviation: a resolved alert for a fingerprint its group does not hold is ignored
//! (rules re-send resolved alerts for a while; Alertmanager would re-create the group
//! only to drop it silently, or send a spurious update).

use std::collections::{BTreeMap, BTreeSet};

use crate::alert::{Alert, AlertStatus};
use crate::series::Labels;

use super::config::ReceiverConfig;
use super::route::RouteTree;

/// Which integration of a receiver: its kind and index in that kind's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntegrationId {
    /// Kind.
    pub kind: IntegrationKind,
    /// Index in `webhook_configs` / `pagerduty_configs` / `slack_configs`.
    pub index: usize,
}

/// Integration kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IntegrationKind {
    /// `webhook_configs`.
    Webhook,
    /// `pagerduty_configs`.
    Pagerduty,
    /// `slack_configs`.
    Slack,
}

impl IntegrationKind {
    /// `webhook`, `pagerduty`, `slack`.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationKind::Webhook => "webhook",
            IntegrationKind::Pagerduty => "pagerduty",
            IntegrationKind::Slack => "slack",
        }
    }
}

/// One message to deliver: a group's alerts for one integration.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// Receiver name.
    pub receiver: String,
    /// The integration to deliver through.
    pub integration: IntegrationId,
    /// `"<route key>:<group labels>"`.
    pub group_key: String,
    /// The group's labels.
    pub group_labels: Labels,
    /// The alerts, sorted by labels; resolved ones left out when the integration does not
    /// `send_resolved`. Never empty.
    pub alerts: Vec<Alert>,
}

impl Notification {
    /// `resolved` when every alert is resolved, else `firing`.
    pub fn status(&self) -> AlertStatus {
        if self
            .alerts
            .iter()
            .all(|a| a.status == AlertStatus::Resolved)
        {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        }
    }
}

/// The notifications of one group flush; hand it back to [`Dispatcher::complete`] with
/// the delivery outcomes.
#[derive(Debug)]
pub struct Flush {
    /// What to deliver (at least one).
    pub notifications: Vec<Notification>,
    group: GroupId,
    firing: BTreeSet<String>,
    resolved: BTreeSet<String>,
    versions: BTreeMap<String, u64>,
}

impl Flush {
    /// The route whose group flushed (index in [`RouteTree::routes`]).
    pub fn route_id(&self) -> usize {
        self.group.0
    }
}

type GroupId = (usize, String);

#[derive(Debug)]
struct StoredAlert {
    alert: Alert,
    version: u64,
    last_seen_ms: i64,
}

#[derive(Debug)]
struct LogEntry {
    firing: BTreeSet<String>,
    resolved: BTreeSet<String>,
    at_ms: i64,
}

#[derive(Debug)]
struct AggrGroup {
    key: String,
    labels: Labels,
    alerts: BTreeMap<String, StoredAlert>,
    next_flush_ms: i64,
    has_flushed: bool,
    in_flight: bool,
    log: BTreeMap<IntegrationId, LogEntry>,
}

/// The aggregation groups and their notification log. Single-threaded; the
/// [`super::Notifier`] drives it.
#[derive(Debug)]
pub struct Dispatcher {
    tree: RouteTree,
    integrations: BTreeMap<String, Vec<(IntegrationId, bool)>>,
    resolve_timeout_ms: i64,
    groups: BTreeMap<GroupId, AggrGroup>,
    version: u64,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Dispatcher {
    /// A dispatcher for a compiled tree and its receivers; `resolve_timeout_ms` as
    /// [`super::NotifyConfig::resolve_timeout`].
    pub fn new(tree: RouteTree, receivers: &[ReceiverConfig], resolve_timeout_ms: i64) -> Self {
        let integrations = receivers
            .iter()
            .map(|r| {
                let mut v = Vec::new();
                for (i, w) in r.webhook_configs.iter().enumerate() {
                    v.push((
                        IntegrationId {
                            kind: IntegrationKind::Webhook,
                            index: i,
                        },
                        w.send_resolved,
                    ));
                }
                for (i, p) in r.pagerduty_configs.iter().enumerate() {
                    v.push((
                        IntegrationId {
                            kind: IntegrationKind::Pagerduty,
                            index: i,
                        },
                        p.send_resolved,
                    ));
                }
                for (i, s) in r.slack_configs.iter().enumerate() {
                    v.push((
                        IntegrationId {
                            kind: IntegrationKind::Slack,
                            index: i,
                        },
                        s.send_resolved,
                    ));
                }
                (r.name.clone(), v)
            })
            .collect();
        Dispatcher {
            tree,
            integrations,
            resolve_timeout_ms,
            groups: BTreeMap::new(),
            version: 0,
        }
    }

    /// Number of aggregation groups held.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The keys of the groups held (for status pages and tests).
    pub fn group_keys(&self) -> Vec<String> {
        self.groups.values().map(|g| g.key.clone()).collect()
    }

    /// Takes in a batch of alerts (firing, and resolved re-sends) received at `now_ms`.
    pub fn ingest(&mut self, alerts: Vec<Alert>, now_ms: i64) {
        for alert in alerts {
            let fp = alert.fingerprint();
            let routes: Vec<_> = self
                .tree
                .matching(&alert.labels)
                .into_iter()
                .map(|r| (r.id, r.group_labels(&alert.labels), ms(r.group_wait)))
                .collect();
            for (route_id, group_labels, group_wait_ms) in routes {
                let id = (route_id, crate::alert::fingerprint(&group_labels));
                let known = self
                    .groups
                    .get(&id)
                    .is_some_and(|g| g.alerts.contains_key(&fp));
                if alert.status == AlertStatus::Resolved && !known {
                    continue;
                }
                let route = &self.tree.routes[route_id];
                let group = self.groups.entry(id).or_insert_with(|| AggrGroup {
                    key: route.group_key(&group_labels),
                    labels: group_labels,
                    alerts: BTreeMap::new(),
                    next_flush_ms: now_ms.saturating_add(group_wait_ms),
                    has_flushed: false,
                    in_flight: false,
                    log: BTreeMap::new(),
                });
                if !group.has_flushed && alert.starts_at_ms.saturating_add(group_wait_ms) <= now_ms
                {
                    group.next_flush_ms = group.next_flush_ms.min(now_ms);
                }
                self.version += 1;
                group.alerts.insert(
                    fp.clone(),
                    StoredAlert {
                        alert: alert.clone(),
                        version: self.version,
                        last_seen_ms: now_ms,
                    },
                );
            }
        }
    }

    /// When the next flush is due (Unix ms), if any group waits.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.groups
            .values()
            .filter(|g| !g.in_flight)
            .map(|g| g.next_flush_ms)
            .min()
    }

    /// Flushes every group due at `now_ms`: returns the notifications to deliver, one
    /// [`Flush`] per group that has something to send. Groups with a flush out are not
    /// flushed again until it is [`complete`](Self::complete)d.
    pub fn take_due(&mut self, now_ms: i64) -> Vec<Flush> {
        let due: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| !g.in_flight && g.next_flush_ms <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in due {
            let route = &self.tree.routes[id.0];
            let (interval_ms, repeat_ms) = (ms(route.group_interval), ms(route.repeat_interval));
            let integrations = self
                .integrations
                .get(&route.receiver)
                .cloned()
                .unwrap_or_default();
            let receiver = route.receiver.clone();
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            // Firing alerts the rules stopped re-sending resolve after resolve_timeout.
            for s in group.alerts.values_mut() {
                let ends = s.last_seen_ms.saturating_add(self.resolve_timeout_ms);
                if s.alert.status == AlertStatus::Firing && ends <= now_ms {
                    s.alert.status = AlertStatus::Resolved;
                    s.alert.ends_at_ms = Some(ends);
                    self.version += 1;
                    s.version = self.version;
                }
            }
            group.has_flushed = true;
            group.next_flush_ms = now_ms.saturating_add(interval_ms);
            let mut alerts: Vec<&StoredAlert> = group.alerts.values().collect();
            alerts.sort_by(|a, b| a.alert.labels.cmp(&b.alert.labels));
            let firing: BTreeSet<String> = group
                .alerts
                .iter()
                .filter(|(_, s)| s.alert.status == AlertStatus::Firing)
                .map(|(fp, _)| fp.clone())
                .collect();
            let resolved: BTreeSet<String> = group
                .alerts
                .keys()
                .filter(|fp| !firing.contains(*fp))
                .cloned()
                .collect();
            let versions = group
                .alerts
                .iter()
                .map(|(fp, s)| (fp.clone(), s.version))
                .collect();
            let mut notifications = Vec::new();
            let mut nothing_to_send = Vec::new();
            for (integration, send_resolved) in integrations {
                let entry = group.log.get(&integration);
                if !needs_update(entry, &firing, &resolved, send_resolved, repeat_ms, now_ms) {
                    continue;
                }
                let sent: Vec<Alert> = alerts
                    .iter()
                    .filter(|s| send_resolved || s.alert.status == AlertStatus::Firing)
                    .map(|s| s.alert.clone())
                    .collect();
                if sent.is_empty() {
                    nothing_to_send.push(integration);
                } else {
                    notifications.push(Notification {
                        receiver: receiver.clone(),
                        integration,
                        group_key: group.key.clone(),
                        group_labels: group.labels.clone(),
                        alerts: sent,
                    });
                }
            }
            for integration in nothing_to_send {
                group.log.insert(
                    integration,
                    LogEntry {
                        firing: firing.clone(),
                        resolved: resolved.clone(),
                        at_ms: now_ms,
                    },
                );
            }
            let flush = Flush {
                notifications,
                group: id,
                firing,
                resolved,
                versions,
            };
            if flush.notifications.is_empty() {
                self.finish(flush, true);
            } else {
                if let Some(g) = self.groups.get_mut(&flush.group) {
                    g.in_flight = true;
                }
                out.push(flush);
            }
        }
        out
    }

    /// Applies a flush's outcomes: `delivered[i]` tells whether `flush.notifications[i]`
    /// was delivered, at `now_ms`. Delivered ones are logged (so they are not re-sent);
    /// when all were, unchanged resolved alerts are dropped, and an empty group with them.
    pub fn complete(&mut self, flush: Flush, delivered: &[bool], now_ms: i64) {
        let Some(group) = self.groups.get_mut(&flush.group) else {
            return;
        };
        group.in_flight = false;
        let mut all_ok = true;
        for (i, n) in flush.notifications.iter().enumerate() {
            if delivered.get(i).copied().unwrap_or(false) {
                group.log.insert(
                    n.integration,
                    LogEntry {
                        firing: flush.firing.clone(),
                        resolved: flush.resolved.clone(),
                        at_ms: now_ms,
                    },
                );
            } else {
                all_ok = false;
            }
        }
        self.finish(flush, all_ok);
    }

    fn finish(&mut self, flush: Flush, all_ok: bool) {
        let Some(group) = self.groups.get_mut(&flush.group) else {
            return;
        };
        if all_ok {
            group.alerts.retain(|fp, s| {
                !(flush.resolved.contains(fp) && flush.versions.get(fp) == Some(&s.version))
            });
        }
        if group.alerts.is_empty() {
            self.groups.remove(&flush.group);
        }
    }
}

/// `DedupStage.needsUpdate` of Alertmanager's `notify/notify.go`.
fn needs_update(
    entry: Option<&LogEntry>,
    firing: &BTreeSet<String>,
    resolved: &BTreeSet<String>,
    send_resolved: bool,
    repeat_ms: i64,
    now_ms: i64,
) -> bool {
    let Some(entry) = entry else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&entry.firing) {
        return true;
    }
    if firing.is_empty() {
        return !entry.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&entry.resolved) {
        return true;
    }
    entry.at_ms < now_ms.saturating_sub(repeat_ms)
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
