//! The compiled routing tree: which routes an alert's labels select, each route's key and
//! timers, and the group labels of an alert (Alertmanager's `dispatch/route.go`).

use std::time::Duration;

use crate::series::{Labels, MatchOp, Matcher};

use super::config::{parse_matchers, NotifyConfig, NotifyConfigError, RouteConfig};

/// How a route groups alerts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// `group_by: ['...']`: every label, i.e. one group per alert.
    All,
    /// These labels (absent ones are left out of the group labels).
    Labels(Vec<String>),
}

/// One route with everything inherited resolved.
#[derive(Clone, Debug)]
pub struct Route {
    /// Index in [`RouteTree::routes`] (pre-order; 0 is the root).
    pub id: usize,
    /// Alertmanager's route key: the parent's key, `/`, then the route's sorted matchers,
    /// e.g. `{}/{service=~"check.*"}` (`Route.Key()`).
    pub key: String,
    /// Receiver name.
    pub receiver: String,
    /// Grouping.
    pub group_by: GroupBy,
    /// Matchers (sorted by name, operator, value).
    pub matchers: Vec<Matcher>,
    /// Continue with the next sibling after a match.
    pub continue_matching: bool,
    /// Wait before a new group's first notification.
    pub group_wait: Duration,
    /// Wait between notifications of a changed group.
    pub group_interval: Duration,
    /// Wait before re-sending an unchanged group.
    pub repeat_interval: Duration,
    /// Child route IDs, in order.
    pub children: Vec<usize>,
}

/// The whole tree, flattened.
#[derive(Clone, Debug)]
pub struct RouteTree {
    /// Routes in pre-order; `routes[0]` is the root.
    pub routes: Vec<Route>,
}

impl RouteTree {
    /// Compiles a config's tree (the config should have passed
    /// [`NotifyConfig::validate`]).
    ///
    /// Errors: the validation error, if it did not.
    pub fn compile(config: &NotifyConfig) -> Result<RouteTree, NotifyConfigError> {
        config.validate()?;
        let mut tree = RouteTree { routes: Vec::new() };
        let root = Inherited {
            key: None,
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        };
        tree.add(&config.route, &root)
            .map_err(|message| NotifyConfigError {
                field: "notify.route".into(),
                message,
            })?;
        Ok(tree)
    }

    fn add(&mut self, cfg: &RouteConfig, parent: &Inherited) -> Result<usize, String> {
        let mut matchers = Vec::new();
        for m in &cfg.matchers {
            matchers.extend(parse_matchers(m)?);
        }
        matchers.sort_by(|a, b| {
            (a.name.as_str(), op_rank(a.op), a.value.as_str()).cmp(&(
                b.name.as_str(),
                op_rank(b.op),
                b.value.as_str(),
            ))
        });
        let own = matchers_string(&matchers);
        let key = match &parent.key {
            Some(k) => format!("{k}/{own}"),
            None => own,
        };
        let group_by = match &cfg.group_by {
            Some(g) if g.iter().any(|l| l == "...") => GroupBy::All,
            Some(g) => GroupBy::Labels(g.clone()),
            None => parent.group_by.clone(),
        };
        let this = Inherited {
            key: Some(key.clone()),
            receiver: cfg
                .receiver
                .clone()
                .unwrap_or_else(|| parent.receiver.clone()),
            group_by,
            group_wait: cfg.group_wait.map_or(parent.group_wait, |d| d.0),
            group_interval: cfg.group_interval.map_or(parent.group_interval, |d| d.0),
            repeat_interval: cfg.repeat_interval.map_or(parent.repeat_interval, |d| d.0),
        };
        let id = self.routes.len();
        self.routes.push(Route {
            id,
            key,
            receiver: this.receiver.clone(),
            group_by: this.group_by.clone(),
            matchers,
            continue_matching: cfg.continue_matching,
            group_wait: this.group_wait,
            group_interval: this.group_interval,
            repeat_interval: this.repeat_interval,
            children: Vec::new(),
        });
        for child in &cfg.routes {
            let c = self.add(child, &this)?;
            self.routes[id].children.push(c);
        }
        Ok(id)
    }

    /// The routes an alert with `labels` goes to, as Alertmanager's `Route.Match`: the
    /// deepest matching routes, depth-first, siblings after a match only with
    /// `continue`; the root when no child matches.
    pub fn matching(&self, labels: &Labels) -> Vec<&Route> {
        let mut out = Vec::new();
        self.match_into(0, labels, &mut out);
        out
    }

    fn match_into<'a>(&'a self, id: usize, labels: &Labels, out: &mut Vec<&'a Route>) -> bool {
        let route = &self.routes[id];
        if !route.matchers.iter().all(|m| m.matches(labels)) {
            return false;
        }
        let before = out.len();
        for &c in &route.children {
            if self.match_into(c, labels, out) && !self.routes[c].continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(route);
        }
        true
    }
}

struct Inherited {
    key: Option<String>,
    receiver: String,
    group_by: GroupBy,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
}

impl Route {
    /// The group labels of an alert on this route: the `group_by` labels it has (all of
    /// them for `...`).
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }

    /// The group key, `"<route key>:<group labels>"` (`aggrGroup.GroupKey()`), e.g.
    /// `{}/{service=~"check.*"}:{alertname="HighCpu", service="checkout"}`.
    pub fn group_key(&self, group_labels: &Labels) -> String {
        format!("{}:{}", self.key, label_set_string(group_labels))
    }
}

fn op_rank(op: MatchOp) -> u8 {
    match op {
        MatchOp::Equal => 0,
        MatchOp::NotEqual => 1,
        MatchOp::Regex => 2,
        MatchOp::NotRegex => 3,
    }
}

fn op_str(op: MatchOp) -> &'static str {
    match op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Regex => "=~",
        MatchOp::NotRegex => "!~",
    }
}

/// `{a="x",b=~"y"}` as Alertmanager's `labels.Matchers.String()` (values escaped for
/// `\`, `"` and newline).
fn matchers_string(ms: &[Matcher]) -> String {
    let parts: Vec<String> = ms
        .iter()
        .map(|m| {
            let v = m
                .value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{}{}\"{v}\"", m.name, op_str(m.op))
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// `{a="x", b="y"}` as Prometheus' `model.LabelSet.String()`: `name=` + Go-quoted value,
/// the pairs sorted as strings, joined by `", "`.
pub fn label_set_string(labels: &Labels) -> String {
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    pairs.sort();
    format!("{{{}}}", pairs.join(", "))
}

/// Go's `strconv.Quote` for the characters label values contain in practice.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tree(toml_text: &str) -> RouteTree {
        RouteTree::compile(&toml::from_str(toml_text).unwrap()).unwrap()
    }

    const CFG: &str = r#"
        [[receivers]]
        name = "default"
        [[receivers]]
        name = "checkout-team"
        [[receivers]]
        name = "pager"
        [route]
        receiver = "default"
        group_by = ["alertname"]
        [[route.routes]]
        receiver = "checkout-team"
        matchers = ['service=~"check.*"']
        continue = true
        group_by = ["alertname", "service"]
        [[route.routes]]
        receiver = "pager"
        matchers = ['severity="critical"']
        repeat_interval = "1h"
    "#;

    #[test]
    fn matching_follows_continue_and_falls_back_to_root() {
        let t = tree(CFG);
        let r: Vec<_> = t
            .matching(&labels(&[
                ("service", "checkout"),
                ("severity", "critical"),
            ]))
            .iter()
            .map(|r| r.receiver.as_str())
            .collect();
        assert_eq!(r, ["checkout-team", "pager"]);
        let r = t.matching(&labels(&[("service", "cart")]));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].id, 0);
        let pager = t.matching(&labels(&[("severity", "critical")]))[0];
        assert_eq!(pager.repeat_interval, Duration::from_secs(3600));
        assert_eq!(
            pager.group_wait,
            Duration::from_secs(30),
            "inherited default"
        );
        assert_eq!(
            pager.group_by,
            GroupBy::Labels(vec!["alertname".into()]),
            "inherited"
        );
    }

    #[test]
    fn keys_are_alertmanagers() {
        let t = tree(CFG);
        assert_eq!(t.routes[0].key, "{}");
        assert_eq!(t.routes[1].key, "{}/{service=~\"check.*\"}");
        let l = labels(&[
            ("alertname", "HighCpu"),
            ("service", "checkout"),
            ("pod", "x"),
        ]);
        let gl = t.routes[1].group_labels(&l);
        assert_eq!(
            t.routes[1].group_key(&gl),
            "{}/{service=~\"check.*\"}:{alertname=\"HighCpu\", service=\"checkout\"}"
        );
        assert_eq!(t.routes[0].group_key(&Labels::new()), "{}:{}");
        // Sorted as "name=value" strings, like Go: "a1=" sorts before "a=".
        assert_eq!(
            label_set_string(&labels(&[("a", "x"), ("a1", "y\"")])),
            "{a1=\"y\\\"\", a=\"x\"}"
        );
    }
}
