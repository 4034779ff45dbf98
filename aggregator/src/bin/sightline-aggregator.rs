//! `sightline-aggregator`: consumes Sightline's Kafka topic, indexes the events and serves
//! the query API. See `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sightline_aggregator::{audit, Aggregator, AggregatorConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

const EXAMPLES: &str = "\
Examples:
  # Everything from flags (index in /var/lib/sightline/index, API on 127.0.0.1:7280):
  sightline-aggregator --brokers kafka:9092 --data-dir /var/lib/sightline

  # A config file, with the listen address overridden:
  sightline-aggregator --config /etc/sightline/aggregator.toml --listen 0.0.0.0:7280

  # Check a config file and print the effective settings, without starting:
  sightline-aggregator --config aggregator.toml --check-config

  # Verify the audit trail's hash chain (exit 0 OK, 1 tampered/missing, 2 usage or I/O):
  sightline-aggregator --data-dir /var/lib/sightline audit verify
  sightline-aggregator audit verify --dir /var/lib/sightline/audit --json

  # Query it:
  curl 'http://127.0.0.1:7280/api/v1/correlations/req-42'
  curl 'http://127.0.0.1:7280/api/v1/search?q=timeout&level=error&from=2026-11-21T05:00:00Z'

Logging: RUST_LOG (default `info,tantivy=warn`), e.g. RUST_LOG=sightline_aggregator=debug,librdkafka=warn.
Stops on SIGINT or SIGTERM after a final index commit.";

/// Consumes Sightline log events from Kafka, indexes them (exactly once) and serves the
/// query API.
#[derive(Parser, Debug)]
#[command(name = "sightline-aggregator", version, after_help = EXAMPLES)]
struct Cli {
    /// TOML config file (keys: data_dir, commit_interval_ms, writer_memory_bytes, listen,
    /// max_correlation_events, [kafka] brokers, topic, group_id, [kafka.settings]).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers, comma-separated (overrides kafka.brokers).
    #[arg(long, value_name = "HOST:PORT,...")]
    brokers: Option<String>,
    /// Topic to consume (overrides kafka.topic; default sightline.logs).
    #[arg(long)]
    topic: Option<String>,
    /// Consumer group ID (overrides kafka.group_id; default sightline-aggregator).
    #[arg(long)]
    group_id: Option<String>,
    /// Data directory; the index lives in <DIR>/index (overrides data_dir).
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Query API address (overrides listen; default 127.0.0.1:7280).
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<String>,
    /// Validate the configuration, print the effective settings as TOML and exit.
    #[arg(long)]
    check_config: bool,
    /// A tool to run instead of the aggregator.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Audit trail tools.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Walks the whole audit store, recomputes the SHA-256 chain and checks it against
    /// head.json: prints OK with the record count and head hash, or the first tampered,
    /// missing, reordered or truncated record. Read-only; safe while the aggregator runs.
    /// Exit status: 0 OK, 1 integrity problem, 2 usage or I/O error.
    Verify {
        /// Audit store directory (default: <data_dir>/audit, from --data-dir or --config).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn audit_verify(cli: &Cli, dir: Option<&PathBuf>, json: bool) -> ExitCode {
    let dir = match dir {
        Some(d) => d.clone(),
        None => {
            let data_dir = match (&cli.data_dir, &cli.config) {
                (Some(d), _) => d.clone(),
                (None, Some(path)) => match AggregatorConfig::load(path) {
                    Ok(c) => c.data_dir,
                    Err(e) => {
                        eprintln!("sightline-aggregator: {e}");
                        return ExitCode::from(2);
                    }
                },
                (None, None) => PathBuf::new(),
            };
            if data_dir.as_os_str().is_empty() {
                eprintln!("sightline-aggregator: audit verify needs --dir, --data-dir or --config");
                return ExitCode::from(2);
            }
            data_dir.join("audit")
        }
    };
    if !dir.is_dir() {
        eprintln!("sightline-aggregator: {} is not a directory", dir.display());
        return ExitCode::from(2);
    }
    let report = match audit::verify(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sightline-aggregator: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("sightline-aggregator: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        println!("audit trail {}: {report}", dir.display());
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn effective_config(cli: &Cli) -> Result<AggregatorConfig, String> {
    let mut config = match &cli.config {
        Some(path) => AggregatorConfig::load(path).map_err(|e| e.to_string())?,
        None => AggregatorConfig::default(),
    };
    if let Some(b) = &cli.brokers {
        config.kafka.brokers = b.clone();
    }
    if let Some(t) = &cli.topic {
        config.kafka.topic = t.clone();
    }
    if let Some(g) = &cli.group_id {
        config.kafka.group_id = g.clone();
    }
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = &cli.listen {
        config.listen = l.clone();
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Audit(AuditCommand::Verify { dir, json })) = &cli.command {
        return audit_verify(&cli, dir.as_ref(), *json);
    }
    let config = match effective_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sightline-aggregator: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        // Rule files are part of the configuration: a broken one fails the check.
        if let Some(rules) = config.rules_config() {
            for file in &rules.rule_files {
                if let Err(e) =
                    sightline_aggregator::rules::load_file(file, rules.evaluation_interval_ms)
                {
                    eprintln!("sightline-aggregator: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        match toml::to_string_pretty(&config) {
            Ok(text) => {
                println!("# configuration is valid; effective settings:\n{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("sightline-aggregator: cannot print config: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tantivy=warn")),
        )
        .init();

    let aggregator = match Aggregator::open(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sightline-aggregator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listen = aggregator.config().listen.clone();
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sightline-aggregator: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map_or(listen, |a| a.to_string());
    println!("sightline-aggregator: query API listening on http://{addr}");
    tracing::info!(%addr, "query API listening");

    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    match aggregator.run_with_api(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sightline-aggregator: {e}");
            ExitCode::FAILURE
        }
    }
}
