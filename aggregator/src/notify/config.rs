//! The `[notify]` table of the aggregator's TOML config, with Alertmanager's field names
//! (`route`, `receivers`, `group_by`, `group_wait`, `webhook_configs`, …; see
//! Alertmanager's `docs/configuration.md`) and its pure [`NotifyConfig::validate`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::series::{MatchOp, Matcher};

/// A configuration error, naming the offending field by its path in the config
/// (e.g. `notify.route.routes[0].matchers[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct NotifyConfigError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> NotifyConfigError {
    NotifyConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// A secret string (an integration key, a webhook URL with a token in it). `Debug`,
/// `Display` and `Serialize` print `**REDACTED**`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value (for the HTTP request only: never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("**REDACTED**")
    }
}

/// A duration written as Prometheus does: one or more `<number><unit>` with units `ms`,
/// `s`, `m`, `h`, `d` (24h), `w` (7d), `y` (365d), largest first, e.g. `30s`, `1h30m`
/// (`prometheus/common` `model.ParseDuration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    /// Parses `30s`, `5m`, `1h30m`, `0s`.
    ///
    /// Errors: empty input, a missing or unknown unit, units out of order, overflow.
    pub fn parse(s: &str) -> Result<Self, String> {
        const UNITS: [(&str, u64); 7] = [
            ("y", 365 * 24 * 3_600_000),
            ("w", 7 * 24 * 3_600_000),
            ("d", 24 * 3_600_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        if s.is_empty() {
            return Err("empty duration".into());
        }
        if s == "0" {
            return Ok(PromDuration(Duration::ZERO));
        }
        let mut rest = s;
        let mut total: u64 = 0;
        let mut last_rank: Option<usize> = None;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!("invalid duration {s:?}: expected a number"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let rank = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(|| {
                format!("invalid duration {s:?}: unknown unit {unit:?} (use ms, s, m, h, d, w, y)")
            })?;
            if last_rank.is_some_and(|r| r >= rank) {
                return Err(format!(
                    "invalid duration {s:?}: units must go from largest to smallest"
                ));
            }
            last_rank = Some(rank);
            total = n
                .checked_mul(UNITS[rank].1)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
        }
        Ok(PromDuration(Duration::from_millis(total)))
    }

    /// Whole milliseconds.
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PromDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for PromDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The `[notify]` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Base URL of Sightline as on-call reaches it (e.g. `https://sightline.example.com`),
    /// used for `externalURL` and for links to the correlation view. Empty: no links.
    #[serde(default)]
    pub external_url: String,
    /// A firing alert that is not re-sent by the rules for this long is taken as resolved
    /// (Alertmanager's `global.resolve_timeout`). Default `5m`.
    #[serde(default = "default_resolve_timeout")]
    pub resolve_timeout: PromDuration,
    /// The root of the routing tree.
    pub route: RouteConfig,
    /// The receivers routes name.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
}

fn default_resolve_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(300))
}

/// One node of the routing tree (`<route>` of Alertmanager). Unset fields are inherited
/// from the parent; the root's defaults are `group_wait` 30s, `group_interval` 5m,
/// `repeat_interval` 4h, `group_by` empty (one group per route).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver name (required on the root).
    #[serde(default)]
    pub receiver: Option<String>,
    /// Labels to group by; `["..."]` groups by all labels (one group per alert).
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Matchers an alert must satisfy, each `name op "value"` with op `=`, `!=`, `=~`,
    /// `!~` (regexes anchored), e.g. `service=~"check.*"`. The root has none.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Whether matching continues with the next sibling after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Wait before the first notification of a new group.
    #[serde(default)]
    pub group_wait: Option<PromDuration>,
    /// Wait between notifications of a group whose alerts changed.
    #[serde(default)]
    pub group_interval: Option<PromDuration>,
    /// Wait before re-sending an unchanged group.
    #[serde(default)]
    pub repeat_interval: Option<PromDuration>,
    /// Child routes, tried in order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// A named receiver: any number of integrations, all notified for its groups.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Unique name.
    pub name: String,
    /// Generic webhooks (Alertmanager payload version 4).
    #[serde(default)]
    pub webhook_configs: Vec<WebhookConfig>,
    /// PagerDuty Events API v2.
    #[serde(default)]
    pub pagerduty_configs: Vec<PagerdutyConfig>,
    /// Slack incoming webhooks.
    #[serde(default)]
    pub slack_configs: Vec<SlackConfig>,
}

fn yes() -> bool {
    true
}

/// `<webhook_config>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Endpoint (http or https). It may carry a token, so it prints as `**REDACTED**`
    /// (Alertmanager's `<secret>` URL).
    pub url: Secret,
    /// Notify about resolved groups. Default true.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Most alerts per payload (the rest are counted in `truncatedAlerts`); 0 = all.
    #[serde(default)]
    pub max_alerts: u64,
}

/// The Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

fn default_pagerduty_url() -> String {
    PAGERDUTY_EVENTS_URL.to_string()
}

fn default_severity() -> String {
    "error".to_string()
}

/// `<pagerduty_config>` (Events API v2 only).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerdutyConfig {
    /// The integration key of an Events API v2 integration.
    pub routing_key: Secret,
    /// Endpoint. Default `https://events.pagerduty.com/v2/enqueue`.
    #[serde(default = "default_pagerduty_url")]
    pub url: String,
    /// `critical`, `error`, `warning` or `info`. Default `error`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Resolve the PagerDuty alert when the group resolves. Default true.
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

/// `<slack_config>` for incoming webhooks.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (it embeds a token, hence secret).
    pub api_url: Secret,
    /// Channel override (`#ops`); empty: the webhook's own channel.
    #[serde(default)]
    pub channel: String,
    /// Post when the group resolves. Default false, as Alertmanager.
    #[serde(default)]
    pub send_resolved: bool,
}

impl NotifyConfig {
    /// Checks the whole table without side effects: the root route has a receiver and no
    /// matchers, every route's receiver exists, matchers parse, intervals are > 0,
    /// `group_by` names are label names (or a lone `...`), receiver names are unique, URLs
    /// are http(s), PagerDuty severities are known.
    ///
    /// Errors: the first problem, naming its field.
    pub fn validate(&self) -> Result<(), NotifyConfigError> {
        if !self.external_url.is_empty() {
            check_url("notify.external_url", &self.external_url)?;
        }
        if self.resolve_timeout.0.is_zero() {
            return Err(err("notify.resolve_timeout", "must be greater than 0"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let f = format!("notify.receivers[{i}]");
            if r.name.is_empty() {
                return Err(err(format!("{f}.name"), "must not be empty"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(err(
                    format!("{f}.name"),
                    format!("duplicate receiver {:?}", r.name),
                ));
            }
            for (j, w) in r.webhook_configs.iter().enumerate() {
                check_url(&format!("{f}.webhook_configs[{j}].url"), w.url.expose())?;
            }
            for (j, p) in r.pagerduty_configs.iter().enumerate() {
                let pf = format!("{f}.pagerduty_configs[{j}]");
                if p.routing_key.expose().trim().is_empty() {
                    return Err(err(format!("{pf}.routing_key"), "must not be empty"));
                }
                check_url(&format!("{pf}.url"), &p.url)?;
                if !["critical", "error", "warning", "info"].contains(&p.severity.as_str()) {
                    return Err(err(
                        format!("{pf}.severity"),
                        format!(
                            "{:?} is not one of critical, error, warning, info",
                            p.severity
                        ),
                    ));
                }
            }
            for (j, s) in r.slack_configs.iter().enumerate() {
                check_url(
                    &format!("{f}.slack_configs[{j}].api_url"),
                    s.api_url.expose(),
                )
                .map_err(|e| err(e.field, "is not an http(s) URL"))?;
            }
        }
        let root = &self.route;
        if root.receiver.is_none() {
            return Err(err(
                "notify.route.receiver",
                "the root route needs a receiver",
            ));
        }
        if !root.matchers.is_empty() {
            return Err(err(
                "notify.route.matchers",
                "the root route must not have matchers",
            ));
        }
        if root.continue_matching {
            return Err(err(
                "notify.route.continue",
                "the root route cannot have continue",
            ));
        }
        validate_route(root, "notify.route", &names)
    }
}

fn validate_route(
    r: &RouteConfig,
    field: &str,
    receivers: &std::collections::BTreeSet<&str>,
) -> Result<(), NotifyConfigError> {
    if let Some(name) = &r.receiver {
        if !receivers.contains(name.as_str()) {
            return Err(err(
                format!("{field}.receiver"),
                format!("unknown receiver {name:?}"),
            ));
        }
    }
    if let Some(group_by) = &r.group_by {
        let all = group_by.iter().any(|g| g == "...");
        if all && group_by.len() > 1 {
            return Err(err(
                format!("{field}.group_by"),
                "'...' must be the only element",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, g) in group_by.iter().enumerate() {
            if g != "..." && !is_label_name(g) {
                return Err(err(
                    format!("{field}.group_by[{i}]"),
                    format!("{g:?} is not a label name"),
                ));
            }
            if !seen.insert(g) {
                return Err(err(
                    format!("{field}.group_by[{i}]"),
                    format!("duplicate label {g:?}"),
                ));
            }
        }
    }
    for (i, m) in r.matchers.iter().enumerate() {
        parse_matchers(m).map_err(|e| err(format!("{field}.matchers[{i}]"), e))?;
    }
    for (name, d) in [
        ("group_wait", r.group_wait),
        ("group_interval", r.group_interval),
        ("repeat_interval", r.repeat_interval),
    ] {
        // group_wait 0 is allowed (notify at once), as in Alertmanager.
        if name != "group_wait" && d.is_some_and(|d| d.0.is_zero()) {
            return Err(err(format!("{field}.{name}"), "must be greater than 0"));
        }
    }
    for (i, child) in r.routes.iter().enumerate() {
        validate_route(child, &format!("{field}.routes[{i}]"), receivers)?;
    }
    Ok(())
}

fn check_url(field: &str, url: &str) -> Result<(), NotifyConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.has_host() => Ok(()),
        Ok(u) => Err(err(
            field,
            format!("scheme {:?} is not http or https", u.scheme()),
        )),
        Err(e) => Err(err(field, format!("invalid URL: {e}"))),
    }
}

/// Whether `s` is a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Parses one matchers entry as Alertmanager does: `name op value` or a braced,
/// comma-separated list `{a="x", b=~"y.*"}`; values may be double-quoted (with `\"`,
/// `\\`, `\n` escapes) or bare. Regexes are anchored (`^(?:re)$`).
///
/// Errors: a text describing the first problem.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, String> {
    let mut s = input.trim();
    if let Some(inner) = s.strip_prefix('{') {
        s = inner
            .strip_suffix('}')
            .ok_or_else(|| format!("{input:?}: missing closing '}}'"))?
            .trim();
    }
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let name_len = rest
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
            .count();
        let name = &rest[..name_len];
        if !is_label_name(name) {
            return Err(format!("{input:?}: expected a label name at {rest:?}"));
        }
        rest = rest[name_len..].trim_start();
        let (op, len) = if rest.starts_with("=~") {
            (MatchOp::Regex, 2)
        } else if rest.starts_with("!~") {
            (MatchOp::NotRegex, 2)
        } else if rest.starts_with("!=") {
            (MatchOp::NotEqual, 2)
        } else if rest.starts_with('=') {
            (MatchOp::Equal, 1)
        } else {
            return Err(format!(
                "{input:?}: expected =, !=, =~ or !~ after {name:?}"
            ));
        };
        rest = rest[len..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => v.push('\n'),
                        Some((_, 't')) => v.push('\t'),
                        Some((_, c)) => v.push(c),
                        None => break,
                    },
                    c => v.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("{input:?}: unterminated quoted value"))?;
            value = v;
            rest = q[end..].trim_start();
        } else {
            let len = rest.find(',').unwrap_or(rest.len());
            value = rest[..len].trim().to_string();
            rest = &rest[len..];
        }
        let m = Matcher::new(name, op, &value).map_err(|e| format!("{input:?}: bad regex: {e}"))?;
        out.push(m);
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("{input:?}: unexpected {rest:?}"));
        }
    }
    if out.is_empty() {
        return Err(format!("{input:?}: no matcher"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> NotifyConfig {
        toml::from_str(toml_text).expect("parses")
    }

    const GOOD: &str = r##"
        external_url = "https://sightline.example.com"
        [route]
        receiver = "ops"
        group_by = ["alertname", "service"]
        [[route.routes]]
        receiver = "pager"
        matchers = ['service=~"check.*"', 'severity="critical"']
        continue = true
        group_wait = "10s"
        [[receivers]]
        name = "ops"
        [[receivers.webhook_configs]]
        url = "http://hooks.internal/alerts"
        [[receivers]]
        name = "pager"
        [[receivers.pagerduty_configs]]
        routing_key = "0123456789abcdef0123456789abcdef"
        [[receivers.slack_configs]]
        api_url = "https://hooks.slack.com/services/T/B/X"
        channel = "#ops"
    "##;

    #[test]
    fn parses_with_alertmanager_names_and_defaults() {
        let c = parse(GOOD);
        c.validate().unwrap();
        assert_eq!(c.resolve_timeout.0, Duration::from_secs(300));
        let child = &c.route.routes[0];
        assert!(child.continue_matching);
        assert_eq!(
            child.group_wait,
            Some(PromDuration(Duration::from_secs(10)))
        );
        let w = &c.receivers[0].webhook_configs[0];
        assert!(w.send_resolved);
        assert_eq!(w.max_alerts, 0);
        let p = &c.receivers[1].pagerduty_configs[0];
        assert_eq!(p.url, PAGERDUTY_EVENTS_URL);
        assert_eq!(p.severity, "error");
        assert!(!c.receivers[1].slack_configs[0].send_resolved);
    }

    #[test]
    fn secrets_never_print() {
        let c = parse(GOOD);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("0123456789abcdef"), "{dbg}");
        assert!(!dbg.contains("hooks.slack.com"), "{dbg}");
        assert!(
            !dbg.contains("hooks.internal"),
            "webhook URLs are secrets: {dbg}"
        );
        assert!(dbg.contains("**REDACTED**"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("0123456789abcdef"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e =
            toml::from_str::<NotifyConfig>("[route]\nreceiver='a'\ngroupwait='1s'\n").unwrap_err();
        assert!(e.to_string().contains("groupwait"), "{e}");
    }

    fn invalid(toml_text: &str) -> NotifyConfigError {
        parse(toml_text).validate().unwrap_err()
    }

    #[test]
    fn validation_errors_name_the_field() {
        let e = invalid("[route]\nreceiver='nope'\n");
        assert_eq!(e.field, "notify.route.receiver");
        assert!(e.message.contains("nope"));
        let base = "[[receivers]]\nname='a'\n[route]\nreceiver='a'\n";
        let e = invalid(&format!(
            "{base}[[route.routes]]\nmatchers=['service=~\"(\"']\n"
        ));
        assert_eq!(e.field, "notify.route.routes[0].matchers[0]");
        let e = invalid(&format!("{base}[[route.routes]]\nmatchers=['service']\n"));
        assert_eq!(e.field, "notify.route.routes[0].matchers[0]");
        let e = invalid(&format!("{base}group_interval='0s'\n"));
        assert_eq!(e.field, "notify.route.group_interval");
        let e = invalid(&format!("{base}[[route.routes]]\nrepeat_interval='0s'\n"));
        assert_eq!(e.field, "notify.route.routes[0].repeat_interval");
        let e = invalid(&format!("{base}group_by=['...', 'service']\n"));
        assert_eq!(e.field, "notify.route.group_by");
        let e = invalid(&format!("{base}matchers=['a=\"b\"']\n"));
        assert_eq!(e.field, "notify.route.matchers");
        let e =
            invalid("[[receivers]]\nname='a'\n[[receivers]]\nname='a'\n[route]\nreceiver='a'\n");
        assert_eq!(e.field, "notify.receivers[1].name");
        let e = invalid("[[receivers]]\nname='a'\n[[receivers.webhook_configs]]\nurl='ftp://x'\n[route]\nreceiver='a'\n");
        assert_eq!(e.field, "notify.receivers[0].webhook_configs[0].url");
        let e = invalid("[[receivers]]\nname='a'\n[[receivers.pagerduty_configs]]\nrouting_key='k'\nseverity='high'\n[route]\nreceiver='a'\n");
        assert_eq!(e.field, "notify.receivers[0].pagerduty_configs[0].severity");
        let e = invalid("[[receivers]]\nname='a'\n[[receivers.slack_configs]]\napi_url='secret-token'\n[route]\nreceiver='a'\n");
        assert_eq!(e.field, "notify.receivers[0].slack_configs[0].api_url");
        assert!(!e.to_string().contains("secret-token"), "{e}");
    }

    #[test]
    fn durations_parse_like_prometheus() {
        let p = |s| PromDuration::parse(s).map(|d| d.0);
        assert_eq!(p("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(p("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(p("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(p("250ms"), Ok(Duration::from_millis(250)));
        assert!(p("").is_err());
        assert!(p("5").is_err());
        assert!(p("5x").is_err());
        assert!(p("30m1h").is_err());
        assert_eq!(PromDuration(Duration::from_secs(5400)).to_string(), "1h30m");
    }

    #[test]
    fn matchers_parse_alertmanager_syntax() {
        let ms = parse_matchers(r#"service=~"check.*""#).unwrap();
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].op, MatchOp::Regex);
        assert_eq!(ms[0].value, "check.*");
        let ms = parse_matchers(r#"{severity = critical, team!="a\"b"}"#).unwrap();
        assert_eq!(ms[0].value, "critical");
        assert_eq!(ms[1].op, MatchOp::NotEqual);
        assert_eq!(ms[1].value, "a\"b");
        assert!(parse_matchers("").is_err());
        assert!(parse_matchers(r#"a="b"x"#).is_err());
        assert!(parse_matchers("1a=b").is_err());
    }
}
