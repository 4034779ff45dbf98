//! The alert expression language: a documented subset of PromQL (see
//! `docs/alert-rules.md`), parsed by our own small parser so every error carries the exact
//! line:column inside the expression and every unsupported construct (subqueries,
//! `offset`, `@`, `group_left`, unsupported functions) is rejected at load time.
//!
//! Files:
//! - `mod.rs`: the AST ([`Expr`]), value types, [`ParseError`].
//! - `lexer.rs`: tokens with byte positions.
//! - `parser.rs`: precedence-climbing parser and type checks ([`parse`]).

mod lexer;
mod parser;

pub use parser::parse;

use crate::series::Matcher;

/// What an expression evaluates to (PromQL's value types, minus strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// A single number.
    Scalar,
    /// An instant vector: one value per label set.
    Vector,
    /// A range vector (`selector[5m]`): only valid as a range function's argument.
    Matrix,
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
        })
    }
}

/// A binary operator, by PromQL precedence group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^`
    Pow,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `and`
    And,
    /// `or`
    Or,
    /// `unless`
    Unless,
}

impl BinOp {
    /// Whether this is a comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`).
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }
    /// Whether this is a set operator (`and`, `or`, `unless`).
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
}

/// Label matching of a vector/vector binary operation: `on (a, b)` or `ignoring (a, b)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VectorMatching {
    /// Match on these labels only.
    On(Vec<String>),
    /// Match on all labels except these (and `__name__`).
    Ignoring(Vec<String>),
}

/// An aggregation operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `count`
    Count,
}

/// Grouping of an aggregation: `by (...)` keeps only these labels, `without (...)` drops
/// them (and `__name__`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// `by (labels)`
    By(Vec<String>),
    /// `without (labels)`
    Without(Vec<String>),
}

/// A supported range function (argument: a range selector; `quantile_over_time` also
/// takes φ first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    /// `avg_over_time`
    AvgOverTime,
    /// `min_over_time`
    MinOverTime,
    /// `max_over_time`
    MaxOverTime,
    /// `sum_over_time`
    SumOverTime,
    /// `count_over_time`
    CountOverTime,
    /// `quantile_over_time(φ, m[r])`
    QuantileOverTime,
    /// `rate`: per-second increase of a counter, extrapolated (Prometheus'
    /// `extrapolatedRate`).
    Rate,
    /// `increase`: `rate` × range seconds.
    Increase,
}

impl RangeFn {
    /// The function's PromQL name.
    pub fn name(self) -> &'static str {
        match self {
            RangeFn::AvgOverTime => "avg_over_time",
            RangeFn::MinOverTime => "min_over_time",
            RangeFn::MaxOverTime => "max_over_time",
            RangeFn::SumOverTime => "sum_over_time",
            RangeFn::CountOverTime => "count_over_time",
            RangeFn::QuantileOverTime => "quantile_over_time",
            RangeFn::Rate => "rate",
            RangeFn::Increase => "increase",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<RangeFn> {
        [
            RangeFn::AvgOverTime,
            RangeFn::MinOverTime,
            RangeFn::MaxOverTime,
            RangeFn::SumOverTime,
            RangeFn::CountOverTime,
            RangeFn::QuantileOverTime,
            RangeFn::Rate,
            RangeFn::Increase,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
}

/// A selector: metric name plus label matchers (`error_rate{service="checkout"}`).
#[derive(Clone, Debug)]
pub struct Selector {
    /// The metric name (from the leading identifier or a `__name__="…"` matcher).
    pub metric: String,
    /// The other matchers.
    pub matchers: Vec<Matcher>,
}

/// A parsed, type-checked expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// A number literal.
    Number(f64),
    /// An instant selector: newest sample within the lookback.
    Vector(Selector),
    /// A range selector: samples in `(ts - range_ms, ts]`.
    Matrix(Selector, i64),
    /// `-expr`
    Neg(Box<Expr>),
    /// A binary operation.
    Binary {
        /// Operator.
        op: BinOp,
        /// `bool` modifier of comparisons (0/1 instead of filtering).
        return_bool: bool,
        /// `on`/`ignoring`.
        matching: Option<VectorMatching>,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// An aggregation over an instant vector.
    Aggregate {
        /// Operator.
        op: AggOp,
        /// `by`/`without` (none: aggregate everything into one element with no labels).
        grouping: Option<Grouping>,
        /// The aggregated expression.
        expr: Box<Expr>,
    },
    /// A range function call; `param` is φ for `quantile_over_time`.
    Call {
        /// Function.
        func: RangeFn,
        /// φ (quantile_over_time only), a scalar expression.
        param: Option<Box<Expr>>,
        /// The range selector argument.
        arg: Box<Expr>,
    },
}

impl Expr {
    /// The expression's value type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::Number(_) => ValueType::Scalar,
            Expr::Vector(_) | Expr::Aggregate { .. } | Expr::Call { .. } => ValueType::Vector,
            Expr::Matrix(..) => ValueType::Matrix,
            Expr::Neg(e) => e.value_type(),
            Expr::Binary { lhs, rhs, .. } => {
                if lhs.value_type() == ValueType::Scalar && rhs.value_type() == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
        }
    }
}

/// A parse or type error: message and 1-based line:column inside the expression text
/// (columns count characters).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    /// 1-based line inside the expression.
    pub line: usize,
    /// 1-based column (characters) inside that line.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(src: &str, byte_pos: usize, message: impl Into<String>) -> Self {
        let pos = byte_pos.min(src.len());
        let before = &src[..pos];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }
}
