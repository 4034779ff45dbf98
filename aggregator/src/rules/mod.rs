//! Alert rules (issue 4): Prometheus-shaped rule files, a PromQL subset over the rollups,
//! the Prometheus alert state machine with state that survives restarts, templated labels
//! and annotations, and the manager that evaluates groups on their interval and hands out
//! [`crate::alert::Alert`]s. User documentation: `docs/alert-rules.md`.
//!
//! Files:
//! - `duration.rs`: Prometheus durations (`30s`, `1h30m`).
//! - `expr/`: the expression language: AST, lexer, parser with line:column errors.
//! - `eval.rs`: instant evaluation over a [`crate::series::SeriesSource`].
//! - `template.rs`: `{{ $labels.x }}` / `{{ $value }}` templates, parsed at load time.
//! - `file.rs`: rule files (YAML), validation with file:line:column errors.
//! - `state.rs`: the per-rule alert state machine (`rules/alerting.go` semantics) and the
//!   persisted state file.
//! - `manager.rs`: [`RuleManager`]: scheduling, reload, persistence, delivery.
//! - `round_cache.rs`: [`round_cache::RoundCache`], each distinct series read once per
//!   evaluation round.
//! - `tests.rs`: the in-memory `SeriesSource` fixture; parser, file and evaluator tests.
//! - `state_tests.rs`: state-machine property tests (reference model, restarts) and
//!   manager tests through real files.

pub mod duration;
pub mod eval;
pub mod expr;
pub mod file;
pub mod manager;
pub mod round_cache;
pub mod state;
pub mod template;

pub use eval::{eval, eval_with, EvalError, EvalOptions};
pub use expr::{parse, Expr, ParseError};
pub use file::{load_file, parse_rule_file, AlertingRule, RuleFileError, RuleGroup};
pub use manager::{
    Clock, ManualClock, RuleManager, RuleManagerConfig, RuleManagerError, SystemClock,
};
pub use state::{ActiveAlert, AlertState, RuleState, StateFile};
pub use template::{Template, TemplateError};
#[cfg(test)]
mod state_tests;
#[cfg(test)]
pub(crate) mod tests;
