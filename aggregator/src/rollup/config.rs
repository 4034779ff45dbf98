//! [`RollupConfig`]: the `[rollups]` table of the aggregator's TOML config, and its pure
//! [`RollupConfig::validate`].

use serde::{Deserialize, Serialize};

use crate::rules::duration::serde_ms;

/// A configuration error, naming the offending field (e.g. `rollups.patterns[1].regex`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RollupConfigError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> RollupConfigError {
    RollupConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// A log pattern counted as `log_pattern_count{pattern="<name>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPattern {
    /// The `pattern` label value (1–128 characters).
    pub name: String,
    /// A regex (Rust `regex` syntax, unanchored) matched against the log line.
    pub regex: String,
}

/// Unit of a numeric duration field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurationUnit {
    /// Seconds (nginx `$request_time`, Go zap's default).
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds (Apache `%D`).
    Us,
    /// Nanoseconds.
    Ns,
}

impl DurationUnit {
    /// Seconds per unit.
    pub fn seconds(self) -> f64 {
        match self {
            DurationUnit::S => 1.0,
            DurationUnit::Ms => 1e-3,
            DurationUnit::Us => 1e-6,
            DurationUnit::Ns => 1e-9,
        }
    }
}

/// A JSON field holding a request duration, and the unit of its numeric values (string
/// values with a unit suffix such as `"12.5ms"` or `"1.2s"` carry their own unit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationField {
    /// Top-level JSON key.
    pub name: String,
    /// Unit of numeric values.
    pub unit: DurationUnit,
}

/// Which fields of a JSON access-log line carry the HTTP status and the duration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Top-level keys holding the status (number or numeric string), first match wins.
    /// Default `status`, `status_code`, `statusCode`, `http.status_code`.
    pub status_fields: Vec<String>,
    /// Top-level keys holding the duration, first match wins. Default `duration_ms` (ms),
    /// `request_time` (s), `duration` (s), `latency` (s), `response_time` (s),
    /// `elapsed_ms` (ms).
    pub duration_fields: Vec<DurationField>,
    /// Also read common/combined log format lines whose last field is nginx's
    /// `$request_time` (seconds). Default true.
    pub clf: bool,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        let d = |name: &str, unit| DurationField {
            name: name.into(),
            unit,
        };
        AccessLogConfig {
            status_fields: ["status", "status_code", "statusCode", "http.status_code"]
                .map(String::from)
                .to_vec(),
            duration_fields: vec![
                d("duration_ms", DurationUnit::Ms),
                d("request_time", DurationUnit::S),
                d("duration", DurationUnit::S),
                d("latency", DurationUnit::S),
                d("response_time", DurationUnit::S),
                d("elapsed_ms", DurationUnit::Ms),
            ],
            clf: true,
        }
    }
}

/// Rollup settings (`[rollups]`). Durations are Prometheus duration strings (`5m`, `24h`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RollupConfig {
    /// Keep rollups (default true): the logs topic (`kafka.topic`) and `metrics_topic` are
    /// consumed in the group `<kafka.group_id>.rollups`, into `<data_dir>/rollups`.
    pub enabled: bool,
    /// The collectors' metrics topic (default `sightline.metrics`).
    pub metrics_topic: String,
    /// How late an event may arrive (behind the newest event time seen, or the clock
    /// passed to `advance`) and still land in its window. Default `5m`; 0 ..= `1h`.
    #[serde(with = "serde_ms")]
    pub lateness: i64,
    /// How long 10 s windows are kept. Default `24h`; at least `lateness` + 1 min,
    /// at most `31d`.
    #[serde(with = "serde_ms")]
    pub retention_10s: i64,
    /// How long 1 min windows are kept. Default `15d`; at least `retention_10s`, at most
    /// `400d`.
    #[serde(with = "serde_ms")]
    pub retention_1m: i64,
    /// How often the store is written to disk. Default `30s`; `1s` ..= `1h`.
    #[serde(with = "serde_ms")]
    pub flush_interval: i64,
    /// Patterns counted as `log_pattern_count{pattern}` (at most 256, unique names).
    pub patterns: Vec<LogPattern>,
    /// Access-log field names.
    pub access_log: AccessLogConfig,
    /// DDSketch relative accuracy of `request_latency_seconds` quantiles. Default 0.01
    /// (1 %); 0.0001 ..= 0.1.
    pub sketch_relative_accuracy: f64,
}

impl Default for RollupConfig {
    fn default() -> Self {
        RollupConfig {
            enabled: true,
            metrics_topic: sightline_model::kafka::METRICS_TOPIC.to_string(),
            lateness: 5 * 60_000,
            retention_10s: 24 * 3_600_000,
            retention_1m: 15 * 86_400_000,
            flush_interval: 30_000,
            patterns: Vec::new(),
            access_log: AccessLogConfig::default(),
            sketch_relative_accuracy: 0.01,
        }
    }
}

impl RollupConfig {
    /// Checks ranges, pattern names and regexes, and field names. Pure: touches no file.
    pub fn validate(&self) -> Result<(), RollupConfigError> {
        const MIN: i64 = 60_000;
        const DAY: i64 = 86_400_000;
        if self.metrics_topic.is_empty() {
            return Err(err("rollups.metrics_topic", "must not be empty"));
        }
        if !(0..=3_600_000).contains(&self.lateness) {
            return Err(err("rollups.lateness", "must be between 0s and 1h"));
        }
        if self.retention_10s < self.lateness + MIN || self.retention_10s > 31 * DAY {
            return Err(err(
                "rollups.retention_10s",
                "must be at least lateness + 1m and at most 31d",
            ));
        }
        if self.retention_1m < self.retention_10s || self.retention_1m > 400 * DAY {
            return Err(err(
                "rollups.retention_1m",
                "must be at least retention_10s and at most 400d",
            ));
        }
        if !(1_000..=3_600_000).contains(&self.flush_interval) {
            return Err(err("rollups.flush_interval", "must be between 1s and 1h"));
        }
        if self.patterns.len() > 256 {
            return Err(err("rollups.patterns", "at most 256 patterns"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.patterns.iter().enumerate() {
            if p.name.is_empty() || p.name.len() > 128 {
                return Err(err(
                    format!("rollups.patterns[{i}].name"),
                    "must be 1 to 128 characters",
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(err(
                    format!("rollups.patterns[{i}].name"),
                    format!("duplicate pattern name {:?}", p.name),
                ));
            }
            if let Err(e) = regex::Regex::new(&p.regex) {
                return Err(err(format!("rollups.patterns[{i}].regex"), e.to_string()));
            }
        }
        for (i, f) in self.access_log.status_fields.iter().enumerate() {
            if f.is_empty() {
                return Err(err(
                    format!("rollups.access_log.status_fields[{i}]"),
                    "empty field name",
                ));
            }
        }
        for (i, f) in self.access_log.duration_fields.iter().enumerate() {
            if f.name.is_empty() {
                return Err(err(
                    format!("rollups.access_log.duration_fields[{i}].name"),
                    "empty field name",
                ));
            }
        }
        let a = self.sketch_relative_accuracy;
        if !(0.0001..=0.1).contains(&a) {
            return Err(err(
                "rollups.sketch_relative_accuracy",
                "must be between 0.0001 and 0.1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_and_validates() {
        let c: RollupConfig = toml::from_str(
            r#"
lateness = "2m"
retention_10s = "12h"
patterns = [{ name = "oom", regex = "OutOfMemoryError" }]
[access_log]
status_fields = ["code"]
duration_fields = [{ name = "took", unit = "us" }]
"#,
        )
        .unwrap();
        assert_eq!(c.lateness, 120_000);
        assert_eq!(c.retention_10s, 12 * 3_600_000);
        assert_eq!(c.retention_1m, 15 * 86_400_000);
        assert_eq!(c.access_log.duration_fields[0].unit, DurationUnit::Us);
        c.validate().unwrap();
        RollupConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_bad_values() {
        assert!(toml::from_str::<RollupConfig>("latenes = \"1m\"").is_err());
        let mut c = RollupConfig {
            patterns: vec![LogPattern {
                name: "x".into(),
                regex: "(".into(),
            }],
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "rollups.patterns[0].regex");
        c.patterns[0].regex = "ok".into();
        c.patterns.push(c.patterns[0].clone());
        assert!(c.validate().unwrap_err().message.contains("duplicate"));
        let c = RollupConfig {
            retention_1m: 3_600_000,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "rollups.retention_1m");
    }
}
