//! The `sightline-aggregator audit verify` subcommand on a real store.

use std::process::Command;

use sightline_aggregator::audit::{AuditConfig, AuditStore};
use sightline_model::audit::AuditEvent;
use sightline_model::event::EventId;

fn event(i: u128) -> AuditEvent {
    AuditEvent {
        event_id: EventId(i + 1),
        time_ns: 1_795_237_200_000_000_000 + i as u64,
        action: "container.start".into(),
        message: format!("container {i} started"),
        ..Default::default()
    }
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sightline-aggregator"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn audit_verify_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().to_str().unwrap();
    let store = AuditStore::open(tmp.path().join("audit"), AuditConfig::default()).unwrap();
    let events: Vec<_> = (0..3).map(event).collect();
    store.append_batch(&events, &Default::default()).unwrap();
    let head = store.head().1.to_hex();
    drop(store);

    let (code, text) = run(&["--data-dir", data_dir, "audit", "verify"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("OK: 3 records") && text.contains(&head),
        "{text}"
    );

    let seg = tmp.path().join("audit/segment-00000000000000000001.jsonl");
    let body = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(
        &seg,
        body.replace("container 1 started", "container 1 stopped"),
    )
    .unwrap();
    let dir = tmp.path().join("audit");
    let (code, text) = run(&["audit", "verify", "--dir", dir.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["problem"]["kind"], "tampered");
    assert_eq!(report["problem"]["seq"], 2);

    let (code, text) = run(&["audit", "verify"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("needs --dir"), "{text}");
}
