//! Arbitrary bytes as a json-file log: split into lines as the tailer does, reassembled by
//! `Reassembler` (with a small line cap so cutting is exercised), then every record through
//! the redactor (all built-ins) and the application `Extractor`.
//!
//! Checked: no panic; no record longer than the cap; nothing left pending after the final
//! flush; a framing error keeps the raw line's bytes (lossy UTF-8).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sightline_collector::config::CorrelationConfig;
use sightline_collector::parse::app::Extractor;
use sightline_collector::parse::docker_json::{Reassembler, Record};
use sightline_collector::parse::redact::{RedactionConfig, Redactor, BUILTINS};

fn stages() -> &'static (Extractor, Redactor) {
    static STAGES: OnceLock<(Extractor, Redactor)> = OnceLock::new();
    STAGES.get_or_init(|| {
        let extractor = Extractor::new(&CorrelationConfig::default()).expect("default config");
        let redactor = Redactor::new(&RedactionConfig {
            rules: Vec::new(),
            builtin: BUILTINS.iter().map(|s| s.to_string()).collect(),
        })
        .expect("built-ins");
        (extractor, redactor)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    // The collector's floor is 16 KiB; smaller caps reach the cutting code with small inputs
    // (at least 4 bytes: one UTF-8 character).
    let cap = [4usize, 7, 64, 16 * 1024][usize::from(sel % 4)];
    let (extractor, redactor) = stages();
    let mut r = Reassembler::new(cap);
    let mut out: Vec<Record> = Vec::new();
    let mut start = 0usize;
    let mut lines = 0usize;
    for (i, nl) in memchr_iter(data).enumerate() {
        let line = &data[start..nl];
        if !line.iter().all(u8::is_ascii_whitespace) {
            r.push_line(start as u64, line, &mut out);
            lines += 1;
        }
        start = nl + 1;
        if i % 7 == 6 {
            r.flush_stale(Duration::from_secs(3600), &mut out);
        }
    }
    if start < data.len() {
        r.push_line(start as u64, &data[start..], &mut out);
        lines += 1;
    }
    r.flush_stale(Duration::ZERO, &mut out);
    assert_eq!(r.oldest_pending_offset(), None);
    if lines > 0 {
        assert!(!out.is_empty(), "{lines} lines gave no record");
    }
    for rec in &out {
        assert!(
            rec.text.len() <= cap || rec.parse_error.is_some() && rec.text.contains('\u{fffd}'),
            "record of {} bytes over the {cap}-byte cap",
            rec.text.len()
        );
        let (text, _) = redactor.redact(&rec.text);
        let ex = extractor.extract(&text);
        if let Some(t) = &ex.trace_id {
            assert_eq!(t.len(), 32);
        }
        if let Some(s) = &ex.span_id {
            assert_eq!(s.len(), 16);
        }
    }
});

fn memchr_iter(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    data.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
}
