//! Collector configuration: a TOML file (every field optional, defaults below), validated by
//! [`CollectorConfig::validate`] before anything starts.
//!
//! ```toml
//! data_dir = "/var/lib/sightline-collector"   # checkpoints live here
//! host = "ip-10-0-1-17"                       # defaults to the machine's host name
//!
//! [docker]
//! containers_dir = "/var/lib/docker/containers"
//! service_label = "app"                       # tried after the ECS and compose labels
//!
//! [kafka]
//! brokers = "kafka-1:9092,kafka-2:9092"
//! topic = "sightline.logs"                     # also metrics_topic, audit_topic
//!
//! [docker_engine]                             # events → audit, stats → metrics
//! socket = "/var/run/docker.sock"
//! stats.interval_ms = 10000
//!
//! [spool]                                    # while Kafka is down or slow
//! max_bytes = 1073741824
//!
//! [telemetry]
//! listen = "0.0.0.0:9464"                     # /metrics and /healthz; off when absent
//!
//! [[correlation.patterns]]
//! regex = 'blk_-?[0-9]+'                      # whole match, group 1, or group `id`
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Invalid configuration: the message names the field and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown fields (the message gives line and column).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The path given.
        path: PathBuf,
        /// What toml said, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {field}: {message}")]
    Invalid {
        /// Dotted field name, e.g. `correlation.patterns[1].regex`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The whole collector configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Directory for the collector's state (checkpoints). Default `./sightline-collector-data`.
    pub data_dir: PathBuf,
    /// Host name stamped on every event (`host.name`). Default: the machine's host name.
    pub host: Option<String>,
    /// Docker json-file log source.
    pub docker: DockerConfig,
    /// Kafka sink.
    pub kafka: KafkaConfig,
    /// Correlation ID, trace ID, hop and level extraction.
    pub correlation: CorrelationConfig,
    /// Batching towards Kafka.
    pub batch: BatchConfig,
    /// The Docker Engine API: events as audit events, container stats as metrics.
    pub docker_engine: crate::sources::docker_engine::DockerEngineConfig,
    /// The collector's own `/metrics` and `/healthz`.
    pub telemetry: TelemetryConfig,
    /// Sidecar mode: ECS task metadata endpoint v4 (Container Insights task metrics).
    pub ecs_metadata: crate::sources::ecs_metadata::EcsMetadataConfig,
    /// The disk spool for log batches while Kafka is unreachable or slow.
    pub spool: crate::spool::SpoolConfig,
    /// The ECS container agent's log files (`/var/log/ecs`): agent and init logs as log
    /// events, the credentials audit log as audit events.
    pub ecs_logs: crate::sources::ecs_logs::EcsLogsConfig,
    /// Joining multi-line records (stack traces) of container logs. Default: off.
    pub multiline: crate::parse::multiline::MultilineConfig,
    /// Masking secrets in container log messages before they are shipped. Default: none.
    pub redaction: crate::parse::redact::RedactionConfig,
    /// Per-container read rate limits (delay, never drop). Default: unlimited.
    pub rate_limit: crate::sources::rate_limit::RateLimitConfig,
}

/// `[telemetry]`: the collector's own HTTP endpoint.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Address for `GET /metrics` (Prometheus text exposition format) and `GET /healthz`,
    /// e.g. `0.0.0.0:9464`. Default: none (off), as Fluent Bit's `HTTP_Server` and Vector's
    /// `prometheus_exporter` are off until configured.
    pub listen: Option<std::net::SocketAddr>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            data_dir: PathBuf::from("sightline-collector-data"),
            host: None,
            docker: DockerConfig::default(),
            kafka: KafkaConfig::default(),
            correlation: CorrelationConfig::default(),
            batch: BatchConfig::default(),
            docker_engine: Default::default(),
            telemetry: TelemetryConfig::default(),
            ecs_metadata: Default::default(),
            spool: Default::default(),
            ecs_logs: Default::default(),
            multiline: Default::default(),
            redaction: Default::default(),
            rate_limit: Default::default(),
        }
    }
}

/// Where and how to tail Docker's json-file logs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// Directory holding one folder per container (`<id>/config.v2.json`, `<id>/<id>-json.log`).
    /// Default `/var/lib/docker/containers`.
    pub containers_dir: PathBuf,
    /// Label used for the service name when neither `com.amazonaws.ecs.task-definition-family`
    /// nor `com.docker.compose.service` is set. Default none (then the container name is used).
    pub service_label: Option<String>,
    /// How often the containers directory is rescanned for new and removed containers, ms.
    /// Default 250.
    pub discovery_interval_ms: u64,
    /// How often a tailer at end of file looks for new bytes, ms. Default 100.
    pub poll_interval_ms: u64,
    /// Largest reassembled line, bytes: Docker splits lines at 16 KiB; pieces are joined up to
    /// this size, and a longer line is shipped as several events marked
    /// `sightline.split_part`. Default 262144 (256 KiB).
    pub max_line_bytes: usize,
    /// A partial line (no trailing newline) whose continuation has not come after this many
    /// ms is shipped as it is, marked `sightline.partial=true`. Default 5000.
    pub partial_flush_timeout_ms: u64,
    /// Bytes read per read call. Default 65536 (64 KiB): larger reads were not faster and
    /// each tailer thread's memory grows with it (BENCHMARKS.md).
    pub read_buffer_bytes: usize,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            containers_dir: PathBuf::from("/var/lib/docker/containers"),
            service_label: None,
            discovery_interval_ms: 250,
            poll_interval_ms: 100,
            max_line_bytes: 256 * 1024,
            partial_flush_timeout_ms: 5000,
            read_buffer_bytes: 64 * 1024,
        }
    }
}

/// Kafka producer settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Topic for log events. Default `sightline.logs`.
    pub topic: String,
    /// Topic for metric samples (container stats, ECS task metrics). Default
    /// `sightline.metrics`.
    pub metrics_topic: String,
    /// Topic for audit events (Docker events, ECS credential requests). Default
    /// `sightline.audit`.
    pub audit_topic: String,
    /// Partitions to create the topic with when it does not exist. Default 6.
    pub partitions: i32,
    /// Compression codec: `lz4` (default), `zstd`, `snappy`, `gzip` or `none`.
    pub compression: String,
    /// Extra librdkafka producer properties (e.g. `"security.protocol" = "sasl_ssl"`,
    /// `"sasl.mechanism" = "SCRAM-SHA-512"`); they override Sightline's defaults except
    /// `enable.idempotence` and `acks`. Passwords do not go here but in `sasl_password`.
    pub client: BTreeMap<String, String>,
    /// SASL user name (`sasl.username`). Default: none.
    pub sasl_username: Option<String>,
    /// SASL password (`sasl.password`), e.g. `"${KAFKA_PASSWORD}"`. Shown as
    /// `**REDACTED**` in every log and debug output. Default: none.
    pub sasl_password: Option<crate::secret::SensitiveString>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: sightline_model::kafka::LOGS_TOPIC.into(),
            metrics_topic: sightline_model::kafka::METRICS_TOPIC.into(),
            audit_topic: sightline_model::kafka::AUDIT_TOPIC.into(),
            partitions: 6,
            compression: "lz4".into(),
            client: BTreeMap::new(),
            sasl_username: None,
            sasl_password: None,
        }
    }
}

/// One extra correlation ID pattern for text lines.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// Regular expression (Rust `regex` syntax). The ID is the capture group named `id`, else
    /// group 1, else the whole match. Every match in a line is kept.
    pub regex: String,
}

/// Extraction of correlation IDs and friends.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationConfig {
    /// Use the built-in patterns (`x-correlation-id=…`, `correlation_id=…`, `request_id=…`,
    /// W3C `traceparent`, `X-Amzn-Trace-Id: Root=…`). Default true.
    pub default_patterns: bool,
    /// Extra patterns for text lines, tried before the built-in ones.
    pub patterns: Vec<PatternConfig>,
    /// JSON keys (case-insensitive) holding a correlation ID in JSON lines, in priority order.
    /// Default `correlation_id`, `correlationId`, `x-correlation-id`, `request_id`,
    /// `requestId`, `x-request-id`, `trace_id`, `traceId`.
    pub json_keys: Vec<String>,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig {
            default_patterns: true,
            patterns: Vec::new(),
            json_keys: [
                "correlation_id",
                "correlationid",
                "x-correlation-id",
                "request_id",
                "requestid",
                "x-request-id",
                "trace_id",
                "traceid",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Batching: how many events go into one Kafka message.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Largest Kafka message, bytes of encoded events (before compression): a partition's
    /// batch is sealed before it would pass this. Default 524288 (512 KiB); at least
    /// `docker.max_line_bytes` + 64 KiB; keep it under the broker's `message.max.bytes`
    /// (a batch Kafka refuses as too large is split, and later ones sealed smaller; see
    /// [`crate::sinks::oversize`]).
    pub max_bytes: usize,
    /// Flush everything at least this often, ms. Default 100.
    pub linger_ms: u64,
    /// Batch generations unacknowledged by Kafka before reading pauses (backpressure).
    /// Default 4.
    pub max_in_flight: usize,
    /// Bytes of sealed batches (encoded, before compression) not yet acknowledged by Kafka
    /// before reading pauses (backpressure). Together with the open batches (up to
    /// `max_bytes` per partition) this bounds the memory the sink holds. Default 4194304
    /// (4 MiB); a generation larger than this is still sent, alone.
    pub max_in_flight_bytes: usize,
    /// Minimum interval between checkpoint writes, ms. Default 200.
    pub checkpoint_interval_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_bytes: 512 * 1024,
            linger_ms: 100,
            max_in_flight: 4,
            max_in_flight_bytes: 4 * 1024 * 1024,
            checkpoint_interval_ms: 200,
        }
    }
}

/// Replaces environment references in config text, as Vector and Fluent Bit do: `${VAR}`
/// (an error when `VAR` is unset), `${VAR:-default}` (the default when unset or empty), and
/// `$$` for a literal `$`. Inside a `"basic"` string the value is escaped (`\` and `"`);
/// `'literal'` strings (regexes, `${1}` replacements) and comments are left alone, and so is
/// a `$` that does not start a reference (`$1`, `${1}`).
///
/// Errors: [`ConfigError::Invalid`] naming the variable and its line for an unset variable
/// without default, or an unterminated `${`.
pub fn interpolate_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    // Inside a multi-line string (three quotes), `#` does not start a comment.
    let mut multiline: Option<&'static str> = None;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = split_comment(line, &mut multiline);
        interpolate_line(code, n + 1, &lookup, &mut out)?;
        out.push_str(comment);
    }
    Ok(out)
}

/// Splits a line into its code and its `# comment` (outside strings), tracking multi-line
/// strings across lines.
fn split_comment<'a>(line: &'a str, multiline: &mut Option<&'static str>) -> (&'a str, &'a str) {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if let Some(delim) = *multiline {
            match line[i..].find(delim) {
                Some(k) => {
                    i += k + 3;
                    *multiline = None;
                    continue;
                }
                None => return (line, ""),
            }
        }
        match b[i] {
            b'#' => return (&line[..i], &line[i..]),
            q @ (b'"' | b'\'') => {
                let triple = if q == b'"' { "\"\"\"" } else { "'''" };
                if line[i..].starts_with(triple) {
                    *multiline = Some(triple);
                    i += 3;
                    continue;
                }
                // A one-line string: skip to its closing quote (basic strings escape with \).
                i += 1;
                while i < b.len() && b[i] != q {
                    if q == b'"' && b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    (line, "")
}

fn interpolate_line(
    text: &str,
    line: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), ConfigError> {
    // Where we are in the line: outside strings, in a "basic" string (values are escaped),
    // or in a 'literal' string (copied verbatim: regexes and `${1}`-style replacements).
    #[derive(PartialEq)]
    enum At {
        Code,
        Basic,
        Literal,
    }
    let mut at = At::Code;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match (&at, c) {
            (At::Literal, '\'') | (At::Basic, '"') => at = At::Code,
            (At::Code, '\'') => at = At::Literal,
            (At::Code, '"') => at = At::Basic,
            (At::Basic, '\\') if rest.len() > 1 => {
                // An escape: copy it and the escaped character as they are.
                let n = 1 + rest[1..].chars().next().map_or(0, char::len_utf8);
                out.push_str(&rest[..n]);
                rest = &rest[n..];
                continue;
            }
            (At::Code | At::Basic, '$') => {
                let after = &rest[1..];
                if let Some(r) = after.strip_prefix('$') {
                    out.push('$');
                    rest = r;
                    continue;
                }
                if let Some(r) = after.strip_prefix('{') {
                    if let Some(end) = r.find('}') {
                        let expr = &r[..end];
                        let (name, default) = match expr.split_once(":-") {
                            Some((n, d)) => (n, Some(d)),
                            None => (expr, None),
                        };
                        let is_name = name
                            .bytes()
                            .next()
                            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                        if is_name {
                            let value = match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                                (Some(v), _) => v,
                                (None, Some(d)) => d.to_string(),
                                (None, None) => {
                                    return Err(invalid(
                                        format!("line {line}"),
                                        format!("environment variable {name} is not set (use ${{{name}:-default}} for a default)"),
                                    ))
                                }
                            };
                            if at == At::Basic {
                                out.push_str(&value.replace('\\', "\\\\").replace('"', "\\\""));
                            } else {
                                out.push_str(&value);
                            }
                            rest = &r[end + 1..];
                            continue;
                        }
                    } else if at == At::Code {
                        return Err(invalid(
                            format!("line {line}"),
                            "unterminated ${ in the config",
                        ));
                    }
                }
                // Not a reference (`$1`, `${1}`, a lone `$`): kept as written.
            }
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok(())
}

impl CollectorConfig {
    /// Reads and parses a TOML file (no validation: call [`CollectorConfig::validate`]).
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text, after replacing `${VAR}` and `${VAR:-default}` with the process
    /// environment's values (see [`interpolate_env`]).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let text = interpolate_env(text, |k| std::env::var(k).ok())?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })
    }

    /// Checks every value; pure (touches no file or network).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must not be empty"));
        }
        for (field, topic) in [
            ("kafka.topic", &self.kafka.topic),
            ("kafka.metrics_topic", &self.kafka.metrics_topic),
            ("kafka.audit_topic", &self.kafka.audit_topic),
        ] {
            if topic.is_empty() || topic.len() > 249 {
                return Err(invalid(field, "must be 1 to 249 characters"));
            }
        }
        self.ecs_metadata.validate()?;
        self.ecs_logs.validate()?;
        self.multiline.validate()?;
        self.redaction.validate()?;
        self.rate_limit.validate()?;
        if self.multiline.mode != crate::parse::multiline::MultilineMode::Off
            && self.multiline.max_bytes + 64 * 1024 > self.batch.max_bytes
        {
            return Err(invalid(
                "multiline.max_bytes",
                "must be at least 65536 below batch.max_bytes (a joined record must fit a Kafka message)",
            ));
        }
        self.spool
            .validate()
            .map_err(|e| invalid("spool", e.to_string()))?;
        if self.spool.max_record_bytes() < self.batch.max_bytes as u64 + 65_536 {
            return Err(invalid(
                "spool.segment_bytes",
                "must hold one batch: at least batch.max_bytes + 65572",
            ));
        }
        self.docker_engine
            .validate()
            .map_err(|e| invalid("docker_engine", e.to_string()))?;
        if !(1..=10_000).contains(&self.kafka.partitions) {
            return Err(invalid("kafka.partitions", "must be between 1 and 10000"));
        }
        if !["lz4", "zstd", "snappy", "gzip", "none"].contains(&self.kafka.compression.as_str()) {
            return Err(invalid(
                "kafka.compression",
                "must be one of lz4, zstd, snappy, gzip, none",
            ));
        }
        for key in self.kafka.client.keys() {
            if key.contains("password") || key.ends_with(".secret") {
                return Err(invalid(
                    format!("kafka.client.{key}"),
                    "secrets go in kafka.sasl_password (kept out of logs), not in kafka.client",
                ));
            }
        }
        if self.kafka.sasl_username.is_some() != self.kafka.sasl_password.is_some() {
            return Err(invalid(
                "kafka.sasl_password",
                "kafka.sasl_username and kafka.sasl_password go together",
            ));
        }
        for key in ["enable.idempotence", "acks"] {
            if self.kafka.client.contains_key(key) {
                return Err(invalid(
                    format!("kafka.client.{key}"),
                    "is fixed by Sightline (idempotent, acks=all) and cannot be overridden",
                ));
            }
        }
        let d = &self.docker;
        // A line must fit one Kafka message (brokers' default message.max.bytes is 1 MiB).
        if !(16 * 1024..=768 * 1024).contains(&d.max_line_bytes) {
            return Err(invalid(
                "docker.max_line_bytes",
                "must be between 16384 and 786432 (768 KiB)",
            ));
        }
        if d.discovery_interval_ms == 0 || d.poll_interval_ms == 0 {
            return Err(invalid("docker.*_interval_ms", "must be greater than 0"));
        }
        if d.read_buffer_bytes < 4096 {
            return Err(invalid("docker.read_buffer_bytes", "must be at least 4096"));
        }
        if self.batch.max_in_flight == 0 {
            return Err(invalid("batch.max_in_flight", "must be at least 1"));
        }
        if !(64 * 1024..=1 << 30).contains(&self.batch.max_in_flight_bytes) {
            return Err(invalid(
                "batch.max_in_flight_bytes",
                "must be between 65536 and 1073741824",
            ));
        }
        if !(d.max_line_bytes + 64 * 1024..=4 * 1024 * 1024 - 64 * 1024)
            .contains(&self.batch.max_bytes)
        {
            return Err(invalid(
                "batch.max_bytes",
                "must be at least docker.max_line_bytes + 65536 and at most 4128768 (64 KiB under the producer's message.max.bytes of 4 MiB, for headers and framing)",
            ));
        }
        for (i, p) in self.correlation.patterns.iter().enumerate() {
            regex::Regex::new(&p.regex)
                .map_err(|e| invalid(format!("correlation.patterns[{i}].regex"), e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        CollectorConfig::default().validate().unwrap();
        CollectorConfig::from_toml("").unwrap().validate().unwrap();
    }

    #[test]
    fn unknown_field_is_rejected_with_position() {
        let err = CollectorConfig::from_toml("[docker]\ncontainer_dir = '/x'\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown field `container_dir`"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn bad_regex_names_the_pattern() {
        let cfg =
            CollectorConfig::from_toml("[[correlation.patterns]]\nregex = 'blk_(['\n").unwrap();
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(msg.contains("correlation.patterns[0].regex"), "{msg}");
    }

    #[test]
    fn environment_references_are_replaced() {
        let env = |k: &str| match k {
            "BROKERS" => Some("k1:9092,k2:9092".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let text = "brokers = \"${BROKERS}\"\nx = \"${EMPTY:-d}\"\ny = \"${NOPE:-fallback}\"\nz = \"$$HOME $x\"";
        assert_eq!(
            interpolate_env(text, env).unwrap(),
            "brokers = \"k1:9092,k2:9092\"\nx = \"d\"\ny = \"fallback\"\nz = \"$HOME $x\""
        );
        let err = interpolate_env("a = 1\nb = \"${MISSING}\"", env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid config: line 2: environment variable MISSING is not set (use ${MISSING:-default} for a default)"
        );
        assert!(interpolate_env("a = ${OPEN", env).is_err());
        // Literal strings and group references stay; values in basic strings are escaped.
        let text = "r = '${1}**** $$ ${NOPE}'\np = \"${PW}\"\n";
        let pw = |k: &str| (k == "PW").then(|| "a\\b\"c".to_string());
        let done = interpolate_env(text, pw).unwrap();
        assert_eq!(done, "r = '${1}**** $$ ${NOPE}'\np = \"a\\\\b\\\"c\"\n");
        let v: toml::Value = toml::from_str(&done).unwrap();
        assert_eq!(v["p"].as_str(), Some("a\\b\"c"));
        // Comments are kept as they are, also after a `#` inside a string.
        let text = "# uses ${NOPE}\na = \"x#${BROKERS}\" # ${NOPE}\nb = '''\n# ${BROKERS}\n'''\n";
        assert_eq!(
            interpolate_env(text, env).unwrap(),
            "# uses ${NOPE}\na = \"x#k1:9092,k2:9092\" # ${NOPE}\nb = '''\n# k1:9092,k2:9092\n'''\n"
        );
        assert_eq!(
            interpolate_env("a = \"${BAD NAME}\"", env).unwrap(),
            "a = \"${BAD NAME}\""
        );
    }

    #[test]
    fn sasl_password_is_never_printed() {
        let cfg = CollectorConfig::from_toml(
            "[kafka]\nsasl_username = \"sightline\"\nsasl_password = \"hunter2\"\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(
            cfg.kafka.sasl_password.as_ref().map(|p| p.expose()),
            Some("hunter2")
        );
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("**REDACTED**"));
        let in_client =
            CollectorConfig::from_toml("[kafka.client]\n\"sasl.password\" = \"x\"\n").unwrap();
        assert!(in_client.validate().is_err());
        let half = CollectorConfig::from_toml("[kafka]\nsasl_username = \"u\"\n").unwrap();
        assert!(half.validate().is_err());
    }

    #[test]
    fn acks_cannot_be_overridden() {
        let cfg = CollectorConfig::from_toml("[kafka.client]\nacks = '1'\n").unwrap();
        assert!(cfg.validate().is_err());
    }
}

#[cfg(test)]
mod deploy_examples {
    use super::*;

    #[test]
    fn readme_example_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let section = &readme[readme.find("### Collector configuration").unwrap()..];
        let start = section.find("```toml\n").unwrap() + 8;
        let end = start + section[start..].find("```").unwrap();
        let cfg = CollectorConfig::from_toml(&section[start..end]).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.docker_engine.stats.interval_ms, 10_000);
        assert_eq!(cfg.redaction.rules.len(), 1);
        assert_eq!(cfg.telemetry.listen.unwrap().port(), 9464);
    }

    #[test]
    fn deploy_collector_toml_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.toml");
        let cfg = CollectorConfig::from_file(&path).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.kafka.topic, "sightline.logs");
        let sidecar = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/collector-sidecar.toml");
        let cfg = CollectorConfig::from_file(&sidecar).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.ecs_metadata.enabled, Some(true));
    }
}
