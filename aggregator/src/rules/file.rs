//! Rule files: YAML in the Prometheus rule-file shape (`docs/configuration/
//! alerting_rules.md`), parsed with `serde-saphyr` (which keeps line/column of every
//! value) and validated into [`RuleGroup`]s.
//!
//! ```yaml
//! groups:
//!   - name: checkout          # unique within the file
//!     interval: 30s           # optional; default 10 s (one rollup window)
//!     rules:
//!       - alert: HighErrorRate
//!         expr: avg_over_time(error_rate{service="checkout"}[5m]) > 0.05
//!         for: 2m             # optional, default 0s
//!         keep_firing_for: 1m # optional, default 0s
//!         labels: { severity: page }
//!         annotations:
//!           summary: "{{ $labels.service }} errors at {{ $value | humanizePercentage }}"
//! ```
//!
//! Every error is a [`RuleFileError`] naming the file, line and column: YAML syntax,
//! unknown keys, bad durations, expression errors (at the position inside the
//! expression), template errors, duplicate group names, recording rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::duration::parse_duration_ms;
use super::expr::{parse, Expr, ValueType};
use super::template::Template;

/// Default group `interval` (ms): one rollup window.
pub const DEFAULT_INTERVAL_MS: i64 = 10_000;

/// A rule file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid rule file; `line`/`column` are 1-based (0 when unknown).
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    alert: Option<Spanned<String>>,
    #[serde(default)]
    record: Option<Spanned<String>>,
    expr: Spanned<String>,
    #[serde(default, rename = "for")]
    for_: Option<Spanned<String>>,
    #[serde(default)]
    keep_firing_for: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    annotations: BTreeMap<String, Spanned<String>>,
}

/// A validated alerting rule.
#[derive(Clone, Debug)]
pub struct AlertingRule {
    /// `alert`: the alert name (becomes the `alertname` label).
    pub name: String,
    /// The expression's source text.
    pub expr_text: String,
    /// The parsed expression (an instant vector).
    pub expr: Expr,
    /// `for`, ms (0: fire on the first evaluation that returns the element).
    pub for_ms: i64,
    /// `keep_firing_for`, ms.
    pub keep_firing_for_ms: i64,
    /// `labels` (source text; values are templates).
    pub labels: BTreeMap<String, String>,
    /// Parsed label templates.
    pub label_templates: BTreeMap<String, Template>,
    /// `annotations` (source text).
    pub annotations: BTreeMap<String, String>,
    /// Parsed annotation templates.
    pub annotation_templates: BTreeMap<String, Template>,
}

/// A validated rule group.
#[derive(Clone, Debug)]
pub struct RuleGroup {
    /// The file it came from (groups are identified by file and name, as Prometheus).
    pub file: PathBuf,
    /// `name`.
    pub name: String,
    /// `interval`, ms.
    pub interval_ms: i64,
    /// The rules, in file order (evaluated in this order).
    pub rules: Vec<AlertingRule>,
}

/// Reads and validates one rule file. `default_interval_ms` applies to groups without
/// `interval`.
pub fn load_file(path: &Path, default_interval_ms: i64) -> Result<Vec<RuleGroup>, RuleFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| RuleFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_rule_file(path, &text, default_interval_ms)
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Validates rule-file text (`path` names it in errors).
pub fn parse_rule_file(
    path: &Path,
    text: &str,
    default_interval_ms: i64,
) -> Result<Vec<RuleGroup>, RuleFileError> {
    let invalid = |line: usize, column: usize, message: String| RuleFileError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        message,
    };
    let at = |s: &serde_saphyr::Location| (s.line() as usize, s.column() as usize);
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| at(&l));
        invalid(line, column, yaml_message(&e))
    })?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut groups = Vec::new();
    for g in raw.groups {
        let (gl, gc) = at(&g.name.referenced);
        if g.name.value.trim().is_empty() {
            return Err(invalid(gl, gc, "group name must not be empty".into()));
        }
        if let Some(first) = seen.insert(g.name.value.clone(), gl) {
            return Err(invalid(
                gl,
                gc,
                format!(
                    "group name {:?} is repeated in this file (first at line {first})",
                    g.name.value
                ),
            ));
        }
        let interval_ms = match &g.interval {
            None => default_interval_ms,
            Some(i) => {
                let (l, c) = at(&i.referenced);
                let ms = parse_duration_ms(&i.value)
                    .map_err(|m| invalid(l, c, format!("interval: {m}")))?;
                if ms <= 0 {
                    return Err(invalid(l, c, "interval must be greater than 0".into()));
                }
                ms
            }
        };
        let mut rules = Vec::new();
        for r in g.rules {
            let (rl, rc) = at(&r.referenced);
            let r = r.value;
            if let Some(rec) = &r.record {
                let (l, c) = at(&rec.referenced);
                return Err(invalid(
                    l,
                    c,
                    "recording rules are not supported: only alerting rules (`alert:`)".into(),
                ));
            }
            let Some(name) = r.alert else {
                return Err(invalid(rl, rc, "rule has no `alert` name".into()));
            };
            if name.value.trim().is_empty() {
                let (l, c) = at(&name.referenced);
                return Err(invalid(l, c, "alert name must not be empty".into()));
            }
            let (el, ec) = at(&r.expr.referenced);
            let expr = parse(&r.expr.value).map_err(|e| {
                let (l, c) = locate(text, el, ec, &r.expr.value, e.line, e.column);
                invalid(
                    l,
                    c,
                    format!(
                        "alert {:?}: expr: {} (expression {}:{})",
                        name.value, e.message, e.line, e.column
                    ),
                )
            })?;
            if expr.value_type() != ValueType::Vector {
                return Err(invalid(el, ec, format!(
                    "alert {:?}: expr is a {}; an alert needs an instant vector (e.g. compare a selector with a threshold)",
                    name.value,
                    expr.value_type()
                )));
            }
            let dur = |d: &Option<Spanned<String>>, what: &str| -> Result<i64, RuleFileError> {
                match d {
                    None => Ok(0),
                    Some(s) => {
                        let (l, c) = at(&s.referenced);
                        parse_duration_ms(&s.value).map_err(|m| {
                            invalid(l, c, format!("alert {:?}: {what}: {m}", name.value))
                        })
                    }
                }
            };
            let for_ms = dur(&r.for_, "for")?;
            let keep_firing_for_ms = dur(&r.keep_firing_for, "keep_firing_for")?;
            let templates = |m: &BTreeMap<String, Spanned<String>>,
                             what: &str|
             -> Result<BTreeMap<String, Template>, RuleFileError> {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    let (l, c) = at(&v.referenced);
                    if !is_label_name(k) || k.starts_with("__") {
                        return Err(invalid(l, c, format!("alert {:?}: invalid {what} name {k:?} (must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __)", name.value)));
                    }
                    let t = Template::parse(&v.value).map_err(|e| {
                        let (l2, c2) = locate(text, l, c, &v.value, e.line, e.column);
                        invalid(
                            l2,
                            c2,
                            format!(
                                "alert {:?}: {what} {k:?}: template: {}",
                                name.value, e.message
                            ),
                        )
                    })?;
                    out.insert(k.clone(), t);
                }
                Ok(out)
            };
            let label_templates = templates(&r.labels, "label")?;
            let annotation_templates = templates(&r.annotations, "annotation")?;
            rules.push(AlertingRule {
                name: name.value.clone(),
                expr_text: r.expr.value.clone(),
                expr,
                for_ms,
                keep_firing_for_ms,
                labels: r
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect(),
                label_templates,
                annotations: r
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect(),
                annotation_templates,
            });
        }
        groups.push(RuleGroup {
            file: path.to_path_buf(),
            name: g.name.value,
            interval_ms,
            rules,
        });
    }
    Ok(groups)
}

/// serde-saphyr's message without its own location suffix/snippet (we print ours).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("invalid YAML").trim();
    // Drop serde-saphyr's own "error: line X column Y: " prefix.
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, msg)) if pos.contains("column") => msg.to_string(),
        _ => first.to_string(),
    }
}

/// Maps a position inside a YAML scalar (1-based `line`:`col` of its own text) to the
/// file. The scalar starts at `vl`:`vc` (plain or quoted on that line, or a `|`/`>` block
/// on the following lines). The line of the value text is searched in the file from the
/// scalar's start; if it cannot be found (folded or escaped text), the scalar's own
/// position is returned.
fn locate(
    text: &str,
    vl: usize,
    vc: usize,
    value: &str,
    line: usize,
    col: usize,
) -> (usize, usize) {
    let Some(want) = value.lines().nth(line.saturating_sub(1)) else {
        return (vl, vc);
    };
    let want = want.trim_end();
    if want.is_empty() {
        return (vl, vc);
    }
    for (i, src_line) in text
        .lines()
        .enumerate()
        .skip(vl.saturating_sub(1) + line.saturating_sub(1))
    {
        let from = if i + 1 == vl {
            src_line
                .char_indices()
                .nth(vc.saturating_sub(1))
                .map_or(src_line.len(), |(b, _)| b)
        } else {
            0
        };
        if let Some(b) = src_line[from..].find(want) {
            let col0 = src_line[..from + b].chars().count();
            return (i + 1, col0 + col);
        }
        if i + 1 > vl + line + 1000 {
            break;
        }
    }
    (vl, vc)
}
