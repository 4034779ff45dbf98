//! The Docker event source across an engine restart, against a fake engine on a unix socket
//! that speaks the Engine API's `GET /events` (newline-delimited JSON, chunked): the first
//! connection sends two events and then drops (the engine restarts); the socket is gone for a
//! while; the second connection must ask for `since` = the last event's time and gets the
//! event that happened meanwhile. Every event arrives, and discovery is woken by `start`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sightline_collector::sinks::records::{AuditItem, AuditPosition};
use sightline_collector::sources::docker_engine::{events, DockerEngineConfig, EngineContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch, Notify};

const T1: u64 = 1_700_000_000_100_000_000;
const T2: u64 = 1_700_000_000_200_000_000;
const T3: u64 = 1_700_000_005_300_000_000;

fn event(action: &str, id: &str, time_ns: u64, attrs: &str) -> String {
    format!(
        r#"{{"Type":"container","Action":"{action}","Actor":{{"ID":"{id}","Attributes":{{"name":"web-1","image":"busybox"{attrs}}}}},"scope":"local","time":{},"timeNano":{time_ns}}}"#,
        time_ns / 1_000_000_000
    )
}

/// Serves one `/events` request on `listener`: records the request line, sends `events`,
/// then closes the connection (an engine going away).
async fn serve_once(listener: &UnixListener, events: &[String], seen: &Arc<Mutex<Vec<String>>>) {
    let (mut conn, _) = listener.accept().await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "client closed before sending a request");
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    seen.lock().unwrap().push(line);
    conn.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    for e in events {
        let body = format!("{e}\n");
        conn.write_all(format!("{:x}\r\n{body}\r\n", body.len()).as_bytes())
            .await
            .unwrap();
        conn.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No terminating chunk: the connection just drops, as when dockerd stops.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_resumes_after_an_engine_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let ctx = EngineContext {
        cfg: DockerEngineConfig {
            max_backoff_ms: 500,
            ..Default::default()
        },
        socket: socket.clone(),
        host: "h1".into(),
        service_label: None,
    };
    let (tx, mut rx) = mpsc::channel::<AuditItem>(16);
    let wake = Arc::new(Notify::new());
    let (stop, shutdown) = watch::channel(false);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();

    // First life of the engine: start and exec_start, then it goes away.
    let listener = UnixListener::bind(&socket).unwrap();
    let source = tokio::spawn(events::run(ctx, Some(T1 - 1), tx, wake.clone(), shutdown));
    serve_once(
        &listener,
        &[
            event("start", "c1", T1, ""),
            event("exec_start: sh -c id", "c1", T2, r#","execID":"e1""#),
        ],
        &seen,
    )
    .await;
    drop(listener);
    std::fs::remove_file(&socket).unwrap();
    // Down for a while: connection attempts fail and back off.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Second life: it answers with what happened while it was down.
    let listener = UnixListener::bind(&socket).unwrap();
    serve_once(
        &listener,
        &[event("die", "c1", T3, r#","exitCode":"137""#)],
        &seen,
    )
    .await;

    let mut got = Vec::new();
    while got.len() < 3 {
        let item = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an audit event within 10 s")
            .expect("source running");
        got.push(item);
    }
    stop.send(true).unwrap();
    source.await.unwrap();
    // `start` and `die` woke container discovery (a stored permit).
    tokio::time::timeout(Duration::from_secs(1), wake.notified())
        .await
        .expect("discovery woken");

    let actions: Vec<&str> = got.iter().map(|i| i.event.action.as_str()).collect();
    assert_eq!(
        actions,
        ["container.start", "container.exec_start", "container.die"]
    );
    assert_eq!(got[1].event.attributes["exec.command"], "sh -c id");
    assert_eq!(got[2].event.outcome.as_deref(), Some("137"));
    let positions: Vec<_> = got.iter().map(|i| i.position.clone()).collect();
    assert_eq!(
        positions,
        [
            AuditPosition::DockerEvents(T1),
            AuditPosition::DockerEvents(T2),
            AuditPosition::DockerEvents(T3)
        ]
    );
    // The first request resumed from the given cursor, the second from the last event seen.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].contains("/events?since=1700000000.099999999"),
        "{seen:?}"
    );
    assert!(
        seen[1].contains("/events?since=1700000000.200000000"),
        "{seen:?}"
    );
}
