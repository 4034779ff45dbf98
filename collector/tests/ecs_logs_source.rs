//! The ECS agent log source end to end on a temporary `/var/log/ecs`: the fixtures in
//! `tests/fixtures/ecs/` written as the agent writes them, hourly rotation while running,
//! a restart from checkpoints with appends and rotations in between, truncation, a missing
//! directory, long lines and invalid UTF-8. The channels to the sinks are drained here; log
//! chunks are decoded with the model's decoder, exactly as Kafka consumers would read them.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::map;
use sightline_collector::checkpoint::FileCheckpoint;
use sightline_collector::config::{CorrelationConfig, PatternConfig};
use sightline_collector::parse::app::Extractor;
use sightline_collector::parse::ecs_agent::parse_agent_line;
use sightline_collector::parse::timestamp::now_ns;
use sightline_collector::sinks::records::{AuditItem, AuditPosition};
use sightline_collector::sources::ecs_logs::{
    EcsLogsConfig, EcsLogsSource, AGENT_KEY, AUDIT_KEY, INIT_KEY,
};
use sightline_collector::sources::file_identity::source_id;
use sightline_collector::sources::Chunk;
use sightline_collector::stats::Stats;
use sightline_model::encode::LogsDataBuilder;
use sightline_model::kafka::partition_for_key;
use sightline_model::{decode_logs, Actor, EventId, Level, LogEvent, SourceKind};
use tokio::sync::{mpsc, watch};

const HOST: &str = "test-host";
const PARTITIONS: i32 = 4;
const S: u64 = 1_000_000_000;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/ecs/{name}", env!("CARGO_MANIFEST_DIR"));
    fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Lines without their `\n`, with the byte offset each starts at.
fn lines_at(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = 0u64;
    for l in bytes.split_inclusive(|&b| b == b'\n') {
        out.push((off, l.strip_suffix(b"\n").unwrap_or(l).to_vec()));
        off += l.len() as u64;
    }
    out
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn fp_hex(first_line: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(first_line))
}

fn sid(name: &str, first_line: &[u8]) -> u64 {
    source_id(
        &format!("{HOST}/{name}"),
        xxhash_rust::xxh3::xxh3_64(first_line),
    )
}

/// A running source and what it sent, as if every chunk and audit event were acknowledged
/// the moment it arrived.
struct Run {
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    rx: mpsc::Receiver<Chunk>,
    audit_rx: mpsc::Receiver<AuditItem>,
    /// Decoded events with the chunk key and the partition of their part.
    events: Vec<(String, i32, LogEvent)>,
    audit: Vec<AuditItem>,
    checkpoints: BTreeMap<String, FileCheckpoint>,
    audit_checkpoints: BTreeMap<String, FileCheckpoint>,
}

fn config(dir: &Path) -> EcsLogsConfig {
    let cfg = EcsLogsConfig {
        enabled: Some(true),
        dir: dir.to_path_buf(),
        poll_interval_ms: 10,
        ..Default::default()
    };
    cfg.validate().unwrap();
    cfg
}

fn start(
    cfg: EcsLogsConfig,
    checkpoints: BTreeMap<String, FileCheckpoint>,
    audit_checkpoints: BTreeMap<String, FileCheckpoint>,
) -> Run {
    let correlation = CorrelationConfig {
        patterns: vec![PatternConfig {
            regex: r"order-\d+".into(),
        }],
        ..Default::default()
    };
    let source = EcsLogsSource {
        cfg,
        host: HOST.into(),
        extractor: Arc::new(Extractor::new(&correlation).unwrap()),
        stats: Arc::new(Stats::default()),
        partitions: sightline_collector::sinks::topics::Partitions::known(PARTITIONS),
        max_part_bytes: 1 << 20,
    };
    let (tx, rx) = mpsc::channel(4);
    let (audit_tx, audit_rx) = mpsc::channel(4);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(source.run(
        checkpoints.clone(),
        audit_checkpoints.clone(),
        tx,
        audit_tx,
        shutdown_rx,
    ));
    Run {
        shutdown,
        task: Some(task),
        rx,
        audit_rx,
        events: Vec::new(),
        audit: Vec::new(),
        checkpoints,
        audit_checkpoints,
    }
}

impl Run {
    fn take_chunk(&mut self, chunk: Chunk) {
        for part in &chunk.parts {
            let mut b = LogsDataBuilder::default();
            b.add(&chunk.resource, &part.records);
            let events = decode_logs(&b.finish()).unwrap();
            assert_eq!(events.len() as u64, part.count);
            for ev in events {
                assert_eq!(
                    part.partition,
                    partition_for_key(ev.partition_key().as_bytes(), PARTITIONS),
                    "{ev:?}"
                );
                self.events
                    .push((chunk.key.to_string(), part.partition, ev));
            }
        }
        assert!(!chunk.done);
        if let Some(cp) = chunk.checkpoint {
            self.checkpoints.insert(chunk.key.to_string(), cp);
        }
    }

    fn take_audit(&mut self, item: AuditItem) {
        if let AuditPosition::File { key, checkpoint } = &item.position {
            self.audit_checkpoints
                .insert(key.to_string(), checkpoint.clone());
        }
        self.audit.push(item);
    }

    fn count(&self, key: &str) -> usize {
        self.events.iter().filter(|(k, _, _)| k == key).count()
    }

    /// Receives until `agent`, `init` and `audit` events arrived in all (or 20 s pass), then
    /// 300 ms more to catch anything extra.
    async fn until(&mut self, agent: usize, init: usize, audit: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut extra: Option<Instant> = None;
        loop {
            let done = self.count(AGENT_KEY) >= agent
                && self.count(INIT_KEY) >= init
                && self.audit.len() >= audit;
            if done && extra.is_none() {
                extra = Some(Instant::now() + Duration::from_millis(300));
            }
            let now = Instant::now();
            if extra.is_some_and(|e| now >= e) || now >= deadline {
                break;
            }
            tokio::select! {
                Some(c) = self.rx.recv() => self.take_chunk(c),
                Some(a) = self.audit_rx.recv() => self.take_audit(a),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        assert_eq!(self.count(AGENT_KEY), agent, "agent events");
        assert_eq!(self.count(INIT_KEY), init, "init events");
        assert_eq!(self.audit.len(), audit, "audit events");
    }

    /// Stops the source (draining the channels meanwhile; nothing more may come); returns
    /// the checkpoints.
    async fn stop(
        mut self,
    ) -> (
        BTreeMap<String, FileCheckpoint>,
        BTreeMap<String, FileCheckpoint>,
    ) {
        let (events, audit) = (self.events.len(), self.audit.len());
        self.shutdown.send(true).unwrap();
        let mut task = self.task.take().unwrap();
        loop {
            tokio::select! {
                r = &mut task => { r.unwrap(); break }
                Some(c) = self.rx.recv() => {
                    let key = c.key.to_string();
                    self.take_chunk(c);
                    assert_eq!(self.events.len(), events, "late events from {key}");
                }
                Some(a) = self.audit_rx.recv() => self.take_audit(a),
            }
        }
        assert_eq!(self.audit.len(), audit, "late audit events");
        (self.checkpoints, self.audit_checkpoints)
    }

    fn messages(&self, key: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|(k, _, _)| k == key)
            .map(|(_, _, e)| e.message.clone())
            .collect()
    }
}

const TASK_ARN: &str =
    "arn:aws:ecs:us-west-2:111122223333:task/default/8f03e41243824aea923aca126495f665";
const DOCKER_ID: &str = "0b5e3a8c0b6f4b1e9d2c7a6f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_line_arrives_once_with_exact_fields() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (agent, init, audit) = (
        fixture("ecs-agent.log"),
        fixture("ecs-init.log"),
        fixture("audit.log"),
    );
    fs::write(d.join("ecs-agent.log"), &agent).unwrap();
    fs::write(d.join("ecs-init.log"), &init).unwrap();
    fs::write(d.join("audit.log"), &audit).unwrap();
    let before = now_ns();
    let mut run = start(config(d), BTreeMap::new(), BTreeMap::new());
    run.until(26, 8, 8).await;
    let after = now_ns();

    // Agent and init lines: in file order, every field as the parser reads it.
    for (name, key, service, bytes) in [
        ("ecs-agent.log", AGENT_KEY, "ecs-agent", &agent),
        ("ecs-init.log", INIT_KEY, "ecs-init", &init),
    ] {
        let lines = lines_at(bytes);
        let sid = sid(name, &lines[0].1);
        let got: Vec<&LogEvent> = run
            .events
            .iter()
            .filter(|(k, _, _)| k == key)
            .map(|(_, _, e)| e)
            .collect();
        // Within a partition, file order; across partitions, sort by offset.
        let mut got = got;
        got.sort_by_key(|e| e.position.offset);
        assert_eq!(got.len(), lines.len());
        for ((off, raw), ev) in lines.iter().zip(got) {
            let text = String::from_utf8_lossy(raw);
            let rec = parse_agent_line(&text);
            assert_eq!(ev.position.offset, *off, "{name}");
            assert_eq!(ev.position.source_id, sid);
            assert_eq!(ev.event_id, EventId::derive(sid, *off));
            assert_eq!(ev.host, HOST);
            assert_eq!(ev.service, service);
            assert_eq!(ev.source_kind, SourceKind::EcsAgentLog);
            assert_eq!(ev.container, None);
            assert_eq!(ev.message, rec.message, "{name} @{off}");
            assert_eq!(ev.level, rec.level);
            assert_eq!(ev.parse_error, rec.parse_error);
            assert_eq!(ev.correlation_ids, rec.correlation_ids());
            match rec.time_ns {
                Some(t) => assert_eq!(ev.timestamp_ns, t),
                None => assert!((before..=after).contains(&ev.timestamp_ns)),
            }
            assert!((before..=after).contains(&ev.observed_ns));
            let mut attrs = rec.fields.clone();
            if let Some(m) = &rec.module {
                attrs.insert("module".into(), m.clone());
            }
            if std::str::from_utf8(raw).is_err() {
                attrs.insert("sightline.invalid_utf8".into(), "true".into());
            }
            assert_eq!(ev.attributes, attrs, "{name} @{off}");
        }
    }

    // A few agent lines spelled out.
    let agent_lines = lines_at(&agent);
    let by_offset = |off: u64| {
        run.events
            .iter()
            .map(|(_, _, e)| e)
            .find(|e| e.service == "ecs-agent" && e.position.offset == off)
            .unwrap()
    };
    let e = by_offset(agent_lines[4].0);
    assert_eq!(e.message, "Container change event");
    assert_eq!(e.level, Some(Level::Info));
    assert_eq!(e.timestamp_ns, 1_683_220_902_123_456_789);
    assert_eq!(e.correlation_ids, [TASK_ARN, DOCKER_ID]);
    assert_eq!(
        e.attributes,
        map(&[
            ("taskARN", TASK_ARN),
            ("container", "curl"),
            ("dockerId", DOCKER_ID),
            ("knownStatus", "RUNNING"),
            ("desiredStatus", "RUNNING"),
            ("seqnum", "42"),
        ])
    );
    assert_eq!(e.parse_error, None);
    let e = by_offset(agent_lines[12].0);
    assert_eq!(e.message, "Container \"curl\" stopped: exit \u{e9}");
    assert_eq!(e.level, Some(Level::Error));
    assert_eq!(e.timestamp_ns, 1_683_246_104 * S + 500_000_000);
    assert_eq!(e.attributes["containerExitCode"], "137");
    assert_eq!(e.attributes["imageNames"], r#"["nginx:latest","nginx"]"#);
    let e = by_offset(agent_lines[14].0);
    assert_eq!(
        (e.message.as_str(), e.level, e.timestamp_ns),
        (
            "Loading configuration",
            Some(Level::Info),
            1_471_276_481 * S
        )
    );
    assert_eq!(e.correlation_ids, Vec::<String>::new());
    let e = by_offset(agent_lines[22].0);
    assert_eq!(
        e.message,
        "panic: runtime error: invalid memory address or nil pointer dereference"
    );
    assert!(e
        .parse_error
        .as_deref()
        .unwrap()
        .starts_with("no ECS agent log shape"));
    assert_eq!(e.level, None);
    let e = by_offset(agent_lines[24].0);
    assert_eq!(e.message, ("x".repeat(99) + " ").repeat(200));
    assert_eq!(e.attributes, map(&[("module", "long.go")]));
    let e = by_offset(agent_lines[25].0);
    assert_eq!(e.message, "raw bytes: \u{fffd}\u{fffd} end \x1b[0m");
    assert_eq!(e.level, Some(Level::Error));
    assert_eq!(e.attributes, map(&[("sightline.invalid_utf8", "true")]));

    // Audit lines: one item each, in file order, positioned after their line.
    let audit_lines = lines_at(&audit);
    let audit_sid = sid("audit.log", &audit_lines[0].1);
    let audit_path = d.join("audit.log");
    for (i, ((off, raw), item)) in audit_lines.iter().zip(&run.audit).enumerate() {
        let ev = &item.event;
        assert_eq!(ev.event_id, EventId::derive(audit_sid, *off), "line {i}");
        assert_eq!(ev.resource.host, HOST);
        assert_eq!(ev.resource.service, "ecs-agent");
        assert_eq!(ev.resource.source_kind, SourceKind::EcsAuditLog);
        assert_eq!(ev.resource.position.source_id, audit_sid);
        assert_eq!(ev.resource.position.offset, *off);
        assert!((before..=after).contains(&ev.observed_ns));
        let end = off + raw.len() as u64 + 1;
        assert_eq!(
            item.position,
            AuditPosition::File {
                key: Arc::from(AUDIT_KEY),
                checkpoint: FileCheckpoint {
                    path: audit_path.clone(),
                    fingerprint: fp_hex(&audit_lines[0].1),
                    offset: end,
                },
            },
            "line {i}"
        );
        if i >= 5 {
            assert_eq!(ev.action, "ecs.unparsed", "line {i}");
            assert_eq!(ev.message.as_bytes(), raw.as_slice());
            assert_eq!(ev.actor, Actor::default());
            assert_eq!(ev.outcome, None);
        }
    }
    assert_eq!(run.audit_checkpoints[AUDIT_KEY].offset, audit.len() as u64);
    let a = &run.audit[0].event;
    assert_eq!(a.action, "ecs.GetCredentials");
    assert_eq!(a.time_ns, 1_468_426_313 * S);
    assert_eq!(
        a.actor,
        Actor {
            kind: "task".into(),
            id: "arn:aws:ecs:us-east-1:123456789012:task/b1a8c3d2-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
                .into(),
            name: String::new(),
        }
    );
    assert_eq!(a.outcome.as_deref(), Some("200"));
    assert_eq!(
        a.message,
        "GetCredentials for task arn:aws:ecs:us-east-1:123456789012:task/b1a8c3d2-4e5f-6a7b-8c9d-0e1f2a3b4c5d from 172.17.0.5:52444: HTTP 200 on /v1/credentials"
    );
    assert_eq!(
        a.attributes,
        map(&[
            ("http.response.status_code", "200"),
            ("source.address", "172.17.0.5"),
            ("source.port", "52444"),
            ("url.path", "/v1/credentials"),
            (
                "user_agent.original",
                "python-requests/2.7.0 CPython/2.7.6 Linux/4.4.14-24.50.amzn1.x86_64"
            ),
            (
                "aws.ecs.task.arn",
                "arn:aws:ecs:us-east-1:123456789012:task/b1a8c3d2-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
            ),
            ("aws.ecs.cluster.name", "default"),
            (
                "aws.ecs.container_instance.arn",
                "arn:aws:ecs:us-east-1:123456789012:container-instance/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
            ),
            ("ecs.audit.version", "1"),
        ])
    );
    let a = &run.audit[2].event;
    assert_eq!(a.action, "ecs.GetCredentialsExecutionRole");
    assert_eq!(a.attributes["source.address"], "fe80::1");
    assert_eq!(
        a.attributes["user_agent.original"],
        "Boto3/1.26.0 \\\"quoted\\\" Python/3.11 \"raw quotes\" Botocore/1.29.0"
    );
    assert_eq!(
        a.attributes["aws.ecs.cluster.arn"],
        "arn:aws:ecs:us-west-2:111122223333:cluster/prod"
    );
    let a = &run.audit[4].event;
    assert_eq!(
        (a.action.as_str(), a.outcome.as_deref()),
        ("ecs.GetCredentials", Some("404"))
    );
    assert_eq!(a.actor.id, "");
    // Malformed: the raw line, the reason, the line's own time when it has one.
    let a = &run.audit[5].event;
    assert_eq!(a.time_ns, 1_683_220_909 * S);
    assert_eq!(
        a.attributes,
        map(&[(
            "sightline.parse_error",
            "audit log line ends before the version field"
        )])
    );
    let a = &run.audit[6].event;
    assert_eq!(a.time_ns, 1_683_220_910 * S);
    assert_eq!(
        a.attributes,
        map(&[(
            "sightline.parse_error",
            "unknown audit log event type \"GetSecrets\""
        )])
    );
    let a = &run.audit[7].event;
    assert!((before..=after).contains(&a.time_ns));
    assert_eq!(
        a.attributes,
        map(&[(
            "sightline.parse_error",
            "audit log time is not RFC 3339: \"not-a-time\""
        )])
    );

    // Checkpoints: the end of each file.
    let (cps, _) = run.stop().await;
    assert_eq!(
        cps[AGENT_KEY],
        FileCheckpoint {
            path: d.join("ecs-agent.log"),
            fingerprint: fp_hex(&agent_lines[0].1),
            offset: agent.len() as u64,
        }
    );
    assert_eq!(cps[INIT_KEY].offset, init.len() as u64);
}

fn legacy(n: usize, text: &str) -> String {
    format!(
        "2026-11-21T07:{:02}:{:02}Z [INFO] line {n}{text}\n",
        n / 60 % 60,
        n % 60
    )
}

fn audit_line(n: usize) -> String {
    format!(
        "2026-11-21T07:00:{:02}Z 200 172.17.0.3:{} \"/v2/credentials\" \"curl/7.88.1\" {TASK_ARN} GetCredentials 2 default -\n",
        n % 60,
        40000 + n
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_rotation_while_running_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let live = d.join("ecs-agent.log");
    let audit = d.join("audit.log");
    let mut n = 0;
    let mut a = 0;
    let mut write = |k: usize| {
        for _ in 0..k {
            let extra = if n == 3 { " order-42" } else { "" };
            append(&live, &legacy(n, extra));
            n += 1;
        }
    };
    let mut write_audit = |k: usize| {
        for _ in 0..k {
            append(&audit, &audit_line(a));
            a += 1;
        }
    };
    write(3);
    write_audit(2);
    let mut run = start(config(d), BTreeMap::new(), BTreeMap::new());
    run.until(3, 0, 2).await;
    let mut expected_files: Vec<PathBuf> = Vec::new();
    for (round, hour) in ["2026-11-21-07", "2026-11-21-08", "2026-11-21-09"]
        .iter()
        .enumerate()
    {
        write(2);
        write_audit(1);
        // seelog's hourly roll: rename, then the next write creates the live file. A line
        // still lands in the renamed file (written just before the rename took effect).
        let rotated = d.join(format!("ecs-agent.log.{hour}"));
        fs::rename(&live, &rotated).unwrap();
        // The last line of a rotated file may lack its newline: it is shipped all the same.
        append(&rotated, legacy(1000 + round, "").trim_end());
        fs::rename(&audit, d.join(format!("audit.log.{hour}"))).unwrap();
        expected_files.push(rotated);
        write(3);
        write_audit(2);
    }
    let total = n + 3; // plus the three lines written into renamed files
    run.until(total, 0, a).await;

    let mut want: Vec<String> = (0..n)
        .map(|i| format!("line {i}{}", if i == 3 { " order-42" } else { "" }))
        .collect();
    want.extend((1000..1003).map(|i| format!("line {i}")));
    let mut got = run.messages(AGENT_KEY);
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let ordered = run
        .events
        .iter()
        .find(|(_, _, e)| e.message == "line 3 order-42")
        .unwrap();
    assert_eq!(ordered.2.correlation_ids, ["order-42"]);
    assert_eq!(
        ordered.1,
        partition_for_key(b"order-42", PARTITIONS),
        "keyed by the extracted ID"
    );
    // Each file's lines carry that file's source ID and exact offsets.
    let mut files = expected_files.clone();
    files.push(live.clone());
    let mut seen = 0;
    for f in &files {
        let bytes = fs::read(f).unwrap();
        let lines = lines_at(&bytes);
        let sid = sid("ecs-agent.log", &lines[0].1);
        for (off, raw) in &lines {
            let text = String::from_utf8_lossy(raw);
            let msg = parse_agent_line(&text).message;
            let ev = run
                .events
                .iter()
                .map(|(_, _, e)| e)
                .find(|e| e.message == msg)
                .unwrap();
            assert_eq!(
                (ev.position.source_id, ev.position.offset),
                (sid, *off),
                "{}",
                f.display()
            );
            seen += 1;
        }
    }
    assert_eq!(seen, total);
    // Within one file, events of one partition are in file order.
    let mut last: BTreeMap<(u64, i32), u64> = BTreeMap::new();
    for (_, p, e) in &run.events {
        if let Some(prev) = last.insert((e.position.source_id, *p), e.position.offset) {
            assert!(prev < e.position.offset);
        }
    }
    // Audit: every line once, in order, positions after each line of its own file.
    let ports: Vec<String> = run
        .audit
        .iter()
        .map(|i| i.event.attributes["source.port"].clone())
        .collect();
    let want_ports: Vec<String> = (0..a).map(|i| (40000 + i).to_string()).collect();
    assert_eq!(ports, want_ports);
    for item in &run.audit {
        let AuditPosition::File { checkpoint, .. } = &item.position else {
            panic!("file position");
        };
        let off = item.event.resource.position.offset;
        let len = audit_line(0).len() as u64;
        assert_eq!(checkpoint.offset, off + len);
    }
    let (cps, audit_cps) = run.stop().await;
    assert_eq!(cps[AGENT_KEY].offset, fs::metadata(&live).unwrap().len());
    assert_eq!(
        cps[AGENT_KEY].fingerprint,
        fp_hex(lines_at(&fs::read(&live).unwrap())[0].1.as_slice())
    );
    assert_eq!(
        audit_cps[AUDIT_KEY].offset,
        fs::metadata(&audit).unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_checkpoints_reads_exactly_the_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let live = d.join("ecs-agent.log");
    let init = d.join("ecs-init.log");
    let audit = d.join("audit.log");
    for i in 0..5 {
        append(&live, &legacy(i, ""));
    }
    append(&init, &legacy(100, ""));
    for i in 0..3 {
        append(&audit, &audit_line(i));
    }
    let mut run = start(config(d), BTreeMap::new(), BTreeMap::new());
    run.until(5, 1, 3).await;
    let (cps, audit_cps) = run.stop().await;
    assert_eq!(cps.len(), 2);
    assert_eq!(audit_cps.len(), 1);

    // While stopped: appends, an hourly rotation of the agent and audit logs, and a half
    // written line that is completed after the restart.
    append(&live, &legacy(5, ""));
    append(&live, &legacy(6, ""));
    fs::rename(&live, d.join("ecs-agent.log.2026-11-21-08")).unwrap();
    append(&live, &legacy(7, ""));
    append(&live, &legacy(8, ""));
    append(&init, &legacy(101, ""));
    append(&init, "2026-11-21T08:00:00Z [INFO] half");
    append(&audit, &audit_line(3));
    fs::rename(&audit, d.join("audit.log.2026-11-21-08")).unwrap();
    append(&audit, &audit_line(4));

    let mut run = start(config(d), cps, audit_cps);
    run.until(4, 1, 2).await;
    let mut got = run.messages(AGENT_KEY);
    got.sort();
    assert_eq!(got, ["line 5", "line 6", "line 7", "line 8"]);
    assert_eq!(run.messages(INIT_KEY), ["line 101"]);
    append(&init, " done\n");
    run.until(4, 2, 2).await;
    assert_eq!(run.messages(INIT_KEY), ["line 101", "half done"]);
    let ports: Vec<&str> = run
        .audit
        .iter()
        .map(|i| i.event.attributes["source.port"].as_str())
        .collect();
    assert_eq!(ports, ["40003", "40004"]);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_missing_directory_and_long_lines() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join("ecs");
    let cfg = EcsLogsConfig {
        max_line_bytes: 4096,
        audit: false,
        ..config(&d)
    };
    // The directory does not exist yet: the source waits for it.
    let mut run = start(cfg, BTreeMap::new(), BTreeMap::new());
    tokio::time::sleep(Duration::from_millis(100)).await;
    fs::create_dir(&d).unwrap();
    let live = d.join("ecs-agent.log");
    let agent = fixture("ecs-agent.log");
    fs::write(&live, &agent).unwrap();
    // The 20058-byte line comes in 5 parts of at most 4096 bytes.
    run.until(30, 0, 0).await;
    let lines = lines_at(&agent);
    let (long_off, long_raw) = &lines[24];
    let mut parts: Vec<&LogEvent> = run
        .events
        .iter()
        .map(|(_, _, e)| e)
        .filter(|e| e.attributes.contains_key("sightline.split_part"))
        .collect();
    parts.sort_by_key(|e| e.position.offset);
    assert_eq!(parts.len(), 5);
    let mut at = *long_off;
    let mut joined = String::new();
    for (k, p) in parts.iter().enumerate() {
        assert_eq!(p.position.offset, at);
        assert_eq!(p.attributes["sightline.split_part"], (k + 1).to_string());
        assert_eq!(p.timestamp_ns, 1_538_355_723 * S);
        assert_eq!(p.level, Some(Level::Info));
        assert_eq!(
            p.parse_error.as_deref(),
            Some("line longer than 4096 bytes (max_line_bytes): shipped in parts, not parsed")
        );
        assert!(p.message.len() <= 4096);
        joined.push_str(&p.message);
        at += p.message.len() as u64;
    }
    assert_eq!(joined.as_bytes(), long_raw.as_slice());
    let parts_partition: Vec<i32> = run
        .events
        .iter()
        .filter(|(_, _, e)| e.attributes.contains_key("sightline.split_part"))
        .map(|(_, p, _)| *p)
        .collect();
    assert!(parts_partition.windows(2).all(|w| w[0] == w[1]));

    // Truncated (copytruncate) and rewritten: the new lines, once.
    let f = OpenOptions::new().write(true).open(&live).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    append(&live, &legacy(1, ""));
    append(&live, &legacy(2, ""));
    run.until(32, 0, 0).await;
    let msgs = run.messages(AGENT_KEY);
    assert_eq!(&msgs[30..], ["line 1", "line 2"]);
    let (cps, _) = run.stop().await;
    assert_eq!(cps[AGENT_KEY].offset, fs::metadata(&live).unwrap().len());
    assert_eq!(
        cps[AGENT_KEY].fingerprint,
        fp_hex(legacy(1, "").trim_end().as_bytes())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_when_auto_and_the_directory_is_missing() {
    let root = tempfile::tempdir().unwrap();
    let cfg = EcsLogsConfig {
        enabled: None,
        ..config(&root.path().join("absent"))
    };
    let run = start(cfg, BTreeMap::new(), BTreeMap::new());
    // Returns at once, without waiting for shutdown.
    tokio::time::timeout(Duration::from_secs(5), run.task.unwrap())
        .await
        .unwrap()
        .unwrap();
}
