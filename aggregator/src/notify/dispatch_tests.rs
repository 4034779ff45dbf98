//! Timer and grouping tests of the dispatcher, on a manual clock (plain ms values).

use proptest::prelude::*;

use super::*;
use crate::notify::config::NotifyConfig;

const S: i64 = 1000;
const M: i64 = 60 * S;

fn dispatcher(toml_text: &str) -> Dispatcher {
    let c: NotifyConfig = toml::from_str(toml_text).unwrap();
    let tree = RouteTree::compile(&c).unwrap();
    Dispatcher::new(tree, &c.receivers, c.resolve_timeout.as_millis())
}

const CFG: &str = r#"
    [[receivers]]
    name = "ops"
    [[receivers.webhook_configs]]
    url = "http://127.0.0.1:1/hook"
    [route]
    receiver = "ops"
    group_by = ["service"]
"#;

fn alert(name: &str, service: &str, status: AlertStatus, starts: i64) -> Alert {
    Alert {
        labels: [("alertname", name), ("service", service)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: Labels::new(),
        status,
        starts_at_ms: starts,
        ends_at_ms: (status == AlertStatus::Resolved).then_some(starts + 10 * S),
        value: 1.0,
        generator_url: String::new(),
        samples: Vec::new(),
    }
}

fn flush_all(d: &mut Dispatcher, now: i64) -> Vec<Notification> {
    let flushes = d.take_due(now);
    let mut out = Vec::new();
    for f in flushes {
        let ok = vec![true; f.notifications.len()];
        out.extend(f.notifications.clone());
        d.complete(f, &ok, now);
    }
    out
}

#[test]
fn two_alerts_of_one_service_go_in_one_notification_after_group_wait() {
    let mut d = dispatcher(CFG);
    let t0 = 1_000_000 * S;
    d.ingest(
        vec![alert("HighCpu", "checkout", AlertStatus::Firing, t0)],
        t0,
    );
    d.ingest(
        vec![alert(
            "HighErrors",
            "checkout",
            AlertStatus::Firing,
            t0 + 5 * S,
        )],
        t0 + 5 * S,
    );
    assert_eq!(d.next_due_ms(), Some(t0 + 30 * S));
    assert!(
        flush_all(&mut d, t0 + 29 * S).is_empty(),
        "nothing before group_wait"
    );
    let sent = flush_all(&mut d, t0 + 30 * S);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].alerts.len(), 2);
    assert_eq!(sent[0].group_key, "{}:{service=\"checkout\"}");
    assert_eq!(sent[0].status(), AlertStatus::Firing);
    // Unchanged (both re-sent by the rules): nothing at the next group_interval.
    d.ingest(
        vec![
            alert("HighCpu", "checkout", AlertStatus::Firing, t0),
            alert("HighErrors", "checkout", AlertStatus::Firing, t0 + 5 * S),
        ],
        t0 + 60 * S,
    );
    assert!(flush_all(&mut d, t0 + 30 * S + 5 * M).is_empty());
}

#[test]
fn an_alert_resolved_within_group_wait_is_never_sent() {
    let mut d = dispatcher(CFG);
    let t0 = 1_000_000 * S;
    d.ingest(
        vec![alert("HighCpu", "checkout", AlertStatus::Firing, t0)],
        t0,
    );
    d.ingest(
        vec![alert("HighCpu", "checkout", AlertStatus::Resolved, t0)],
        t0 + 10 * S,
    );
    assert!(flush_all(&mut d, t0 + 30 * S).is_empty());
    assert_eq!(d.group_count(), 0, "the group is dropped");
    // Re-sent resolved alerts do not re-create it.
    d.ingest(
        vec![alert("HighCpu", "checkout", AlertStatus::Resolved, t0)],
        t0 + 40 * S,
    );
    assert_eq!(d.group_count(), 0);
}

#[test]
fn updates_wait_for_group_interval_then_resolution_is_sent_and_the_group_dropped() {
    let mut d = dispatcher(CFG);
    let t0 = 1_000_000 * S;
    d.ingest(
        vec![alert("HighCpu", "checkout", AlertStatus::Firing, t0)],
        t0,
    );
    assert_eq!(flush_all(&mut d, t0 + 30 * S).len(), 1);
    d.ingest(
        vec![alert("HighErrors", "checkout", AlertStatus::Firing, t0 + M)],
        t0 + M,
    );
    assert!(
        flush_all(&mut d, t0 + 2 * M).is_empty(),
        "a new alert waits for group_interval"
    );
    assert_eq!(d.next_due_ms(), Some(t0 + 30 * S + 5 * M));
    let sent = flush_all(&mut d, t0 + 30 * S + 5 * M);
    assert_eq!(sent[0].alerts.len(), 2);
    d.ingest(
        vec![
            alert("HighCpu", "checkout", AlertStatus::Resolved, t0),
            alert("HighErrors", "checkout", AlertStatus::Resolved, t0 + M),
        ],
        t0 + 6 * M,
    );
    let sent = flush_all(&mut d, t0 + 30 * S + 10 * M);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status(), AlertStatus::Resolved);
    assert_eq!(d.group_count(), 0);
}

#[test]
fn unchanged_groups_repeat_after_repeat_interval() {
    let mut d = dispatcher(&format!("{CFG}repeat_interval = \"1h\"\n"));
    let t0 = 1_000_000 * S;
    d.ingest(
        vec![alert("HighCpu", "checkout", AlertStatus::Firing, t0)],
        t0,
    );
    let first = t0 + 30 * S;
    assert_eq!(flush_all(&mut d, first).len(), 1);
    let mut sends = Vec::new();
    let mut now = first;
    while now < first + 3 * 3600 * S {
        now += 5 * M;
        d.ingest(
            vec![alert("HighCpu", "checkout", AlertStatus::Firing, t0)],
            now,
        );
        if !flush_all(&mut d, now).is_empty() {
            sends.push(now - first);
        }
    }
    // Checked at each group_interval, strictly after repeat_interval: 65 min, 130 min.
    assert_eq!(sends, [65 * M, 130 * M]);
}

#[test]
fn failed_deliveries_are_retried_at_the_next_flush_and_keep_the_group() {
    let mut d = dispatcher(CFG);
    let t0 = 1_000_000 * S;
    d.ingest(
        vec![alert("HighCpu", "checkout", AlertStatus::Firing, t0)],
        t0,
    );
    let f = d.take_due(t0 + 30 * S).pop().unwrap();
    assert_eq!(d.next_due_ms(), None, "no flush while one is out");
    d.complete(f, &[false], t0 + 31 * S);
    d.ingest(
        vec![alert("HighCpu", "checkout", AlertStatus::Firing, t0)],
        t0 + M,
    );
    assert_eq!(
        flush_all(&mut d, t0 + 30 * S + 5 * M).len(),
        1,
        "sent again"
    );
}

#[test]
fn old_alerts_flush_at_once_and_silent_ones_resolve_after_resolve_timeout() {
    let mut d = dispatcher(CFG);
    let t0 = 1_000_000 * S;
    d.ingest(
        vec![alert(
            "HighCpu",
            "checkout",
            AlertStatus::Firing,
            t0 - 10 * M,
        )],
        t0,
    );
    assert_eq!(d.next_due_ms(), Some(t0));
    assert_eq!(flush_all(&mut d, t0).len(), 1);
    // No re-send for 5 min: resolved at the next flush after that.
    let sent = flush_all(&mut d, t0 + 5 * M);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status(), AlertStatus::Resolved);
    assert_eq!(sent[0].alerts[0].ends_at_ms, Some(t0 + 5 * M));
}

#[test]
fn send_resolved_false_sends_no_resolution_and_still_drops_the_group() {
    let mut d = dispatcher(&CFG.replace("url = ", "send_resolved = false\n    url = "));
    let t0 = 1_000_000 * S;
    d.ingest(
        vec![
            alert("A", "checkout", AlertStatus::Firing, t0),
            alert("B", "checkout", AlertStatus::Firing, t0),
        ],
        t0,
    );
    assert_eq!(flush_all(&mut d, t0 + 30 * S).len(), 1);
    d.ingest(
        vec![alert("A", "checkout", AlertStatus::Resolved, t0)],
        t0 + M,
    );
    assert!(
        flush_all(&mut d, t0 + 30 * S + 5 * M).is_empty(),
        "only a resolution: not sent"
    );
    d.ingest(
        vec![alert("B", "checkout", AlertStatus::Resolved, t0)],
        t0 + 6 * M,
    );
    assert!(flush_all(&mut d, t0 + 30 * S + 10 * M).is_empty());
    assert_eq!(d.group_count(), 0);
}

#[derive(Clone, Debug)]
enum Op {
    Fire(u8, u8),
    Resolve(u8, u8),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 0u8..2).prop_map(|(a, s)| Op::Fire(a, s)),
        (0u8..3, 0u8..2).prop_map(|(a, s)| Op::Resolve(a, s)),
        (1i64..400).prop_map(|s| Op::Advance(s * S)),
    ]
}

proptest! {
    /// Whatever the alerts do: no group notifies before group_wait after it formed, two
    /// notifications of one group are at least group_interval apart, and a resolved
    /// notification always follows a firing one.
    #[test]
    fn timers_hold(ops in proptest::collection::vec(op(), 1..80)) {
        let mut d = dispatcher(CFG);
        let mut now = 1_000_000 * S;
        let mut formed: BTreeMap<String, i64> = BTreeMap::new();
        let mut last_sent: BTreeMap<String, i64> = BTreeMap::new();
        let mut fired: BTreeSet<String> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Fire(a, s) | Op::Resolve(a, s) => {
                    let status = if matches!(op, Op::Fire(..)) { AlertStatus::Firing } else { AlertStatus::Resolved };
                    let svc = format!("svc{s}");
                    d.ingest(vec![alert(&format!("A{a}"), &svc, status, now)], now);
                    for k in d.group_keys() {
                        formed.entry(k).or_insert(now);
                    }
                }
                Op::Advance(dt) => {
                    let target = now + dt;
                    while let Some(due) = d.next_due_ms().filter(|t| *t <= target) {
                        now = due.max(now);
                        for n in flush_all(&mut d, now) {
                            let f = formed[&n.group_key];
                            prop_assert!(now >= f + 30 * S, "sent before group_wait");
                            if let Some(prev) = last_sent.get(&n.group_key) {
                                prop_assert!(now >= prev + 5 * M, "two sends within group_interval");
                            }
                            if n.status() == AlertStatus::Resolved {
                                prop_assert!(fired.contains(&n.group_key), "resolution without firing");
                            } else {
                                fired.insert(n.group_key.clone());
                            }
                            last_sent.insert(n.group_key.clone(), now);
                        }
                        let live: BTreeSet<String> = d.group_keys().into_iter().collect();
                        formed.retain(|k, _| live.contains(k));
                        last_sent.retain(|k, _| live.contains(k));
                        fired.retain(|k| live.contains(k));
                    }
                    now = target;
                }
            }
        }
    }
}
