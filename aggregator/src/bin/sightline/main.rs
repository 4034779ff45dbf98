//! `sightline`: the all-in-one command. `sightline up` runs an embedded Kafka-protocol broker
//! (librdkafka's mock cluster: the same client code path as a real cluster), the collector,
//! the aggregator and the query API in one process.

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde::Deserialize;
use sightline_aggregator::{Aggregator, AggregatorConfig};
use sightline_collector::config::CollectorConfig;
use sightline_collector::stats::Stats;
use tokio_util::sync::CancellationToken;

/// Sightline: every log line of a request, across every service.
#[derive(Parser, Debug)]
#[command(name = "sightline", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run broker, collector, aggregator and query API in one process.
    #[command(after_help = "EXAMPLES:
  # A demo of three services passing correlation IDs (real containers when Docker is here):
  sightline up --demo

  # Collect this host's containers; index under ./data; API on port 7280:
  sightline up --data-dir ./data --listen 127.0.0.1:7280

  # Read a directory laid out like /var/lib/docker/containers (e.g. copied from a host):
  sightline up --containers-dir ./incident-123/containers

  # Everything from a file ([collector] and [aggregator] tables, as for the separate binaries):
  sightline up --config sightline.toml

Then:
  curl -s localhost:7280/api/v1/correlations/<correlation-id>
  curl -s 'localhost:7280/api/v1/search?q=error&limit=20'

Durability: the embedded broker keeps messages in memory; see README (\"Durability\").")]
    Up(UpArgs),
}

#[derive(clap::Args, Debug)]
struct UpArgs {
    /// TOML file with optional `[collector]` and `[aggregator]` tables.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Directory with one folder per container (default /var/lib/docker/containers).
    #[arg(long, visible_alias = "docker-logs")]
    containers_dir: Option<PathBuf>,
    /// Data directory: collector checkpoints in `<dir>/collector`, index in `<dir>/aggregator`.
    #[arg(long, default_value = "sightline-data")]
    data_dir: PathBuf,
    /// Query API listen address.
    #[arg(long, default_value = "127.0.0.1:7280")]
    listen: String,
    /// Partitions of the embedded topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Also run a three-service demo workload.
    #[arg(long)]
    demo: bool,
}

/// The all-in-one configuration file.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct UpConfig {
    collector: CollectorConfig,
    aggregator: AggregatorConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,librdkafka=warn,rdkafka=warn,tantivy=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let Cmd::Up(args) = cli.command;
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(up(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn up(args: UpArgs) -> Result<(), String> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            toml::from_str::<UpConfig>(&text)
                .map_err(|e| format!("invalid config {}: {e}", p.display()))?
        }
        None => UpConfig::default(),
    };
    let shutdown = CancellationToken::new();
    let demo = if args.demo {
        Some(demo::start(shutdown.clone()).map_err(|e| format!("cannot start the demo: {e}"))?)
    } else {
        None
    };

    // The embedded broker. A fresh topic name per run: the broker forgets everything when the
    // process ends, so offsets stored in the index for earlier runs must not apply to it.
    let mock =
        rdkafka::mocking::MockCluster::new(1).map_err(|e| format!("embedded broker: {e}"))?;
    let topic = format!(
        "sightline.logs.{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    mock.create_topic(&topic, args.partitions, 1)
        .map_err(|e| format!("embedded broker: {e}"))?;
    let brokers = mock.bootstrap_servers();

    let c = &mut cfg.collector;
    c.kafka.brokers = brokers.clone();
    c.kafka.topic = topic.clone();
    c.data_dir = args.data_dir.join("collector");
    if let Some(d) = demo
        .as_ref()
        .and_then(|d| d.containers_dir())
        .or(args.containers_dir.clone())
    {
        c.docker.containers_dir = d;
    }
    c.validate().map_err(|e| e.to_string())?;
    let a = &mut cfg.aggregator;
    a.kafka.brokers = brokers;
    a.kafka.topic = topic;
    a.data_dir = args.data_dir.join("aggregator");
    a.listen = args.listen.clone();
    a.validate().map_err(|e| e.to_string())?;

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let aggregator = Aggregator::open(cfg.aggregator.clone()).map_err(|e| e.to_string())?;
    let indexed = aggregator.metrics();
    let agg_stop = CancellationToken::new();
    let agg_task = tokio::spawn(aggregator.run_with_api(listener, agg_stop.clone()));

    let stats = Arc::new(Stats::default());
    let (col_tx, col_rx) = tokio::sync::watch::channel(false);
    let col_task = tokio::spawn(sightline_collector::run(
        cfg.collector.clone(),
        stats.clone(),
        col_rx,
    ));

    println!("Sightline is up.");
    println!(
        "  collecting   {}",
        cfg.collector.docker.containers_dir.display()
    );
    println!("  data         {}", args.data_dir.display());
    println!("  query API    http://{}", args.listen);
    println!();
    if args.demo {
        println!("Try (the demo sends one request a second):");
        println!(
            "  curl -s http://{}/api/v1/correlations/demo-req-3",
            args.listen
        );
        println!(
            "  curl -s 'http://{}/api/v1/search?q=declined&service=payments'",
            args.listen
        );
    } else {
        println!("Try:");
        println!(
            "  curl -s 'http://{}/api/v1/search?q=error&limit=20'",
            args.listen
        );
        println!(
            "  curl -s http://{}/api/v1/correlations/<correlation-id>",
            args.listen
        );
    }
    println!("Ctrl-C stops (everything read is indexed first).");

    shutdown_signal().await;
    eprintln!("stopping: collector first, then the aggregator once it has indexed everything");
    shutdown.cancel();
    drop(demo);
    let _ = col_tx.send(true);
    match col_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("collector: {e}"),
        Err(e) => eprintln!("collector task: {e}"),
    }
    // Drain: wait until the aggregator has handled every event Kafka acknowledged.
    let sent = stats.snapshot().events_sent;
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = || {
        let m = indexed.snapshot();
        m.events_indexed + m.duplicates_skipped
    };
    while seen() < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agg_stop.cancel();
    let result = agg_task
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string());
    drop(mock);
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
