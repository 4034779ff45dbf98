//! ECS agent, ecs-init and credentials audit log parsers against the fixture files in
//! `tests/fixtures/ecs/` (written from the formats in the agent's `ecs-agent/logger/log.go`
//! and `agent/logger/audit/entry_types.go`), field by field, plus property tests.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use common::map;
use proptest::prelude::*;
use sightline_collector::parse::ecs_agent::{parse_agent_line, AgentRecord};
use sightline_collector::parse::ecs_audit::{
    parse_audit_line, AuditParseError, CredentialsAuditRecord, CredentialsEventType,
};
use sightline_model::Level;

const S: u64 = 1_000_000_000;
const T2018: u64 = 1_538_355_723 * S; // 2018-10-01T01:02:03Z
const T2023: u64 = 1_683_220_902 * S; // 2023-05-04T17:21:42Z
const TASK_ARN: &str =
    "arn:aws:ecs:us-west-2:111122223333:task/default/8f03e41243824aea923aca126495f665";
const DOCKER_ID: &str = "0b5e3a8c0b6f4b1e9d2c7a6f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2";
const CI_ARN: &str =
    "arn:aws:ecs:us-west-2:111122223333:container-instance/default/7c1e6f0a5b2d4c3e9f8a7b6c5d4e3f2a";

/// The fixture's lines, read as the tailer would: bytes split on `\n`, invalid UTF-8 replaced.
fn fixture(name: &str) -> Vec<String> {
    let path = format!("{}/tests/fixtures/ecs/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    body.split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

fn ok(
    time_ns: u64,
    level: Level,
    message: &str,
    module: Option<&str>,
    fields: &[(&str, &str)],
) -> AgentRecord {
    AgentRecord {
        time_ns: Some(time_ns),
        level: Some(level),
        message: message.to_string(),
        module: module.map(str::to_string),
        fields: map(fields),
        parse_error: None,
    }
}

/// A marked line: the raw text as message, what was read before the problem, the reason.
fn marked(
    raw: &str,
    time_ns: Option<u64>,
    level: Option<Level>,
    module: Option<&str>,
    fields: &[(&str, &str)],
    error: &str,
) -> AgentRecord {
    AgentRecord {
        time_ns,
        level,
        message: raw.to_string(),
        module: module.map(str::to_string),
        fields: map(fields),
        parse_error: Some(error.to_string()),
    }
}

#[test]
fn agent_log_fixture_field_by_field() {
    let lines = fixture("ecs-agent.log");
    assert_eq!(lines.len(), 26);
    let l = |i: usize| lines[i].as_str();
    let long_msg = ("x".repeat(99) + " ").repeat(200);
    let no_shape = "no ECS agent log shape: expected `level=…` (logfmt), `{…}` (JSON) or \
                    `<RFC 3339 time> [LEVEL] …` (legacy)";
    let want: Vec<AgentRecord> = vec![
        ok(1_576_194_209 * S, Level::Info,
           "Restored from checkpoint file. I am running as 'arn:aws:ecs:us-west-2:0123456789:container-instance/auto-robc/3330a8a91d15464ea30662d5840164cd' in cluster 'auto-robc'",
           Some("agent.go"), &[]),
        ok(T2018, Level::Info, "This is my log message", Some("mytestmodule.go"), &[]),
        ok(1_650_064_913 * S, Level::Info,
           "DockerGoClient: process within container 8268d4c1f0e2b3a49d5c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80912a3b (name: \"ecs-stress-ng-mem-1-main-f0fb97ba8ef6b98be201\") died due to OOM",
           Some("docker_client.go"), &[]),
        ok(1_593_133_186 * S, Level::Info,
           "Managed task [arn:aws:ecs:us-west-2:111111111111:task/dev/91828be6a3c94c0fb2a4e1d5c6b7a890]: error transitioning resource [ssmsecret] to [CREATED]: fetching secret data from SSM Parameter Store in us-west-2: AccessDeniedException",
           Some("task_manager.go"), &[]),
        ok(T2023 + 123_456_789, Level::Info, "Container change event", None, &[
            ("taskARN", TASK_ARN), ("container", "curl"), ("dockerId", DOCKER_ID),
            ("knownStatus", "RUNNING"), ("desiredStatus", "RUNNING"), ("seqnum", "42"),
        ]),
        ok(T2023 + 500_000_000, Level::Info, "Task transitioned to status", None, &[
            ("task", "8f03e41243824aea923aca126495f665"), ("knownStatus", "RUNNING"),
            ("desiredStatus", "RUNNING"), ("time", "1.503s"),
        ]),
        ok(T2023 + S, Level::Warn, "Error while pulling image; will try to run anyway", None, &[
            ("image", "public.ecr.aws/nginx/nginx:latest"),
            ("error", "pull access denied for \"nginx\": repository does not exist or may require 'docker login'"),
            ("imagePullSucceeded", "false"),
            ("k4", "{subK4_1:subK4_1_Value subK4_2:3}"),
        ]),
        ok(T2023 + 2 * S, Level::Debug,
           "Live long and prosper \u{1f596}\u{e9} tab\there\nnewline nul\0 bell\x07 backslash\\ invalid\u{fffd}",
           None, &[("f1", "field value with \"quotation\" marks")]),
        ok(T2023 + 3 * S, Level::Error, "Error getting message from ws backend", Some("handler.go"), &[]),
        ok(T2023 + 4 * S, Level::Fatal, "Unable to initialize the agent", Some("agent.go"), &[]),
        ok(T2018, Level::Info, "This is my log message", Some("mytestmodule.go"), &[]),
        ok(1_573_167_122 * S, Level::Info, "Starting Amazon Elastic Container Service Agent", Some("engine.go"), &[]),
        ok(1_683_246_104 * S + 500_000_000, Level::Error, "Container \"curl\" stopped: exit \u{e9}", None, &[
            ("taskARN", TASK_ARN), ("dockerId", DOCKER_ID), ("containerExitCode", "137"),
            ("imagePullSucceeded", "false"), ("imageNames", r#"["nginx:latest","nginx"]"#),
            ("k4", r#"{"subK4_1":"v","subK4_2":3}"#), ("reason", "null"),
        ]),
        ok(1_573_167_123 * S, Level::Warn, "Go escapes: bell\x07 vtab\x0b esc\x1b smile\u{1f600}", Some("engine.go"), &[]),
        ok(1_471_276_481 * S, Level::Info, "Loading configuration", None, &[]),
        ok(1_471_276_482 * S, Level::Warn,
           "Error getting valid credentials (AKID ): NoCredentialProviders: no valid providers in chain", None, &[]),
        ok(1_471_276_483 * S, Level::Fatal, "Error creating Docker client: Cannot connect to the Docker daemon", None, &[]),
        ok(T2018, Level::Debug, "This is my log message", None, &[]),
        marked(l(18), Some(T2018), Some(Level::Info), None, &[],
               "unterminated quoted value of \"msg\" at byte 41"),
        marked(l(19), Some(T2018), Some(Level::Info), Some("agent.go"), &[],
               "text that is not key=value at byte 62: \"trailing junk here\""),
        marked(l(20), Some(T2018), None, Some("agent.go"), &[("level", "verbose")],
               "unknown level \"verbose\""),
        marked(l(21), None, Some(Level::Info), Some("agent.go"), &[("time", "yesterday")],
               "unreadable time \"yesterday\""),
        marked(l(22), None, None, None, &[], no_shape),
        marked(l(23), Some(T2018), Some(Level::Info), None, &[],
               "unterminated value of \"msg\" at byte 52"),
        ok(T2018, Level::Info, &long_msg, Some("long.go"), &[]),
        ok(1_471_276_484 * S, Level::Error, "raw bytes: \u{fffd}\u{fffd} end \x1b[0m", None, &[]),
        marked("", None, None, None, &[], no_shape),
    ];
    // One expectation per fixture line, then the empty line (not in the file).
    assert_eq!(want.len(), lines.len() + 1);
    for (i, (line, w)) in lines.iter().zip(&want).enumerate() {
        assert_eq!(&parse_agent_line(line), w, "ecs-agent.log line {}", i + 1);
    }
    assert_eq!(parse_agent_line(""), want[26]);
    assert!(lines[24].len() > 20_000);

    // Correlation: task ARN field first, ARNs in the message, the task ID, the Docker ID.
    assert_eq!(
        parse_agent_line(l(4)).correlation_ids(),
        [TASK_ARN, DOCKER_ID]
    );
    assert_eq!(
        parse_agent_line(l(3)).correlation_ids(),
        ["arn:aws:ecs:us-west-2:111111111111:task/dev/91828be6a3c94c0fb2a4e1d5c6b7a890"]
    );
    assert_eq!(
        parse_agent_line(l(5)).correlation_ids(),
        ["8f03e41243824aea923aca126495f665"]
    );
    assert_eq!(
        parse_agent_line(l(12)).correlation_ids(),
        [TASK_ARN, DOCKER_ID]
    );
    assert!(
        parse_agent_line(l(0)).correlation_ids().is_empty(),
        "container-instance ARN is not a task"
    );
}

#[test]
fn ecs_init_fixture_field_by_field() {
    let lines = fixture("ecs-init.log");
    let t = 1_518_804_834 * S; // 2018-02-16T18:13:54Z
    let want = [
        (t, Level::Info, "pre-start"),
        (
            t,
            Level::Info,
            "Downloading Amazon Elastic Container Service Agent",
        ),
        (
            t + S,
            Level::Debug,
            "Loading Amazon Elastic Container Service Agent into Docker",
        ),
        (t + 2 * S, Level::Info, "start"),
        (
            t + 2 * S,
            Level::Info,
            "Starting Amazon Elastic Container Service Agent",
        ),
        (t + 16 * S, Level::Warn, "Agent exited with code 1"),
        (
            t + 17 * S,
            Level::Error,
            "could not start Agent: container \"ecs-agent\" exited",
        ),
        (t + 367 * S, Level::Info, "post-stop"),
    ];
    assert_eq!(lines.len(), want.len());
    for (line, (time, level, msg)) in lines.iter().zip(want) {
        assert_eq!(
            parse_agent_line(line),
            ok(time, level, msg, None, &[]),
            "{line}"
        );
    }
}

#[test]
fn levels_map_to_model_levels() {
    for (text, level) in [
        ("trace", Level::Trace),
        ("debug", Level::Debug),
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("warning", Level::Warn),
        ("error", Level::Error),
        ("crit", Level::Fatal),
        ("critical", Level::Fatal),
    ] {
        let r = parse_agent_line(&format!("level={text} time=2018-10-01T01:02:03Z msg=\"m\""));
        assert_eq!(r.level, Some(level), "{text}");
    }
}

#[allow(clippy::too_many_arguments)]
fn audit(
    secs: u64,
    code: u16,
    src: Option<(&str, u16)>,
    path: &str,
    ua: &str,
    task: Option<&str>,
    event_type: CredentialsEventType,
    version: u32,
    cluster: Option<&str>,
    ci: Option<&str>,
) -> CredentialsAuditRecord {
    CredentialsAuditRecord {
        time_ns: secs * S,
        status_code: code,
        source_address: src.map(|(a, _)| a.to_string()),
        source_port: src.map(|(_, p)| p),
        url_path: path.to_string(),
        user_agent: ua.to_string(),
        task_arn: task.map(str::to_string),
        event_type,
        version,
        cluster: cluster.map(str::to_string),
        container_instance_arn: ci.map(str::to_string),
    }
}

#[test]
fn audit_fixture_field_by_field() {
    use CredentialsEventType::{GetCredentials, GetCredentialsExecutionRole};
    let lines = fixture("audit.log");
    assert_eq!(lines.len(), 8);
    let t = 1_683_220_905; // 2023-05-04T17:21:45Z
    let want: Vec<Result<CredentialsAuditRecord, AuditParseError>> = vec![
        Ok(audit(1_468_426_313, 200, Some(("172.17.0.5", 52444)), "/v1/credentials",
                 "python-requests/2.7.0 CPython/2.7.6 Linux/4.4.14-24.50.amzn1.x86_64",
                 Some("arn:aws:ecs:us-east-1:123456789012:task/b1a8c3d2-4e5f-6a7b-8c9d-0e1f2a3b4c5d"),
                 GetCredentials, 1, Some("default"),
                 Some("arn:aws:ecs:us-east-1:123456789012:container-instance/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"))),
        Ok(audit(t, 200, Some(("172.17.0.3", 39012)), "/v2/credentials",
                 "aws-sdk-go-v2/1.17.8 os/linux lang/go#1.19.5 md/GOOS#linux md/GOARCH#amd64 api/sts#1.18.9",
                 Some(TASK_ARN), GetCredentials, 2, Some("default"), Some(CI_ARN))),
        Ok(audit(t + 1, 200, Some(("fe80::1", 51234)), "/v2/credentials",
                 "Boto3/1.26.0 \\\"quoted\\\" Python/3.11 \"raw quotes\" Botocore/1.29.0",
                 Some(TASK_ARN), GetCredentialsExecutionRole, 2,
                 Some("arn:aws:ecs:us-west-2:111122223333:cluster/prod"),
                 Some("arn:aws:ecs:us-west-2:111122223333:container-instance/prod/7c1e6f0a5b2d4c3e9f8a7b6c5d4e3f2a"))),
        Ok(audit(t + 2, 400, Some(("172.17.0.9", 50112)), "/v2/credentials", "curl/7.88.1",
                 None, GetCredentials, 2, Some("default"), Some(CI_ARN))),
        Ok(audit(t + 3, 404, None, "/v1/credentials", "", None, GetCredentials, 2, None, None)),
        Err(AuditParseError::MissingField("version")),
        Err(AuditParseError::UnknownEventType("GetSecrets".into())),
        Err(AuditParseError::BadTime("not-a-time".into())),
    ];
    for (i, (line, w)) in lines.iter().zip(&want).enumerate() {
        assert_eq!(&parse_audit_line(line), w, "audit.log line {}", i + 1);
    }

    let ev = parse_audit_line(&lines[1])
        .unwrap()
        .to_audit_event("ip-10-0-0-1", 42, 512, 7);
    assert_eq!(ev.action, "ecs.GetCredentials");
    assert_eq!(
        (ev.actor.kind.as_str(), ev.actor.id.as_str()),
        ("task", TASK_ARN)
    );
    assert_eq!(ev.outcome.as_deref(), Some("200"));
    assert_eq!(ev.attributes["aws.ecs.cluster.name"], "default");
    assert_eq!(ev.attributes["aws.ecs.container_instance.arn"], CI_ARN);
    assert_eq!(
        ev.attributes["user_agent.original"],
        want[1].as_ref().unwrap().user_agent
    );
    assert_eq!(
        ev.message,
        format!(
            "GetCredentials for task {TASK_ARN} from 172.17.0.3:39012: HTTP 200 on /v2/credentials"
        )
    );
}

/// Go's `strconv.Quote` (what `%q` writes), closely enough: named escapes, `\xHH` for ASCII
/// controls, `\u`/`\U` for other non-printable characters, everything else raw.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control()
                || (c.is_whitespace() && c != ' ')
                || ('\u{e000}'..='\u{f8ff}').contains(&c)
                || c >= '\u{f0000}' =>
            {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Strings rich in the characters the parsers treat specially.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ \"\\\\={}\\[\\]:,a-zé\u{0}\u{7}\u{8}\u{b}\u{c}\u{1b}\u{7f}\u{a0}\u{e000}\u{1f596}\u{f0000}\n\r\t]{0,40}",
    ]
}

/// A bare logfmt value as Go's `%v` writes one: a number, a word, or a struct with spaces.
fn bare_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.:/-]{1,20}",
        "\\{[a-z0-9:]{1,6}( [a-z0-9:]{1,6}){0,3}\\}",
        "\\[[a-z0-9]{1,4}( [a-z0-9]{1,4}){0,3}\\]",
    ]
    .prop_filter("not a quote", |v| !v.starts_with('"'))
}

fn key() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,12}".prop_filter("not a header key", |k| {
        !matches!(k.as_str(), "level" | "time" | "msg" | "module")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics_and_keeps_raw_text(
        prefix in prop_oneof![
            Just(""), Just("level="), Just("level=info time=2018-10-01T01:02:03Z msg="),
            Just("{"), Just("{\"level\":\"info\",\"msg\":"), Just("2016-08-15T15:54:41Z ["),
            Just("2016-07-13T16:11:53Z 200 1.2.3.4:5 \""),
        ],
        body in tricky_string(),
    ) {
        let line = format!("{prefix}{body}");
        let rec = parse_agent_line(&line);
        if rec.parse_error.is_some() {
            let raw = line.strip_suffix('\n').unwrap_or(&line);
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            prop_assert_eq!(rec.message.as_str(), raw);
        }
        let _ = rec.correlation_ids();
        if let Ok(a) = parse_audit_line(&line) {
            let ev = a.to_audit_event("h", 1, 2, 3);
            prop_assert_eq!(ev.time_ns, a.time_ns);
        }
    }

    #[test]
    fn logfmt_pairs_written_with_go_quoting_parse_back(
        msg in tricky_string(),
        pairs in proptest::collection::btree_map(
            key(),
            prop_oneof![tricky_string().prop_map(|v| (v, true)), bare_value().prop_map(|v| (v, false))],
            0..8,
        ),
    ) {
        let mut line = format!("level=warn time=2018-10-01T01:02:03Z msg={}", go_quote(&msg));
        for (k, (v, quoted)) in &pairs {
            let v = if *quoted { go_quote(v) } else { v.clone() };
            let _ = write!(line, " {k}={v}");
        }
        let rec = parse_agent_line(&line);
        prop_assert_eq!(&rec.parse_error, &None);
        prop_assert_eq!(rec.time_ns, Some(T2018));
        prop_assert_eq!(rec.level, Some(Level::Warn));
        prop_assert_eq!(&rec.message, &msg);
        let want: BTreeMap<String, String> =
            pairs.into_iter().map(|(k, (v, _))| (k, v)).collect();
        prop_assert_eq!(rec.fields, want);
    }

    #[test]
    fn json_objects_parse_back(
        msg in tricky_string(),
        pairs in proptest::collection::btree_map(key(), tricky_string(), 0..8),
    ) {
        let mut obj = serde_json::Map::new();
        obj.insert("level".into(), "error".into());
        obj.insert("time".into(), "2018-10-01T01:02:03Z".into());
        obj.insert("msg".into(), msg.clone().into());
        for (k, v) in &pairs {
            obj.insert(k.clone(), v.clone().into());
        }
        let line = serde_json::Value::Object(obj).to_string();
        let rec = parse_agent_line(&line);
        prop_assert_eq!(&rec.parse_error, &None);
        prop_assert_eq!(rec.level, Some(Level::Error));
        prop_assert_eq!(&rec.message, &msg);
        prop_assert_eq!(rec.fields, pairs);
    }
}
