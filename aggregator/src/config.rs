//! Aggregator configuration: a TOML file, validated by a pure [`AggregatorConfig::validate`].
//!
//! ```toml
//! data_dir = "/var/lib/sightline"        # the index lives in <data_dir>/index
//! commit_interval_ms = 1000              # index commit cadence (ms)
//! writer_memory_bytes = 134217728        # tantivy writer heap (bytes)
//! listen = "127.0.0.1:7280"              # query API address
//! max_correlation_events = 10000         # cap on one correlation lookup
//!
//! [kafka]
//! brokers = "kafka-1:9092,kafka-2:9092"
//! topic = "sightline.logs"
//! group_id = "sightline-aggregator"
//!
//! [kafka.settings]                       # extra librdkafka consumer properties
//! "security.protocol" = "ssl"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Smallest accepted `commit_interval_ms`.
pub const MIN_COMMIT_INTERVAL_MS: u64 = 10;
/// Largest accepted `commit_interval_ms` (10 min).
pub const MAX_COMMIT_INTERVAL_MS: u64 = 600_000;
/// Smallest accepted `writer_memory_bytes` (tantivy's per-thread minimum, 15 MB).
pub const MIN_WRITER_MEMORY_BYTES: u64 = 15_000_000;
/// Largest accepted `writer_memory_bytes` (tantivy's per-thread maximum, just under 4 GiB;
/// the aggregator indexes on one thread).
pub const MAX_WRITER_MEMORY_BYTES: u64 = 4_000_000_000;
/// Largest accepted `max_correlation_events`.
pub const MAX_CORRELATION_EVENTS_LIMIT: usize = 1_000_000;

/// librdkafka properties the aggregator sets itself; `kafka.settings` may not override them.
pub const RESERVED_KAFKA_SETTINGS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
];

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this structure (unknown keys included).
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error (with line and column).
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or malformed; the message names the key.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Kafka source settings (`[kafka]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port` (required).
    pub brokers: String,
    /// Topic to consume (default [`sightline_model::kafka::LOGS_TOPIC`]).
    pub topic: String,
    /// Consumer group ID (default `sightline-aggregator`).
    pub group_id: String,
    /// Extra librdkafka consumer properties (e.g. TLS/SASL); may not contain
    /// [`RESERVED_KAFKA_SETTINGS`].
    pub settings: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            topic: sightline_model::kafka::LOGS_TOPIC.to_string(),
            group_id: "sightline-aggregator".to_string(),
            settings: BTreeMap::new(),
        }
    }
}

/// The audit trail (`[audit]`): events from the collectors' audit topic (Docker events, ECS
/// credential requests) and Sightline's own actions, kept in `<data_dir>/audit` as a
/// SHA-256 chain (see [`crate::audit`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Consume the audit topic and keep the trail (default true).
    pub enabled: bool,
    /// Topic to consume (default [`sightline_model::kafka::AUDIT_TOPIC`]); consumed in the
    /// group `<kafka.group_id>.audit`.
    pub topic: String,
    /// Longest time, in ms, between an audit event's arrival and its append (one fsync per
    /// append; default 1000, range 10 ..= 600 000).
    pub commit_interval_ms: u64,
    /// A segment file is closed once it reaches this size, bytes (default 64 MiB, at least
    /// 4096).
    pub max_segment_bytes: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            topic: sightline_model::kafka::AUDIT_TOPIC.to_string(),
            commit_interval_ms: 1000,
            max_segment_bytes: crate::audit::AuditConfig::default().max_segment_bytes,
        }
    }
}

impl AuditSettings {
    /// The store's settings.
    pub fn store(&self) -> crate::audit::AuditConfig {
        crate::audit::AuditConfig {
            max_segment_bytes: self.max_segment_bytes,
        }
    }
}

/// The aggregator's configuration (TOML; see the module docs for an example).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Kafka source.
    pub kafka: KafkaConfig,
    /// Data directory (required); the index lives in `<data_dir>/index`.
    pub data_dir: PathBuf,
    /// Longest time, in ms, between an event's arrival and the index commit that makes it
    /// searchable (default 1000, range 10 ..= 600 000).
    pub commit_interval_ms: u64,
    /// tantivy writer memory budget in bytes (default 128 MiB, range 15 MB ..= 8 GB).
    pub writer_memory_bytes: u64,
    /// Address the query API listens on (default `127.0.0.1:7280`).
    pub listen: String,
    /// Largest number of events one correlation lookup returns (default 10 000,
    /// range 1 ..= 1 000 000).
    pub max_correlation_events: usize,
    /// The audit trail.
    pub audit: AuditSettings,
    /// Per-service rollups (see [`crate::rollup`]).
    pub rollups: crate::rollup::RollupConfig,
    /// Sightline's base URL as on-call and their tools reach it (e.g.
    /// `https://sightline.example.com`): alerts' `generatorURL`, the webhook payload's
    /// `externalURL` and the links to correlation views are built on it. Default
    /// `http://<listen>`.
    pub external_url: String,
    /// Alert rules (`[rules]`, see `docs/alert-rules.md`); absent: no rules are evaluated.
    /// Needs `rollups.enabled`.
    pub rules: Option<crate::rules::RuleManagerConfig>,
    /// On-call notifications (`[notify]`, see `docs/notifications.md`); absent: alerts are
    /// only shown by the API.
    pub notify: Option<crate::notify::NotifyConfig>,
    /// Autoscaling (`[autoscale]`, see `docs/autoscaling.md`); absent: nothing is scaled.
    /// Needs `rollups.enabled`.
    pub autoscale: Option<crate::autoscale::AutoscaleConfig>,
    /// API tokens (`[api]`, see [`crate::api_auth`]); none: the API is open.
    pub api: crate::api_auth::ApiSettings,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            kafka: KafkaConfig::default(),
            data_dir: PathBuf::new(),
            commit_interval_ms: 1000,
            writer_memory_bytes: 128 * 1024 * 1024,
            listen: "127.0.0.1:7280".to_string(),
            max_correlation_events: 10_000,
            audit: AuditSettings::default(),
            rollups: crate::rollup::RollupConfig::default(),
            external_url: String::new(),
            rules: None,
            notify: None,
            autoscale: None,
            api: crate::api_auth::ApiSettings::default(),
        }
    }
}

impl AggregatorConfig {
    /// Parses TOML text (no validation).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Reads and parses a TOML file (no validation).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// `<data_dir>/rollups`.
    pub fn rollups_dir(&self) -> PathBuf {
        self.data_dir.join("rollups")
    }

    /// `<data_dir>/audit`.
    pub fn audit_dir(&self) -> PathBuf {
        self.data_dir.join("audit")
    }

    /// `<data_dir>/index`.
    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }

    /// `external_url`, or when it is empty `http://<listen>` (with the host's name for an
    /// unspecified address such as `0.0.0.0`); no trailing `/`.
    pub fn external_url(&self) -> String {
        let url = if self.external_url.is_empty() {
            match self.listen.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_unspecified() => {
                    let host = std::env::var("HOSTNAME")
                        .ok()
                        .filter(|h| !h.is_empty())
                        .or_else(|| {
                            std::fs::read_to_string("/etc/hostname")
                                .ok()
                                .map(|h| h.trim().to_string())
                                .filter(|h| !h.is_empty())
                        })
                        .unwrap_or_else(|| "localhost".into());
                    format!("http://{host}:{}", a.port())
                }
                _ => format!("http://{}", self.listen),
            }
        } else {
            self.external_url.clone()
        };
        url.trim_end_matches('/').to_string()
    }

    /// The `[rules]` table with the aggregator's defaults filled in: `external_url` from
    /// [`Self::external_url`], `state_file` = `<data_dir>/alerts/state.json`.
    pub fn rules_config(&self) -> Option<crate::rules::RuleManagerConfig> {
        self.rules.clone().map(|mut r| {
            if r.external_url.is_empty() {
                r.external_url = self.external_url();
            }
            if r.state_file.is_none() {
                r.state_file = Some(self.data_dir.join("alerts").join("state.json"));
            }
            r
        })
    }

    /// The `[notify]` table with `external_url` from [`Self::external_url`] when unset.
    pub fn notify_config(&self) -> Option<crate::notify::NotifyConfig> {
        self.notify.clone().map(|mut n| {
            if n.external_url.is_empty() {
                n.external_url = self.external_url();
            }
            n
        })
    }

    /// The parsed `listen` address (call [`Self::validate`] first for a clear error).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "listen = {:?} is not an IP:port address (e.g. 127.0.0.1:7280)",
                self.listen
            ))
        })
    }

    /// Checks every value without touching the file system or network.
    ///
    /// Errors: [`ConfigError::Invalid`] naming the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            return invalid(
                "kafka.brokers is empty (set it in the config file or with --brokers)".into(),
            );
        }
        if let Some(b) = k.brokers.split(',').map(str::trim).find(|b| b.is_empty()) {
            return invalid(format!(
                "kafka.brokers = {:?} has an empty entry {b:?}",
                k.brokers
            ));
        }
        if k.topic.is_empty()
            || k.topic.len() > 249
            || k.topic == "."
            || k.topic == ".."
            || !k
                .topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return invalid(format!(
                "kafka.topic = {:?} is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])",
                k.topic
            ));
        }
        if k.group_id.trim().is_empty() {
            return invalid("kafka.group_id is empty".into());
        }
        if let Some(key) = k
            .settings
            .keys()
            .find(|key| RESERVED_KAFKA_SETTINGS.contains(&key.as_str()))
        {
            return invalid(format!(
                "kafka.settings may not set {key:?}: the aggregator manages it (use kafka.brokers / kafka.group_id)"
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid(
                "data_dir is empty (set it in the config file or with --data-dir)".into(),
            );
        }
        if !(MIN_COMMIT_INTERVAL_MS..=MAX_COMMIT_INTERVAL_MS).contains(&self.commit_interval_ms) {
            return invalid(format!(
                "commit_interval_ms = {} is outside {MIN_COMMIT_INTERVAL_MS}..={MAX_COMMIT_INTERVAL_MS}",
                self.commit_interval_ms
            ));
        }
        if !(MIN_WRITER_MEMORY_BYTES..=MAX_WRITER_MEMORY_BYTES).contains(&self.writer_memory_bytes)
        {
            return invalid(format!(
                "writer_memory_bytes = {} is outside {MIN_WRITER_MEMORY_BYTES}..={MAX_WRITER_MEMORY_BYTES}",
                self.writer_memory_bytes
            ));
        }
        self.listen_addr()?;
        if !(1..=MAX_CORRELATION_EVENTS_LIMIT).contains(&self.max_correlation_events) {
            return invalid(format!(
                "max_correlation_events = {} is outside 1..={MAX_CORRELATION_EVENTS_LIMIT}",
                self.max_correlation_events
            ));
        }
        if self.rollups.enabled {
            self.rollups
                .validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if self.audit.enabled {
            if self.audit.topic.is_empty() {
                return invalid("audit.topic is empty".into());
            }
            if !(MIN_COMMIT_INTERVAL_MS..=MAX_COMMIT_INTERVAL_MS)
                .contains(&self.audit.commit_interval_ms)
            {
                return invalid(format!(
                    "audit.commit_interval_ms = {} is outside {MIN_COMMIT_INTERVAL_MS}..={MAX_COMMIT_INTERVAL_MS}",
                    self.audit.commit_interval_ms
                ));
            }
            self.audit
                .store()
                .validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        let url = &self.external_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return invalid(format!(
                "external_url = {:?} must start with http:// or https://",
                self.external_url
            ));
        }
        self.api.validate().map_err(ConfigError::Invalid)?;
        if let Some(rules) = self.rules_config() {
            if !self.rollups.enabled {
                return invalid(
                    "[rules] needs rollups.enabled = true: rules read the rollups".into(),
                );
            }
            rules
                .validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if let Some(notify) = self.notify_config() {
            notify
                .validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if let Some(autoscale) = &self.autoscale {
            if !self.rollups.enabled {
                return invalid(
                    "[autoscale] needs rollups.enabled = true: policies read the rollups".into(),
                );
            }
            autoscale
                .validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AggregatorConfig, ConfigError> {
        AggregatorConfig::from_toml(text, Path::new("test.toml"))
    }

    fn valid() -> AggregatorConfig {
        parse("data_dir = \"/tmp/x\"\n[kafka]\nbrokers = \"k:9092\"\n").unwrap()
    }

    #[test]
    fn defaults_apply_and_validate() {
        let c = valid();
        assert_eq!(c.kafka.topic, "sightline.logs");
        assert_eq!(c.kafka.group_id, "sightline-aggregator");
        assert_eq!(c.commit_interval_ms, 1000);
        assert_eq!(c.writer_memory_bytes, 134_217_728);
        assert_eq!(c.listen, "127.0.0.1:7280");
        assert_eq!(c.max_correlation_events, 10_000);
        assert_eq!(c.index_dir(), PathBuf::from("/tmp/x/index"));
        c.validate().unwrap();
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
data_dir = "/var/lib/sightline"
commit_interval_ms = 250
writer_memory_bytes = 50000000
listen = "0.0.0.0:9000"
max_correlation_events = 500
[kafka]
brokers = "a:1,b:2"
topic = "logs"
group_id = "g"
[kafka.settings]
"security.protocol" = "ssl"
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.kafka.settings["security.protocol"], "ssl");
        assert_eq!(c.listen_addr().unwrap().port(), 9000);
    }

    #[test]
    fn readme_example_is_valid() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### Aggregator configuration")
            .nth(1)
            .expect("README has the aggregator section");
        let toml = section
            .split("```toml\n")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .expect("a toml block");
        let c = parse(toml).unwrap();
        c.validate().unwrap();
        assert!(c.audit.enabled);
        assert_eq!(c.audit.topic, "sightline.audit");
        assert_eq!(c.rollups.patterns.len(), 1);
        assert_eq!(c.rollups.flush_interval, 30_000);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = parse("data_dir = \"/x\"\ncommit_interval = 5\n").unwrap_err();
        assert!(
            e.to_string().contains("unknown field `commit_interval`"),
            "{e}"
        );
        let e = parse("[kafka]\nbroker = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `broker`"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        type Mutation = fn(&mut AggregatorConfig);
        let cases: Vec<(Mutation, &str)> = vec![
            (|c| c.kafka.brokers = " ".into(), "kafka.brokers is empty"),
            (|c| c.kafka.brokers = "a:1,,b:2".into(), "empty entry"),
            (|c| c.kafka.topic = "bad topic".into(), "kafka.topic"),
            (|c| c.kafka.topic = String::new(), "kafka.topic"),
            (|c| c.kafka.group_id = String::new(), "kafka.group_id"),
            (
                |c| {
                    c.kafka
                        .settings
                        .insert("enable.auto.commit".into(), "true".into());
                },
                "\"enable.auto.commit\"",
            ),
            (|c| c.data_dir = PathBuf::new(), "data_dir is empty"),
            (|c| c.commit_interval_ms = 0, "commit_interval_ms = 0"),
            (
                |c| c.writer_memory_bytes = 1000,
                "writer_memory_bytes = 1000",
            ),
            (|c| c.listen = "localhost".into(), "listen = \"localhost\""),
            (
                |c| c.max_correlation_events = 0,
                "max_correlation_events = 0",
            ),
        ];
        for (mutate, needle) in cases {
            let mut c = valid();
            mutate(&mut c);
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
        }
    }

    #[test]
    fn alerting_sections_get_defaults_and_are_checked() {
        let text = "data_dir = \"/d\"\nlisten = \"10.0.0.5:7280\"\n[kafka]\nbrokers = \"k:9092\"\n\
                    [rules]\nrule_files = [\"/r.yml\"]\n\
                    [notify.route]\nreceiver = \"x\"\n[[notify.receivers]]\nname = \"x\"\n";
        let c = parse(text).unwrap();
        c.validate().unwrap();
        let rules = c.rules_config().unwrap();
        assert_eq!(rules.external_url, "http://10.0.0.5:7280");
        assert_eq!(
            rules.state_file,
            Some(PathBuf::from("/d/alerts/state.json"))
        );
        assert_eq!(rules.log_samples, 5);
        assert_eq!(
            c.notify_config().unwrap().external_url,
            "http://10.0.0.5:7280"
        );

        let mut bad = c.clone();
        bad.external_url = "sightline.example".into();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("external_url"));
        let mut bad = c.clone();
        bad.rollups.enabled = false;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("[rules] needs rollups"));
        let mut bad = c.clone();
        bad.notify.as_mut().unwrap().route.receiver = Some("nobody".into());
        assert!(bad.validate().unwrap_err().to_string().contains("nobody"));
        assert!(parse(&format!("{text}[rules.bogus]\n")).is_err());
    }
}

#[cfg(test)]
mod deploy_examples {
    use super::*;

    #[test]
    fn deploy_aggregator_toml_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/aggregator.toml");
        let cfg = AggregatorConfig::load(&path).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:7280");
        assert!(cfg.rules.is_some() && cfg.notify.is_some() && cfg.autoscale.is_some());
        assert_eq!(
            cfg.rules_config().unwrap().state_file,
            Some(PathBuf::from("/var/lib/sightline/alerts/state.json"))
        );
    }

    #[test]
    fn deploy_example_rules_load() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules/services.yml");
        let groups = crate::rules::load_file(&path, 10_000).unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].rules.len(), 4);
    }
}
