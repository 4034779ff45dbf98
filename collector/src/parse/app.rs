//! The application's own line: correlation IDs, W3C trace and span IDs, hop and level.
//!
//! JSON lines (`{…}`) are read key by key: only the keys of interest are decoded, the rest is
//! skipped without allocating. Keys match case-insensitively. Text lines go through regexes:
//! the configured ones first (every match kept, e.g. all HDFS block IDs of a line), then the
//! built-in ones for `x-correlation-id=…`, `correlation_id=…`, `request_id=…`, W3C
//! `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, w3.org/TR/trace-context) and AWS X-Ray
//! `X-Amzn-Trace-Id: Root=1-<8 hex>-<24 hex>` (normalised to a 32-hex trace ID as OTel does).
//! With no correlation ID found, the trace ID stands in for it.

use std::fmt;

use regex::Regex;

use super::json_scan;
use super::text_scan::TextScanner;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::config::{ConfigError, CorrelationConfig};
use sightline_model::Level;

/// What was found in one line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extracted {
    /// Correlation IDs in priority order, without duplicates.
    pub correlation_ids: Vec<String>,
    /// 32 lowercase hex.
    pub trace_id: Option<String>,
    /// 16 lowercase hex.
    pub span_id: Option<String>,
    /// Hop count.
    pub hop: Option<u32>,
    /// Level.
    pub level: Option<Level>,
}

impl Extracted {
    fn add_id(&mut self, id: &str) {
        self.insert_id(id, self.correlation_ids.len());
    }

    /// Inserts a non-empty ID of at most 256 bytes at `at` (clamped), unless already present.
    fn insert_id(&mut self, id: &str, at: usize) {
        let id = id.trim();
        if !id.is_empty() && id.len() <= 256 && !self.correlation_ids.iter().any(|c| c == id) {
            let at = at.min(self.correlation_ids.len());
            self.correlation_ids.insert(at, id.to_string());
        }
    }
}

/// Compiled extraction rules (built once from [`CorrelationConfig`]). Clone it per thread:
/// each clone has its own regex caches.
///
/// Text lines are scanned once by a [`TextScanner`] (built-in keys and levels); the
/// traceparent, X-Ray and hop regexes run only where their literal occurs. Configured
/// patterns always run (the regex engine has its own literal prefilter).
#[derive(Clone)]
pub struct Extractor {
    custom: Vec<Regex>,
    /// Whether the built-in correlation and request ID keys are read.
    builtin: bool,
    traceparent: Regex,
    xray: Regex,
    hop: Regex,
    scanner: TextScanner,
    json_keys: Vec<String>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses a W3C `traceparent` value into (trace ID, span ID); all-zero IDs are invalid.
pub fn parse_traceparent(v: &str) -> Option<(String, String)> {
    let mut it = v.trim().split('-');
    let (ver, trace, span, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if !is_hex(ver, 2) || !is_hex(trace, 32) || !is_hex(span, 16) || !is_hex(flags, 2) {
        return None;
    }
    let (trace, span) = (trace.to_ascii_lowercase(), span.to_ascii_lowercase());
    if trace.bytes().all(|b| b == b'0') || span.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace, span))
}

fn capture_id<'t>(caps: &regex::Captures<'t>) -> Option<&'t str> {
    caps.name("id")
        .or_else(|| caps.get(1))
        .or_else(|| caps.get(0))
        .map(|m| m.as_str())
}

impl Extractor {
    /// Compiles the rules; errors name the bad pattern.
    pub fn new(cfg: &CorrelationConfig) -> Result<Self, ConfigError> {
        let custom = cfg
            .patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Regex::new(&p.regex).map_err(|e| ConfigError::Invalid {
                    field: format!("correlation.patterns[{i}].regex"),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let traceparent =
            Regex::new(r"(?-u:\b)[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(?-u:\b)")
                .expect("traceparent");
        let xray = Regex::new(r"Root=1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})").expect("xray");
        let hop =
            Regex::new(r#"(?i)(?-u:\b)hop["']?\s*[=:]\s*["']?(\d{1,9})(?-u:\b)"#).expect("hop");
        Ok(Extractor {
            custom,
            builtin: cfg.default_patterns,
            traceparent,
            xray,
            hop,
            scanner: TextScanner::default(),
            json_keys: cfg
                .json_keys
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect(),
        })
    }

    /// Extracts everything from one line of application output.
    pub fn extract(&self, line: &str) -> Extracted {
        let mut out = Extracted::default();
        let trimmed = line.trim_start();
        if trimmed.starts_with('{') && self.extract_json(trimmed, &mut out) {
            if out.correlation_ids.is_empty() {
                self.extract_text(line, &mut out, false);
            }
        } else {
            self.extract_text(line, &mut out, true);
        }
        if out.correlation_ids.is_empty() {
            if let Some(t) = out.trace_id.clone() {
                out.correlation_ids.push(t);
            }
        }
        out
    }

    /// Configured patterns, then one scan for the built-in keys; `level` also takes the
    /// level found in the text (not for JSON lines, whose level comes from their keys).
    fn extract_text(&self, line: &str, out: &mut Extracted, level: bool) {
        for re in &self.custom {
            if re.captures_len() > 1 {
                for caps in re.captures_iter(line) {
                    if let Some(id) = capture_id(&caps) {
                        out.add_id(id);
                    }
                }
            } else {
                for m in re.find_iter(line) {
                    out.add_id(m.as_str());
                }
            }
        }
        let found = self.scanner.scan(line, self.builtin);
        // The built-in keys are alternatives: a correlation ID key before a request ID key.
        if let Some(id) = found.correlation.or(found.request) {
            out.add_id(id);
        }
        if out.trace_id.is_none() && found.traceparent {
            if let Some(c) = self.traceparent.captures(line) {
                let (t, s) = (&c[1], &c[2]);
                if !t.bytes().all(|b| b == b'0') {
                    out.trace_id = Some(t.to_string());
                    out.span_id = Some(s.to_string());
                }
            }
        }
        if out.trace_id.is_none() && found.xray {
            if let Some(c) = self.xray.captures(line) {
                out.add_id(&c[0]["Root=".len()..]);
                out.trace_id = Some(format!("{}{}", &c[1], &c[2]).to_ascii_lowercase());
            }
        }
        if out.hop.is_none() && found.hop {
            if let Some(c) = self.hop.captures(line) {
                out.hop = c[1].parse().ok();
            }
        }
        if level && out.level.is_none() {
            out.level = found.level;
        }
    }

    /// Returns false when the line is not a JSON object after all.
    fn extract_json(&self, line: &str, out: &mut Extracted) -> bool {
        let wanted = |k: &str| META_KEYS.contains(&k) || self.json_keys.iter().any(|j| j == k);
        if let Some(pairs) = json_scan::scan(line, wanted) {
            for (k, v) in pairs.iter() {
                self.json_field(k, v, out);
            }
            return true;
        }
        self.extract_json_serde(line, out)
    }

    /// [`Self::extract_json`] by serde: every line the fast scanner is unsure of.
    fn extract_json_serde(&self, line: &str, out: &mut Extracted) -> bool {
        let mut de = serde_json::Deserializer::from_str(line);
        de.deserialize_map(JsonVisitor { ex: self, out }).is_ok()
    }

    fn json_field(&self, key: &str, v: &str, out: &mut Extracted) {
        match key {
            "traceparent" => {
                if let Some((t, s)) = parse_traceparent(v) {
                    out.trace_id = Some(t);
                    out.span_id = Some(s);
                }
            }
            "x-amzn-trace-id" => {
                if let Some(c) = self.xray.captures(v) {
                    out.add_id(&c[0]["Root=".len()..]);
                    out.trace_id
                        .get_or_insert_with(|| format!("{}{}", &c[1], &c[2]).to_ascii_lowercase());
                }
            }
            "span_id" | "spanid" if is_hex(v, 16) => out.span_id = Some(v.to_ascii_lowercase()),
            "hop" => out.hop = v.parse().ok(),
            "level" | "lvl" | "severity" | "log.level" | "loglevel" | "severity_text" => {
                out.level = out.level.or_else(|| Level::parse(v))
            }
            _ => {}
        }
        if (key == "trace_id" || key == "traceid") && is_hex(v, 32) {
            out.trace_id = Some(v.to_ascii_lowercase());
        }
        if let Some(rank) = self.json_keys.iter().position(|k| k == key) {
            // Keep priority order of json_keys regardless of key order in the line.
            out.insert_id(v, rank);
        }
    }
}

/// A JSON scalar rendered as a string (objects and arrays become empty).
struct Scalar(String);

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar(String::new()))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar(String::new()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar(String::new()))
    }
}

struct JsonVisitor<'a> {
    ex: &'a Extractor,
    out: &'a mut Extracted,
}

const META_KEYS: &[&str] = &[
    "traceparent",
    "x-amzn-trace-id",
    "trace_id",
    "traceid",
    "span_id",
    "spanid",
    "hop",
    "level",
    "lvl",
    "severity",
    "log.level",
    "loglevel",
    "severity_text",
];

impl<'de> Visitor<'de> for JsonVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut key_buf = String::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            key_buf.clear();
            key_buf.push_str(&key);
            key_buf.make_ascii_lowercase();
            let wanted =
                META_KEYS.contains(&key_buf.as_str()) || self.ex.json_keys.contains(&key_buf);
            if wanted {
                let v: Scalar = map.next_value()?;
                self.ex.json_field(&key_buf, &v.0, self.out);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PatternConfig;

    fn ex() -> Extractor {
        Extractor::new(&CorrelationConfig::default()).unwrap()
    }

    #[test]
    fn json_lines() {
        let e = ex().extract(
            r#"{"ts":1,"LEVEL":"warn","msg":"paid","request_id":"r-9","correlation_id":"c-1","hop":2,"nested":{"a":[1,2]}}"#,
        );
        assert_eq!(e.correlation_ids, ["c-1", "r-9"]);
        assert_eq!(e.hop, Some(2));
        assert_eq!(e.level, Some(Level::Warn));
        let e = ex().extract(
            r#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","level":"ERROR"}"#,
        );
        assert_eq!(
            e.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(e.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(e.correlation_ids, ["4bf92f3577b34da6a3ce929d0e0e4736"]);
        assert_eq!(e.level, Some(Level::Error));
    }

    #[test]
    fn text_lines() {
        let e = ex().extract("2024-01-01 INFO handled x-correlation-id=abc-123 hop=3 in 5ms");
        assert_eq!(e.correlation_ids, ["abc-123"]);
        assert_eq!(e.hop, Some(3));
        assert_eq!(e.level, Some(Level::Info));
        let e = ex().extract(
            "GET / X-Amzn-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        );
        assert_eq!(e.correlation_ids, ["1-5759e988-bd862e3fe1be46a994272793"]);
        assert_eq!(
            e.trace_id.as_deref(),
            Some("5759e988bd862e3fe1be46a994272793")
        );
        let e = ex().extract("level=error msg=\"boom\" traceparent=00-00000000000000000000000000000000-00f067aa0ba902b7-01");
        assert!(e.trace_id.is_none(), "all-zero trace IDs are invalid");
        assert_eq!(e.level, Some(Level::Error));
    }

    #[test]
    fn custom_patterns_keep_every_match() {
        let cfg = CorrelationConfig {
            patterns: vec![PatternConfig {
                regex: "blk_-?[0-9]+".into(),
            }],
            ..Default::default()
        };
        let e = Extractor::new(&cfg).unwrap().extract(
            "081109 204655 556 INFO dfs.DataNode$PacketResponder: Received block blk_3587508140051953248 of size 67108864 from /10.251.42.84, blk_-42",
        );
        assert_eq!(e.correlation_ids, ["blk_3587508140051953248", "blk_-42"]);
        assert_eq!(e.level, Some(Level::Info));
    }

    /// A JSON-ish line: valid objects of log-like keys and values, often mangled.
    fn jsonish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let key = prop_oneof![
            Just("level".to_string()),
            Just("LEVEL".to_string()),
            Just("correlation_id".to_string()),
            Just("Request_ID".to_string()),
            Just("hop".to_string()),
            Just("traceparent".to_string()),
            Just("span_id".to_string()),
            Just("trace_id".to_string()),
            Just("x-amzn-trace-id".to_string()),
            Just("le\\u0076el".to_string()),
            "[a-z_.]{0,6}",
        ];
        let value = prop_oneof![
            "\"[ -~]{0,12}\"",
            "\"(\\\\[nrt/\"\\\\bfu]|[a-z0-9 -]){0,6}\"",
            Just("\"\\ud800\"".to_string()),
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
            "0[0-9]",
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
            Just("nul".to_string()),
            Just("{\"a\":[1,{\"b\":null}],\"c\":\"\\u00e9\"}".to_string()),
            Just("[1,]".to_string()),
            Just("{}".to_string()),
            Just("[]".to_string()),
            Just("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string()),
            Just("\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"".to_string()),
            Just("\"Root=1-5759e988-bd862e3fe1be46a994272793\"".to_string()),
        ];
        let ws = prop_oneof![Just(""), Just(""), Just(" "), Just("\t"), Just("\n ")];
        let pair =
            (key, ws.clone(), value, ws).prop_map(|(k, w, v, w2)| format!("\"{k}\"{w}:{w2}{v}"));
        (
            proptest::collection::vec(pair, 0..6),
            prop_oneof![Just(","), Just(", "), Just(",,")],
            prop_oneof![Just("}"), Just("} trailing"), Just(",}"), Just("")],
            any::<u8>(),
            any::<proptest::sample::Index>(),
        )
            .prop_map(|(pairs, sep, end, cut, at)| {
                let mut s = format!("{{{}{end}", pairs.join(sep));
                if cut % 5 == 0 && !s.is_empty() {
                    let mut i = at.index(s.len());
                    while !s.is_char_boundary(i) {
                        i -= 1;
                    }
                    s.truncate(i);
                }
                s
            })
    }

    proptest::proptest! {
        #[test]
        fn json_fast_path_agrees_with_serde(line in jsonish()) {
            let e = ex();
            let (mut fast, mut slow) = (Extracted::default(), Extracted::default());
            let a = e.extract_json(&line, &mut fast);
            let b = e.extract_json_serde(&line, &mut slow);
            proptest::prop_assert_eq!((a, &fast), (b, &slow), "{}", line);
        }
    }

    #[test]
    fn json_fast_path_takes_ordinary_lines() {
        let e = ex();
        let wanted = |k: &str| META_KEYS.contains(&k) || e.json_keys.iter().any(|j| j == k);
        let line = r#"{"level":"info","Correlation_ID":"req-1","msg":"a \"b\" c","hop":1,"n":-1.5e3,"o":{"p":[true,null]}}"#;
        let pairs = json_scan::scan(line, wanted).expect("fast");
        let got: Vec<_> = pairs.iter().collect();
        assert_eq!(
            got,
            [("level", "info"), ("correlation_id", "req-1"), ("hop", "1")]
        );
    }

    #[test]
    fn broken_json_falls_back_to_text() {
        let e = ex().extract(r#"{"correlation_id": "c-7", oops"#);
        assert_eq!(e.correlation_ids, ["c-7"]);
        let e = ex().extract("{ not json at all correlation_id=zz }");
        assert_eq!(e.correlation_ids, ["zz"]);
    }
}
