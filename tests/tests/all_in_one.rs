//! `sightline up`, the README's first command: embedded broker, collector, aggregator and
//! API in one process, on a directory of Docker logs and (with an engine) on `--demo`.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use sightline_tests::{api, bin, free_port, wait_for, Env, Proc};

fn up(args: &[&str], dir: &std::path::Path, listen: &str) -> Proc {
    let mut cmd = Command::new(bin("sightline"));
    cmd.arg("up")
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", listen]);
    let p = Proc::spawn("sightline-up", cmd, dir);
    let base = format!("http://{listen}");
    if wait_for(Duration::from_secs(90), || api::get(&base, "/healthz")).is_none() {
        let log = std::fs::read_to_string(dir.join("sightline-up.log")).unwrap_or_default();
        panic!("`sightline up` did not serve its API within 90 s\n{log}");
    }
    p
}

/// A directory laid out like /var/lib/docker/containers, no Docker needed.
#[test]
fn up_on_a_directory_of_docker_logs_then_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let containers = dir.path().join("containers");
    let id = "a".repeat(64);
    std::fs::create_dir_all(containers.join(&id)).unwrap();
    std::fs::write(
        containers.join(&id).join("config.v2.json"),
        format!(r#"{{"ID":"{id}","Name":"/web-1","Config":{{"Image":"x","Labels":{{"com.docker.compose.service":"web"}}}}}}"#),
    )
    .unwrap();
    let mut log =
        std::fs::File::create(containers.join(&id).join(format!("{id}-json.log"))).unwrap();
    for i in 0..50 {
        let line = serde_json::json!({"log": format!("INFO x-correlation-id=up-{} request {i}\n", i % 5), "stream": "stdout", "time": format!("2026-11-21T05:00:{:02}Z", i)});
        writeln!(log, "{line}").unwrap();
    }
    log.flush().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let mut p = up(
        &["--containers-dir", containers.to_str().unwrap()],
        dir.path(),
        &listen,
    );
    let got = wait_for(Duration::from_secs(60), || {
        api::correlation_messages(&base, "up-3").filter(|m| m.len() >= 10)
    })
    .expect("10 events for up-3");
    let want: Vec<String> = (0..50)
        .filter(|i| i % 5 == 3)
        .map(|i| format!("INFO x-correlation-id=up-3 request {i}"))
        .collect();
    assert_eq!(got, want);
    // Other correlation IDs sit in other partitions: wait until all 50 lines are in.
    let body = wait_for(Duration::from_secs(60), || {
        let (status, body) = api::get(&base, "/api/v1/search?q=request&service=web&limit=3")?;
        (status == 200 && body["total"] == 50).then_some(body)
    })
    .expect("all 50 lines searchable");
    assert_eq!(
        body["hits"][0]["message"], "INFO x-correlation-id=up-4 request 49",
        "newest first"
    );
    let (status, body) = api::get(&base, "/api/v1/search?q=request%20AND%20(").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        p.terminate(Duration::from_secs(30)),
        "clean exit on SIGTERM"
    );
}

/// `sightline up --demo` with real containers: three services pass request IDs along.
#[test]
fn demo_shows_a_request_across_three_services() {
    let Some(_env) = Env::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let mut p = up(&["--demo"], dir.path(), &listen);
    let body = wait_for(Duration::from_secs(60), || {
        let (_, body) = api::get(&base, "/api/v1/correlations/demo-req-5")?;
        (body["events"].as_array()?.len() >= 3).then_some(body)
    })
    .unwrap_or_else(|| {
        let log = std::fs::read_to_string(dir.path().join("sightline-up.log")).unwrap_or_default();
        panic!("demo-req-5 did not show three events\n{log}")
    });
    let services: Vec<&str> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(services, ["frontend", "checkout", "payments"]);
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    let hops: Vec<u64> = events.iter().map(|e| e["hop"].as_u64().unwrap()).collect();
    assert_eq!(hops, [0, 1, 2]);
    // Every fifth request is declined by payments, on stderr.
    assert_eq!(events[2]["level"], "error");
    assert_eq!(events[2]["stream"], "stderr");
    assert_eq!(
        events[2]["message"],
        "ERROR x-correlation-id=demo-req-5 hop=2 card declined"
    );
    assert!(
        p.terminate(Duration::from_secs(30)),
        "clean exit on SIGTERM"
    );
    // The demo's containers are removed on exit.
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "name=sightline-demo-",
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    let suffix = format!("-{}", p.child.id());
    let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.ends_with(&suffix))
        .map(str::to_string)
        .collect();
    if !left.is_empty() {
        // Do not leave them running for the next tests, then fail with the demo's own account.
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&left)
            .output();
        let log = std::fs::read_to_string(dir.path().join("sightline-up.log")).unwrap_or_default();
        panic!("demo containers left: {left:?}\n{log}");
    }
}
