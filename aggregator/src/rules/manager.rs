//! [`RuleManager`]: loads rule files, evaluates each group every `interval` (one
//! timestamp per group evaluation, rules in file order, as Prometheus' `rules/manager.go`),
//! runs the state machine, persists the state after each evaluation, and produces the
//! alerts to send: firing ones and resolved ones within their 15 min retention, as
//! [`Alert`]s (labels = series labels − `__name__` + rule labels + `alertname`).
//!
//! Time comes from an injectable [`Clock`], so tests drive evaluations with
//! [`RuleManager::evaluate_due`] and a [`ManualClock`]; [`RuleManager::run`] is the
//! async loop that sleeps until the next group is due and delivers through a
//! `tokio::sync::mpsc::Sender<Vec<Alert>>`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::eval::{eval_with, EvalOptions};
use super::file::{load_file, AlertingRule, RuleFileError, RuleGroup, DEFAULT_INTERVAL_MS};
use super::state::{PersistedRule, ResultElement, RuleState, StateFile, STATE_VERSION};
use crate::alert::{Alert, AlertStatus};
use crate::series::{Labels, SeriesSource};

/// Rule manager settings (TOML/YAML section `[rules]`; `deny_unknown_fields`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleManagerConfig {
    /// Rule files, loaded in order.
    #[serde(default)]
    pub rule_files: Vec<PathBuf>,
    /// Interval of groups without `interval` (default `10s`, one rollup window).
    #[serde(default = "default_interval", with = "super::duration::serde_ms")]
    pub evaluation_interval_ms: i64,
    /// How far back an instant selector looks for a sample (default `1m`; see
    /// [`EvalOptions`] for why not Prometheus' 5 min).
    #[serde(default = "default_lookback", with = "super::duration::serde_ms")]
    pub lookback_ms: i64,
    /// Sightline's externally reachable URL; alerts link to
    /// `<external_url>/api/v1/rules?group=<group>&alert=<alert>` (`generator_url`). In the
    /// aggregator's config it may be omitted: the top-level `external_url` is used.
    #[serde(default)]
    pub external_url: String,
    /// Where the alert state is persisted (none: state does not survive restarts).
    /// In the aggregator's config it defaults to `<data_dir>/alerts/state.json`.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// Sample log lines (with their correlation IDs) attached to each firing alert that
    /// has a `service` label, from that service's logs in the last `lookback` before the
    /// evaluation: error and fatal lines first, then any lines (default 5, at most 100;
    /// 0 turns samples off). Applied by the aggregator, not by the manager.
    #[serde(default = "default_log_samples")]
    pub log_samples: usize,
}

fn default_log_samples() -> usize {
    5
}

fn default_interval() -> i64 {
    DEFAULT_INTERVAL_MS
}
fn default_lookback() -> i64 {
    60_000
}

impl RuleManagerConfig {
    /// Pure checks: positive interval and lookback, an `http(s)://` external URL.
    pub fn validate(&self) -> Result<(), RuleManagerError> {
        let bad = |m: String| Err(RuleManagerError::Config(m));
        if self.evaluation_interval_ms <= 0 {
            return bad("evaluation_interval must be greater than 0".into());
        }
        if self.lookback_ms <= 0 {
            return bad("lookback must be greater than 0".into());
        }
        if !(self.external_url.starts_with("http://") || self.external_url.starts_with("https://"))
        {
            return bad(format!(
                "external_url {:?} must start with http:// or https://",
                self.external_url
            ));
        }
        if self.log_samples > 100 {
            return bad(format!("log_samples = {} is above 100", self.log_samples));
        }
        Ok(())
    }
}

/// Errors of the rule manager.
#[derive(Debug, thiserror::Error)]
pub enum RuleManagerError {
    /// Invalid settings.
    #[error("rules config: {0}")]
    Config(String),
    /// A rule file is invalid (the manager keeps its previous rules on reload).
    #[error(transparent)]
    RuleFile(#[from] RuleFileError),
    /// The same rule file is listed twice (one group name in two files is fine).
    #[error("rule file {0} is listed twice")]
    DuplicateFile(PathBuf),
}

pub use crate::clock::{Clock, ManualClock, SystemClock};

/// Health of one rule after its last evaluation (for the rules API).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleStatus {
    /// Rule file.
    pub file: PathBuf,
    /// Group name.
    pub group: String,
    /// Alert name.
    pub alert: String,
    /// Last evaluation time, Unix ms.
    pub last_evaluation_ms: Option<i64>,
    /// The last evaluation's error, if it failed.
    pub last_error: Option<String>,
    /// Its alerts.
    pub alerts: Vec<super::state::ActiveAlert>,
}

struct RuleRuntime {
    rule: AlertingRule,
    state: RuleState,
    last_eval_ms: Option<i64>,
    last_error: Option<String>,
}

struct GroupRuntime {
    def: RuleGroup,
    next_eval_ms: i64,
    rules: Vec<RuleRuntime>,
}

type RuleKey = (PathBuf, String, String, BTreeMap<String, String>);

/// A rule's last evaluation time (Unix ms) and error, carried over reloads.
type Health = (Option<i64>, Option<String>);

fn key_of(file: &std::path::Path, group: &str, r: &AlertingRule) -> RuleKey {
    (
        file.to_path_buf(),
        group.to_string(),
        r.name.clone(),
        r.labels.clone(),
    )
}

/// A reload request for [`RuleManager::run`]: the reply says whether the new files loaded.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// Evaluates alert rules; see the module docs.
pub struct RuleManager {
    config: RuleManagerConfig,
    source: Arc<dyn SeriesSource>,
    clock: Arc<dyn Clock>,
    groups: Vec<GroupRuntime>,
    restore_error: Option<String>,
    persist_error: Option<String>,
}

impl RuleManager {
    /// Validates `config`, loads the rule files and restores the persisted state (if
    /// `state_file` exists). An unreadable or corrupt state file does not stop alerting:
    /// the manager starts without state and reports it in [`RuleManager::restore_error`].
    /// Errors: invalid config or rule files.
    pub fn new(
        config: RuleManagerConfig,
        source: Arc<dyn SeriesSource>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RuleManagerError> {
        config.validate()?;
        let defs = load_all(&config.rule_files, config.evaluation_interval_ms)?;
        let mut m = RuleManager {
            config,
            source,
            clock,
            groups: Vec::new(),
            restore_error: None,
            persist_error: None,
        };
        let mut restored: BTreeMap<RuleKey, Vec<RuleState>> = BTreeMap::new();
        if let Some(path) = &m.config.state_file {
            match StateFile::load(path) {
                Ok(Some(sf)) => {
                    for r in sf.rules {
                        restored
                            .entry((PathBuf::from(r.file), r.group, r.alert, r.labels))
                            .or_default()
                            .push(r.state);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "alert state not restored; starting without it");
                    m.restore_error = Some(e.to_string());
                }
            }
        }
        m.install(defs, restored);
        Ok(m)
    }

    /// Installs group definitions, taking each rule's state from `states` by key (in
    /// order when a key repeats).
    fn install(&mut self, defs: Vec<RuleGroup>, mut states: BTreeMap<RuleKey, Vec<RuleState>>) {
        let now = self.clock.now_ms();
        let old_next: BTreeMap<(PathBuf, String, i64), i64> = self
            .groups
            .iter()
            .map(|g| {
                (
                    (g.def.file.clone(), g.def.name.clone(), g.def.interval_ms),
                    g.next_eval_ms,
                )
            })
            .collect();
        for v in states.values_mut() {
            v.reverse(); // pop() takes them in file order
        }
        self.groups = defs
            .into_iter()
            .map(|def| {
                let rules = def
                    .rules
                    .iter()
                    .map(|r| {
                        let state = states
                            .get_mut(&key_of(&def.file, &def.name, r))
                            .and_then(Vec::pop)
                            .unwrap_or_default();
                        RuleRuntime {
                            rule: r.clone(),
                            state,
                            last_eval_ms: None,
                            last_error: None,
                        }
                    })
                    .collect();
                let next_eval_ms = old_next
                    .get(&(def.file.clone(), def.name.clone(), def.interval_ms))
                    .copied()
                    .unwrap_or(now);
                GroupRuntime {
                    def,
                    next_eval_ms,
                    rules,
                }
            })
            .collect();
    }

    /// Re-reads the configured rule files. Rules whose key (file, group, alert name, rule
    /// labels) is unchanged keep their state (a changed `for` then applies to it); removed
    /// rules drop theirs. On error the current rules stay in place.
    pub fn reload(&mut self) -> Result<(), RuleManagerError> {
        let files = self.config.rule_files.clone();
        self.reload_files(files)
    }

    /// [`RuleManager::reload`] with a new list of files.
    pub fn reload_files(&mut self, files: Vec<PathBuf>) -> Result<(), RuleManagerError> {
        let defs = load_all(&files, self.config.evaluation_interval_ms)?;
        let mut states: BTreeMap<RuleKey, Vec<RuleState>> = BTreeMap::new();
        // Health carries over too (as Prometheus' `CopyState`): last evaluation and error.
        let mut health: BTreeMap<RuleKey, Vec<Health>> = BTreeMap::new();
        for g in &mut self.groups {
            for r in &mut g.rules {
                let key = key_of(&g.def.file, &g.def.name, &r.rule);
                health
                    .entry(key.clone())
                    .or_default()
                    .push((r.last_eval_ms, r.last_error.take()));
                states
                    .entry(key)
                    .or_default()
                    .push(std::mem::take(&mut r.state));
            }
        }
        self.config.rule_files = files;
        self.install(defs, states);
        for v in health.values_mut() {
            v.reverse();
        }
        for g in &mut self.groups {
            for r in &mut g.rules {
                let key = key_of(&g.def.file, &g.def.name, &r.rule);
                if let Some((eval, error)) = health.get_mut(&key).and_then(Vec::pop) {
                    r.last_eval_ms = eval;
                    r.last_error = error;
                }
            }
        }
        Ok(())
    }

    /// Why the persisted state was not restored at start, if it was not.
    pub fn restore_error(&self) -> Option<&str> {
        self.restore_error.as_deref()
    }

    /// The last error writing the state file, if the last write failed.
    pub fn persist_error(&self) -> Option<&str> {
        self.persist_error.as_deref()
    }

    /// When the next group is due, Unix ms (`None` without groups).
    pub fn next_due_ms(&self) -> Option<i64> {
        self.groups.iter().map(|g| g.next_eval_ms).min()
    }

    /// Evaluates every group due at the clock's time (each at that one timestamp, its rules
    /// in order), persists the state if any group ran, and returns one list of alerts to
    /// send per evaluated group (firing, and resolved within retention). A group that
    /// overran several intervals is evaluated once (missed iterations are skipped, as
    /// Prometheus).
    pub fn evaluate_due(&mut self) -> Vec<Vec<Alert>> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        // Every group due now reads the store at the same timestamp: each distinct read
        // once (see `round_cache`).
        let source = self.source.clone();
        let cache = super::round_cache::RoundCache::new(source.as_ref());
        for gi in 0..self.groups.len() {
            if self.groups[gi].next_eval_ms <= now {
                out.push(self.evaluate_group(gi, now, &cache));
                let g = &mut self.groups[gi];
                let missed = (now - g.next_eval_ms) / g.def.interval_ms;
                g.next_eval_ms += (missed + 1) * g.def.interval_ms;
            }
        }
        if !out.is_empty() {
            self.persist(now);
        }
        out
    }

    fn evaluate_group(&mut self, gi: usize, ts: i64, source: &dyn SeriesSource) -> Vec<Alert> {
        let opts = EvalOptions {
            lookback_ms: self.config.lookback_ms,
        };
        let g = &mut self.groups[gi];
        let mut alerts = Vec::new();
        for r in &mut g.rules {
            r.last_eval_ms = Some(ts);
            let result = eval_with(&r.rule.expr, source, ts, &opts)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    let els = v
                        .into_iter()
                        .map(|(series, value)| element(&r.rule, series, value))
                        .collect();
                    r.state
                        .update(ts, els, r.rule.for_ms, r.rule.keep_firing_for_ms)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = &result {
                tracing::warn!(group = %g.def.name, alert = %r.rule.name, error = %e, "alert rule evaluation failed; state kept");
            }
            r.last_error = result.err();
            let url = generator_url(&self.config.external_url, &g.def.name, &r.rule.name);
            alerts.extend(r.state.to_send().map(|a| Alert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                status: if a.state == super::state::AlertState::Firing {
                    AlertStatus::Firing
                } else {
                    AlertStatus::Resolved
                },
                starts_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
                ends_at_ms: if a.state == super::state::AlertState::Firing {
                    None
                } else {
                    a.resolved_at_ms
                },
                value: a.value,
                generator_url: url.clone(),
                samples: Vec::new(),
            }));
        }
        alerts
    }

    fn persist(&mut self, now: i64) {
        let Some(path) = self.config.state_file.clone() else {
            return;
        };
        let sf = StateFile {
            version: STATE_VERSION,
            saved_at_ms: now,
            rules: self
                .groups
                .iter()
                .flat_map(|g| {
                    g.rules.iter().map(|r| PersistedRule {
                        file: g.def.file.to_string_lossy().into_owned(),
                        group: g.def.name.clone(),
                        alert: r.rule.name.clone(),
                        labels: r.rule.labels.clone(),
                        state: r.state.clone(),
                    })
                })
                .collect(),
        };
        match sf.save(&path) {
            Ok(()) => self.persist_error = None,
            Err(e) => {
                tracing::warn!(error = %e, "alert state not persisted");
                self.persist_error = Some(e.to_string());
            }
        }
    }

    /// Every rule's health and alerts, in file and group order.
    pub fn status(&self) -> Vec<RuleStatus> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.rules.iter().map(|r| RuleStatus {
                    file: g.def.file.clone(),
                    group: g.def.name.clone(),
                    alert: r.rule.name.clone(),
                    last_evaluation_ms: r.last_eval_ms,
                    last_error: r.last_error.clone(),
                    alerts: r.state.alerts.values().cloned().collect(),
                })
            })
            .collect()
    }

    /// The evaluation loop: sleeps until the next group is due (by the clock), evaluates,
    /// and sends each non-empty group result to `sink`; serves reload requests; stops on
    /// `shutdown` or when `sink` is closed.
    pub async fn run(
        mut self,
        sink: mpsc::Sender<Vec<Alert>>,
        mut reloads: mpsc::Receiver<ReloadRequest>,
        shutdown: CancellationToken,
    ) {
        loop {
            let wait_ms = self
                .next_due_ms()
                .map_or(1_000, |due| (due - self.clock.now_ms()).clamp(0, 60_000));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(reply) = reloads.recv() => {
                    let r = self.reload().map_err(|e| e.to_string());
                    let _ = reply.send(r);
                    continue;
                }
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait_ms as u64)) => {}
            }
            for alerts in self.evaluate_due() {
                if !alerts.is_empty() && sink.send(alerts).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The alert's labels (series − `__name__` + expanded rule labels + `alertname`) and
/// expanded annotations; templates see the series labels without `__name__`.
fn element(rule: &AlertingRule, mut series: Labels, value: f64) -> ResultElement {
    series.remove("__name__");
    let mut labels = series.clone();
    for (k, t) in &rule.label_templates {
        labels.insert(k.clone(), t.expand(&series, value));
    }
    labels.insert("alertname".into(), rule.name.clone());
    let annotations = rule
        .annotation_templates
        .iter()
        .map(|(k, t)| (k.clone(), t.expand(&series, value)))
        .collect();
    ResultElement {
        labels,
        annotations,
        value,
    }
}

/// `<external_url>/api/v1/rules?group=<g>&alert=<a>`, query values percent-encoded.
pub fn generator_url(external_url: &str, group: &str, alert: &str) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    format!(
        "{}/api/v1/rules?group={}&alert={}",
        external_url.trim_end_matches('/'),
        enc(group),
        enc(alert)
    )
}

fn load_all(
    files: &[PathBuf],
    default_interval_ms: i64,
) -> Result<Vec<RuleGroup>, RuleManagerError> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if files[..i].contains(f) {
            return Err(RuleManagerError::DuplicateFile(f.clone()));
        }
        out.extend(load_file(f, default_interval_ms)?);
    }
    Ok(out)
}
