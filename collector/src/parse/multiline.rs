//! Multi-line records: joins the lines of one stack trace (Java, Python, Go) or of one
//! message that starts with a configured pattern into one record, per container stream,
//! after Docker's split-line reassembly ([`super::docker_json::Reassembler`]).
//!
//! Two ways to decide where a record starts and ends:
//! - `mode = "auto"`: the built-in state machines of Fluent Bit's multiline parsers `java`,
//!   `python` and `go` (fluent/fluent-bit `src/multiline/flb_ml_parser_{java,python,go}.c`,
//!   themselves from Google's fluentd `detect_exceptions` plugin), with the adjustments listed
//!   on [`Preset`]. A line that starts no trace passes through alone; a trace ends at the
//!   first line that no rule of its current state accepts (that line is then looked at
//!   afresh), or when a rule leads back to `start_state` (that line included).
//! - `mode = "custom"`: Vector's `multiline` options (vectordotdev/vector `src/line_agg.rs`):
//!   a line matching `start_pattern` opens a record when none is open (other lines pass
//!   through alone); then each next line is tested against `condition_pattern` and
//!   `condition_mode` decides: `continue_through` (matching lines join; the first
//!   non-matching one ends the record and is looked at afresh), `continue_past` (matching
//!   lines join, plus the first non-matching one, which ends it), `halt_before` (non-matching
//!   lines join; a matching one ends the record and is looked at afresh), `halt_with`
//!   (non-matching lines join, plus the first matching one, which ends it). Without
//!   `condition_pattern` the record runs until the next line matching `start_pattern`
//!   (Vector's legacy `message_start_indicator`: `halt_before` on the start pattern).
//!
//! Lines join with `\n`. A joined record keeps its first line's offset, timestamp, stream
//! and Docker attributes, and gets `sightline.multiline.lines = "<n>"`. A record reaching
//! `max_lines` or `max_bytes` is shipped marked `sightline.multiline.truncated = "true"`; the
//! rest of the trace goes on in the next record, marked
//! `sightline.multiline.continuation = "true"` (nothing is dropped). A record waiting for
//! its next line longer than `flush_timeout_ms` is shipped as it is. Records that are not
//! whole lines (framing errors, `split_part`, `partial`) are never joined: they end the open
//! record of their stream and pass through.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use regex::Regex;
use serde::Deserialize;

use super::docker_json::Record;
use crate::config::ConfigError;

/// Attribute: number of lines joined into the record (set when more than one).
pub const ATTR_LINES: &str = "sightline.multiline.lines";
/// Attribute `"true"`: the record was cut at `max_lines`/`max_bytes`; the rest follows.
pub const ATTR_TRUNCATED: &str = "sightline.multiline.truncated";
/// Attribute `"true"`: the record is the rest of a record cut at a cap.
pub const ATTR_CONTINUATION: &str = "sightline.multiline.continuation";

/// Whether and how lines are joined.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MultilineMode {
    /// Every line is its own record (the default).
    #[default]
    Off,
    /// Stack traces of the languages in `presets` are detected and joined.
    Auto,
    /// `start_pattern` / `condition_pattern` / `condition_mode`, as Vector's `multiline`.
    Custom,
}

/// A built-in stack-trace detector (Fluent Bit's multiline parser of the same name).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Java (and C#) exceptions: a line containing `…Exception:`, `…Error:`, `…Throwable:`
    /// (or ending in those words), then `at …` frames, `Caused by:`/`Suppressed:`,
    /// `... N more`/`... N common frames omitted`, `nested exception is:`. Adjustment: the
    /// start pattern accepts the exception name at the end of the line (Java prints
    /// `java.lang.NullPointerException` without a colon when there is no message).
    Java,
    /// Python: `Traceback (most recent call last):`, `  File …` lines each followed by a
    /// code line, then the `Type: message` line, which ends the record. Adjustment: Python
    /// 3.11+ caret lines (`    ~~^~~`) are accepted between frames. Chained exceptions
    /// (`During handling of the above exception…`) give one record per traceback.
    Python,
    /// Go: `panic: …` (or `http: panic serving …`), an optional `[signal …]` line, a blank
    /// line, then `goroutine N [state]:` blocks of function/`created by` lines each followed
    /// by an indented file line, separated by blank lines. Adjustment: indented
    /// `panic: … [recovered]` lines right after the first line are accepted.
    Go,
}

/// What a matching `condition_pattern` means (Vector's `multiline.mode`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConditionMode {
    /// Consecutive matching lines join; the first non-matching one starts afresh.
    ContinueThrough,
    /// Consecutive matching lines join, plus the first non-matching one.
    ContinuePast,
    /// Consecutive non-matching lines join; the first matching one starts afresh.
    HaltBefore,
    /// Consecutive non-matching lines join, plus the first matching one.
    HaltWith,
}

/// Multi-line joining settings (TOML table, every key optional).
///
/// ```toml
/// mode = "custom"
/// start_pattern = '^\d{4}-\d{2}-\d{2}'   # a log header starts a record …
/// condition_pattern = '^\s'               # … indented lines continue it
/// condition_mode = "continue_through"
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// `off` (default), `auto` or `custom`.
    pub mode: MultilineMode,
    /// Detectors used by `mode = "auto"`, tried in this order on a line that starts no open
    /// record; the first whose start rule matches wins. Default `["python", "go", "java"]`
    /// (most specific first).
    pub presets: Vec<Preset>,
    /// `mode = "custom"` only (required there): a regex; a line matching it opens a record.
    pub start_pattern: Option<String>,
    /// `mode = "custom"` only: a regex tested on each line after the first of a record;
    /// needs `condition_mode`. Default: none (the record runs until the next start line).
    pub condition_pattern: Option<String>,
    /// `mode = "custom"` only: `continue_through`, `continue_past`, `halt_before` or
    /// `halt_with` (see the module docs). Required with `condition_pattern`.
    pub condition_mode: Option<ConditionMode>,
    /// A record whose next line has not come after this many ms is shipped as it is.
    /// Default 1000. The checkpoint does not pass a held line, so a restart re-reads it.
    pub flush_timeout_ms: u64,
    /// Most lines in one record; a longer trace goes on in the next record. Default 500.
    pub max_lines: usize,
    /// Most bytes of text in one record (lines plus `\n` separators); a longer trace goes
    /// on in the next record. Default 262144 (256 KiB).
    pub max_bytes: usize,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        MultilineConfig {
            mode: MultilineMode::Off,
            presets: vec![Preset::Python, Preset::Go, Preset::Java],
            start_pattern: None,
            condition_pattern: None,
            condition_mode: None,
            flush_timeout_ms: 1000,
            max_lines: 500,
            max_bytes: 256 * 1024,
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: format!("multiline.{field}"),
        message: message.into(),
    }
}

fn compile(field: &str, pattern: &str) -> Result<Regex, ConfigError> {
    Regex::new(pattern).map_err(|e| invalid(field, e.to_string()))
}

impl MultilineConfig {
    /// Checks every value and compiles the patterns; pure. Errors name the field
    /// (`multiline.start_pattern`, …) and, for a bad regex, the regex error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Matcher::new(self).map(|_| ())
    }
}

/// Parser states (Fluent Bit's state names, all presets together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Start,
    JavaStartException,
    JavaAfterException,
    Java,
    Python,
    PythonCode,
    GoAfterPanic,
    GoAfterSignal,
    GoGoroutine,
    GoFrame1,
    GoFrame2,
}

struct Rule {
    from: &'static [St],
    re: Regex,
    to: St,
}

/// The rules of preset `p`, compiled once per process and shared.
fn preset_rules(p: Preset) -> &'static [Rule] {
    static TABLES: OnceLock<[Vec<Rule>; 3]> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        [
            build_rules(Preset::Java),
            build_rules(Preset::Python),
            build_rules(Preset::Go),
        ]
    });
    match p {
        Preset::Java => &tables[0],
        Preset::Python => &tables[1],
        Preset::Go => &tables[2],
    }
}

fn build_rules(p: Preset) -> Vec<Rule> {
    use St::*;
    let table: &[(&'static [St], &str, St)] = match p {
        Preset::Java => &[
            (
                &[Start, JavaStartException],
                r".(?:Exception|Error|Throwable|V8 errors stack trace)(?::|$)",
                JavaAfterException,
            ),
            (
                &[JavaAfterException],
                r"^[\t ]*nested exception is:[\t ]*",
                JavaStartException,
            ),
            (&[JavaAfterException], r"^\r?$", JavaAfterException),
            (&[JavaAfterException, Java], r"^[\t ]+(?:eval )?at ", Java),
            (
                &[JavaAfterException, Java],
                r"^[\t ]+--- End of inner exception stack trace ---$",
                Java,
            ),
            (
                &[JavaAfterException, Java],
                r"^--- End of stack trace from previous location where exception was thrown ---$",
                Java,
            ),
            (
                &[JavaAfterException, Java],
                r"^[\t ]*(?:Caused by|Suppressed):",
                JavaAfterException,
            ),
            (
                &[JavaAfterException, Java],
                r"^[\t ]*\.\.\. \d+ (?:more|common frames omitted)",
                Java,
            ),
        ],
        Preset::Python => &[
            (&[Start], r"^Traceback \(most recent call last\):$", Python),
            (&[Python], r"^[\t ]+File ", PythonCode),
            (&[PythonCode], r"[^\t ]", Python),
            (&[Python], r"^[\t ]+[~^]+[\t ]*$", Python),
            (&[Python], r"^(?:[^\s.():]+\.)*[^\s.():]+:", Start),
        ],
        Preset::Go => &[
            (&[Start], r"\bpanic: ", GoAfterPanic),
            (&[Start], r"http: panic serving", GoGoroutine),
            (&[GoAfterPanic], r"^[\t ]+panic: ", GoAfterPanic),
            (&[GoAfterPanic, GoAfterSignal, GoFrame1], r"^$", GoGoroutine),
            (&[GoAfterPanic], r"^\[signal ", GoAfterSignal),
            (&[GoGoroutine], r"^goroutine \d+ \[[^\]]+\]:$", GoFrame1),
            (
                &[GoFrame1],
                r"^(?:[^\s.:]+\.)*[^\s.():]+\(|^created by ",
                GoFrame2,
            ),
            (&[GoFrame2], r"^\s", GoFrame1),
        ],
    };
    table
        .iter()
        .map(|&(from, re, to)| Rule {
            from,
            // The tables above are constants, checked by the tests.
            re: Regex::new(re).expect("built-in multiline rule"),
            to,
        })
        .collect()
}

/// Compiled decision rules.
enum Matcher {
    Off,
    Auto(Vec<&'static [Rule]>),
    Custom {
        start: Regex,
        condition: Regex,
        mode: ConditionMode,
    },
}

/// Where an open record is in its parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupState {
    Custom,
    Auto { preset: usize, state: St },
}

enum Decision {
    Continue(GroupState),
    EndInclude,
    EndExclude,
}

impl Matcher {
    fn new(cfg: &MultilineConfig) -> Result<Self, ConfigError> {
        if !(1..=300_000).contains(&cfg.flush_timeout_ms) {
            return Err(invalid(
                "flush_timeout_ms",
                "must be between 1 and 300000 (5 minutes)",
            ));
        }
        if !(2..=100_000).contains(&cfg.max_lines) {
            return Err(invalid("max_lines", "must be between 2 and 100000"));
        }
        if !(1024..=768 * 1024).contains(&cfg.max_bytes) {
            return Err(invalid(
                "max_bytes",
                "must be between 1024 and 786432 (768 KiB)",
            ));
        }
        match cfg.mode {
            MultilineMode::Off => Ok(Matcher::Off),
            MultilineMode::Auto => {
                if cfg.presets.is_empty() {
                    return Err(invalid(
                        "presets",
                        "must name at least one of java, python, go when mode = \"auto\"",
                    ));
                }
                for (field, set) in [
                    ("start_pattern", cfg.start_pattern.is_some()),
                    ("condition_pattern", cfg.condition_pattern.is_some()),
                    ("condition_mode", cfg.condition_mode.is_some()),
                ] {
                    if set {
                        return Err(invalid(field, "is only used when mode = \"custom\""));
                    }
                }
                Ok(Matcher::Auto(
                    cfg.presets.iter().map(|&p| preset_rules(p)).collect(),
                ))
            }
            MultilineMode::Custom => {
                let Some(start) = &cfg.start_pattern else {
                    return Err(invalid(
                        "start_pattern",
                        "is required when mode = \"custom\"",
                    ));
                };
                let start = compile("start_pattern", start)?;
                match (&cfg.condition_pattern, cfg.condition_mode) {
                    (None, None) => Ok(Matcher::Custom {
                        condition: start.clone(),
                        start,
                        mode: ConditionMode::HaltBefore,
                    }),
                    (Some(c), Some(mode)) => Ok(Matcher::Custom {
                        start,
                        condition: compile("condition_pattern", c)?,
                        mode,
                    }),
                    (Some(_), None) => Err(invalid(
                        "condition_mode",
                        "is required with condition_pattern (continue_through, continue_past, halt_before or halt_with)",
                    )),
                    (None, Some(_)) => Err(invalid(
                        "condition_pattern",
                        "is required with condition_mode",
                    )),
                }
            }
        }
    }

    /// The state of a new record opened by `line`, or `None` when it opens none.
    fn open(&self, line: &str) -> Option<GroupState> {
        match self {
            Matcher::Off => None,
            Matcher::Custom { start, .. } => start.is_match(line).then_some(GroupState::Custom),
            Matcher::Auto(presets) => presets.iter().enumerate().find_map(|(i, rules)| {
                rules
                    .iter()
                    .find(|r| {
                        r.from.contains(&St::Start) && r.to != St::Start && r.re.is_match(line)
                    })
                    .map(|r| GroupState::Auto {
                        preset: i,
                        state: r.to,
                    })
            }),
        }
    }

    /// What `line` does to an open record in `state`.
    fn next(&self, state: GroupState, line: &str) -> Decision {
        match (self, state) {
            (
                Matcher::Custom {
                    condition, mode, ..
                },
                _,
            ) => {
                let hit = condition.is_match(line);
                match (mode, hit) {
                    (ConditionMode::ContinueThrough, true)
                    | (ConditionMode::ContinuePast, true)
                    | (ConditionMode::HaltBefore, false)
                    | (ConditionMode::HaltWith, false) => Decision::Continue(state),
                    (ConditionMode::ContinuePast, false) | (ConditionMode::HaltWith, true) => {
                        Decision::EndInclude
                    }
                    (ConditionMode::ContinueThrough, false) | (ConditionMode::HaltBefore, true) => {
                        Decision::EndExclude
                    }
                }
            }
            (Matcher::Auto(presets), GroupState::Auto { preset, state: st }) => {
                let rule = presets.get(preset).and_then(|rules| {
                    rules
                        .iter()
                        .find(|r| r.from.contains(&st) && r.re.is_match(line))
                });
                match rule {
                    Some(r) if r.to == St::Start => Decision::EndInclude,
                    Some(r) => Decision::Continue(GroupState::Auto {
                        preset,
                        state: r.to,
                    }),
                    None => Decision::EndExclude,
                }
            }
            _ => Decision::EndExclude,
        }
    }
}

/// An open record of one stream.
struct Group {
    /// The first line's record; its `text` accumulates the joined lines.
    rec: Record,
    lines: u32,
    state: GroupState,
    /// When the last line was added.
    last_at: Instant,
    /// This record continues one cut at a cap.
    continuation: bool,
}

/// The clock [`Multiline`] reads (injectable so tests are deterministic).
pub type Clock = Box<dyn Fn() -> Instant + Send>;

/// Compiled multi-line settings: built once from [`MultilineConfig`] and shared by the
/// joiner of every file (cloning is cheap: the regexes are behind an `Arc`).
#[derive(Clone)]
pub struct MultilineRules {
    matcher: Arc<Matcher>,
    max_lines: u32,
    max_bytes: usize,
    flush_timeout: Duration,
}

impl MultilineRules {
    /// Compiles `cfg`; same checks and errors as [`MultilineConfig::validate`].
    pub fn new(cfg: &MultilineConfig) -> Result<Self, ConfigError> {
        Ok(MultilineRules {
            matcher: Arc::new(Matcher::new(cfg)?),
            max_lines: cfg.max_lines.min(u32::MAX as usize) as u32,
            max_bytes: cfg.max_bytes,
            flush_timeout: Duration::from_millis(cfg.flush_timeout_ms),
        })
    }
}

/// Per-file multi-line joiner: at most one open record per stream key.
pub struct Multiline {
    matcher: Arc<Matcher>,
    max_lines: u32,
    max_bytes: usize,
    flush_timeout: Duration,
    open: Vec<(String, Group)>,
    clock: Clock,
}

impl Multiline {
    /// Compiles `cfg` (same checks and errors as [`MultilineConfig::validate`]); reads the
    /// system monotonic clock.
    pub fn new(cfg: &MultilineConfig) -> Result<Self, ConfigError> {
        Self::with_clock(cfg, Box::new(Instant::now))
    }

    /// As [`Multiline::new`], reading time from `clock`.
    pub fn with_clock(cfg: &MultilineConfig, clock: Clock) -> Result<Self, ConfigError> {
        Ok(Self::from_rules(&MultilineRules::new(cfg)?, clock))
    }

    /// A joiner for one file from rules compiled once (no regex compiled here).
    pub fn from_rules(rules: &MultilineRules, clock: Clock) -> Self {
        Multiline {
            matcher: rules.matcher.clone(),
            max_lines: rules.max_lines,
            max_bytes: rules.max_bytes,
            flush_timeout: rules.flush_timeout,
            open: Vec::new(),
            clock,
        }
    }

    /// Whether lines are joined at all (`mode` is not `off`).
    pub fn is_enabled(&self) -> bool {
        !matches!(*self.matcher, Matcher::Off)
    }

    /// The configured `flush_timeout_ms`, for [`Multiline::flush_stale`].
    pub fn flush_timeout(&self) -> Duration {
        self.flush_timeout
    }

    /// Offset of the first line of the oldest open record: a checkpoint must not move past
    /// it. `None` when nothing is held.
    pub fn oldest_pending_offset(&self) -> Option<u64> {
        self.open.iter().map(|(_, g)| g.rec.offset).min()
    }

    /// Feeds one record of stream `stream_key` (`"stdout"`, `"stderr"`, or `""`); records
    /// that are complete are pushed to `out`, in order within the stream.
    pub fn push(&mut self, stream_key: &str, rec: Record, out: &mut Vec<Record>) {
        if !self.is_enabled() {
            out.push(rec);
            return;
        }
        let now = (self.clock)();
        let idx = self.open.iter().position(|(s, _)| s == stream_key);
        if rec.parse_error.is_some() || rec.split_part.is_some() || rec.partial {
            // Not a whole line: never joined, and it ends the stream's open record.
            if let Some(i) = idx {
                let (_, g) = self.open.swap_remove(i);
                out.push(finish(g, false));
            }
            out.push(rec);
            return;
        }
        let Some(i) = idx else {
            self.start(stream_key, rec, now, out);
            return;
        };
        match self.matcher.next(self.open[i].1.state, &rec.text) {
            Decision::Continue(state) => {
                if let Some(rec) = self.append(i, rec, now, out) {
                    // Cut at a cap: the rest goes on in a new record, same parser state.
                    self.open_group(stream_key, rec, state, now, true);
                } else {
                    self.open[i].1.state = state;
                }
            }
            Decision::EndInclude => {
                if let Some(rec) = self.append(i, rec, now, out) {
                    let g = Group {
                        rec,
                        lines: 1,
                        state: GroupState::Custom,
                        last_at: now,
                        continuation: true,
                    };
                    out.push(finish(g, false));
                } else {
                    let (_, g) = self.open.swap_remove(i);
                    out.push(finish(g, false));
                }
            }
            Decision::EndExclude => {
                let (_, g) = self.open.swap_remove(i);
                out.push(finish(g, false));
                self.start(stream_key, rec, now, out);
            }
        }
    }

    /// Adds `rec` to open record `i`; when that would pass a cap, ships the open record
    /// (marked truncated), removes it and hands `rec` back.
    fn append(
        &mut self,
        i: usize,
        rec: Record,
        now: Instant,
        out: &mut Vec<Record>,
    ) -> Option<Record> {
        let g = &mut self.open[i].1;
        if g.lines >= self.max_lines || g.rec.text.len() + 1 + rec.text.len() > self.max_bytes {
            let (_, g) = self.open.swap_remove(i);
            out.push(finish(g, true));
            return Some(rec);
        }
        g.rec.text.push('\n');
        g.rec.text.push_str(&rec.text);
        g.lines += 1;
        g.last_at = now;
        None
    }

    /// A line with no open record in its stream: opens one or passes through.
    fn start(&mut self, stream_key: &str, rec: Record, now: Instant, out: &mut Vec<Record>) {
        match self.matcher.open(&rec.text) {
            Some(state) => self.open_group(stream_key, rec, state, now, false),
            None => out.push(rec),
        }
    }

    fn open_group(
        &mut self,
        stream_key: &str,
        rec: Record,
        state: GroupState,
        now: Instant,
        continuation: bool,
    ) {
        let g = Group {
            rec,
            lines: 1,
            state,
            last_at: now,
            continuation,
        };
        self.open.push((stream_key.to_string(), g));
    }

    /// Ships open records whose last line came `timeout` or longer ago (all of them when
    /// `timeout` is zero), oldest first. Call it between reads with
    /// [`Multiline::flush_timeout`].
    pub fn flush_stale(&mut self, timeout: Duration, out: &mut Vec<Record>) {
        let now = (self.clock)();
        let mut stale: Vec<Group> = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            if timeout.is_zero() || now.saturating_duration_since(self.open[i].1.last_at) >= timeout
            {
                stale.push(self.open.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        stale.sort_by_key(|g| g.rec.offset);
        out.extend(stale.into_iter().map(|g| finish(g, false)));
    }

    /// Ships every open record (end of file, shutdown), oldest first.
    pub fn flush_all(&mut self, out: &mut Vec<Record>) {
        self.flush_stale(Duration::ZERO, out);
    }
}

/// The record of a finished group, with its multiline attributes.
fn finish(g: Group, truncated: bool) -> Record {
    let mut rec = g.rec;
    if g.lines > 1 || truncated || g.continuation {
        let attrs: &mut BTreeMap<String, String> = &mut rec.attrs;
        attrs.insert(ATTR_LINES.into(), g.lines.to_string());
        if truncated {
            attrs.insert(ATTR_TRUNCATED.into(), "true".into());
        }
        if g.continuation {
            attrs.insert(ATTR_CONTINUATION.into(), "true".into());
        }
    }
    rec
}

#[cfg(test)]
#[path = "multiline_tests.rs"]
mod tests;
