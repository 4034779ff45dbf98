//! `sightline-collector`: the host collector binary (daemonset or sidecar).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use sightline_collector::config::CollectorConfig;
use sightline_collector::stats::Stats;

/// Tails Docker json-file container logs, extracts correlation IDs, and ships them to Kafka.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "sightline-collector",
    version,
    after_help = "EXAMPLES:
  # Tail every container on this host, ship to a Kafka cluster:
  sightline-collector --brokers kafka-1:9092,kafka-2:9092

  # With a config file (see README: collector configuration), checked first:
  sightline-collector --config /etc/sightline/collector.toml --check-config
  sightline-collector --config /etc/sightline/collector.toml

  # Read a copy of a Docker data root, keep checkpoints elsewhere:
  sightline-collector --containers-dir /mnt/host/var/lib/docker/containers \\
      --data-dir /var/lib/sightline-collector --brokers 127.0.0.1:9092

SIGNALS:
  SIGTERM, SIGINT  flush to Kafka (or the spool), write checkpoints, exit.
  SIGHUP           re-read and validate the config file; when valid, restart the pipeline
                   with it from its checkpoints (no line lost or repeated); else keep running.

Environment: RUST_LOG (e.g. info, sightline_collector=debug); in the config file,
${VAR} and ${VAR:-default} are replaced by environment variables."
)]
struct Args {
    /// TOML configuration file; flags below override it.
    #[arg(short, long, env = "SIGHTLINE_COLLECTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (`kafka.brokers`).
    #[arg(long, env = "SIGHTLINE_KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Kafka topic for log events (`kafka.topic`).
    #[arg(long)]
    topic: Option<String>,
    /// Directory with one folder per container (`docker.containers_dir`),
    /// default /var/lib/docker/containers.
    #[arg(long)]
    containers_dir: Option<PathBuf>,
    /// Directory for checkpoints (`data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Host name stamped on events (`host`).
    #[arg(long)]
    host: Option<String>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn load(args: &Args) -> Result<CollectorConfig, String> {
    let mut cfg = match &args.config {
        Some(p) => CollectorConfig::from_file(p).map_err(|e| e.to_string())?,
        None => CollectorConfig::default(),
    };
    if let Some(b) = &args.brokers {
        cfg.kafka.brokers = b.clone();
    }
    if let Some(t) = &args.topic {
        cfg.kafka.topic = t.clone();
    }
    if let Some(d) = &args.containers_dir {
        cfg.docker.containers_dir = d.clone();
    }
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(h) = &args.host {
        cfg.host = Some(h.clone());
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stats = Arc::new(Stats::default());
    rt.block_on(async move {
        let mut cfg = cfg;
        loop {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<CollectorConfig>(1);
            let signals = tokio::spawn(signal_loop(args.clone(), tx, reload_tx));
            let result = sightline_collector::run(cfg.clone(), stats.clone(), rx).await;
            signals.abort();
            if let Err(e) = result {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            match reload_rx.try_recv() {
                Ok(new_cfg) => {
                    tracing::info!(
                        "configuration reloaded: restarting the pipeline from its checkpoints"
                    );
                    cfg = new_cfg;
                }
                Err(_) => return ExitCode::SUCCESS,
            }
        }
    })
}

/// Waits for signals: SIGTERM or SIGINT stop the collector; SIGHUP re-reads the
/// configuration and, when it is valid, stops the pipeline cleanly (flush, checkpoints) so
/// `main` restarts it with the new configuration from where it stopped. An invalid
/// configuration is logged and the running one kept.
async fn signal_loop(
    args: Args,
    stop: tokio::sync::watch::Sender<bool>,
    reload: tokio::sync::mpsc::Sender<CollectorConfig>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                match load(&args) {
                    Ok(cfg) => {
                        tracing::info!("SIGHUP: configuration valid; reloading");
                        let _ = reload.send(cfg).await;
                        let _ = stop.send(true);
                        return;
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: configuration invalid; keeping the running one"),
                }
            }
        }
    }
    tracing::info!("shutting down: flushing to Kafka and writing checkpoints");
    let _ = stop.send(true);
}
