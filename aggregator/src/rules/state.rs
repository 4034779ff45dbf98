//! The alert state machine of one alerting rule, with Prometheus semantics
//! (`prometheus/rules/alerting.go`, `AlertingRule.Eval`), and the persisted state file.
//!
//! Per result element (label set after the rule's labels are applied):
//! - new element → alert `pending`, `active_at = ts`;
//! - `pending` → `firing` once `ts - active_at >= for` (`fired_at = ts`; with `for: 0`, on
//!   the first evaluation);
//! - a `firing` alert whose `ts - active_at < for` (the rule's `for` was raised by a
//!   reload) goes back to `pending`;
//! - element gone: a `pending` alert is deleted; a `firing` one stays firing while
//!   `ts - keep_firing_since < keep_firing_for` (`keep_firing_since` is set on the first
//!   evaluation without the element and cleared when it comes back), then becomes
//!   `inactive` with `resolved_at = ts`;
//! - inactive (resolved) alerts are kept for [`RESOLVED_RETENTION_MS`] (15 min) so they
//!   are re-sent as resolved, then deleted; an element that comes back in that time starts
//!   a new pending alert.
//!
//! [`StateFile`] is the versioned JSON persisted after each evaluation (written
//! atomically: temp file, fsync, rename) and restored at start, `active_at` included, so
//! `for` keeps counting across a restart.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::alert::fingerprint;
use crate::series::Labels;

/// How long resolved alerts are kept and re-sent, ms (Prometheus' `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// State of one alert instance (`resolved` is `Inactive` with `resolved_at_ms` set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved, kept for re-sending.
    Inactive,
    /// Condition holds, `for` not yet elapsed.
    Pending,
    /// Condition held for `for` (or is within `keep_firing_for`).
    Firing,
}

/// One alert instance of a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// Final labels (series labels − `__name__` + rule labels + `alertname`).
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: Labels,
    /// State.
    pub state: AlertState,
    /// Value at the last evaluation that returned the element (JSON `null` for NaN/±Inf).
    #[serde(with = "lossy_f64")]
    pub value: f64,
    /// When the element first appeared, Unix ms.
    pub active_at_ms: i64,
    /// When it started firing, Unix ms.
    pub fired_at_ms: Option<i64>,
    /// When it resolved, Unix ms.
    pub resolved_at_ms: Option<i64>,
    /// First evaluation without the element while firing under `keep_firing_for`, Unix ms.
    pub keep_firing_since_ms: Option<i64>,
}

mod lossy_f64 {
    pub fn serialize<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// One element of a rule's result, ready for the state machine.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultElement {
    /// Final alert labels.
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: Labels,
    /// The expression's value.
    pub value: f64,
}

/// The rule's result had two elements with the same final label set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("vector contains metrics with the same labelset after applying alert labels: {0}")]
pub struct DuplicateAlert(pub String);

/// The alerts of one rule, by fingerprint of their labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Active (pending, firing) and recently resolved alerts.
    pub alerts: BTreeMap<String, ActiveAlert>,
}

impl RuleState {
    /// Applies one evaluation at `ts_ms` with its result. On a duplicate label set the
    /// state is left unchanged (Prometheus fails the evaluation the same way).
    pub fn update(
        &mut self,
        ts_ms: i64,
        result: Vec<ResultElement>,
        for_ms: i64,
        keep_firing_for_ms: i64,
    ) -> Result<(), DuplicateAlert> {
        let mut present: BTreeMap<String, ResultElement> = BTreeMap::new();
        for el in result {
            let fp = fingerprint(&el.labels);
            if present.contains_key(&fp) {
                return Err(DuplicateAlert(format!("{:?}", el.labels)));
            }
            present.insert(fp, el);
        }
        for (fp, el) in &present {
            match self.alerts.get_mut(fp) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = el.value;
                    a.annotations = el.annotations.clone();
                }
                _ => {
                    self.alerts.insert(
                        fp.clone(),
                        ActiveAlert {
                            labels: el.labels.clone(),
                            annotations: el.annotations.clone(),
                            state: AlertState::Pending,
                            value: el.value,
                            active_at_ms: ts_ms,
                            fired_at_ms: None,
                            resolved_at_ms: None,
                            keep_firing_since_ms: None,
                        },
                    );
                }
            }
        }
        let mut delete = Vec::new();
        for (fp, a) in self.alerts.iter_mut() {
            if !present.contains_key(fp) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts_ms);
                    keep_firing = ts_ms - since < keep_firing_for_ms;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at_ms
                        .is_some_and(|r| ts_ms - r > RESOLVED_RETENTION_MS)
                {
                    delete.push(fp.clone());
                    continue;
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts_ms);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            if a.state == AlertState::Pending && ts_ms - a.active_at_ms >= for_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts_ms);
            } else if a.state == AlertState::Firing && ts_ms - a.active_at_ms < for_ms {
                // `for` was raised above the time already elapsed.
                a.state = AlertState::Pending;
                a.fired_at_ms = None;
            }
        }
        for fp in delete {
            self.alerts.remove(&fp);
        }
        Ok(())
    }

    /// The alerts to send now: firing ones and resolved ones within their retention
    /// (never pending ones), in fingerprint order.
    pub fn to_send(&self) -> impl Iterator<Item = &ActiveAlert> {
        self.alerts
            .values()
            .filter(|a| a.state != AlertState::Pending)
    }
}

/// Version of [`StateFile`].
pub const STATE_VERSION: u32 = 1;

/// The persisted state of all rules (`version` 1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// When it was written, Unix ms.
    pub saved_at_ms: i64,
    /// One entry per rule.
    pub rules: Vec<PersistedRule>,
}

/// The state of one rule, identified as Prometheus does when it carries state across a
/// reload: group file, group name, alert name and the rule's label templates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedRule {
    /// Rule file path (as configured).
    pub file: String,
    /// Group name.
    pub group: String,
    /// `alert`.
    pub alert: String,
    /// The rule's `labels` (source text).
    pub labels: BTreeMap<String, String>,
    /// Its alerts.
    pub state: RuleState,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// I/O.
    #[error("alert state file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not valid JSON of the expected shape.
    #[error("alert state file {path}: {message}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl StateFile {
    /// Reads `path`; `Ok(None)` when it does not exist. Errors: unreadable, not JSON of
    /// this shape, or an unknown `version`.
    pub fn load(path: &Path) -> Result<Option<StateFile>, StateFileError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateFileError::Io {
                    path: path.into(),
                    source,
                })
            }
        };
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let invalid = |message: String| StateFileError::Invalid {
            path: path.into(),
            message,
        };
        let v: Version = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if v.version != STATE_VERSION {
            return Err(invalid(format!(
                "unsupported version {} (this build reads {STATE_VERSION})",
                v.version
            )));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| invalid(e.to_string()))
    }

    /// Writes `path` atomically: a temp file in the same directory (created if missing),
    /// fsync, rename, fsync of the directory.
    pub fn save(&self, path: &Path) -> Result<(), StateFileError> {
        let io = |source| StateFileError::Io {
            path: path.into(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| StateFileError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
        tmp.write_all(&json).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
