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
        let control = Arc::new(Control::default());
        tokio::spawn(signal_loop(args.clone(), control.clone()));
        let mut cfg = cfg;
        loop {
            let (tx, rx) = tokio::sync::watch::channel(false);
            control.set_run(tx);
            let result = sightline_collector::run(cfg.clone(), stats.clone(), rx).await;
            let next = control.take_reload();
            if control.exiting() {
                return match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            match (result, next) {
                // A reload, also one that interrupted a start-up still waiting for Kafka.
                (_, Some(new_cfg)) => {
                    tracing::info!(
                        "configuration reloaded: restarting the pipeline from its checkpoints"
                    );
                    cfg = new_cfg;
                }
                (Ok(()), None) => return ExitCode::SUCCESS,
                (Err(e), None) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    })
}

/// What the signal task tells the pipeline loop in `main`.
#[derive(Default)]
struct Control {
    /// Stops the running pipeline.
    run: std::sync::Mutex<Option<tokio::sync::watch::Sender<bool>>>,
    /// SIGTERM or SIGINT came: stop for good.
    exit: std::sync::atomic::AtomicBool,
    /// A valid configuration read on SIGHUP, for the next run.
    reload: std::sync::Mutex<Option<CollectorConfig>>,
}

impl Control {
    fn set_run(&self, stop: tokio::sync::watch::Sender<bool>) {
        // A stop that came between two runs also stops the next one.
        if self.exiting() {
            let _ = stop.send(true);
        }
        if let Ok(mut r) = self.run.lock() {
            *r = Some(stop);
        }
    }

    fn stop_run(&self) {
        if let Ok(r) = self.run.lock() {
            if let Some(stop) = r.as_ref() {
                let _ = stop.send(true);
            }
        }
    }

    fn exiting(&self) -> bool {
        self.exit.load(std::sync::atomic::Ordering::Acquire)
    }

    fn take_reload(&self) -> Option<CollectorConfig> {
        self.reload.lock().ok().and_then(|mut r| r.take())
    }
}

/// Waits for signals for the life of the process: SIGTERM or SIGINT stop the collector;
/// SIGHUP re-reads the configuration and, when it is valid, stops the pipeline cleanly
/// (flush, checkpoints) so `main` restarts it with the new configuration from where it
/// stopped. An invalid configuration is logged and the running one kept.
async fn signal_loop(args: Args, control: Arc<Control>) {
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
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {
                match load(&args) {
                    Ok(cfg) => {
                        tracing::info!("SIGHUP: configuration valid; reloading");
                        if let Ok(mut r) = control.reload.lock() {
                            *r = Some(cfg);
                        }
                        control.stop_run();
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: configuration invalid; keeping the running one"),
                }
                continue;
            }
        }
        tracing::info!("shutting down: flushing to Kafka and writing checkpoints");
        control
            .exit
            .store(true, std::sync::atomic::Ordering::Release);
        control.stop_run();
    }
}
