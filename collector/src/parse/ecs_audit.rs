//! Lines of the ECS agent's credentials audit log, `/var/log/ecs/audit.log*`: one line per
//! request to the agent's credentials endpoint, turned into a
//! [`sightline_model::AuditEvent`].
//!
//! Format (source: `aws/amazon-ecs-agent` `agent/logger/audit/entry_types.go`,
//! `audit_log.go`, `audit_log_test.go`; ECS developer guide `logs.md`): seelog `%Msg%n`, ten
//! fields separated by single spaces:
//!
//! ```text
//! 2016-07-13T16:11:53Z 200 172.17.0.5:52444 "/v1/credentials" "python-requests/2.7.0 CPython/2.7.6 Linux/4.4.14-24.50.amzn1.x86_64" TASK_ARN GetCredentials 1 CLUSTER_NAME CONTAINER_INSTANCE_ARN
//! ```
//!
//! 1. event time, `time.RFC3339`, UTC;
//! 2. HTTP response code;
//! 3. source `ip:port` (`[v6]:port` for IPv6);
//! 4. `"<url path>"` (for `/v2/credentials/<id>` only `/v2/credentials` is logged);
//! 5. `"<user agent>"`;
//! 6. the ARN of the task the credentials belong to;
//! 7. event type `GetCredentials` or (version 2) `GetCredentialsExecutionRole`;
//! 8. version (`1`, `2`);
//! 9. cluster (`ECS_CLUSTER`: a name or an ARN);
//! 10. container instance ARN.
//!
//! Empty source, ARN, cluster and container instance fields are written as `-`. Path and user
//! agent are written as `"%s"` without any escaping: they may hold spaces and raw `"`
//! characters (a `\"` in a user agent is a literal backslash and quote, kept as is), and an
//! empty one is `""`. They are therefore located from both ends: the path ends at the first
//! `" "`, the user agent at the last `"` of the line (the five fields after it never contain
//! a quote).
//!
//! A line that does not parse is an [`AuditParseError`]; the caller ships such a line as an
//! ordinary log line marked with the error's text, so nothing is dropped.

use std::collections::BTreeMap;
use std::fmt;

use sightline_model::{Actor, AuditEvent, EventId, LogEvent, SourceKind, SourcePosition};

use super::timestamp::parse_rfc3339_ns;

/// Why an audit log line could not be read. Each variant names the field at fault; the
/// offending text is clipped to 80 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditParseError {
    /// The line is empty or only whitespace.
    #[error("empty audit log line")]
    Empty,
    /// The line ends before the named field.
    #[error("audit log line ends before the {0} field")]
    MissingField(&'static str),
    /// Field 1 is not an RFC 3339 time at or after 1970.
    #[error("audit log time is not RFC 3339: {0:?}")]
    BadTime(String),
    /// Field 2 is not an HTTP status code (100–599).
    #[error("audit log HTTP status code is not 100-599: {0:?}")]
    BadStatusCode(String),
    /// Field 3 is neither `-` nor `host:port`.
    #[error("audit log source address is not ip:port: {0:?}")]
    BadSourceAddress(String),
    /// Fields 4–5 are not `"<path>" "<user agent>"`.
    #[error("audit log url path and user agent are not two quoted fields: {0}")]
    BadQuotedFields(&'static str),
    /// Field 7 is not `GetCredentials` or `GetCredentialsExecutionRole`.
    #[error("unknown audit log event type {0:?}")]
    UnknownEventType(String),
    /// Field 8 is not an unsigned integer.
    #[error("audit log version is not an unsigned integer: {0:?}")]
    BadVersion(String),
    /// More than ten fields.
    #[error("unexpected text after the container instance ARN: {0:?}")]
    TrailingData(String),
}

/// The event type of a credentials request (audit field 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsEventType {
    /// `GetCredentials`: the task role's credentials.
    GetCredentials,
    /// `GetCredentialsExecutionRole`: the task execution role's credentials (version 2).
    GetCredentialsExecutionRole,
}

impl CredentialsEventType {
    /// The name as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialsEventType::GetCredentials => "GetCredentials",
            CredentialsEventType::GetCredentialsExecutionRole => "GetCredentialsExecutionRole",
        }
    }
}

impl fmt::Display for CredentialsEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One credentials audit log line. Fields written as `-` are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsAuditRecord {
    /// Event time, Unix ns.
    pub time_ns: u64,
    /// HTTP response code returned to the caller.
    pub status_code: u16,
    /// Caller's IP address (IPv6 without brackets).
    pub source_address: Option<String>,
    /// Caller's TCP port.
    pub source_port: Option<u16>,
    /// Request path (`/v1/credentials`, `/v2/credentials`); empty when the log had `""`.
    pub url_path: String,
    /// `User-Agent` header, verbatim; empty when the log had `""`.
    pub user_agent: String,
    /// ARN of the task whose credentials were requested.
    pub task_arn: Option<String>,
    /// Which credentials were requested.
    pub event_type: CredentialsEventType,
    /// Audit log format version (`1` or `2`).
    pub version: u32,
    /// The agent's `ECS_CLUSTER`: a cluster name or ARN.
    pub cluster: Option<String>,
    /// ARN of the container instance the agent runs on.
    pub container_instance_arn: Option<String>,
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn dash(s: &str) -> Option<String> {
    (s != "-").then(|| s.to_string())
}

/// Splits `ip:port` / `[ipv6]:port`; `-` is (None, None).
fn parse_source(s: &str) -> Result<(Option<String>, Option<u16>), AuditParseError> {
    if s == "-" {
        return Ok((None, None));
    }
    let bad = || AuditParseError::BadSourceAddress(clip(s));
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok((Some(host.to_string()), Some(port)))
}

/// Parses one `audit.log` line (format in the module docs). One trailing `\n` or `\r\n` is
/// ignored.
///
/// Errors: [`AuditParseError`] naming the first field that is missing or malformed.
pub fn parse_audit_line(line: &str) -> Result<CredentialsAuditRecord, AuditParseError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Err(AuditParseError::Empty);
    }
    let mut head = line.splitn(4, ' ');
    let time = head.next().unwrap_or_default();
    let status = head
        .next()
        .ok_or(AuditParseError::MissingField("HTTP status code"))?;
    let source = head
        .next()
        .ok_or(AuditParseError::MissingField("source address"))?;
    let rest = head
        .next()
        .ok_or(AuditParseError::MissingField("url path"))?;

    let time_ns = parse_rfc3339_ns(time).ok_or_else(|| AuditParseError::BadTime(clip(time)))?;
    let status_code = status
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
        .ok_or_else(|| AuditParseError::BadStatusCode(clip(status)))?;
    let (source_address, source_port) = parse_source(source)?;

    let quoted = rest
        .strip_prefix('"')
        .ok_or(AuditParseError::BadQuotedFields(
            "url path does not start with '\"'",
        ))?;
    let last_quote = quoted
        .rfind('"')
        .ok_or(AuditParseError::BadQuotedFields("no closing '\"'"))?;
    let (inner, tail) = (&quoted[..last_quote], &quoted[last_quote + 1..]);
    let sep = inner.find("\" \"").ok_or(AuditParseError::BadQuotedFields(
        "no '\" \"' between url path and user agent",
    ))?;
    let (url_path, user_agent) = (&inner[..sep], &inner[sep + 3..]);
    if !tail.is_empty() && !tail.starts_with(' ') {
        return Err(AuditParseError::BadQuotedFields(
            "text right after the user agent's closing '\"'",
        ));
    }

    const TAIL: [&str; 5] = [
        "task ARN",
        "event type",
        "version",
        "cluster",
        "container instance ARN",
    ];
    let tokens: Vec<&str> = tail.split_ascii_whitespace().collect();
    if tokens.len() < TAIL.len() {
        return Err(AuditParseError::MissingField(TAIL[tokens.len()]));
    }
    if tokens.len() > TAIL.len() {
        return Err(AuditParseError::TrailingData(clip(
            &tokens[TAIL.len()..].join(" "),
        )));
    }
    let event_type = match tokens[1] {
        "GetCredentials" => CredentialsEventType::GetCredentials,
        "GetCredentialsExecutionRole" => CredentialsEventType::GetCredentialsExecutionRole,
        other => return Err(AuditParseError::UnknownEventType(clip(other))),
    };
    let version = tokens[2]
        .parse::<u32>()
        .map_err(|_| AuditParseError::BadVersion(clip(tokens[2])))?;
    Ok(CredentialsAuditRecord {
        time_ns,
        status_code,
        source_address,
        source_port,
        url_path: url_path.to_string(),
        user_agent: user_agent.to_string(),
        task_arn: dash(tokens[0]),
        event_type,
        version,
        cluster: dash(tokens[3]),
        container_instance_arn: dash(tokens[4]),
    })
}

impl CredentialsAuditRecord {
    /// The audit event for this line, read from `host` at byte `offset` of source
    /// `source_id` (for the event ID), at `observed_ns` (Unix ns).
    ///
    /// - `event_id` = [`EventId::derive`]`(source_id, offset)`; `time_ns` = the line's time;
    /// - `resource`: `host`, `source_kind` = [`SourceKind::EcsAuditLog`], `position`;
    /// - `action` = `ecs.GetCredentials` | `ecs.GetCredentialsExecutionRole`;
    /// - `actor` = kind `task`, id = the task ARN (empty when logged as `-`), no name;
    /// - `outcome` = the HTTP status code;
    /// - attributes (OpenTelemetry semantic-convention names where one exists; absent fields
    ///   are left out): `http.response.status_code`, `source.address`, `source.port`,
    ///   `url.path`, `user_agent.original`, `aws.ecs.task.arn`, `aws.ecs.cluster.arn` when
    ///   the cluster is an ARN else `aws.ecs.cluster.name`, `aws.ecs.container_instance.arn`,
    ///   `ecs.audit.version`;
    /// - `message`: e.g. `GetCredentials for task arn:…:task/… from 172.17.0.5:52444:
    ///   HTTP 200 on /v1/credentials`.
    pub fn to_audit_event(
        &self,
        host: &str,
        source_id: u64,
        offset: u64,
        observed_ns: u64,
    ) -> AuditEvent {
        let mut attributes = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                attributes.insert(k.to_string(), v.to_string());
            }
        };
        put("http.response.status_code", &self.status_code.to_string());
        put(
            "source.address",
            self.source_address.as_deref().unwrap_or_default(),
        );
        put(
            "source.port",
            &self.source_port.map(|p| p.to_string()).unwrap_or_default(),
        );
        put("url.path", &self.url_path);
        put("user_agent.original", &self.user_agent);
        put(
            "aws.ecs.task.arn",
            self.task_arn.as_deref().unwrap_or_default(),
        );
        if let Some(c) = &self.cluster {
            let key = if c.starts_with("arn:") {
                "aws.ecs.cluster.arn"
            } else {
                "aws.ecs.cluster.name"
            };
            put(key, c);
        }
        put(
            "aws.ecs.container_instance.arn",
            self.container_instance_arn.as_deref().unwrap_or_default(),
        );
        put("ecs.audit.version", &self.version.to_string());

        let source = match (&self.source_address, self.source_port) {
            (Some(a), Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            _ => "-".to_string(),
        };
        let path = if self.url_path.is_empty() {
            "-"
        } else {
            &self.url_path
        };
        let message = format!(
            "{} for task {} from {source}: HTTP {} on {path}",
            self.event_type,
            self.task_arn.as_deref().unwrap_or("-"),
            self.status_code,
        );
        AuditEvent {
            event_id: EventId::derive(source_id, offset),
            time_ns: self.time_ns,
            observed_ns,
            resource: LogEvent {
                host: host.to_string(),
                source_kind: SourceKind::EcsAuditLog,
                position: SourcePosition { source_id, offset },
                ..Default::default()
            },
            action: format!("ecs.{}", self.event_type),
            actor: Actor {
                kind: "task".to_string(),
                id: self.task_arn.clone().unwrap_or_default(),
                name: String::new(),
            },
            outcome: Some(self.status_code.to_string()),
            message,
            attributes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_LINE: &str = "2016-07-13T16:11:53Z 200 172.17.0.5:52444 \"/v1/credentials\" \
        \"python-requests/2.7.0 CPython/2.7.6 Linux/4.4.14-24.50.amzn1.x86_64\" TASK_ARN \
        GetCredentials 1 CLUSTER_NAME CONTAINER_INSTANCE_ARN";

    #[test]
    fn documented_example() {
        let r = parse_audit_line(DOC_LINE).unwrap();
        assert_eq!(
            r,
            CredentialsAuditRecord {
                time_ns: 1_468_426_313_000_000_000,
                status_code: 200,
                source_address: Some("172.17.0.5".into()),
                source_port: Some(52444),
                url_path: "/v1/credentials".into(),
                user_agent: "python-requests/2.7.0 CPython/2.7.6 Linux/4.4.14-24.50.amzn1.x86_64"
                    .into(),
                task_arn: Some("TASK_ARN".into()),
                event_type: CredentialsEventType::GetCredentials,
                version: 1,
                cluster: Some("CLUSTER_NAME".into()),
                container_instance_arn: Some("CONTAINER_INSTANCE_ARN".into()),
            }
        );
    }

    #[test]
    fn dashes_empty_quotes_ipv6_and_raw_quotes() {
        let r = parse_audit_line("2016-07-13T16:11:53Z 404 - \"\" \"\" - GetCredentials 2 - -\r\n")
            .unwrap();
        assert_eq!((r.source_address, r.source_port), (None, None));
        assert_eq!((r.url_path.as_str(), r.user_agent.as_str()), ("", ""));
        assert_eq!(
            (r.task_arn, r.cluster, r.container_instance_arn),
            (None, None, None)
        );
        assert_eq!(r.status_code, 404);

        let r = parse_audit_line(
            "2016-07-13T16:11:53Z 200 [fe80::1]:51234 \"/v2/credentials\" \"a \\\"b\\\" \"c\" d\" \
             arn:t GetCredentialsExecutionRole 2 c i",
        )
        .unwrap();
        assert_eq!(r.source_address.as_deref(), Some("fe80::1"));
        assert_eq!(r.source_port, Some(51234));
        assert_eq!(r.user_agent, "a \\\"b\\\" \"c\" d");
        assert_eq!(
            r.event_type,
            CredentialsEventType::GetCredentialsExecutionRole
        );
    }

    #[test]
    fn each_malformation_is_named() {
        use AuditParseError as E;
        let base = "2016-07-13T16:11:53Z 200 1.2.3.4:5 \"/p\" \"ua\" arn GetCredentials 2 c i";
        assert_eq!(parse_audit_line(base).map(|r| r.version), Ok(2));
        for (line, err) in [
            ("  ", E::Empty),
            ("2016-07-13T16:11:53Z", E::MissingField("HTTP status code")),
            (
                "2016-07-13T16:11:53Z 200",
                E::MissingField("source address"),
            ),
            (
                "2016-07-13T16:11:53Z 200 1.2.3.4:5",
                E::MissingField("url path"),
            ),
            (
                "x 200 1.2.3.4:5 \"/p\" \"ua\" a GetCredentials 2 c i",
                E::BadTime("x".into()),
            ),
            (
                "2016-07-13T16:11:53Z 2000 - \"/p\" \"ua\" a GetCredentials 2 c i",
                E::BadStatusCode("2000".into()),
            ),
            (
                "2016-07-13T16:11:53Z 200 1.2.3.4 \"/p\" \"ua\" a GetCredentials 2 c i",
                E::BadSourceAddress("1.2.3.4".into()),
            ),
            (
                "2016-07-13T16:11:53Z 200 - /p \"ua\" a GetCredentials 2 c i",
                E::BadQuotedFields("url path does not start with '\"'"),
            ),
            (
                "2016-07-13T16:11:53Z 200 - \"/p ua a GetCredentials 2 c i",
                E::BadQuotedFields("no closing '\"'"),
            ),
            (
                "2016-07-13T16:11:53Z 200 - \"/p\"\"ua\" a GetCredentials 2 c i",
                E::BadQuotedFields("no '\" \"' between url path and user agent"),
            ),
            (
                "2016-07-13T16:11:53Z 200 - \"/p\" \"ua\"a GetCredentials 2 c i",
                E::BadQuotedFields("text right after the user agent's closing '\"'"),
            ),
            (
                "2016-07-13T16:11:53Z 200 - \"/p\" \"ua\" ",
                E::MissingField("task ARN"),
            ),
            (
                "2016-07-13T16:11:53Z 200 - \"/p\" \"ua\" a GetCredentials",
                E::MissingField("version"),
            ),
            (
                "2016-07-13T16:11:53Z 200 - \"/p\" \"ua\" a GetCredentials 2 c",
                E::MissingField("container instance ARN"),
            ),
            (
                "2016-07-13T16:11:53Z 200 - \"/p\" \"ua\" a Nope 2 c i",
                E::UnknownEventType("Nope".into()),
            ),
            (
                "2016-07-13T16:11:53Z 200 - \"/p\" \"ua\" a GetCredentials v2 c i",
                E::BadVersion("v2".into()),
            ),
            (
                "2016-07-13T16:11:53Z 200 - \"/p\" \"ua\" a GetCredentials 2 c i x y",
                E::TrailingData("x y".into()),
            ),
        ] {
            assert_eq!(parse_audit_line(line), Err(err), "{line}");
        }
        assert_eq!(
            AuditParseError::MissingField("version").to_string(),
            "audit log line ends before the version field"
        );
    }

    #[test]
    fn audit_event_mapping() {
        let line = "2016-07-13T16:11:53Z 403 [::1]:8080 \"/v2/credentials\" \"curl/8\" \
                    arn:aws:ecs:us-west-2:1:task/c/abc GetCredentialsExecutionRole 2 \
                    arn:aws:ecs:us-west-2:1:cluster/c arn:aws:ecs:us-west-2:1:container-instance/c/i";
        let ev = parse_audit_line(line)
            .unwrap()
            .to_audit_event("h1", 7, 4096, 99);
        assert_eq!(ev.event_id, EventId::derive(7, 4096));
        assert_eq!(
            (ev.time_ns, ev.observed_ns),
            (1_468_426_313_000_000_000, 99)
        );
        assert_eq!(ev.resource.host, "h1");
        assert_eq!(ev.resource.source_kind, SourceKind::EcsAuditLog);
        assert_eq!(
            ev.resource.position,
            SourcePosition {
                source_id: 7,
                offset: 4096
            }
        );
        assert_eq!(ev.action, "ecs.GetCredentialsExecutionRole");
        assert_eq!(
            ev.actor,
            Actor {
                kind: "task".into(),
                id: "arn:aws:ecs:us-west-2:1:task/c/abc".into(),
                name: String::new()
            }
        );
        assert_eq!(ev.outcome.as_deref(), Some("403"));
        assert_eq!(
            ev.message,
            "GetCredentialsExecutionRole for task arn:aws:ecs:us-west-2:1:task/c/abc from \
             [::1]:8080: HTTP 403 on /v2/credentials"
        );
        let want: BTreeMap<String, String> = [
            ("http.response.status_code", "403"),
            ("source.address", "::1"),
            ("source.port", "8080"),
            ("url.path", "/v2/credentials"),
            ("user_agent.original", "curl/8"),
            ("aws.ecs.task.arn", "arn:aws:ecs:us-west-2:1:task/c/abc"),
            ("aws.ecs.cluster.arn", "arn:aws:ecs:us-west-2:1:cluster/c"),
            (
                "aws.ecs.container_instance.arn",
                "arn:aws:ecs:us-west-2:1:container-instance/c/i",
            ),
            ("ecs.audit.version", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(ev.attributes, want);

        let ev =
            parse_audit_line("2016-07-13T16:11:53Z 404 - \"\" \"\" - GetCredentials 2 default -")
                .unwrap()
                .to_audit_event("h1", 7, 0, 0);
        assert_eq!(ev.actor.id, "");
        assert_eq!(
            ev.message,
            "GetCredentials for task - from -: HTTP 404 on -"
        );
        let keys: Vec<&str> = ev.attributes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "aws.ecs.cluster.name",
                "ecs.audit.version",
                "http.response.status_code"
            ]
        );
    }
}
