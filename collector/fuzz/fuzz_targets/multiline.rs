//! Arbitrary records, configuration and clock through `Multiline`, with stale and full
//! flushes in between.
//!
//! Checked (per stream): the lines of the output records, in order, are exactly the input
//! lines; output offsets increase; `oldest_pending_offset` is the smallest offset of a line
//! not yet out; caps are kept; nothing is held after `flush_all`.
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sightline_collector::parse::docker_json::Record;
use sightline_collector::parse::multiline::{
    ConditionMode, Multiline, MultilineConfig, MultilineMode, MultilineRules, Preset,
};

/// Realistic lines so the state machines get past their first state.
const VOCAB: &[&str] = &[
    "2024-05-01 12:00:00 INFO started",
    "",
    "java.lang.IllegalStateException: boom",
    "Exception in thread \"main\" java.lang.NullPointerException",
    "\tat a.B.c(B.java:1)",
    "Caused by: java.io.IOException: disk",
    "\t... 3 more",
    "  nested exception is: x",
    "Traceback (most recent call last):",
    "  File \"x.py\", line 1, in <module>",
    "    f()",
    "    ~~^~~",
    "ValueError: bad",
    "panic: oops",
    "\tpanic: oops [recovered]",
    "[signal SIGSEGV: segmentation violation]",
    "goroutine 1 [running]:",
    "main.main()",
    "created by main.main in goroutine 1",
    "\t/app/main.go:3 +0x1",
    "http: panic serving 10.0.0.1:1234: boom",
    " indented",
    "line ending \\",
    "end;",
];

#[derive(Arbitrary, Debug)]
enum Text {
    Vocab(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Line {
        stderr: bool,
        text: Text,
        /// 0: whole line; 1: split part; 2: partial; 3: framing error.
        kind: u8,
    },
    Advance(u16),
    FlushStale,
    FlushAll,
}

#[derive(Arbitrary, Debug)]
struct Input {
    mode: u8,
    presets: Vec<u8>,
    patterns: (String, String),
    max_lines: u8,
    max_bytes: u16,
    ops: Vec<Op>,
}

fn config(inp: &Input) -> MultilineConfig {
    // Few distinct caps, so compiled rules can be cached (regex compilation would dominate).
    let mut c = MultilineConfig {
        max_lines: [2, 3, 5, 500][usize::from(inp.max_lines % 4)],
        max_bytes: [1024, 262_144][usize::from(inp.max_bytes % 2)],
        ..MultilineConfig::default()
    };
    let custom = |c: &mut MultilineConfig, s: &str, cond: Option<(&str, ConditionMode)>| {
        c.mode = MultilineMode::Custom;
        c.start_pattern = Some(s.to_string());
        c.condition_pattern = cond.map(|x| x.0.to_string());
        c.condition_mode = cond.map(|x| x.1);
    };
    match inp.mode % 8 {
        0 => c.mode = MultilineMode::Off,
        1 | 2 => {
            c.mode = MultilineMode::Auto;
            let p: Vec<Preset> = inp
                .presets
                .iter()
                .take(4)
                .map(|b| [Preset::Java, Preset::Python, Preset::Go][usize::from(b % 3)])
                .collect();
            if !p.is_empty() {
                c.presets = p;
            }
        }
        3 => custom(
            &mut c,
            r"^\S",
            Some((r"^\s", ConditionMode::ContinueThrough)),
        ),
        4 => custom(&mut c, r"\\$", Some((r"\\$", ConditionMode::ContinuePast))),
        5 => custom(&mut c, r"^\d{4}-", None),
        6 => custom(&mut c, r"[^;]$", Some((r";$", ConditionMode::HaltWith))),
        _ => {
            // Arbitrary patterns: an invalid one must be refused, not panic.
            let modes = [
                ConditionMode::ContinueThrough,
                ConditionMode::ContinuePast,
                ConditionMode::HaltBefore,
                ConditionMode::HaltWith,
            ];
            let m = modes[inp.patterns.1.len() % 4];
            custom(&mut c, &inp.patterns.0, Some((&inp.patterns.1, m)));
        }
    }
    c
}

fuzz_target!(|inp: Input| {
    let cfg = config(&inp);
    let ms = Arc::new(AtomicU64::new(0));
    let base = Instant::now();
    let t = ms.clone();
    let clock = Box::new(move || base + Duration::from_millis(t.load(Ordering::Relaxed)));
    let rules = if inp.mode % 8 == 7 {
        // Arbitrary patterns: compiled every time, and an invalid one must be refused.
        MultilineRules::new(&cfg)
    } else {
        static CACHE: OnceLock<Mutex<HashMap<String, MultilineRules>>> = OnceLock::new();
        let key = format!("{cfg:?}");
        let mut cache = CACHE
            .get_or_init(Default::default)
            .lock()
            .expect("cache lock");
        match cache.get(&key) {
            Some(r) => Ok(r.clone()),
            None => MultilineRules::new(&cfg).inspect(|r| {
                cache.insert(key, r.clone());
            }),
        }
    };
    let Ok(rules) = rules else {
        assert!(cfg.validate().is_err());
        return;
    };
    let mut m = Multiline::from_rules(&rules, clock);
    let streams = ["stdout", "stderr"];
    let mut inputs: [Vec<(u64, String)>; 2] = Default::default();
    let mut out: Vec<Record> = Vec::new();
    for (i, op) in inp.ops.iter().enumerate() {
        match op {
            Op::Line { stderr, text, kind } => {
                let s = usize::from(*stderr);
                let text = match text {
                    Text::Vocab(k) => VOCAB[usize::from(*k) % VOCAB.len()].to_string(),
                    Text::Raw(r) => r.replace('\n', " "),
                };
                let offset = 100 * i as u64;
                inputs[s].push((offset, text.clone()));
                let rec = Record {
                    offset,
                    text,
                    stream: streams[s].to_string(),
                    time_ns: Some(offset),
                    attrs: BTreeMap::new(),
                    parse_error: (kind % 4 == 3).then(|| "bad".to_string()),
                    split_part: (kind % 4 == 1).then_some(1),
                    partial: kind % 4 == 2,
                };
                m.push(streams[s], rec, &mut out);
            }
            Op::Advance(d) => {
                ms.fetch_add(u64::from(*d), Ordering::Relaxed);
            }
            Op::FlushStale => m.flush_stale(m.flush_timeout(), &mut out),
            Op::FlushAll => m.flush_all(&mut out),
        }
        let mut held = None::<u64>;
        for (s, name) in streams.iter().enumerate() {
            let emitted: usize = out
                .iter()
                .filter(|r| r.stream == *name)
                .map(|r| r.text.split('\n').count())
                .sum();
            assert!(emitted <= inputs[s].len());
            if let Some((o, _)) = inputs[s].get(emitted) {
                held = Some(held.map_or(*o, |h| h.min(*o)));
            }
        }
        assert_eq!(m.oldest_pending_offset(), held);
    }
    m.flush_all(&mut out);
    assert_eq!(m.oldest_pending_offset(), None);
    for (s, name) in streams.iter().enumerate() {
        let recs: Vec<&Record> = out.iter().filter(|r| r.stream == *name).collect();
        let lines: Vec<&str> = recs.iter().flat_map(|r| r.text.split('\n')).collect();
        let want: Vec<&str> = inputs[s].iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(lines, want);
        assert!(recs.windows(2).all(|w| w[0].offset < w[1].offset));
        for r in recs {
            let n = r.text.split('\n').count();
            assert!(n <= cfg.max_lines);
            assert!(n == 1 || r.text.len() <= cfg.max_bytes);
            assert_eq!(r.time_ns, Some(r.offset));
        }
    }
});
