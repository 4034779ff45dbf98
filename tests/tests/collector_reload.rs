//! `sightline-collector` binary + tansu: SIGHUP reloads the configuration without losing or
//! repeating a line; an invalid configuration is refused and the running one kept; `${VAR}`
//! references in the file are filled from the environment.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sightline_model::decode_logs;
use sightline_tests::kafka::read_all;
use sightline_tests::{bin, free_port, run_id, wait_for, Broker, Env, Proc};

const ID: &str = "c0ffee0000000000000000000000000000000000000000000000000000000001";

fn append_lines(log: &Path, from: usize, to: usize) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    for i in from..to {
        writeln!(
            f,
            r#"{{"log":"line {i} order=ord-{i}\n","stream":"stdout","time":"2026-11-21T08:00:00.{i:09}Z"}}"#
        )
        .unwrap();
    }
}

fn config(dir: &Path, containers: &Path, topic: &str, port: u16, with_pattern: bool) -> String {
    let pattern = if with_pattern {
        "[[correlation.patterns]]\nregex = 'order=(ord-[0-9]+)'\n"
    } else {
        ""
    };
    format!(
        r#"data_dir = "{data}"
host = "reload-host"

[docker]
containers_dir = "{containers}"
poll_interval_ms = 50

[docker_engine]
enabled = false

[kafka]
brokers = "${{RELOAD_TEST_BROKERS}}"
topic = "{topic}"
partitions = 1

[batch]
linger_ms = 20

[telemetry]
listen = "127.0.0.1:{port}"

{pattern}"#,
        data = dir.join("data").display(),
        containers = containers.display(),
    )
}

fn lines_no(e: &sightline_model::LogEvent) -> usize {
    e.message
        .strip_prefix("line ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a test line")
}

fn sent(port: u16) -> u64 {
    ureq::get(format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix(
                    "sightline_collector_events_sent_total{source=\"docker_json_file\"} ",
                )?
                .trim()
                .parse()
                .ok()
            })
        })
        .unwrap_or(0)
}

#[test]
fn sighup_reloads_without_losing_or_repeating_lines() {
    let Some(env) = Env::get() else { return };
    let run = run_id();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&env, dir.path());
    let containers = dir.path().join("containers");
    let cdir = containers.join(ID);
    fs::create_dir_all(&cdir).unwrap();
    fs::write(
        cdir.join("config.v2.json"),
        format!(r#"{{"ID":"{ID}","Name":"/reload","Config":{{"Image":"busybox","Labels":{{}}}}}}"#),
    )
    .unwrap();
    let log = cdir.join(format!("{ID}-json.log"));
    append_lines(&log, 0, 500);

    let topic = format!("reload-{run}");
    let port = free_port();
    let cfg_path = dir.path().join("collector.toml");
    fs::write(
        &cfg_path,
        config(dir.path(), &containers, &topic, port, false),
    )
    .unwrap();
    let mut cmd = Command::new(bin("sightline-collector"));
    cmd.args(["--config", cfg_path.to_str().unwrap()])
        .env("RELOAD_TEST_BROKERS", &broker.addr);
    let collector = Proc::spawn("collector", cmd, dir.path());
    let pid = collector.child.id().to_string();
    let hup = || {
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success())
    };
    wait_for(Duration::from_secs(60), || {
        (sent(port) >= 500).then_some(())
    })
    .expect("first 500 lines sent");

    // An invalid configuration is refused: the collector keeps running with the old one.
    fs::write(&cfg_path, "[kafka]\nbrokers = 7\n").unwrap();
    hup();
    std::thread::sleep(Duration::from_millis(500));
    append_lines(&log, 500, 700);
    wait_for(Duration::from_secs(30), || {
        (sent(port) >= 700).then_some(())
    })
    .expect("still shipping after an invalid reload");

    // A valid one (now with a correlation pattern) restarts the pipeline from its
    // checkpoints; lines written during the restart are not lost.
    fs::write(
        &cfg_path,
        config(dir.path(), &containers, &topic, port, true),
    )
    .unwrap();
    hup();
    append_lines(&log, 700, 800);
    std::thread::sleep(Duration::from_secs(2));
    append_lines(&log, 800, 1000);
    let in_topic = || -> Vec<sightline_model::LogEvent> {
        read_all(
            &broker.addr,
            &topic,
            Duration::from_secs(2),
            Duration::from_secs(20),
        )
        .iter()
        .flat_map(|p| decode_logs(p).unwrap())
        .collect()
    };
    let total = wait_for(Duration::from_secs(60), || {
        let events = in_topic();
        (events.len() >= 1000).then_some(events)
    })
    .expect("1000 events in the topic");
    std::thread::sleep(Duration::from_secs(2));
    let events = in_topic();
    assert!(events.len() >= total.len());
    let mut lines: Vec<usize> = events.iter().map(lines_no).collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        (0..1000).collect::<Vec<_>>(),
        "each line exactly once"
    );
    // Lines written after the reload carry the new pattern's correlation ID.
    let after: Vec<_> = events.iter().filter(|e| lines_no(e) >= 800).collect();
    assert_eq!(after.len(), 200);
    for e in after {
        let want = format!("ord-{}", lines_no(e));
        assert!(e.correlation_ids.contains(&want), "{e:?}");
    }
    drop(collector);
}
