//! Templates for alert labels and annotations, the subset of Go `text/template` that
//! Prometheus rules use (`rules/alerting.go` expands them with `$labels`, `$value`):
//!
//! - `{{ $labels.service }}` (spaces optional; a missing label is empty), `{{ $value }}`,
//!   `{{ $labels }}` (the label set as `{a="b", …}`);
//! - functions `humanize`, `humanizePercentage`, `printf "%.2f" $value`, `toUpper`,
//!   `toLower`, and pipelines (`{{ $value | humanize }}`, `{{ $value | printf "%.1f" }}`);
//! - `{{-` / `-}}` trim the whitespace before/after the action.
//!
//! Templates are parsed when rule files load; anything else (`{{ if … }}`, unknown
//! functions or variables, unclosed `{{`) is a load-time [`TemplateError`] with the
//! line:column inside the template.

use crate::series::Labels;

/// A template parse error: 1-based line:column inside the template text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct TemplateError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

fn err(src: &str, pos: usize, message: impl Into<String>) -> TemplateError {
    let e = super::expr::ParseError::at(src, pos, message);
    TemplateError {
        line: e.line,
        column: e.column,
        message: e.message,
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Arg {
    Value,
    Labels,
    Label(String),
    Str(String),
    Num(f64),
}

#[derive(Clone, Debug, PartialEq)]
enum Func {
    Humanize,
    HumanizePercentage,
    Printf,
    ToUpper,
    ToLower,
}

#[derive(Clone, Debug, PartialEq)]
enum Command {
    Arg(Arg),
    Call(Func, Vec<Arg>),
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Text(String),
    Action(Vec<Command>),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// A value flowing through a pipeline.
#[derive(Clone, Debug)]
enum Val {
    Num(f64),
    Str(String),
}

impl Val {
    fn to_text(&self) -> String {
        match self {
            Val::Num(n) => format_value(*n),
            Val::Str(s) => s.clone(),
        }
    }
}

/// `{{ $value }}` formatting: Go's `%v` of a float64 for ordinary magnitudes (shortest
/// representation: `0.05`, `95`, `1e+21`), `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v != 0.0 && (v.abs() >= 1e21 || v.abs() < 1e-4) {
        let s = format!("{v:e}");
        go_exponent(&s)
    } else {
        format!("{v}")
    }
}

/// Rust's `1.5e-7` → Go's `1.5e-07`.
fn go_exponent(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e.trim_start_matches('+')),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s.to_string(),
    }
}

/// Go's `%.{prec}g` (trailing zeros removed, exponent when exp < -4 or ≥ prec).
pub fn format_g(v: f64, prec: usize) -> String {
    if !v.is_finite() {
        return format_value(v);
    }
    if v == 0.0 {
        return "0".into();
    }
    let prec = prec.max(1);
    let e = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = e.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if exp < -4 || exp >= prec as i32 {
        go_exponent(&format!("{}e{}", trim(mant.to_string()), exp))
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(format!("{v:.decimals$}"))
    }
}

/// Prometheus' `humanize`: SI prefixes (k, M, G, … / m, u, n, …) with `%.4g`.
pub fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_g(v, 4);
    }
    if v.abs() >= 1.0 {
        let mut x = v;
        for prefix in ["", "k", "M", "G", "T", "P", "E", "Z"] {
            if x.abs() < 1000.0 {
                return format!("{}{prefix}", format_g(x, 4));
            }
            x /= 1000.0;
        }
        format!("{}Y", format_g(x, 4))
    } else {
        let mut x = v;
        for prefix in ["", "m", "u", "n", "p", "f", "a", "z"] {
            if x.abs() >= 1.0 {
                return format!("{}{prefix}", format_g(x, 4));
            }
            x *= 1000.0;
        }
        format!("{}y", format_g(x, 4))
    }
}

/// Go-style `printf` for the verbs rules use: `%v %s %d %f %.Nf %g %.Ng %e %%`.
fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut args = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = String::new();
            while let Some(d) = it.peek().filter(|d| d.is_ascii_digit()) {
                p.push(*d);
                it.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let num = match arg {
            Val::Num(n) => Some(*n),
            Val::Str(s) => s.trim().parse::<f64>().ok(),
        };
        match (verb, num) {
            ('f' | 'F', Some(n)) => out.push_str(&format!("{n:.*}", prec.unwrap_or(6))),
            ('e', Some(n)) => out.push_str(&go_exponent(&format!("{n:.*e}", prec.unwrap_or(6)))),
            ('g', Some(n)) => {
                out.push_str(&prec.map_or_else(|| format_value(n), |p| format_g(n, p)))
            }
            ('d', Some(n)) => out.push_str(&format!("{}", n.trunc() as i64)),
            ('s' | 'v', _) => out.push_str(&arg.to_text()),
            _ => out.push_str(&format!("%!{verb}({})", arg.to_text())),
        }
    }
    out
}

impl Template {
    /// Parses `src`. Errors: unclosed `{{`, unsupported actions, unknown functions or
    /// variables, each with its line:column in `src`.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut rest_start = 0;
        let mut trim_next = false;
        while let Some(open_rel) = src[rest_start..].find("{{") {
            let open = rest_start + open_rel;
            let mut text = &src[rest_start..open];
            if trim_next {
                text = text.trim_start();
            }
            let mut inner_start = open + 2;
            if src[inner_start..].starts_with('-')
                && src[inner_start + 1..].starts_with(char::is_whitespace)
            {
                text = text.trim_end();
                inner_start += 1;
            }
            if !text.is_empty() {
                segments.push(Segment::Text(text.to_string()));
            }
            let Some(close_rel) = find_close(&src[inner_start..]) else {
                return Err(err(src, open, "unclosed action: missing '}}'"));
            };
            let mut inner_end = inner_start + close_rel;
            trim_next = false;
            if src[..inner_end].ends_with('-')
                && src[..inner_end - 1].ends_with(char::is_whitespace)
            {
                inner_end -= 1;
                trim_next = true;
            }
            segments.push(Segment::Action(parse_pipeline(
                src,
                inner_start,
                inner_end,
            )?));
            rest_start = inner_start + close_rel + 2;
        }
        let mut text = &src[rest_start..];
        if trim_next {
            text = text.trim_start();
        }
        if let Some(p) = text.find("}}") {
            return Err(err(src, rest_start + p, "unexpected '}}' without '{{'"));
        }
        if !text.is_empty() {
            segments.push(Segment::Text(text.to_string()));
        }
        Ok(Template { segments })
    }

    /// Expands the template for one alert: its labels (without `__name__`) and value.
    pub fn expand(&self, labels: &Labels, value: f64) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Text(t) => out.push_str(t),
                Segment::Action(cmds) => {
                    let mut cur: Option<Val> = None;
                    for c in cmds {
                        cur = Some(run(c, cur.take(), labels, value));
                    }
                    if let Some(v) = cur {
                        out.push_str(&v.to_text());
                    }
                }
            }
        }
        out
    }

    /// Whether the template is plain text (no actions).
    pub fn is_static(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Text(_)))
    }
}

/// Finds the closing `}}` of an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) if b[i] == b'\\' && q == b'"' => i += 1,
            Some(q) if b[i] == q => quote = None,
            Some(_) => {}
            None if b[i] == b'"' || b[i] == b'`' => quote = Some(b[i]),
            None if b[i] == b'}' && b.get(i + 1) == Some(&b'}') => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

fn arg_val(a: &Arg, labels: &Labels, value: f64) -> Val {
    match a {
        Arg::Value => Val::Num(value),
        Arg::Label(n) => Val::Str(labels.get(n).cloned().unwrap_or_default()),
        Arg::Labels => Val::Str(format!(
            "{{{}}}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Arg::Str(s) => Val::Str(s.clone()),
        Arg::Num(n) => Val::Num(*n),
    }
}

fn run(c: &Command, piped: Option<Val>, labels: &Labels, value: f64) -> Val {
    match c {
        Command::Arg(a) => arg_val(a, labels, value),
        Command::Call(f, args) => {
            let mut vals: Vec<Val> = args.iter().map(|a| arg_val(a, labels, value)).collect();
            vals.extend(piped);
            let num = |v: &Val| match v {
                Val::Num(n) => *n,
                Val::Str(s) => s.trim().parse().unwrap_or(f64::NAN),
            };
            match f {
                Func::Humanize => Val::Str(humanize(vals.first().map_or(f64::NAN, num))),
                Func::HumanizePercentage => Val::Str(format!(
                    "{}%",
                    format_g(vals.first().map_or(f64::NAN, num) * 100.0, 4)
                )),
                Func::ToUpper => Val::Str(
                    vals.first()
                        .map(Val::to_text)
                        .unwrap_or_default()
                        .to_uppercase(),
                ),
                Func::ToLower => Val::Str(
                    vals.first()
                        .map(Val::to_text)
                        .unwrap_or_default()
                        .to_lowercase(),
                ),
                Func::Printf => {
                    let fmt = vals.first().map(Val::to_text).unwrap_or_default();
                    Val::Str(printf(&fmt, &vals[1.min(vals.len())..]))
                }
            }
        }
    }
}

/// Parses the inside of one action: `cmd ( '|' cmd )*`.
fn parse_pipeline(src: &str, start: usize, end: usize) -> Result<Vec<Command>, TemplateError> {
    // Tokenize: words, quoted strings, and '|'.
    let mut toks: Vec<(usize, String, bool)> = Vec::new(); // (pos, text, is_string)
    let b = src.as_bytes();
    let mut i = start;
    while i < end {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' || c == b'`' {
            let mut j = i + 1;
            let mut s = String::new();
            while j < end && b[j] != c {
                if c == b'"' && b[j] == b'\\' && j + 1 < end {
                    j += 1;
                    s.push(match b[j] {
                        b'n' => '\n',
                        b't' => '\t',
                        other => other as char,
                    });
                    j += 1;
                    continue;
                }
                let ch = src[j..].chars().next().expect("in bounds");
                s.push(ch);
                j += ch.len_utf8();
            }
            if j >= end {
                return Err(err(src, i, "unterminated string"));
            }
            toks.push((i, s, true));
            i = j + 1;
        } else if c == b'|' {
            toks.push((i, "|".into(), false));
            i += 1;
        } else {
            let mut j = i;
            while j < end && !b[j].is_ascii_whitespace() && b[j] != b'|' && b[j] != b'"' {
                j += 1;
            }
            toks.push((i, src[i..j].to_string(), false));
            i = j;
        }
    }
    if toks.is_empty() {
        return Err(err(src, start, "empty action"));
    }
    let mut cmds = Vec::new();
    for (n, group) in toks.split(|t| t.1 == "|" && !t.2).enumerate() {
        let Some((pos, head, is_str)) = group.first() else {
            return Err(err(src, start, "empty command in pipeline"));
        };
        let func = if *is_str {
            None
        } else {
            match head.as_str() {
                "humanize" => Some(Func::Humanize),
                "humanizePercentage" => Some(Func::HumanizePercentage),
                "printf" => Some(Func::Printf),
                "toUpper" => Some(Func::ToUpper),
                "toLower" => Some(Func::ToLower),
                _ => None,
            }
        };
        match func {
            Some(f) => {
                let args = group[1..]
                    .iter()
                    .map(|(p, t, s)| parse_arg(src, *p, t, *s))
                    .collect::<Result<Vec<_>, _>>()?;
                let arity = args.len() + usize::from(n > 0);
                let ok = match f {
                    Func::Printf => arity >= 1,
                    _ => arity == 1,
                };
                if !ok {
                    return Err(err(
                        src,
                        *pos,
                        format!("wrong number of arguments for {head}"),
                    ));
                }
                cmds.push(Command::Call(f, args));
            }
            None => {
                if n > 0 {
                    return Err(err(src, *pos, format!("{head:?} is not a function (supported: humanize, humanizePercentage, printf, toUpper, toLower)")));
                }
                let arg = parse_arg(src, *pos, head, *is_str)?;
                if group.len() > 1 {
                    return Err(err(src, group[1].0, "unexpected argument"));
                }
                cmds.push(Command::Arg(arg));
            }
        }
    }
    Ok(cmds)
}

fn parse_arg(src: &str, pos: usize, t: &str, is_str: bool) -> Result<Arg, TemplateError> {
    if is_str {
        return Ok(Arg::Str(t.to_string()));
    }
    if t == "$value" || t == "$.Value" {
        return Ok(Arg::Value);
    }
    if t == "$labels" || t == "$.Labels" {
        return Ok(Arg::Labels);
    }
    if let Some(name) = t
        .strip_prefix("$labels.")
        .or_else(|| t.strip_prefix("$.Labels."))
    {
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Ok(Arg::Label(name.to_string()));
        }
    }
    if let Ok(n) = t.parse::<f64>() {
        return Ok(Arg::Num(n));
    }
    let what = match t {
        "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block" => format!("{t:?} actions are not supported"),
        _ if t.starts_with('$') => format!("unknown variable {t:?} (use $labels.<name>, $labels or $value)"),
        _ => format!("unknown function or value {t:?} (supported: $labels.<name>, $value, humanize, humanizePercentage, printf, toUpper, toLower)"),
    };
    Err(err(src, pos, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        [("service".to_string(), "checkout".to_string())].into()
    }

    #[test]
    fn expands_labels_values_and_functions() {
        let t = Template::parse("{{ $labels.service }} errors at {{$value}} ({{ $value | humanizePercentage }}), {{ printf \"%.2f\" $value }}").unwrap();
        assert_eq!(
            t.expand(&labels(), 0.05),
            "checkout errors at 0.05 (5%), 0.05"
        );
        let t = Template::parse(
            "{{ humanize $value }}B {{ $value | printf \"%.1f\" }} {{ $labels.missing }}|",
        )
        .unwrap();
        assert_eq!(t.expand(&labels(), 1_234_567.0), "1.235MB 1234567.0 |");
        assert_eq!(humanize(0.0123), "12.3m");
        assert_eq!(humanize(0.0), "0");
        let t = Template::parse("a  {{- $labels.service -}}  b").unwrap();
        assert_eq!(t.expand(&labels(), 0.0), "acheckoutb");
        assert_eq!(
            Template::parse("{{ $labels.service | toUpper }}")
                .unwrap()
                .expand(&labels(), 0.0),
            "CHECKOUT"
        );
        assert_eq!(format_value(1.5e-7), "1.5e-07");
        assert_eq!(format_g(123456.0, 4), "1.235e+05");
    }

    #[test]
    fn errors_carry_positions() {
        let e = Template::parse("ok\n  {{ if $value }}x{{ end }}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 6));
        assert!(
            e.message.contains("\"if\" actions are not supported"),
            "{e}"
        );
        let e = Template::parse("{{ $labels.service").unwrap_err();
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (1, 1, "unclosed action: missing '}}'")
        );
        let e = Template::parse("v={{ $value | humanise }}").unwrap_err();
        assert_eq!((e.line, e.column), (1, 15));
        let e = Template::parse("{{ $foo }}").unwrap_err();
        assert!(e.message.contains("unknown variable"), "{e}");
    }
}
