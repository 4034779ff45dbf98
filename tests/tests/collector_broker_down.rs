//! `sightline-collector` binary + tansu, started while Kafka is unreachable (the broker behind
//! a paused proxy): it must read at once into its disk spool (so Docker's log rotation cannot
//! delete lines it never read), stop promptly on SIGTERM keeping what it read, and deliver
//! every line exactly once, in order per correlation ID and container, to the partition the
//! topic's real partition count gives, once the broker is reachable.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sightline_model::kafka::partition_for_key;
use sightline_model::{decode_logs, LogEvent};
use sightline_tests::{bin, free_port, run_id, scrape_value, wait_for, Broker, Env, Proc};

/// The topic's real partition count (created by the test), unlike `kafka.partitions` (2).
const PARTITIONS: i32 = 4;
const KEYS: usize = 7;

/// Two fake containers in Docker's layout (`<dir>/<id>/config.v2.json`, `<id>-json.log`).
struct Containers {
    logs: [PathBuf; 2],
}

impl Containers {
    fn new(root: &Path) -> Self {
        let logs = [1, 2].map(|n| {
            let id = format!("d0c0{n:060}");
            let dir = root.join(&id);
            fs::create_dir_all(&dir).unwrap();
            fs::write(
                dir.join("config.v2.json"),
                format!(
                    r#"{{"ID":"{id}","Name":"/down-{n}","Config":{{"Image":"busybox","Labels":{{}}}}}}"#
                ),
            )
            .unwrap();
            dir.join(format!("{id}-json.log"))
        });
        Containers { logs }
    }

    /// Appends lines `from..to`; line `i` goes to container `i % 2` with correlation ID
    /// `<run>-k<i % KEYS>`.
    fn write(&self, run: &str, from: usize, to: usize) {
        for (c, log) in self.logs.iter().enumerate() {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            for i in (from..to).filter(|i| i % 2 == c) {
                writeln!(
                    f,
                    r#"{{"log":"line {i} x-correlation-id={run}-k{k} payload\n","stream":"stdout","time":"2026-11-21T08:00:00.{i:09}Z"}}"#,
                    k = i % KEYS
                )
                .unwrap();
            }
        }
    }

    /// Docker's json-file rotation with `max-file=1`-like pruning: the live file is renamed
    /// to `.1`, a new one started, and (once the collector has read it) `.1` is deleted.
    fn rotate(&self) {
        for log in &self.logs {
            fs::rename(log, format!("{}.1", log.display())).unwrap();
            fs::File::create(log).unwrap();
        }
    }

    fn prune(&self) {
        for log in &self.logs {
            fs::remove_file(format!("{}.1", log.display())).unwrap();
        }
    }
}

/// Polls a future to completion on this thread (rdkafka's admin futures need no runtime).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

fn create_topic(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = block_on(admin.create_topics([&new], &opts)).expect("CreateTopics");
    for r in res {
        r.expect("topic created");
    }
}

/// Every event now in `topic`, with its partition, in each partition's order.
fn read_topic(brokers: &str, topic: &str) -> Vec<(i32, LogEvent)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("down-reader-{}", run_id()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (start, mut last) = (Instant::now(), Instant::now());
    let mut out = Vec::new();
    while last.elapsed() < Duration::from_secs(2) && start.elapsed() < Duration::from_secs(30) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let events = decode_logs(m.payload().unwrap_or_default()).expect("OTLP LogsData");
                out.extend(events.into_iter().map(|e| (m.partition(), e)));
                last = Instant::now();
            }
            Some(Err(e)) => eprintln!("test consumer: {e}"),
            None => {}
        }
    }
    out
}

fn line_no(e: &LogEvent) -> usize {
    e.message
        .strip_prefix("line ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a test line: {e:?}"))
}

fn logs(dir: &Path) -> String {
    ["collector", "tansu"]
        .iter()
        .map(|n| {
            let text = fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default();
            let tail: Vec<_> = text.lines().rev().take(40).collect();
            let tail: Vec<_> = tail.into_iter().rev().collect();
            format!("--- {n}\n{}", tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn started_during_an_outage_reads_at_once_and_delivers_every_line_once() {
    let Some(env) = Env::get() else { return };
    let run = run_id();
    let dir = tempfile::tempdir().unwrap();
    let (broker, proxy) = Broker::start_behind_proxy(&env, dir.path());
    let topic = format!("down-{run}");
    create_topic(&broker.addr, &topic);
    proxy.pause();

    let containers_dir = dir.path().join("containers");
    let containers = Containers::new(&containers_dir);
    containers.write(&run, 0, 300);
    let port = free_port();
    let cfg_path = dir.path().join("collector.toml");
    fs::write(
        &cfg_path,
        format!(
            r#"data_dir = "{data}"
host = "down-host"

[docker]
containers_dir = "{containers}"
poll_interval_ms = 50
discovery_interval_ms = 100

[docker_engine]
enabled = false

[kafka]
brokers = "{brokers}"
topic = "{topic}"
partitions = 2

[batch]
linger_ms = 50

[telemetry]
listen = "127.0.0.1:{port}"
"#,
            data = dir.path().join("data").display(),
            containers = containers_dir.display(),
            brokers = broker.addr,
        ),
    )
    .unwrap();
    let start = || {
        let mut cmd = Command::new(bin("sightline-collector"));
        cmd.args(["--config", cfg_path.to_str().unwrap()]);
        Proc::spawn("collector", cmd, dir.path())
    };
    let spooled = |n: f64| {
        wait_for(Duration::from_secs(30), || {
            scrape_value(port, "sightline_collector_events_spooled_total").filter(|&s| s >= n)
        })
    };

    // Kafka unreachable from the start: the collector reads anyway, into its spool.
    let mut collector = start();
    assert!(
        spooled(300.0).is_some(),
        "lines not read into the spool while Kafka was unreachable at start-up\n{}",
        logs(dir.path())
    );
    // Docker rotates and prunes: the lines read before exist only in the spool now.
    containers.rotate();
    containers.write(&run, 300, 500);
    assert!(
        spooled(500.0).is_some(),
        "rotated lines not spooled\n{}",
        logs(dir.path())
    );
    containers.prune();

    // SIGTERM during the outage: a prompt, clean exit that keeps what was read.
    let t = Instant::now();
    assert!(
        collector.terminate(Duration::from_secs(20)),
        "no clean exit on SIGTERM during the outage\n{}",
        logs(dir.path())
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        t.elapsed()
    );
    containers.write(&run, 500, 600);
    collector = start();
    assert!(
        spooled(100.0).is_some(),
        "restarted collector did not resume reading during the outage\n{}",
        logs(dir.path())
    );

    // Kafka reachable: everything arrives once, where the real partition count puts it.
    proxy.resume();
    let got = wait_for(Duration::from_secs(90), || {
        let events = read_topic(&broker.addr, &topic);
        (events.len() >= 600).then_some(events)
    });
    let Some(got) = got else {
        let n = read_topic(&broker.addr, &topic).len();
        panic!("{n} of 600 events in the topic\n{}", logs(dir.path()));
    };
    std::thread::sleep(Duration::from_secs(2)); // let any duplicate show up
    let events = read_topic(&broker.addr, &topic);
    assert!(events.len() >= got.len());
    let mut lines: Vec<usize> = events.iter().map(|(_, e)| line_no(e)).collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        (0..600).collect::<Vec<_>>(),
        "each line exactly once"
    );
    let mut per_key: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (partition, e) in &events {
        let key = e.correlation_id().expect("a correlation ID").to_string();
        assert_eq!(
            *partition,
            partition_for_key(key.as_bytes(), PARTITIONS),
            "{key} in the wrong partition"
        );
        let container = e.container.as_ref().map(|c| c.id.clone()).unwrap();
        per_key
            .entry((key, container))
            .or_default()
            .push(line_no(e));
    }
    for ((key, container), lines) in per_key {
        assert!(
            lines.windows(2).all(|w| w[0] < w[1]),
            "{key} of {container} out of order: {lines:?}"
        );
    }
    let drained = wait_for(Duration::from_secs(30), || {
        (scrape_value(port, "sightline_collector_spool_bytes") == Some(0.0)
            && scrape_value(port, "sightline_collector_spooling") == Some(0.0))
        .then_some(())
    });
    assert!(drained.is_some(), "spool not drained\n{}", logs(dir.path()));
    assert!(collector.terminate(Duration::from_secs(20)));
}
