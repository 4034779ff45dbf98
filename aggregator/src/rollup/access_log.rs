//! Access-log recognition: the HTTP status and request duration of a log line.
//!
//! Two shapes are read:
//! - **JSON** objects (the line starts with `{`): the first configured status field
//!   (number, or numeric string) and the first configured duration field (number in the
//!   field's unit, or a string: a plain number in the field's unit, or a Go-style duration
//!   with a unit suffix `ns`, `us`/`µs`, `ms`, `s`, `m`, e.g. `"12.5ms"`). Only top-level
//!   keys are looked at; other values are skipped without being built.
//! - **Common/combined log format** with a trailing request time, as nginx writes with
//!   `log_format ... '$status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time'`:
//!   `host ident user [time] "request" status bytes ["referer" "user-agent"] request_time`,
//!   the request time in seconds (nginx `$request_time`, ms resolution).
//!
//! A line counts as a request only when it carries both a status (100–599) and a finite,
//! non-negative duration.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::config::{AccessLogConfig, DurationUnit};

/// The request facts of one access-log line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Access {
    /// HTTP status code, 100–599.
    pub status: u16,
    /// Request duration, seconds.
    pub seconds: f64,
}

/// Reads access-log facts; built once from the config.
#[derive(Clone, Debug)]
pub struct AccessLogParser {
    cfg: AccessLogConfig,
    /// memchr finders for the quoted keys, to skip JSON lines that cannot match.
    status_finders: Vec<memchr::memmem::Finder<'static>>,
}

impl AccessLogParser {
    /// A parser for these field names.
    pub fn new(cfg: &AccessLogConfig) -> Self {
        AccessLogParser {
            status_finders: cfg
                .status_fields
                .iter()
                .map(|f| memchr::memmem::Finder::new(format!("\"{f}\"").as_bytes()).into_owned())
                .collect(),
            cfg: cfg.clone(),
        }
    }

    /// The status and duration of `line`, when it is an access-log line (see the module
    /// docs); `None` otherwise (never an error: most lines are not access logs).
    pub fn parse(&self, line: &str) -> Option<Access> {
        let t = line.trim_start();
        if t.starts_with('{') {
            let bytes = t.as_bytes();
            if !self.status_finders.iter().any(|f| f.find(bytes).is_some()) {
                return None;
            }
            return self.parse_json(t);
        }
        if self.cfg.clf {
            return parse_clf(t);
        }
        None
    }

    fn parse_json(&self, line: &str) -> Option<Access> {
        let mut de = serde_json::Deserializer::from_str(line);
        let found = Seed { cfg: &self.cfg }.deserialize(&mut de).ok()?;
        let (status, _) = found.status?;
        let (seconds, _) = found.duration?;
        valid(status, seconds)
    }
}

fn valid(status: f64, seconds: f64) -> Option<Access> {
    if !(100.0..600.0).contains(&status) || status.fract() != 0.0 {
        return None;
    }
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Access {
        status: status as u16,
        seconds,
    })
}

/// What the top-level scan found: (value, index of the field in the config list), the
/// lowest index winning.
#[derive(Default)]
struct Found {
    status: Option<(f64, usize)>,
    duration: Option<(f64, usize)>,
}

struct Seed<'a> {
    cfg: &'a AccessLogConfig,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Found;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Found;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let mut found = Found::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if let Some(i) = self.cfg.status_fields.iter().position(|f| *f == key) {
                let v = map.next_value::<Scalar>()?;
                if found.status.is_none_or(|(_, j)| i < j) {
                    if let Some(n) = v.number() {
                        found.status = Some((n, i));
                    }
                }
            } else if let Some(i) = self.cfg.duration_fields.iter().position(|f| f.name == key) {
                let v = map.next_value::<Scalar>()?;
                if found.duration.is_none_or(|(_, j)| i < j) {
                    if let Some(s) = v.seconds(self.cfg.duration_fields[i].unit) {
                        found.duration = Some((s, i));
                    }
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A JSON scalar value of interest (objects and arrays become `Other`).
enum Scalar<'a> {
    Num(f64),
    Str(Cow<'a, str>),
    Other,
}

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Scalar<'de>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<Scalar<'de>, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl Scalar<'_> {
    fn number(&self) -> Option<f64> {
        match self {
            Scalar::Num(n) => Some(*n),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Other => None,
        }
    }

    fn seconds(&self, unit: DurationUnit) -> Option<f64> {
        match self {
            Scalar::Num(n) => Some(n * unit.seconds()),
            Scalar::Str(s) => parse_duration_str(s.trim(), unit),
            Scalar::Other => None,
        }
    }
}

/// `"12.5"` (in `unit`), or a number with a suffix `ns`, `us`, `µs`, `ms`, `s`, `m`.
fn parse_duration_str(s: &str, unit: DurationUnit) -> Option<f64> {
    if let Ok(n) = s.parse::<f64>() {
        return Some(n * unit.seconds());
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .filter(|&i| i > 0)?;
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match suffix {
        "ns" => 1e-9,
        "us" | "µs" | "μs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    Some(n * scale)
}

/// `... "request" status bytes ["referer" "user-agent"] request_time`.
fn parse_clf(line: &str) -> Option<Access> {
    // The `[time]` then the quoted request: `] "`.
    let open = line.find("] \"")? + 3;
    let rest = &line[open..];
    let close = closing_quote(rest)?;
    let mut after = rest[close + 1..].split_ascii_whitespace();
    let status: f64 = after.next()?.parse().ok()?;
    let bytes = after.next()?;
    if bytes != "-" && bytes.parse::<u64>().is_err() {
        return None;
    }
    // The last whitespace-separated token must be the request time, outside quotes.
    let tail = line.trim_end();
    let last = tail.rsplit(' ').next()?;
    if last.ends_with('"') || last == bytes && tail.ends_with(&format!(" {status} {bytes}")) {
        return None;
    }
    let seconds: f64 = last.parse().ok()?;
    valid(status, seconds)
}

/// Index of the closing `"` of a quoted string whose opening quote was just consumed,
/// honouring `\"` escapes (nginx escapes quotes in `$request` as `\x22`, Apache as `\"`).
fn closing_quote(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> AccessLogParser {
        AccessLogParser::new(&AccessLogConfig::default())
    }

    #[test]
    fn json_lines() {
        let a = p()
            .parse(r#"{"msg":"done","status":503,"duration_ms":250,"nested":{"status":1}}"#)
            .unwrap();
        assert_eq!(
            a,
            Access {
                status: 503,
                seconds: 0.25
            }
        );
        let a = p()
            .parse(r#"{"status_code":"200","latency":"12.5ms","tags":[1,2]}"#)
            .unwrap();
        assert_eq!(a.status, 200);
        assert!((a.seconds - 0.0125).abs() < 1e-12);
        // `status` beats `status_code` whatever the key order.
        let a = p()
            .parse(r#"{"status_code":500,"status":204,"request_time":0.5}"#)
            .unwrap();
        assert_eq!(
            a,
            Access {
                status: 204,
                seconds: 0.5
            }
        );
        assert!(p().parse(r#"{"status":200}"#).is_none());
        assert!(p().parse(r#"{"status":"ok","duration":1}"#).is_none());
        assert!(p().parse(r#"{"status":700,"duration":1}"#).is_none());
        assert!(p().parse(r#"{"status":200,"duration":-1}"#).is_none());
        assert!(p().parse(r#"{"status":200,"duration":1"#).is_none());
        assert!(p().parse("plain text").is_none());
    }

    #[test]
    fn clf_lines() {
        let combined = r#"10.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "GET /a?q=\"x\" HTTP/1.1" 502 612 "-" "curl/8.0" 0.125"#;
        assert_eq!(
            p().parse(combined),
            Some(Access {
                status: 502,
                seconds: 0.125
            })
        );
        let common = r#"10.0.0.1 - bob [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 - 0.002"#;
        assert_eq!(
            p().parse(common),
            Some(Access {
                status: 200,
                seconds: 0.002
            })
        );
        // Without the trailing request time it is not counted.
        let no_time =
            r#"10.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.0""#;
        assert!(p().parse(no_time).is_none());
        let bare = r#"10.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 612"#;
        assert!(p().parse(bare).is_none());
    }
}
