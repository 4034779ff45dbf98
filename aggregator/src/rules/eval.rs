//! Instant evaluation of an [`Expr`] at one timestamp over a [`SeriesSource`], with
//! PromQL semantics (Prometheus `promql/engine.go` and `functions.go`) for the supported
//! subset.
//!
//! Differences from Prometheus, on purpose:
//! - Instant selectors look back [`EvalOptions::lookback_ms`] (default 1 min, not 5 min):
//!   rollups land every 10 s, and an alert must resolve soon after the load that caused
//!   it stops; with 5 min a series that stopped reporting would keep its last value (and
//!   keep an alert firing) for 5 minutes.
//! - `quantile_over_time` on a sketch-backed metric (`request_latency_seconds`) merges the
//!   sketches through [`SeriesSource::quantile`]; other metrics use the sample values,
//!   with Prometheus' interpolation.

use std::collections::{BTreeMap, HashMap};

use super::expr::{AggOp, BinOp, Expr, Grouping, RangeFn, Selector, VectorMatching};
use crate::series::{Labels, Sample, SeriesSource};

/// One element of an instant vector: labels (with `__name__` while the metric name is
/// kept) and value.
pub type Element = (Labels, f64);

/// Evaluation settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    /// How far back an instant selector looks for the newest sample, ms (default 60 000).
    pub lookback_ms: i64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            lookback_ms: 60_000,
        }
    }
}

/// Why an evaluation failed (data-dependent errors; syntax and types are checked at
/// load time).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// One-to-one matching found several series with the same matching labels on one side
    /// (PromQL: "found duplicate series for the match group").
    #[error("found duplicate series for the match group {0} on the {1} side of the operation (use on/ignoring to make the match unique)")]
    DuplicateMatch(String, &'static str),
    /// The result would hold two elements with the same label set (e.g. after a function
    /// dropped `__name__`).
    #[error("vector cannot contain metrics with the same labelset {0}")]
    DuplicateLabelset(String),
    /// The expression evaluates to a scalar where an instant vector is required.
    #[error("expression evaluates to a scalar, not an instant vector")]
    ScalarResult,
}

enum Value {
    Scalar(f64),
    Vector(Vec<Element>),
}

/// Evaluates `expr` at `ts_ms` with the default [`EvalOptions`]. The result is an
/// instant vector; a scalar-only expression gives [`EvalError::ScalarResult`] (rule files
/// reject those at load time).
pub fn eval(expr: &Expr, source: &dyn SeriesSource, ts_ms: i64) -> Result<Vec<Element>, EvalError> {
    eval_with(expr, source, ts_ms, &EvalOptions::default())
}

/// [`eval`] with explicit options.
pub fn eval_with(
    expr: &Expr,
    source: &dyn SeriesSource,
    ts_ms: i64,
    opts: &EvalOptions,
) -> Result<Vec<Element>, EvalError> {
    let ev = Evaluator {
        source,
        ts: ts_ms,
        opts,
    };
    match ev.eval(expr)? {
        Value::Vector(v) => Ok(v),
        Value::Scalar(_) => Err(EvalError::ScalarResult),
    }
}

struct Evaluator<'a> {
    source: &'a dyn SeriesSource,
    ts: i64,
    opts: &'a EvalOptions,
}

fn labels_string(l: &Labels) -> String {
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn drop_name(mut l: Labels) -> Labels {
    l.remove("__name__");
    l
}

impl Evaluator<'_> {
    fn eval(&self, e: &Expr) -> Result<Value, EvalError> {
        Ok(match e {
            Expr::Number(n) => Value::Scalar(*n),
            Expr::Vector(sel) => Value::Vector(self.instant(sel)),
            Expr::Matrix(..) => {
                unreachable!("type-checked: range vectors only appear as function arguments")
            }
            Expr::Neg(inner) => match self.eval(inner)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(v) => {
                    Value::Vector(v.into_iter().map(|(l, x)| (drop_name(l), -x)).collect())
                }
            },
            Expr::Call { func, param, arg } => {
                let Expr::Matrix(sel, range) = arg.as_ref() else {
                    unreachable!("type-checked: range functions take a range selector")
                };
                let phi = match param {
                    Some(p) => match self.eval(p)? {
                        Value::Scalar(v) => Some(v),
                        Value::Vector(_) => unreachable!("type-checked: φ is a scalar"),
                    },
                    None => None,
                };
                Value::Vector(self.range_fn(*func, phi, sel, *range)?)
            }
            Expr::Aggregate { op, grouping, expr } => {
                let Value::Vector(v) = self.eval(expr)? else {
                    unreachable!("type-checked: aggregations take a vector")
                };
                Value::Vector(aggregate(*op, grouping.as_ref(), v))
            }
            Expr::Binary {
                op,
                return_bool,
                matching,
                lhs,
                rhs,
            } => {
                let l = self.eval(lhs)?;
                let r = self.eval(rhs)?;
                binary(*op, *return_bool, matching.as_ref(), l, r)?
            }
        })
    }

    /// Newest sample in `(ts - lookback, ts]` per series.
    fn instant(&self, sel: &Selector) -> Vec<Element> {
        self.source
            .select(
                &sel.metric,
                &sel.matchers,
                self.ts - self.opts.lookback_ms,
                self.ts,
            )
            .into_iter()
            .filter_map(|s| {
                let last = s.samples.iter().rfind(|x| x.ts_ms <= self.ts)?;
                let mut labels = s.labels;
                labels.insert("__name__".into(), sel.metric.clone());
                Some((labels, last.value))
            })
            .collect()
    }

    fn range_fn(
        &self,
        func: RangeFn,
        phi: Option<f64>,
        sel: &Selector,
        range: i64,
    ) -> Result<Vec<Element>, EvalError> {
        let start = self.ts - range;
        if func == RangeFn::QuantileOverTime {
            let q = phi.unwrap_or(f64::NAN);
            let sketched = self
                .source
                .quantile(&sel.metric, &sel.matchers, q, start, self.ts);
            if !sketched.is_empty() {
                return unique(
                    sketched
                        .into_iter()
                        .map(|(l, v)| (drop_name(l), v))
                        .collect(),
                );
            }
        }
        let mut out = Vec::new();
        for s in self
            .source
            .select(&sel.metric, &sel.matchers, start, self.ts)
        {
            let samples: Vec<Sample> = s
                .samples
                .into_iter()
                .filter(|x| x.ts_ms > start && x.ts_ms <= self.ts)
                .collect();
            if samples.is_empty() {
                continue;
            }
            let vals = samples.iter().map(|x| x.value);
            let v = match func {
                RangeFn::AvgOverTime => Some(kahan_sum(vals) / samples.len() as f64),
                RangeFn::SumOverTime => Some(kahan_sum(vals)),
                RangeFn::CountOverTime => Some(samples.len() as f64),
                RangeFn::MinOverTime => {
                    Some(vals.fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }))
                }
                RangeFn::MaxOverTime => {
                    Some(vals.fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }))
                }
                RangeFn::QuantileOverTime => {
                    Some(quantile(phi.unwrap_or(f64::NAN), vals.collect()))
                }
                RangeFn::Rate => extrapolated_rate(&samples, start, self.ts, true),
                RangeFn::Increase => extrapolated_rate(&samples, start, self.ts, false),
            };
            if let Some(v) = v {
                out.push((drop_name(s.labels), v));
            }
        }
        unique(out)
    }
}

fn unique(v: Vec<Element>) -> Result<Vec<Element>, EvalError> {
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for (l, _) in &v {
        if !seen.insert(l) {
            return Err(EvalError::DuplicateLabelset(labels_string(l)));
        }
    }
    Ok(v)
}

fn kahan_sum(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for v in vals {
        let t = sum + v;
        if sum.abs() >= v.abs() {
            c += (sum - t) + v;
        } else {
            c += (v - t) + sum;
        }
        sum = t;
    }
    if (sum + c).is_nan() && !sum.is_nan() {
        sum
    } else {
        sum + c
    }
}

/// φ-quantile with linear interpolation between ranks, as Prometheus' `quantile`
/// (`promql/quantile.go`): φ < 0 → -Inf, φ > 1 → +Inf, NaN φ → NaN.
fn quantile(q: f64, mut vals: Vec<f64>) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| a.total_cmp(b));
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0) as usize;
    let upper = (rank.floor() + 1.0).min(n - 1.0) as usize;
    let weight = rank - rank.floor();
    vals[lower] * (1.0 - weight) + vals[upper] * weight
}

/// Prometheus' `extrapolatedRate` (`promql/functions.go`) for counters: the increase over
/// the samples (counter resets add the value before the reset), extrapolated to the range
/// edges when the first/last sample is within 1.1 × the average sample interval of them
/// (else by half an interval), and not below zero at the start. `per_second` divides by the
/// range seconds (`rate`), otherwise `increase`. Needs ≥ 2 samples.
fn extrapolated_rate(
    s: &[Sample],
    range_start: i64,
    range_end: i64,
    per_second: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (first, last) = (s[0], s[s.len() - 1]);
    let mut result = last.value - first.value;
    for w in s.windows(2) {
        if w[1].value < w[0].value {
            result += w[0].value;
        }
    }
    let mut to_start = (first.ts_ms - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last.ts_ms) as f64 / 1000.0;
    let sampled = (last.ts_ms - first.ts_ms) as f64 / 1000.0;
    let avg = sampled / (s.len() - 1) as f64;
    if result > 0.0 && first.value >= 0.0 {
        let to_zero = sampled * (first.value / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if per_second {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

fn group_key(labels: &Labels, grouping: Option<&Grouping>) -> Labels {
    match grouping {
        None => Labels::new(),
        Some(Grouping::By(names)) => labels
            .iter()
            .filter(|(k, _)| names.iter().any(|n| n == *k) && *k != "__name__")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(Grouping::Without(names)) => labels
            .iter()
            .filter(|(k, _)| !names.iter().any(|n| n == *k) && *k != "__name__")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// `sum/avg/min/max/count [by|without (…)] (v)`; the metric name is dropped. NaN is
/// skipped by min/max unless all values are NaN, as Prometheus.
fn aggregate(op: AggOp, grouping: Option<&Grouping>, v: Vec<Element>) -> Vec<Element> {
    let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
    for (l, x) in v {
        groups.entry(group_key(&l, grouping)).or_default().push(x);
    }
    groups
        .into_iter()
        .map(|(l, xs)| {
            let n = xs.len() as f64;
            let v = match op {
                AggOp::Sum => kahan_sum(xs.into_iter()),
                AggOp::Avg => kahan_sum(xs.into_iter()) / n,
                AggOp::Count => n,
                AggOp::Min => {
                    xs.into_iter()
                        .fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a })
                }
                AggOp::Max => {
                    xs.into_iter()
                        .fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a })
                }
            };
            (l, v)
        })
        .collect()
}

/// Applies an arithmetic or comparison operator; comparisons give `Some(lhs)` when true
/// (or 1/0 with `bool`) and `None` to filter the element out.
fn apply(op: BinOp, l: f64, r: f64, return_bool: bool) -> Option<f64> {
    let cmp = |b: bool| {
        if return_bool {
            Some(if b { 1.0 } else { 0.0 })
        } else if b {
            Some(l)
        } else {
            None
        }
    };
    match op {
        BinOp::Add => Some(l + r),
        BinOp::Sub => Some(l - r),
        BinOp::Mul => Some(l * r),
        BinOp::Div => Some(l / r),
        BinOp::Mod => Some(l % r),
        BinOp::Pow => Some(l.powf(r)),
        BinOp::Eq => cmp(l == r),
        BinOp::Ne => cmp(l != r),
        BinOp::Lt => cmp(l < r),
        BinOp::Le => cmp(l <= r),
        BinOp::Gt => cmp(l > r),
        BinOp::Ge => cmp(l >= r),
        BinOp::And | BinOp::Or | BinOp::Unless => {
            unreachable!("set operators are handled separately")
        }
    }
}

fn signature(l: &Labels, matching: Option<&VectorMatching>) -> Labels {
    match matching {
        Some(VectorMatching::On(names)) => l
            .iter()
            .filter(|(k, _)| names.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(VectorMatching::Ignoring(names)) => l
            .iter()
            .filter(|(k, _)| *k != "__name__" && !names.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => l
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn binary(
    op: BinOp,
    return_bool: bool,
    matching: Option<&VectorMatching>,
    l: Value,
    r: Value,
) -> Result<Value, EvalError> {
    // Arithmetic and `bool` comparisons drop the metric name; filtering comparisons keep it.
    let keep_name = op.is_comparison() && !return_bool;
    let name = |lab: Labels| if keep_name { lab } else { drop_name(lab) };
    Ok(match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(apply(op, a, b, true).unwrap_or(0.0)),
        (Value::Vector(v), Value::Scalar(s)) => Value::Vector(
            v.into_iter()
                .filter_map(|(lab, x)| apply(op, x, s, return_bool).map(|y| (name(lab), y)))
                .collect(),
        ),
        (Value::Scalar(s), Value::Vector(v)) => Value::Vector(
            v.into_iter()
                .filter_map(|(lab, x)| {
                    // `5 < foo` keeps foo's value when filtering (the vector side's value).
                    let y = apply(op, s, x, return_bool)?;
                    Some((
                        name(lab),
                        if op.is_comparison() && !return_bool {
                            x
                        } else {
                            y
                        },
                    ))
                })
                .collect(),
        ),
        (Value::Vector(a), Value::Vector(b)) if op.is_set() => {
            Value::Vector(set_op(op, matching, a, b))
        }
        (Value::Vector(a), Value::Vector(b)) => {
            let mut rhs: HashMap<Labels, f64> = HashMap::with_capacity(b.len());
            for (lab, x) in b {
                let sig = signature(&lab, matching);
                if rhs.insert(sig.clone(), x).is_some() {
                    return Err(EvalError::DuplicateMatch(labels_string(&sig), "right"));
                }
            }
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for (lab, x) in a {
                let sig = signature(&lab, matching);
                let Some(&y) = rhs.get(&sig) else { continue };
                if !seen.insert(sig.clone()) {
                    return Err(EvalError::DuplicateMatch(labels_string(&sig), "left"));
                }
                let Some(z) = apply(op, x, y, return_bool) else {
                    continue;
                };
                let lab = match matching {
                    // As Prometheus' resultMetric for one-to-one matching.
                    Some(VectorMatching::On(names)) => name(lab)
                        .into_iter()
                        .filter(|(k, _)| names.contains(k))
                        .collect(),
                    Some(VectorMatching::Ignoring(names)) => name(lab)
                        .into_iter()
                        .filter(|(k, _)| !names.contains(k))
                        .collect(),
                    None => name(lab),
                };
                out.push((lab, z));
            }
            Value::Vector(out)
        }
    })
}

fn set_op(
    op: BinOp,
    matching: Option<&VectorMatching>,
    a: Vec<Element>,
    b: Vec<Element>,
) -> Vec<Element> {
    let rsigs: std::collections::HashSet<Labels> =
        b.iter().map(|(l, _)| signature(l, matching)).collect();
    match op {
        BinOp::And => a
            .into_iter()
            .filter(|(l, _)| rsigs.contains(&signature(l, matching)))
            .collect(),
        BinOp::Unless => a
            .into_iter()
            .filter(|(l, _)| !rsigs.contains(&signature(l, matching)))
            .collect(),
        BinOp::Or => {
            let lsigs: std::collections::HashSet<Labels> =
                a.iter().map(|(l, _)| signature(l, matching)).collect();
            let mut out = a;
            out.extend(
                b.into_iter()
                    .filter(|(l, _)| !lsigs.contains(&signature(l, matching))),
            );
            out
        }
        _ => unreachable!("only set operators"),
    }
}
