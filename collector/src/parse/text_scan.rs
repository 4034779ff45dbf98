//! One pass over a text line for everything Sightline's built-in rules look for.
//!
//! A SIMD literal search (aho-corasick, Teddy) finds the keys — `correlation`, `request`,
//! `Root=1-`, `hop`, `00-`, `level`/`lvl`/`severity` and the upper-case level words — and
//! the `key [=:] value` grammar is then read by hand at each hit. This is what the built-in
//! regexes `\bx-correlation-id["']?\s*[=:]\s*["']?([\w.:-]+)`, `\bcorrelation[_-]?id…`,
//! `\b(x-)?request[_-]?id…` and `\b(level|lvl|severity)["']?\s*[=:]\s*["']?(\w+)` describe,
//! in ASCII, without running them. Keys are found in lower case, Capitalized or UPPER case
//! (case-sensitive needles keep the SIMD search).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use sightline_model::Level;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Correlation,
    Request,
    Xray,
    Hop,
    Traceparent,
    LevelKey,
    LevelWord(Level),
}

/// Needles; longer words before their prefixes (`WARNING` before `WARN`): at one position
/// the first listed needle wins.
const NEEDLES: &[(&str, Kind)] = &[
    ("correlation", Kind::Correlation),
    ("Correlation", Kind::Correlation),
    ("CORRELATION", Kind::Correlation),
    ("request", Kind::Request),
    ("Request", Kind::Request),
    ("REQUEST", Kind::Request),
    ("Root=1-", Kind::Xray),
    ("root=1-", Kind::Xray),
    ("ROOT=1-", Kind::Xray),
    ("hop", Kind::Hop),
    ("Hop", Kind::Hop),
    ("HOP", Kind::Hop),
    ("00-", Kind::Traceparent),
    ("level", Kind::LevelKey),
    ("Level", Kind::LevelKey),
    ("LEVEL", Kind::LevelKey),
    ("lvl", Kind::LevelKey),
    ("severity", Kind::LevelKey),
    ("Severity", Kind::LevelKey),
    ("SEVERITY", Kind::LevelKey),
    ("TRACE", Kind::LevelWord(Level::Trace)),
    ("DEBUG", Kind::LevelWord(Level::Debug)),
    ("INFO", Kind::LevelWord(Level::Info)),
    ("NOTICE", Kind::LevelWord(Level::Info)),
    ("WARNING", Kind::LevelWord(Level::Warn)),
    ("WARN", Kind::LevelWord(Level::Warn)),
    ("ERROR", Kind::LevelWord(Level::Error)),
    ("FATAL", Kind::LevelWord(Level::Fatal)),
    ("CRITICAL", Kind::LevelWord(Level::Fatal)),
    ("PANIC", Kind::LevelWord(Level::Fatal)),
];

/// Levels are looked for in a line's first bytes only.
const LEVEL_HEAD: usize = 512;

/// What one scan found.
#[derive(Debug, Default, PartialEq)]
pub struct Found<'a> {
    /// Value of the first `x-correlation-id` / `correlation[_-]id` key.
    pub correlation: Option<&'a str>,
    /// Value of the first `(x-)request[_-]id` key.
    pub request: Option<&'a str>,
    /// `Root=1-` occurs (an X-Ray trace header may be present).
    pub xray: bool,
    /// `hop` occurs.
    pub hop: bool,
    /// `00-` occurs (a W3C traceparent may be present).
    pub traceparent: bool,
    /// The first level in the line's head: a `level=` value or an upper-case level word.
    pub level: Option<Level>,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// At `i`: `["'] \s* [=:] \s* ["']` then the value (bytes allowed by `allowed`).
fn value_after(line: &str, mut i: usize, allowed: fn(u8) -> bool) -> Option<&str> {
    let b = line.as_bytes();
    if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
        i += 1;
    }
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    if !(i < b.len() && (b[i] == b'=' || b[i] == b':')) {
        return None;
    }
    i += 1;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
        i += 1;
    }
    let start = i;
    while i < b.len() && allowed(b[i]) {
        i += 1;
    }
    (i > start).then(|| &line[start..i])
}

fn id_byte(b: u8) -> bool {
    is_word(b) || b == b'.' || b == b':' || b == b'-'
}

/// `<needle>[_-]?id <sep> value`, the needle starting on a word boundary.
fn id_after(line: &str, start: usize, end: usize) -> Option<&str> {
    let b = line.as_bytes();
    if start > 0 && is_word(b[start - 1]) {
        return None;
    }
    let mut i = end;
    if i < b.len() && (b[i] == b'_' || b[i] == b'-') {
        i += 1;
    }
    if !(i + 2 <= b.len() && b[i..i + 2].eq_ignore_ascii_case(b"id")) {
        return None;
    }
    value_after(line, i + 2, id_byte)
}

/// The scanner (cheap to clone).
#[derive(Clone)]
pub struct TextScanner {
    ac: AhoCorasick,
}

impl Default for TextScanner {
    fn default() -> Self {
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostFirst)
            .build(NEEDLES.iter().map(|(n, _)| n))
            .expect("fixed needles");
        TextScanner { ac }
    }
}

impl TextScanner {
    /// Scans `line`; with `ids` false, correlation and request keys are not read.
    pub fn scan<'a>(&self, line: &'a str, ids: bool) -> Found<'a> {
        let b = line.as_bytes();
        let mut f = Found::default();
        for m in self.ac.find_iter(line) {
            let (s, e) = (m.start(), m.end());
            match NEEDLES[m.pattern().as_usize()].1 {
                Kind::Correlation if ids && f.correlation.is_none() => {
                    f.correlation = id_after(line, s, e)
                }
                Kind::Request if ids && f.request.is_none() => f.request = id_after(line, s, e),
                Kind::Xray => f.xray = true,
                Kind::Hop => f.hop = true,
                Kind::Traceparent => f.traceparent = true,
                Kind::LevelKey
                    if s < LEVEL_HEAD && f.level.is_none() && (s == 0 || !is_word(b[s - 1])) =>
                {
                    f.level = value_after(line, e, is_word).and_then(Level::parse);
                }
                Kind::LevelWord(l) if s < LEVEL_HEAD && f.level.is_none() => {
                    let before = s == 0 || !is_word(b[s - 1]);
                    let after = e == b.len() || !is_word(b[e]);
                    if before && after {
                        f.level = Some(l);
                    }
                }
                _ => {}
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(line: &str) -> Found<'_> {
        TextScanner::default().scan(line, true)
    }

    #[test]
    fn ids_in_the_usual_spellings() {
        assert_eq!(
            scan("x-correlation-id=abc-1 rest").correlation,
            Some("abc-1")
        );
        assert_eq!(
            scan("X-Correlation-ID: \"abc.2\"").correlation,
            Some("abc.2")
        );
        assert_eq!(scan("correlation_id = 'c:3'").correlation, Some("c:3"));
        assert_eq!(scan("CorrelationId=c4").correlation, Some("c4"));
        assert_eq!(scan("x-request-id=r-1").request, Some("r-1"));
        assert_eq!(scan(r#""request_id":"r2""#).request, Some("r2"));
        // Not keys: inside a word, no separator, empty value.
        assert_eq!(scan("mycorrelation_id=x").correlation, None);
        assert_eq!(scan("correlation id x").correlation, None);
        assert_eq!(scan("correlation_id= ").correlation, None);
        // The first key that parses wins.
        assert_eq!(
            scan("correlation is x; correlation_id=y").correlation,
            Some("y")
        );
    }

    #[test]
    fn levels_first_in_head() {
        assert_eq!(
            scan("2024 INFO starting, ERROR later").level,
            Some(Level::Info)
        );
        assert_eq!(scan("level=warn msg=x").level, Some(Level::Warn));
        assert_eq!(scan("WARNING: disk").level, Some(Level::Warn));
        assert_eq!(scan("ERRORS are not a level").level, None);
        assert_eq!(scan("loglevel=error").level, None);
        let late = format!("{} ERROR", "x".repeat(600));
        assert_eq!(scan(&late).level, None);
    }

    #[test]
    fn markers() {
        let f = scan("hop=2 Root=1-5759e988-bd862e3fe1be46a994272793 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert!(f.hop && f.xray && f.traceparent);
    }
}
