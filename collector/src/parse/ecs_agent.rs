//! Lines of the Amazon ECS container agent's own logs: `/var/log/ecs/ecs-agent.log*` and
//! `/var/log/ecs/ecs-init.log*`.
//!
//! Three shapes, told apart by their first bytes (source: `aws/amazon-ecs-agent`
//! `ecs-agent/logger/log.go`, `log_test.go`, `format_test.go`, `structured_logger_test.go`;
//! the ECS developer guide's `logs.md`):
//!
//! - logfmt, the default (`ECS_LOG_OUTPUT_FORMAT=logfmt`), starts with `level=`:
//!   `level=info time=2018-10-01T01:02:03Z msg="This is my log message" module=mytestmodule.go`.
//!   Structured calls drop `module=` and append their fields: strings and errors quoted with
//!   Go's `%q` (so `\"`, `\\`, `\n`, `\x00`, `\u00a0`, `\U0001f600` occur inside quotes),
//!   numbers and booleans bare (`k2=2`), structs with Go's `%v`, bare but possibly with spaces
//!   inside braces (`k4={subK4_1:subK4_1_Value subK4_2:3}`).
//! - JSON (`ECS_LOG_OUTPUT_FORMAT=json`), starts with `{`:
//!   `{"level":"info","time":"…","msg":"…","module":"…"}`, or `level`, `time`, `msg` and the
//!   structured fields with values of any JSON type. The agent writes `msg` with Go's `%q`,
//!   which is not always valid JSON (`\a`, `\v`, `\x1b`, `\U0001f600`), so the object is read
//!   by a lenient scanner that accepts both Go and JSON escapes.
//! - legacy (agent ≤ 1.35.0, and `ecs-init`), seelog's
//!   `%UTCDate(2006-01-02T15:04:05Z07:00) [%LEVEL] %Msg`:
//!   `2016-08-15T15:54:41Z [INFO] Loading configuration`. The message is not escaped, so a
//!   multi-line message's continuation lines fit no shape and come back marked.
//!
//! The time is RFC 3339 (`time.RFC3339`, UTC) unless the agent was built with another
//! `SetTimestampFormat`; a time without a zone (`2018-10-01T01:02:03.000`) is read as UTC,
//! since the agent always formats `CallTime().UTC()`.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use sightline_model::Level;
use time::macros::format_description;
use time::PrimitiveDateTime;

use super::timestamp::parse_rfc3339_ns;

/// One parsed agent or ecs-init log line.
///
/// Contract: when `parse_error` is `Some`, `message` holds the whole raw line (without its
/// trailing newline), so no text is ever lost; the other fields keep whatever was read
/// before the problem was found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentRecord {
    /// The line's `time`, Unix ns (RFC 3339 with any offset and up to 9 fraction digits).
    pub time_ns: Option<u64>,
    /// The line's level: seelog's `trace`, `debug`, `info`, `warn`, `error`, `critical`
    /// (any case; `critical`/`crit` map to [`Level::Fatal`], the highest).
    pub level: Option<Level>,
    /// `msg` (unescaped), the legacy shape's text after `[LEVEL] `, or the raw line when
    /// `parse_error` is set.
    pub message: String,
    /// `module` (the Go source file name, e.g. `agent.go`); absent on structured lines.
    pub module: Option<String>,
    /// Every other key under its own name (`taskARN`, `task`, `dockerId`, `container`,
    /// `knownStatus`, `error`, …; see the agent's `ecs-agent/logger/field/constants.go`).
    /// Quoted values are unescaped; bare and non-string JSON values are kept as written
    /// (`2`, `false`, `{"a":1}`, `{subK4_1:x subK4_2:3}`). A second `level`, `time`, `msg`
    /// or `module` key (e.g. the structured `time` field) lands here too.
    pub fields: BTreeMap<String, String>,
    /// Why the line could not be read as one of the three shapes; `None` when it could.
    pub parse_error: Option<String>,
}

/// An ECS task ARN, old (`task/<uuid>`) or new (`task/<cluster>/<id>`) format, in any
/// partition (`aws`, `aws-cn`, `aws-us-gov`).
static TASK_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"arn:aws[a-z-]*:ecs:[a-z0-9-]*:[0-9]+:task/[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)?")
        .expect("static regex")
});

impl AgentRecord {
    fn unparsed(line: &str, reason: String) -> Self {
        AgentRecord {
            message: line.to_string(),
            parse_error: Some(reason),
            ..Default::default()
        }
    }

    /// IDs by which the aggregator can tie this line to a task or container, in this order,
    /// without duplicates or empty values:
    /// 1. the `taskARN` field (a full task ARN);
    /// 2. every task ARN found in the message (`arn:aws…:ecs:<region>:<account>:task/…`,
    ///    e.g. `Managed task [arn:aws:ecs:…:task/dev/9182…]`);
    /// 3. the `task` field, which the agent fills with `task.GetID()`, the task ID: the last
    ///    `/` segment of the ARN, so match it against ARN suffixes;
    /// 4. the `dockerId` field and the `runtimeID` field (the 64-hex Docker container ID).
    ///
    /// The first one, if any, is the natural primary correlation ID (Kafka key).
    pub fn correlation_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |id: &str| {
            let id = id.trim();
            if !id.is_empty() && id != "-" && id.len() <= 256 && !out.iter().any(|o| o == id) {
                out.push(id.to_string());
            }
        };
        if let Some(v) = self.fields.get("taskARN") {
            add(v);
        }
        for m in TASK_ARN.find_iter(&self.message) {
            add(m.as_str());
        }
        for key in ["task", "dockerId", "runtimeID"] {
            if let Some(v) = self.fields.get(key) {
                add(v);
            }
        }
        out
    }
}

/// Parses one line of `ecs-agent.log*` or `ecs-init.log*` (any of the three shapes in the
/// module docs). One trailing `\n` or `\r\n` is ignored.
///
/// Never fails: a line that fits no shape, or has an unterminated quote, a bad escape,
/// trailing text, an unknown level, an unreadable time, a duplicate key or no `msg`, comes
/// back with `parse_error` naming the problem (and its byte offset where there is one) and
/// `message` set to the raw line.
pub fn parse_agent_line(line: &str) -> AgentRecord {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.starts_with('{') {
        return from_pairs(line, scan_json(line));
    }
    if line.starts_with("level=") {
        return from_pairs(line, scan_logfmt(line));
    }
    if let Some(rec) = parse_legacy(line) {
        return rec;
    }
    AgentRecord::unparsed(
        line,
        "no ECS agent log shape: expected `level=…` (logfmt), `{…}` (JSON) or \
         `<RFC 3339 time> [LEVEL] …` (legacy)"
            .to_string(),
    )
}

/// Parses the agent's time: RFC 3339, else `YYYY-MM-DDTHH:MM:SS[.fff…]` without a zone,
/// read as UTC. `None` if neither, or before 1970.
fn parse_time(s: &str) -> Option<u64> {
    parse_rfc3339_ns(s).or_else(|| {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        let t = PrimitiveDateTime::parse(s, fmt).ok()?;
        u64::try_from(t.assume_utc().unix_timestamp_nanos()).ok()
    })
}

/// Key/value pairs read from a logfmt or JSON line, and the first problem met (after which
/// scanning stopped).
struct Scanned {
    pairs: Vec<(String, String)>,
    error: Option<String>,
}

impl Scanned {
    fn fail(pairs: Vec<(String, String)>, error: String) -> Self {
        Scanned {
            pairs,
            error: Some(error),
        }
    }
}

/// At most 80 bytes of `s` (cut on a character boundary), for error messages.
fn clip(s: &str) -> &str {
    if s.len() <= 80 {
        return s;
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Builds the record from scanned pairs: the first `level`, `time`, `msg` and `module` are
/// the header, the rest go to `fields`.
fn from_pairs(line: &str, scanned: Scanned) -> AgentRecord {
    let mut rec = AgentRecord::default();
    let mut errors: Vec<String> = Vec::new();
    let (mut has_level, mut has_time, mut has_msg, mut has_module) = (false, false, false, false);
    for (key, value) in scanned.pairs {
        match key.as_str() {
            "level" if !has_level => {
                has_level = true;
                match Level::parse(&value) {
                    Some(l) => rec.level = Some(l),
                    None => {
                        errors.push(format!("unknown level {:?}", clip(&value)));
                        rec.fields.insert(key, value);
                    }
                }
            }
            "time" if !has_time => {
                has_time = true;
                match parse_time(&value) {
                    Some(t) => rec.time_ns = Some(t),
                    None => {
                        errors.push(format!("unreadable time {:?}", clip(&value)));
                        rec.fields.insert(key, value);
                    }
                }
            }
            "msg" if !has_msg => {
                has_msg = true;
                rec.message = value;
            }
            "module" if !has_module => {
                has_module = true;
                rec.module = Some(value);
            }
            _ => match rec.fields.entry(key) {
                Entry::Occupied(e) => {
                    errors.push(format!("duplicate key {:?}", clip(e.key())));
                }
                Entry::Vacant(e) => {
                    e.insert(value);
                }
            },
        }
    }
    if let Some(e) = scanned.error {
        errors.insert(0, e);
    } else {
        for (present, name) in [(has_level, "level"), (has_time, "time"), (has_msg, "msg")] {
            if !present {
                errors.push(format!("no `{name}` key"));
            }
        }
    }
    if !errors.is_empty() {
        rec.message = line.to_string();
        rec.parse_error = Some(errors.join("; "));
    }
    rec
}

/// The legacy / ecs-init shape `<time> [LEVEL] <message>`; `None` when the line does not
/// start with a readable time followed by ` [`…`]`.
fn parse_legacy(line: &str) -> Option<AgentRecord> {
    let (ts, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix('[')?;
    let close = rest.find(']')?;
    let (level_text, after) = (&rest[..close], &rest[close + 1..]);
    let message = match after.strip_prefix(' ') {
        Some(m) => m,
        None if after.is_empty() => "",
        None => return None,
    };
    let time_ns = parse_time(ts)?;
    let Some(level) = Level::parse(level_text) else {
        let mut rec = AgentRecord::unparsed(
            line,
            format!("unknown level {:?} in legacy line", clip(level_text)),
        );
        rec.time_ns = Some(time_ns);
        return Some(rec);
    };
    Some(AgentRecord {
        time_ns: Some(time_ns),
        level: Some(level),
        message: message.to_string(),
        ..Default::default()
    })
}

/// Index of the closing `"` of a string whose content starts at `from`, skipping
/// backslash-escaped bytes; `None` if unterminated.
fn find_close_quote(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn hex_at(b: &[u8], at: usize, n: usize) -> Result<u32, String> {
    let digits = b
        .get(at..at + n)
        .ok_or_else(|| format!("truncated escape at byte {at}"))?;
    digits.iter().try_fold(0u32, |acc, &d| {
        (d as char)
            .to_digit(16)
            .map(|v| acc * 16 + v)
            .ok_or_else(|| format!("bad hex digit in escape at byte {at}"))
    })
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Unescapes the content of a Go `%q` (`strconv.Quote`) or JSON string: `\a \b \f \n \r \t
/// \v \\ \' \" \/`, `\xHH`, `\NNN` (octal), `\uHHHH` (JSON surrogate pairs combined),
/// `\UHHHHHHHH`. Bytes that do not form UTF-8 (Go writes them as `\x80`…`\xff`) and lone
/// surrogates become U+FFFD. Raw characters, control ones included, are kept as they are.
///
/// Errors: an unknown or truncated escape, with its byte offset in `s`.
pub fn unquote(s: &str) -> Result<String, String> {
    if !s.contains('\\') {
        return Ok(s.to_string());
    }
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let at = i;
        let Some(&e) = b.get(i + 1) else {
            return Err(format!("lone backslash at byte {at}"));
        };
        i += 2;
        match e {
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'\\' | b'\'' | b'"' | b'/' => out.push(e),
            b'x' => {
                // Two hex digits: at most 0xff, fits a byte.
                out.push(hex_at(b, i, 2)? as u8);
                i += 2;
            }
            b'0'..=b'7' => {
                let oct = b
                    .get(i - 1..i + 2)
                    .filter(|d| d.iter().all(|x| (b'0'..=b'7').contains(x)));
                let Some(d) = oct else {
                    return Err(format!("bad octal escape at byte {at}"));
                };
                let v = d.iter().fold(0u32, |acc, &x| acc * 8 + u32::from(x - b'0'));
                let byte = u8::try_from(v)
                    .map_err(|_| format!("octal escape above \\377 at byte {at}"))?;
                out.push(byte);
                i += 2;
            }
            b'u' => {
                let v = hex_at(b, i, 4)?;
                i += 4;
                let c = if (0xD800..0xDC00).contains(&v)
                    && b.get(i..i + 2) == Some(b"\\u")
                    && matches!(hex_at(b, i + 2, 4), Ok(lo) if (0xDC00..0xE000).contains(&lo))
                {
                    let lo = hex_at(b, i + 2, 4)?;
                    i += 6;
                    char::from_u32(0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00))
                } else {
                    char::from_u32(v)
                };
                push_char(&mut out, c.unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            b'U' => {
                let v = hex_at(b, i, 8)?;
                i += 8;
                let c = char::from_u32(v)
                    .ok_or_else(|| format!("\\U escape out of range at byte {at}"))?;
                push_char(&mut out, c);
            }
            _ => return Err(format!("unknown escape at byte {at}")),
        }
    }
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// End of a bare logfmt value starting at `from`: the next space or tab outside `{…}` /
/// `[…]` (Go's `%v` of structs, maps and slices has spaces inside brackets); if the brackets
/// never balance, simply the next space or tab.
fn bare_end(b: &[u8], from: usize) -> usize {
    let simple = b[from..]
        .iter()
        .position(|&c| c == b' ' || c == b'\t')
        .map_or(b.len(), |p| from + p);
    let mut depth = 0usize;
    for (i, &c) in b.iter().enumerate().skip(from) {
        match c {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b' ' | b'\t' if depth == 0 => return i,
            _ => {}
        }
    }
    if depth == 0 {
        b.len()
    } else {
        simple
    }
}

/// Reads `key=value key2="quoted value" …` pairs.
fn scan_logfmt(line: &str) -> Scanned {
    let b = line.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            return Scanned { pairs, error: None };
        }
        let key_start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'=' | b'"') {
            i += 1;
        }
        if i == key_start || b.get(i) != Some(&b'=') {
            let e = format!(
                "text that is not key=value at byte {key_start}: {:?}",
                clip(&line[key_start..])
            );
            return Scanned::fail(pairs, e);
        }
        let key = line[key_start..i].to_string();
        i += 1;
        if b.get(i) == Some(&b'"') {
            let Some(close) = find_close_quote(b, i + 1) else {
                return Scanned::fail(
                    pairs,
                    format!("unterminated quoted value of {key:?} at byte {i}"),
                );
            };
            match unquote(&line[i + 1..close]) {
                Ok(v) => pairs.push((key, v)),
                Err(e) => return Scanned::fail(pairs, format!("value of {key:?}: {e}")),
            }
            i = close + 1;
            if i < b.len() && b[i] != b' ' && b[i] != b'\t' {
                return Scanned::fail(
                    pairs,
                    format!("text right after the closing quote at byte {i}"),
                );
            }
        } else {
            let end = bare_end(b, i);
            pairs.push((key, line[i..end].to_string()));
            i = end;
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// End (exclusive) of the JSON object or array starting at `from`, skipping strings.
fn balanced_end(b: &[u8], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'"' => i = find_close_quote(b, i + 1)?,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Reads the top level of a JSON object (the line starts with `{`): string values are
/// unescaped, other values kept as their JSON text.
fn scan_json(line: &str) -> Scanned {
    let b = line.as_bytes();
    let mut pairs = Vec::new();
    let mut i = skip_ws(b, 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            i = skip_ws(b, i);
            if b.get(i) != Some(&b'"') {
                return Scanned::fail(pairs, format!("expected a quoted key at byte {i}"));
            }
            let Some(close) = find_close_quote(b, i + 1) else {
                return Scanned::fail(pairs, format!("unterminated key at byte {i}"));
            };
            let key = match unquote(&line[i + 1..close]) {
                Ok(k) => k,
                Err(e) => return Scanned::fail(pairs, format!("key at byte {i}: {e}")),
            };
            i = skip_ws(b, close + 1);
            if b.get(i) != Some(&b':') {
                return Scanned::fail(pairs, format!("expected ':' after key {key:?} at byte {i}"));
            }
            i = skip_ws(b, i + 1);
            let value = match b.get(i) {
                Some(b'"') => {
                    let Some(close) = find_close_quote(b, i + 1) else {
                        return Scanned::fail(
                            pairs,
                            format!("unterminated value of {key:?} at byte {i}"),
                        );
                    };
                    let v = match unquote(&line[i + 1..close]) {
                        Ok(v) => v,
                        Err(e) => return Scanned::fail(pairs, format!("value of {key:?}: {e}")),
                    };
                    i = close + 1;
                    v
                }
                Some(b'{') | Some(b'[') => {
                    let Some(end) = balanced_end(b, i) else {
                        return Scanned::fail(
                            pairs,
                            format!("unterminated value of {key:?} at byte {i}"),
                        );
                    };
                    let v = line[i..end].to_string();
                    i = end;
                    v
                }
                _ => {
                    let start = i;
                    while i < b.len() && !matches!(b[i], b',' | b'}') && !b[i].is_ascii_whitespace()
                    {
                        i += 1;
                    }
                    if i == start {
                        return Scanned::fail(
                            pairs,
                            format!("missing value of {key:?} at byte {i}"),
                        );
                    }
                    line[start..i].to_string()
                }
            };
            pairs.push((key, value));
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Scanned::fail(pairs, format!("expected ',' or '}}' at byte {i}")),
            }
        }
    }
    let j = skip_ws(b, i);
    if j < b.len() {
        let e = format!(
            "text after the closing '}}' at byte {j}: {:?}",
            clip(&line[j..])
        );
        return Scanned::fail(pairs, e);
    }
    Scanned { pairs, error: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_538_355_723_000_000_000; // 2018-10-01T01:02:03Z

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn logfmt_structured_fields_and_go_values() {
        // format_test.go: k1="v1" k2=2 k3="the error" k4={subK4_1:subK4_1_Value subK4_2:3}
        let r = parse_agent_line(
            "level=warn time=2018-10-01T01:02:03Z msg=\"this is my message\" k1=\"v1\" k2=2 \
             k3=\"the error\" k4={subK4_1:subK4_1_Value subK4_2:3} empty= map=map[a:1 b:[2 3]]",
        );
        assert_eq!(r.parse_error, None);
        assert_eq!(r.level, Some(Level::Warn));
        assert_eq!(r.module, None);
        assert_eq!(r.message, "this is my message");
        assert_eq!(
            r.fields,
            fields(&[
                ("k1", "v1"),
                ("k2", "2"),
                ("k3", "the error"),
                ("k4", "{subK4_1:subK4_1_Value subK4_2:3}"),
                ("empty", ""),
                ("map", "map[a:1 b:[2 3]]"),
            ])
        );
    }

    #[test]
    fn unbalanced_bare_value_falls_back_to_space() {
        let r = parse_agent_line("level=info time=2018-10-01T01:02:03Z msg=\"m\" a={x b=2");
        assert_eq!(r.parse_error, None);
        assert_eq!(r.fields, fields(&[("a", "{x"), ("b", "2")]));
    }

    #[test]
    fn go_and_json_escapes() {
        assert_eq!(unquote(r#"a\"b\\c\/d"#).unwrap(), "a\"b\\c/d");
        assert_eq!(
            unquote(r"\a\b\f\n\r\t\v\x00\x1b\101\u00e9\U0001f596").unwrap(),
            "\x07\x08\x0c\n\r\t\x0b\0\x1bA\u{e9}\u{1f596}"
        );
        assert_eq!(unquote(r"\ud83d\ude00").unwrap(), "\u{1f600}");
        assert_eq!(unquote(r"lone \ud83d!").unwrap(), "lone \u{fffd}!");
        assert_eq!(unquote(r"bad \xff byte").unwrap(), "bad \u{fffd} byte");
        assert_eq!(unquote("raw é \u{1}").unwrap(), "raw é \u{1}");
        assert_eq!(unquote(r"x\q").unwrap_err(), "unknown escape at byte 1");
        assert_eq!(unquote(r"x\u12").unwrap_err(), "truncated escape at byte 3");
        assert_eq!(
            unquote(r"\x4g").unwrap_err(),
            "bad hex digit in escape at byte 2"
        );
        assert_eq!(
            unquote(r"\400").unwrap_err(),
            "octal escape above \\377 at byte 0"
        );
        assert_eq!(
            unquote(r"\U00110000").unwrap_err(),
            "\\U escape out of range at byte 0"
        );
        assert_eq!(unquote("end\\").unwrap_err(), "lone backslash at byte 3");
    }

    #[test]
    fn json_values_of_any_type() {
        let r = parse_agent_line(
            r#"{ "level" : "debug", "time":"2018-10-01T02:02:03.25+01:00","msg":"q \"x\"","n":-1.5e3,"b":true,"z":null,"o":{"a":"}","b":[1,2]},"l":[{"c":"]"}] }"#,
        );
        assert_eq!(r.parse_error, None);
        assert_eq!(r.time_ns, Some(T0 + 250_000_000));
        assert_eq!(r.level, Some(Level::Debug));
        assert_eq!(r.message, "q \"x\"");
        assert_eq!(
            r.fields,
            fields(&[
                ("n", "-1.5e3"),
                ("b", "true"),
                ("z", "null"),
                ("o", r#"{"a":"}","b":[1,2]}"#),
                ("l", r#"[{"c":"]"}]"#),
            ])
        );
    }

    #[test]
    fn json_errors_keep_raw_line() {
        for (line, err) in [
            (r#"{"level":"info","#, "expected a quoted key at byte 16"),
            (
                r#"{"level" "info"}"#,
                "expected ':' after key \"level\" at byte 9",
            ),
            (r#"{"level":}"#, "missing value of \"level\" at byte 9"),
            (
                r#"{"level":"info" "x":1}"#,
                "expected ',' or '}' at byte 16",
            ),
            (r#"{"o":{"a":1}"#, "expected ',' or '}' at byte 12"),
            (r#"{"o":{"a":1"#, "unterminated value of \"o\" at byte 5"),
            (
                r#"{} tail"#,
                "text after the closing '}' at byte 3: \"tail\"",
            ),
        ] {
            let r = parse_agent_line(line);
            assert_eq!(r.message, line);
            assert_eq!(r.parse_error.as_deref(), Some(err), "{line}");
        }
        let r = parse_agent_line("{}");
        assert_eq!(
            r.parse_error.as_deref(),
            Some("no `level` key; no `time` key; no `msg` key")
        );
    }

    #[test]
    fn logfmt_errors_keep_raw_line_and_what_was_read() {
        let line = "level=info time=2018-10-01T01:02:03Z msg=\"ok\" k=\"bad \\q\" module=x.go";
        let r = parse_agent_line(line);
        assert_eq!(r.message, line);
        assert_eq!(r.level, Some(Level::Info));
        assert_eq!(r.time_ns, Some(T0));
        assert_eq!(
            r.parse_error.as_deref(),
            Some("value of \"k\": unknown escape at byte 4")
        );

        let line = "level=info time=2018-10-01T01:02:03Z msg=\"a\"b k=1";
        let r = parse_agent_line(line);
        assert_eq!(
            r.parse_error.as_deref(),
            Some("text right after the closing quote at byte 44")
        );

        let line = "level=info time=2018-10-01T01:02:03Z msg=\"a\" k=1 k=2";
        let r = parse_agent_line(line);
        assert_eq!(r.parse_error.as_deref(), Some("duplicate key \"k\""));
        assert_eq!(r.fields, fields(&[("k", "1")]));
        assert_eq!(r.message, line);

        let r = parse_agent_line("level=info msg=\"no time\"");
        assert_eq!(r.parse_error.as_deref(), Some("no `time` key"));
    }

    #[test]
    fn legacy_and_ecs_init_shape() {
        let r = parse_agent_line("2016-08-15T15:54:41Z [INFO] Loading configuration");
        assert_eq!(r.time_ns, Some(1_471_276_481_000_000_000));
        assert_eq!(r.level, Some(Level::Info));
        assert_eq!(r.message, "Loading configuration");
        assert_eq!(r.parse_error, None);

        let r = parse_agent_line("2016-08-15T15:54:41Z [CRITICAL]");
        assert_eq!((r.level, r.message.as_str()), (Some(Level::Fatal), ""));

        let line = "2016-08-15T15:54:41Z [VERBOSE] x";
        let r = parse_agent_line(line);
        assert_eq!(r.time_ns, Some(1_471_276_481_000_000_000));
        assert_eq!(r.message, line);
        assert_eq!(
            r.parse_error.as_deref(),
            Some("unknown level \"VERBOSE\" in legacy line")
        );

        for line in [
            "2016-08-15 [INFO] x",
            "2016-08-15T15:54:41Z [INFO]x",
            "\tat foo",
            "",
        ] {
            let r = parse_agent_line(line);
            assert_eq!(r.message, line);
            assert!(r.parse_error.unwrap().starts_with("no ECS agent log shape"));
        }
    }

    #[test]
    fn zoneless_custom_timestamp_is_utc() {
        assert_eq!(parse_time("2018-10-01T01:02:03.000"), Some(T0));
        assert_eq!(parse_time("2018-10-01T01:02:03.5"), Some(T0 + 500_000_000));
        assert_eq!(parse_time("2018-10-01T01:02:03"), Some(T0));
        assert_eq!(parse_time("2018-10-01T03:02:03+02:00"), Some(T0));
        assert_eq!(parse_time("2018-10-01"), None);
    }

    #[test]
    fn correlation_ids_in_priority_order() {
        let arn =
            "arn:aws:ecs:us-west-2:111122223333:task/default/8f03e41243824aea923aca126495f665";
        let old =
            "arn:aws-cn:ecs:cn-north-1:123456789012:task/b1a8c3d2-4e5f-6a7b-8c9d-0e1f2a3b4c5d";
        let line = format!(
            "level=info time=2018-10-01T01:02:03Z msg=\"Managed task [{old}]: x; again {arn}. \
             def arn:aws:ecs:us-west-2:111122223333:task-definition/web:3\" taskARN=\"{arn}\" \
             task=\"8f03e41243824aea923aca126495f665\" dockerId=\"0b5e\" runtimeID=\"0b5e\""
        );
        let r = parse_agent_line(&line);
        assert_eq!(r.parse_error, None);
        assert_eq!(
            r.correlation_ids(),
            vec![
                arn.to_string(),
                old.to_string(),
                "8f03e41243824aea923aca126495f665".to_string(),
                "0b5e".to_string(),
            ]
        );
        let r = parse_agent_line("2016-08-15T15:54:41Z [INFO] nothing here task=-");
        assert!(r.correlation_ids().is_empty());
    }
}
