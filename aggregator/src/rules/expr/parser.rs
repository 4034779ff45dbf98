//! Precedence-climbing parser for the expression subset, with PromQL's precedence
//! (lowest first): `or`; `and` `unless`; comparisons; `+ -`; `* / %`; unary `-`; `^`
//! (right-associative). Type checks run while building the tree, so a rule file with a
//! type error (a range vector compared with a number, a set operator on scalars…) is
//! rejected at load time, at the operator's position.

use super::lexer::{lex, Tok, Token};
use super::{
    AggOp, BinOp, Expr, Grouping, ParseError, RangeFn, Selector, ValueType, VectorMatching,
};
use crate::rules::duration::parse_duration_ms;
use crate::series::{MatchOp, Matcher};

/// Parses and type-checks `src`. Errors carry the line:column inside `src`.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser { src, toks, i: 0 };
    if p.peek() == &Tok::Eof {
        return Err(ParseError::at(src, 0, "empty expression"));
    }
    let e = p.expr(0)?;
    if p.peek() != &Tok::Eof {
        return Err(p.err_here(format!("unexpected {}", describe(p.peek()))));
    }
    Ok(e)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
}

const AGGREGATIONS: &[(&str, AggOp)] = &[
    ("sum", AggOp::Sum),
    ("avg", AggOp::Avg),
    ("min", AggOp::Min),
    ("max", AggOp::Max),
    ("count", AggOp::Count),
];
const UNSUPPORTED_AGGREGATIONS: &[&str] = &[
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier {s:?}"),
        Tok::Number(n) => format!("number {n}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Range(r) => format!("range [{r}]"),
        Tok::Duration(d) => format!("duration {d}"),
        Tok::Eof => "end of expression".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBrace => "'{'".into(),
        Tok::RBrace => "'}'".into(),
        Tok::Comma => "','".into(),
        Tok::Assign => "'='".into(),
        Tok::Ne => "'!='".into(),
        Tok::ReMatch => "'=~'".into(),
        Tok::ReNot => "'!~'".into(),
        Tok::EqEq => "'=='".into(),
        Tok::Lt => "'<'".into(),
        Tok::Le => "'<='".into(),
        Tok::Gt => "'>'".into(),
        Tok::Ge => "'>='".into(),
        Tok::Plus => "'+'".into(),
        Tok::Minus => "'-'".into(),
        Tok::Star => "'*'".into(),
        Tok::Slash => "'/'".into(),
        Tok::Percent => "'%'".into(),
        Tok::Caret => "'^'".into(),
        Tok::At => "'@'".into(),
    }
}

fn binop_of(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Ident(s) if s == "or" => (BinOp::Or, 1),
        Tok::Ident(s) if s == "and" => (BinOp::And, 2),
        Tok::Ident(s) if s == "unless" => (BinOp::Unless, 2),
        Tok::EqEq => (BinOp::Eq, 3),
        Tok::Ne => (BinOp::Ne, 3),
        Tok::Lt => (BinOp::Lt, 3),
        Tok::Le => (BinOp::Le, 3),
        Tok::Gt => (BinOp::Gt, 3),
        Tok::Ge => (BinOp::Ge, 3),
        Tok::Plus => (BinOp::Add, 4),
        Tok::Minus => (BinOp::Sub, 4),
        Tok::Star => (BinOp::Mul, 5),
        Tok::Slash => (BinOp::Div, 5),
        Tok::Percent => (BinOp::Mod, 5),
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }
    fn pos(&self) -> usize {
        self.toks[self.i].pos
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.i].tok.clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn err_at(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.src, pos, msg)
    }
    fn err_here(&self, msg: impl Into<String>) -> ParseError {
        self.err_at(self.pos(), msg)
    }
    fn expect(&mut self, want: Tok, what: &str) -> Result<(), ParseError> {
        if *self.peek() == want {
            self.next();
            Ok(())
        } else {
            Err(self.err_here(format!("expected {what}, found {}", describe(self.peek()))))
        }
    }
    fn is_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == word)
    }

    /// Binary expressions with precedence ≥ `min_prec`.
    fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        while let Some((op, prec)) = binop_of(self.peek()) {
            if prec < min_prec {
                break;
            }
            let op_pos = self.pos();
            self.next();
            let mut return_bool = false;
            if self.is_ident("bool") {
                if !op.is_comparison() {
                    return Err(
                        self.err_here("bool modifier is only allowed on comparison operators")
                    );
                }
                return_bool = true;
                self.next();
            }
            let matching = self.vector_matching()?;
            if self.is_ident("group_left") || self.is_ident("group_right") {
                return Err(self.err_here(
                    "group_left/group_right (many-to-one matching) is not supported; use on/ignoring with one-to-one matching",
                ));
            }
            let rhs = self.expr(prec + 1)?;
            lhs = self.binary(op, return_bool, matching, lhs, rhs, op_pos)?;
        }
        Ok(lhs)
    }

    fn vector_matching(&mut self) -> Result<Option<VectorMatching>, ParseError> {
        if self.is_ident("on") {
            self.next();
            Ok(Some(VectorMatching::On(self.label_list()?)))
        } else if self.is_ident("ignoring") {
            self.next();
            Ok(Some(VectorMatching::Ignoring(self.label_list()?)))
        } else {
            Ok(None)
        }
    }

    fn binary(
        &self,
        op: BinOp,
        return_bool: bool,
        matching: Option<VectorMatching>,
        lhs: Expr,
        rhs: Expr,
        op_pos: usize,
    ) -> Result<Expr, ParseError> {
        let (lt, rt) = (lhs.value_type(), rhs.value_type());
        if lt == ValueType::Matrix || rt == ValueType::Matrix {
            return Err(self.err_at(
                op_pos,
                "binary operators need instant vectors or scalars, not range vectors (wrap the range in a function such as avg_over_time)",
            ));
        }
        let both_scalar = lt == ValueType::Scalar && rt == ValueType::Scalar;
        if op.is_set() && (lt != ValueType::Vector || rt != ValueType::Vector) {
            return Err(self.err_at(
                op_pos,
                "set operators (and, or, unless) need instant vectors on both sides",
            ));
        }
        if op.is_comparison() && both_scalar && !return_bool {
            return Err(self.err_at(
                op_pos,
                "comparisons between scalars must use the bool modifier",
            ));
        }
        if matching.is_some() && (lt != ValueType::Vector || rt != ValueType::Vector) {
            return Err(self.err_at(op_pos, "on/ignoring only apply between two instant vectors"));
        }
        Ok(Expr::Binary {
            op,
            return_bool,
            matching,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Minus | Tok::Plus => {
                let neg = *self.peek() == Tok::Minus;
                let pos = self.pos();
                self.next();
                let e = self.unary()?;
                if e.value_type() == ValueType::Matrix {
                    return Err(self.err_at(pos, "unary minus needs a scalar or an instant vector"));
                }
                Ok(match (neg, e) {
                    (false, e) => e,
                    (true, Expr::Number(n)) => Expr::Number(-n),
                    (true, e) => Expr::Neg(Box::new(e)),
                })
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<Expr, ParseError> {
        let base = self.postfix()?;
        if *self.peek() == Tok::Caret {
            let pos = self.pos();
            self.next();
            let matching = self.vector_matching()?;
            let exp = self.unary()?; // right-associative, binds tighter than unary minus on its left
            return self.binary(BinOp::Pow, false, matching, base, exp, pos);
        }
        Ok(base)
    }

    /// A primary followed by an optional `[range]`, and a rejection of `offset`/`@`.
    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.primary()?;
        if let Tok::Range(raw) = self.peek().clone() {
            let pos = self.pos();
            let Expr::Vector(sel) = e else {
                return Err(self.err_at(
                    pos,
                    "subqueries are not supported: a range [..] may only follow a selector",
                ));
            };
            if raw.contains(':') {
                return Err(self.err_at(pos, "subqueries ([range:step]) are not supported"));
            }
            let ms = parse_duration_ms(&raw)
                .map_err(|m| self.err_at(pos + 1, format!("bad range duration: {m}")))?;
            if ms <= 0 {
                return Err(self.err_at(pos + 1, "range duration must be greater than 0"));
            }
            self.next();
            e = Expr::Matrix(sel, ms);
        }
        if self.is_ident("offset") || *self.peek() == Tok::At {
            return Err(self.err_here("offset and @ modifiers are not supported (alert rules always evaluate at the evaluation time)"));
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let pos = self.pos();
        match self.next() {
            Tok::Number(n) => Ok(Expr::Number(n)),
            Tok::LParen => {
                let e = self.expr(0)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::LBrace => {
                let (name, matchers) = self.matchers(pos)?;
                let Some(metric) = name else {
                    return Err(self.err_at(
                        pos,
                        "a selector needs a metric name (name{...} or {__name__=\"name\", ...})",
                    ));
                };
                Ok(Expr::Vector(Selector { metric, matchers }))
            }
            Tok::Ident(name) => self.after_ident(name, pos),
            Tok::Str(_) => Err(self.err_at(pos, "string literals are not supported here")),
            other => Err(self.err_at(pos, format!("unexpected {}", describe(&other)))),
        }
    }

    fn after_ident(&mut self, name: String, pos: usize) -> Result<Expr, ParseError> {
        if let Some((_, op)) = AGGREGATIONS.iter().find(|(n, _)| *n == name) {
            if matches!(self.peek(), Tok::LParen) || self.is_ident("by") || self.is_ident("without")
            {
                return self.aggregation(*op, pos);
            }
        }
        if UNSUPPORTED_AGGREGATIONS.contains(&name.as_str())
            && matches!(self.peek(), Tok::LParen | Tok::Ident(_))
        {
            return Err(self.err_at(
                pos,
                format!(
                    "aggregation {name:?} is not supported (supported: sum, avg, min, max, count)"
                ),
            ));
        }
        if *self.peek() == Tok::LParen {
            return self.call(&name, pos);
        }
        if matches!(
            name.as_str(),
            "and" | "or" | "unless" | "by" | "without" | "on" | "ignoring" | "bool" | "offset"
        ) {
            return Err(self.err_at(pos, format!("unexpected keyword {name:?}")));
        }
        let mut matchers = Vec::new();
        if *self.peek() == Tok::LBrace {
            let bpos = self.pos();
            self.next();
            let (n2, m) = self.matchers(bpos)?;
            if n2.is_some() {
                return Err(self.err_at(
                    bpos,
                    "metric name given twice (both before the braces and as __name__)",
                ));
            }
            matchers = m;
        }
        Ok(Expr::Vector(Selector {
            metric: name,
            matchers,
        }))
    }

    /// Label matchers after `{` up to `}`. Returns a `__name__="x"` matcher separately.
    fn matchers(&mut self, open: usize) -> Result<(Option<String>, Vec<Matcher>), ParseError> {
        let mut name = None;
        let mut out = Vec::new();
        loop {
            if *self.peek() == Tok::RBrace {
                self.next();
                break;
            }
            let lpos = self.pos();
            let Tok::Ident(label) = self.next() else {
                return Err(self.err_at(lpos, "expected a label name or '}'"));
            };
            let opos = self.pos();
            let op = match self.next() {
                Tok::Assign => MatchOp::Equal,
                Tok::Ne => MatchOp::NotEqual,
                Tok::ReMatch => MatchOp::Regex,
                Tok::ReNot => MatchOp::NotRegex,
                t => {
                    return Err(self.err_at(
                        opos,
                        format!(
                            "expected =, !=, =~ or !~ after label {label:?}, found {}",
                            describe(&t)
                        ),
                    ))
                }
            };
            let vpos = self.pos();
            let Tok::Str(value) = self.next() else {
                return Err(self.err_at(vpos, "expected a quoted label value"));
            };
            if label == "__name__" {
                if op != MatchOp::Equal || name.is_some() {
                    return Err(self.err_at(lpos, "__name__ may only be matched once, with ="));
                }
                name = Some(value);
            } else {
                let m = Matcher::new(&label, op, &value)
                    .map_err(|e| self.err_at(vpos, format!("invalid regex: {e}")))?;
                out.push(m);
            }
            match self.peek() {
                Tok::Comma => {
                    self.next();
                }
                Tok::RBrace => {}
                _ => return Err(self.err_here("expected ',' or '}' in label matchers")),
            }
        }
        let _ = open;
        Ok((name, out))
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(Tok::LParen, "'(' and a list of label names")?;
        let mut out = Vec::new();
        loop {
            match self.next() {
                Tok::RParen => break,
                Tok::Ident(l) => {
                    out.push(l);
                    match self.peek() {
                        Tok::Comma => {
                            self.next();
                        }
                        Tok::RParen => {}
                        _ => return Err(self.err_here("expected ',' or ')' in label list")),
                    }
                }
                t => {
                    let p = self.toks[self.i - 1].pos;
                    return Err(
                        self.err_at(p, format!("expected a label name, found {}", describe(&t)))
                    );
                }
            }
        }
        Ok(out)
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        if self.is_ident("by") {
            self.next();
            Ok(Some(Grouping::By(self.label_list()?)))
        } else if self.is_ident("without") {
            self.next();
            Ok(Some(Grouping::Without(self.label_list()?)))
        } else {
            Ok(None)
        }
    }

    fn aggregation(&mut self, op: AggOp, pos: usize) -> Result<Expr, ParseError> {
        let mut grouping = self.grouping()?;
        self.expect(Tok::LParen, "'(' after the aggregation")?;
        let apos = self.pos();
        let e = self.expr(0)?;
        if *self.peek() == Tok::Comma {
            return Err(self.err_here("this aggregation takes a single argument"));
        }
        self.expect(Tok::RParen, "')'")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        } else if self.is_ident("by") || self.is_ident("without") {
            return Err(self.err_here("grouping given twice"));
        }
        if e.value_type() != ValueType::Vector {
            return Err(self.err_at(
                apos,
                format!(
                    "aggregations need an instant vector, found a {}",
                    e.value_type()
                ),
            ));
        }
        let _ = pos;
        Ok(Expr::Aggregate {
            op,
            grouping,
            expr: Box::new(e),
        })
    }

    fn call(&mut self, name: &str, pos: usize) -> Result<Expr, ParseError> {
        let Some(func) = RangeFn::from_name(name) else {
            return Err(self.err_at(
                pos,
                format!("unsupported function {name:?} (supported: avg_over_time, min_over_time, max_over_time, sum_over_time, count_over_time, quantile_over_time, rate, increase)"),
            ));
        };
        self.next(); // (
        let mut args = Vec::new();
        loop {
            let apos = self.pos();
            args.push((apos, self.expr(0)?));
            match self.next() {
                Tok::Comma => continue,
                Tok::RParen => break,
                t => {
                    let p = self.toks[self.i - 1].pos;
                    return Err(self.err_at(
                        p,
                        format!(
                            "expected ',' or ')' in call to {name}, found {}",
                            describe(&t)
                        ),
                    ));
                }
            }
        }
        let want = if func == RangeFn::QuantileOverTime {
            2
        } else {
            1
        };
        if args.len() != want {
            return Err(self.err_at(
                pos,
                format!("{name} takes {want} argument(s), got {}", args.len()),
            ));
        }
        let (mpos, arg) = args.pop().expect("checked length");
        if arg.value_type() != ValueType::Matrix {
            return Err(self.err_at(
                mpos,
                format!(
                    "{name} needs a range vector such as metric[5m], found a {}",
                    arg.value_type()
                ),
            ));
        }
        let param = match args.pop() {
            Some((ppos, p)) => {
                if p.value_type() != ValueType::Scalar {
                    return Err(
                        self.err_at(ppos, format!("{name}'s first argument must be a scalar"))
                    );
                }
                Some(Box::new(p))
            }
            None => None,
        };
        Ok(Expr::Call {
            func,
            param,
            arg: Box::new(arg),
        })
    }
}
