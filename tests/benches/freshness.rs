//! Freshness: how long from a line being written to a container's json-file log until the
//! query API returns it, through the real binaries and a real broker (tansu).
//!
//! A fake containers directory holds one container; every 300 ms a line with a new
//! correlation ID is appended in Docker's format, and the correlation endpoint is polled
//! every 10 ms until it answers. Prints p50 / p99 / max over `--samples` lines (default 50).
//!
//! ```text
//! cargo build --release --workspace --bins
//! SIGHTLINE_BIN_DIR=$PWD/target/release cargo bench -p sightline-tests --bench freshness
//! ```

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use sightline_tests::{api, bin, free_port, wait_for, Broker, Env, Proc};

fn main() {
    let samples: usize = std::env::args()
        .skip_while(|a| a != "--samples")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let Some(env) = Env::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&env, dir.path());
    let containers = dir.path().join("containers");
    let id = "f".repeat(64);
    let cdir = containers.join(&id);
    std::fs::create_dir_all(&cdir).unwrap();
    std::fs::write(
        cdir.join("config.v2.json"),
        format!(r#"{{"ID":"{id}","Name":"/fresh","Config":{{"Image":"x","Labels":{{}}}}}}"#),
    )
    .unwrap();
    let log_path = cdir.join(format!("{id}-json.log"));
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");

    let mut agg = Command::new(bin("sightline-aggregator"));
    agg.args([
        "--brokers",
        &broker.addr,
        "--topic",
        "fresh",
        "--listen",
        &listen,
    ])
    .arg("--data-dir")
    .arg(dir.path().join("agg"));
    let _agg = Proc::spawn("aggregator", agg, dir.path());
    let mut col = Command::new(bin("sightline-collector"));
    col.args(["--brokers", &broker.addr, "--topic", "fresh"])
        .arg("--containers-dir")
        .arg(&containers)
        .arg("--data-dir")
        .arg(dir.path().join("col"));
    let _col = Proc::spawn("collector", col, dir.path());
    wait_for(Duration::from_secs(60), || api::get(&base, "/healthz")).expect("API up");

    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let mut lat = Vec::new();
    for i in 0..samples + 3 {
        let cid = format!("fresh-{i}");
        let line = serde_json::json!({"log": format!("INFO x-correlation-id={cid} sample {i}\n"), "stream": "stdout", "time": "2026-11-21T05:00:00Z"});
        let t = Instant::now();
        writeln!(log, "{line}").unwrap();
        log.flush().unwrap();
        let found = wait_for(Duration::from_secs(30), || {
            api::correlation_messages(&base, &cid).filter(|m| !m.is_empty())
        });
        assert!(found.is_some(), "line {i} never became searchable");
        // The first lines include start-up (topic creation, group join): not counted.
        if i >= 3 {
            lat.push(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "freshness (write -> searchable via API, {} lines): p50 {:?} p99 {:?} max {:?}",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    );
}
