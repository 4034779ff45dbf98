use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

const T0: u64 = 1_714_564_800_000_000_000;

fn rec(offset: u64, text: &str, stream: &str) -> Record {
    Record {
        offset,
        text: text.to_string(),
        stream: stream.to_string(),
        time_ns: Some(T0 + offset),
        attrs: BTreeMap::from([("tag".to_string(), "web".to_string())]),
        parse_error: None,
        split_part: None,
        partial: false,
    }
}

/// A joiner whose clock reads `ms` milliseconds after a fixed start.
fn joiner(cfg: &MultilineConfig) -> (Multiline, Arc<AtomicU64>) {
    let ms = Arc::new(AtomicU64::new(0));
    let base = Instant::now();
    let t = ms.clone();
    let clock: Clock = Box::new(move || base + Duration::from_millis(t.load(Ordering::SeqCst)));
    (Multiline::with_clock(cfg, clock).unwrap(), ms)
}

fn auto() -> MultilineConfig {
    MultilineConfig {
        mode: MultilineMode::Auto,
        ..Default::default()
    }
}

fn custom(start: &str, cond: Option<(&str, ConditionMode)>) -> MultilineConfig {
    MultilineConfig {
        mode: MultilineMode::Custom,
        start_pattern: Some(start.into()),
        condition_pattern: cond.map(|c| c.0.into()),
        condition_mode: cond.map(|c| c.1),
        ..Default::default()
    }
}

/// Pushes `lines` on one stream, offsets 100 apart from `first`.
fn feed(m: &mut Multiline, stream: &str, first: u64, lines: &[&str], out: &mut Vec<Record>) {
    for (i, l) in lines.iter().enumerate() {
        m.push(stream, rec(first + 100 * i as u64, l, stream), out);
    }
}

fn texts(out: &[Record]) -> Vec<&str> {
    out.iter().map(|r| r.text.as_str()).collect()
}

const JAVA: &[&str] = &[
    "Exception in thread \"main\" java.lang.IllegalStateException: Failed to process order 42",
    "\tat com.example.orders.OrderService.process(OrderService.java:87)",
    "\tat com.example.orders.OrderController.handle(OrderController.java:41)",
    "\tat java.base/java.lang.Thread.run(Thread.java:833)",
    "Caused by: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.",
    "\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)",
    "\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:197)",
    "\t... 12 more",
];

#[test]
fn java_exception_with_caused_by_is_one_record() {
    let (mut m, _) = joiner(&auto());
    let mut out = Vec::new();
    let header = "2024-05-01 12:00:00.123 ERROR [main] c.e.o.OrderService - request failed";
    m.push("stderr", rec(0, header, "stderr"), &mut out);
    feed(&mut m, "stderr", 100, JAVA, &mut out);
    assert_eq!(texts(&out), [header], "the trace is held until it ends");
    assert_eq!(m.oldest_pending_offset(), Some(100));
    let next = "2024-05-01 12:00:01.000 INFO  [main] c.e.o.OrderService - next order";
    m.push("stderr", rec(900, next, "stderr"), &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0],
        rec(0, header, "stderr"),
        "a plain line passes unchanged"
    );
    let trace = &out[1];
    assert_eq!(trace.text, JAVA.join("\n"));
    assert_eq!(trace.offset, 100);
    assert_eq!(trace.time_ns, Some(T0 + 100));
    assert_eq!(trace.stream, "stderr");
    assert_eq!(trace.attrs.get(ATTR_LINES).map(String::as_str), Some("8"));
    assert_eq!(trace.attrs.get("tag").map(String::as_str), Some("web"));
    assert!(!trace.attrs.contains_key(ATTR_TRUNCATED));
    assert_eq!(out[2], rec(900, next, "stderr"));
    assert_eq!(m.oldest_pending_offset(), None);
}

#[test]
fn python_traceback_ends_on_its_exception_line() {
    let tb = [
        "Traceback (most recent call last):",
        "  File \"/app/main.py\", line 10, in <module>",
        "    main()",
        "  File \"/app/main.py\", line 6, in main",
        "    return ratio(1, 0)",
        "           ^^^^^^^^^^^",
        "  File \"/app/calc.py\", line 2, in ratio",
        "    return a / b",
        "           ~~^~~",
        "ZeroDivisionError: division by zero",
    ];
    let (mut m, _) = joiner(&auto());
    let mut out = Vec::new();
    feed(&mut m, "stderr", 0, &tb, &mut out);
    // The exception line leads back to start_state: shipped without waiting.
    assert_eq!(texts(&out), [tb.join("\n").as_str()]);
    assert_eq!(out[0].offset, 0);
    assert_eq!(out[0].attrs.get(ATTR_LINES).map(String::as_str), Some("10"));
    assert_eq!(m.oldest_pending_offset(), None);
}

#[test]
fn go_panic_with_goroutine_dump_is_one_record() {
    let dump = [
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48f4a5]",
        "",
        "goroutine 1 [running]:",
        "main.(*Server).handle(0x0, {0x4c1b20, 0xc000012345})",
        "\t/app/server.go:42 +0x25",
        "main.main()",
        "\t/app/main.go:17 +0x65",
        "",
        "goroutine 18 [chan receive]:",
        "main.worker(0xc00007e060)",
        "\t/app/worker.go:9 +0x3a",
        "created by main.main in goroutine 1",
        "\t/app/main.go:12 +0x45",
    ];
    let (mut m, _) = joiner(&auto());
    let mut out = Vec::new();
    feed(&mut m, "stderr", 0, &dump, &mut out);
    assert!(out.is_empty());
    m.push("stderr", rec(5000, "exit status 2", "stderr"), &mut out);
    assert_eq!(texts(&out), [dump.join("\n").as_str(), "exit status 2"]);
    assert_eq!(out[0].attrs.get(ATTR_LINES).map(String::as_str), Some("14"));
}

#[test]
fn streams_are_joined_separately_when_interleaved() {
    let (mut m, _) = joiner(&auto());
    let mut out = Vec::new();
    for (i, l) in JAVA.iter().enumerate() {
        let off = 200 * i as u64;
        m.push("stderr", rec(off, l, "stderr"), &mut out);
        m.push(
            "stdout",
            rec(off + 100, &format!("GET /health {i}"), "stdout"),
            &mut out,
        );
    }
    // stdout lines were not held behind the stderr trace.
    assert_eq!(out.len(), JAVA.len());
    assert!(out.iter().all(|r| r.stream == "stdout"));
    assert_eq!(out[3].text, "GET /health 3");
    assert_eq!(m.oldest_pending_offset(), Some(0));
    m.flush_all(&mut out);
    let trace = out.last().unwrap();
    assert_eq!((trace.offset, trace.stream.as_str()), (0, "stderr"));
    assert_eq!(trace.text, JAVA.join("\n"));
}

#[test]
fn held_record_flushes_after_timeout_since_its_last_line() {
    let (mut m, ms) = joiner(&auto());
    let mut out = Vec::new();
    assert_eq!(m.flush_timeout(), Duration::from_millis(1000));
    feed(&mut m, "stderr", 0, &JAVA[..2], &mut out);
    ms.store(500, Ordering::SeqCst);
    m.push("stderr", rec(200, JAVA[2], "stderr"), &mut out);
    ms.store(1400, Ordering::SeqCst);
    m.flush_stale(m.flush_timeout(), &mut out);
    assert!(out.is_empty(), "only 900 ms since the last line");
    ms.store(1500, Ordering::SeqCst);
    m.flush_stale(m.flush_timeout(), &mut out);
    assert_eq!(texts(&out), [JAVA[..3].join("\n").as_str()]);
    assert_eq!(m.oldest_pending_offset(), None);
}

#[test]
fn max_lines_cuts_and_continues_without_loss() {
    let cfg = MultilineConfig {
        max_lines: 3,
        ..auto()
    };
    let (mut m, _) = joiner(&cfg);
    let mut out = Vec::new();
    feed(&mut m, "stderr", 0, JAVA, &mut out);
    m.flush_all(&mut out);
    assert_eq!(
        texts(&out),
        [
            JAVA[..3].join("\n").as_str(),
            JAVA[3..6].join("\n").as_str(),
            JAVA[6..].join("\n").as_str()
        ]
    );
    assert_eq!(
        out.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 300, 600]
    );
    fn flag<'r>(r: &'r Record, k: &str) -> Option<&'r str> {
        r.attrs.get(k).map(String::as_str)
    }
    assert_eq!(flag(&out[0], ATTR_TRUNCATED), Some("true"));
    assert_eq!(flag(&out[0], ATTR_CONTINUATION), None);
    assert_eq!(flag(&out[1], ATTR_TRUNCATED), Some("true"));
    assert_eq!(flag(&out[1], ATTR_CONTINUATION), Some("true"));
    assert_eq!(flag(&out[2], ATTR_TRUNCATED), None);
    assert_eq!(flag(&out[2], ATTR_CONTINUATION), Some("true"));
    assert_eq!(flag(&out[2], ATTR_LINES), Some("2"));
}

#[test]
fn max_bytes_cuts_before_the_line_that_would_pass_it() {
    let cfg = MultilineConfig {
        max_bytes: 1024,
        ..custom(r"^\S", Some((r"^\s", ConditionMode::ContinueThrough)))
    };
    let (mut m, _) = joiner(&cfg);
    let mut out = Vec::new();
    let frame = format!(" {}", "x".repeat(299)); // 300 bytes
    let lines: Vec<&str> = std::iter::once("start")
        .chain(std::iter::repeat_n(frame.as_str(), 5))
        .collect();
    feed(&mut m, "stdout", 0, &lines, &mut out);
    m.push("stdout", rec(9000, "next", "stdout"), &mut out);
    // 5 + 3 * 301 = 908 fits; one more frame would make 1209.
    assert_eq!(out[0].text.len(), 908);
    assert_eq!(out[0].text, lines[..4].join("\n"));
    assert_eq!(out[1].text, lines[4..].join("\n"));
    assert_eq!(
        out[1].attrs.get(ATTR_CONTINUATION).map(String::as_str),
        Some("true")
    );
    assert_eq!(out.len(), 2, "`next` opens a record of its own and is held");
    assert_eq!(m.oldest_pending_offset(), Some(9000));
    assert!(out.iter().all(|r| r.text.len() <= 1024));
}

#[test]
fn vector_condition_modes() {
    type Case<'a> = (MultilineConfig, Vec<&'a str>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            custom(r"^[^\s]", Some((r"^[\s]+", ConditionMode::ContinueThrough))),
            vec![
                "usual",
                "first part",
                " second part",
                " last part",
                "another",
                "fin",
                " fin tail",
            ],
            vec![
                "usual",
                "first part\n second part\n last part",
                "another",
                "fin\n fin tail",
            ],
        ),
        (
            custom(r"\\$", Some((r"\\$", ConditionMode::ContinuePast))),
            vec![
                "usual",
                "first \\",
                "second \\",
                "third",
                "plain",
                "a \\",
                "b",
            ],
            vec!["usual", "first \\\nsecond \\\nthird", "plain", "a \\\nb"],
        ),
        (
            custom(
                r"^(INFO|ERROR) ",
                Some((r"^(INFO|ERROR) ", ConditionMode::HaltBefore)),
            ),
            vec![
                "garbage", "INFO a", "  detail", "ERROR b", "INFO c", "more", "tail",
            ],
            vec![
                "garbage",
                "INFO a\n  detail",
                "ERROR b",
                "INFO c\nmore\ntail",
            ],
        ),
        (
            custom(r"[^;]$", Some((r";$", ConditionMode::HaltWith))),
            vec!["done;", "select *", "from t", "where x;", "one;"],
            vec!["done;", "select *\nfrom t\nwhere x;", "one;"],
        ),
        (
            // No condition: until the next start line (Vector's legacy indicator).
            custom(r"^\d{4}-", None),
            vec!["boot", "2024-01-01 a", "b", "c", "2024-01-02 d"],
            vec!["boot", "2024-01-01 a\nb\nc", "2024-01-02 d"],
        ),
    ];
    for (cfg, input, want) in cases {
        let (mut m, _) = joiner(&cfg);
        let mut out = Vec::new();
        feed(&mut m, "stdout", 0, &input, &mut out);
        m.flush_all(&mut out);
        assert_eq!(texts(&out), want, "{:?}", cfg.condition_mode);
    }
}

#[test]
fn partial_and_broken_records_are_not_joined_and_end_the_open_one() {
    let (mut m, _) = joiner(&auto());
    let mut out = Vec::new();
    feed(&mut m, "stderr", 0, &JAVA[..2], &mut out);
    let mut part = rec(200, "\tat but cut", "stderr");
    part.split_part = Some(1);
    m.push("stderr", part.clone(), &mut out);
    assert_eq!(texts(&out), [JAVA[..2].join("\n").as_str(), "\tat but cut"]);
    assert_eq!(out[1], part);
    let mut broken = rec(300, "{\"log\":", "");
    broken.parse_error = Some("bad".into());
    m.push("", broken.clone(), &mut out);
    assert_eq!(out[2], broken);
    assert_eq!(m.oldest_pending_offset(), None);
}

#[test]
fn off_passes_everything_through() {
    let (mut m, _) = joiner(&MultilineConfig::default());
    assert!(!m.is_enabled());
    let mut out = Vec::new();
    feed(&mut m, "stderr", 0, JAVA, &mut out);
    assert_eq!(texts(&out), JAVA);
    assert_eq!(m.oldest_pending_offset(), None);
}

#[test]
fn config_from_toml_and_validation_errors() {
    let cfg: MultilineConfig = toml::from_str(
        "mode = \"custom\"\nstart_pattern = '^\\d'\ncondition_pattern = '^\\s'\ncondition_mode = \"continue_through\"\nmax_lines = 50\n",
    )
    .unwrap();
    assert_eq!(cfg.mode, MultilineMode::Custom);
    assert_eq!(cfg.condition_mode, Some(ConditionMode::ContinueThrough));
    assert_eq!(
        (cfg.max_lines, cfg.max_bytes, cfg.flush_timeout_ms),
        (50, 262144, 1000)
    );
    cfg.validate().unwrap();
    let d = MultilineConfig::default();
    assert_eq!(d.presets, [Preset::Python, Preset::Go, Preset::Java]);
    d.validate().unwrap();
    auto().validate().unwrap();

    let err =
        toml::from_str::<MultilineConfig>("mode = \"auto\"\nstart_patern = 'x'\n").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `start_patern`"),
        "{err}"
    );
    let err = toml::from_str::<MultilineConfig>("presets = [\"ruby\"]\n").unwrap_err();
    assert!(err.to_string().contains("unknown variant `ruby`"), "{err}");

    let field = |c: MultilineConfig| match c.validate().unwrap_err() {
        ConfigError::Invalid { field, message } => format!("{field}: {message}"),
        e => panic!("{e}"),
    };
    let e = field(custom("(unclosed", None));
    assert!(
        e.starts_with("multiline.start_pattern: regex parse error"),
        "{e}"
    );
    let e = field(custom("^x", Some(("[z-a]", ConditionMode::HaltWith))));
    assert!(
        e.starts_with("multiline.condition_pattern: regex parse error"),
        "{e}"
    );
    let mut c = custom("^x", None);
    c.condition_pattern = Some("^y".into());
    assert!(field(c).starts_with("multiline.condition_mode: is required"));
    let mut c = custom("^x", None);
    c.condition_mode = Some(ConditionMode::HaltBefore);
    assert!(field(c).starts_with("multiline.condition_pattern: is required"));
    let mut c = custom("^x", None);
    c.start_pattern = None;
    assert!(field(c).starts_with("multiline.start_pattern: is required"));
    let mut c = auto();
    c.start_pattern = Some("^x".into());
    assert!(field(c).starts_with("multiline.start_pattern: is only used"));
    let mut c = auto();
    c.presets.clear();
    assert!(field(c).starts_with("multiline.presets:"));
    for (c, f) in [
        (
            MultilineConfig {
                max_lines: 1,
                ..auto()
            },
            "multiline.max_lines",
        ),
        (
            MultilineConfig {
                max_bytes: 100,
                ..auto()
            },
            "multiline.max_bytes",
        ),
        (
            MultilineConfig {
                flush_timeout_ms: 0,
                ..auto()
            },
            "multiline.flush_timeout_ms",
        ),
    ] {
        assert!(field(c).starts_with(f), "{f}");
    }
}

/// Realistic line kinds for the property tests (no `\n` inside a line).
const VOCAB: &[&str] = &[
    "2024-05-01 12:00:00 INFO started",
    "plain line",
    "",
    "java.lang.IllegalStateException: boom",
    "\tat a.B.c(B.java:1)",
    "Caused by: java.io.IOException: disk",
    "\t... 3 more",
    "Traceback (most recent call last):",
    "  File \"x.py\", line 1, in <module>",
    "    f()",
    "ValueError: bad",
    "panic: oops",
    "goroutine 1 [running]:",
    "main.main()",
    "\t/app/main.go:3 +0x1",
    " indented",
    "line ending \\",
    "end;",
];

fn config_choice(k: u8, max_lines: usize) -> MultilineConfig {
    let mut c = match k % 6 {
        0 => auto(),
        1 => custom(r"^\S", Some((r"^\s", ConditionMode::ContinueThrough))),
        2 => custom(r"\\$", Some((r"\\$", ConditionMode::ContinuePast))),
        3 => custom(r"^\d{4}-", None),
        4 => custom(r"[^;]$", Some((r";$", ConditionMode::HaltWith))),
        _ => MultilineConfig::default(),
    };
    c.max_lines = max_lines;
    c.max_bytes = 1024;
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Per stream: the lines of the outputs, in order, are exactly the input lines; offsets
    /// increase; nothing is held that the checkpoint could pass.
    #[test]
    fn joining_loses_and_reorders_nothing(
        k in 0u8..6,
        max_lines in 2usize..8,
        steps in proptest::collection::vec((0usize..VOCAB.len(), any::<bool>(), 0u8..8, 0u64..700), 0..120),
    ) {
        let (mut m, ms) = joiner(&config_choice(k, max_lines));
        let streams = ["stdout", "stderr"];
        let mut inputs: [Vec<(u64, String)>; 2] = Default::default();
        let mut out = Vec::new();
        for (i, (word, err, extra, dt)) in steps.iter().enumerate() {
            let s = usize::from(*err);
            // Long lines now and then, to reach max_bytes.
            let text = if *extra == 0 { format!("{} {}", VOCAB[*word], "y".repeat(400)) } else { VOCAB[*word].to_string() };
            let offset = 100 * i as u64;
            inputs[s].push((offset, text.clone()));
            m.push(streams[s], rec(offset, &text, streams[s]), &mut out);
            ms.fetch_add(*dt, Ordering::SeqCst);
            if *extra == 1 {
                m.flush_stale(m.flush_timeout(), &mut out);
            }
            // Held = inputs whose lines are not out yet; the checkpoint bound is their minimum.
            let mut held = Vec::new();
            for (s, name) in streams.iter().enumerate() {
                let emitted: usize = out.iter().filter(|r| r.stream == *name).map(|r| r.text.split('\n').count()).sum();
                prop_assert!(emitted <= inputs[s].len());
                held.extend(inputs[s][emitted..].iter().map(|(o, _)| *o));
            }
            prop_assert_eq!(m.oldest_pending_offset(), held.iter().copied().min());
        }
        m.flush_all(&mut out);
        prop_assert_eq!(m.oldest_pending_offset(), None);
        for (s, name) in streams.iter().enumerate() {
            let recs: Vec<&Record> = out.iter().filter(|r| r.stream == *name).collect();
            let lines: Vec<&str> = recs.iter().flat_map(|r| r.text.split('\n')).collect();
            let want: Vec<&str> = inputs[s].iter().map(|(_, t)| t.as_str()).collect();
            prop_assert_eq!(lines, want);
            prop_assert!(recs.windows(2).all(|w| w[0].offset < w[1].offset));
            for r in &recs {
                let n = r.text.split('\n').count();
                prop_assert!(n <= max_lines);
                prop_assert!(n == 1 || r.text.len() <= 1024);
                // Each record keeps its first line's offset and timestamp.
                prop_assert!(inputs[s].iter().any(|(o, t)| *o == r.offset && r.text.split('\n').next() == Some(t.as_str())));
                prop_assert_eq!(r.time_ns, Some(T0 + r.offset));
                let lines_attr = r.attrs.get(ATTR_LINES).cloned();
                if n > 1 { prop_assert_eq!(lines_attr, Some(n.to_string())); }
            }
        }
    }
}

#[test]
fn rules_compiled_once_serve_independent_joiners() {
    fn send<T: Send>(_: &T) {}
    let rules = MultilineRules::new(&auto()).unwrap();
    let mut a = Multiline::from_rules(&rules, Box::new(Instant::now));
    let mut b = Multiline::from_rules(&rules.clone(), Box::new(Instant::now));
    send(&a);
    let mut out = Vec::new();
    a.push("stderr", rec(0, JAVA[0], "stderr"), &mut out);
    b.push("stderr", rec(50, "plain", "stderr"), &mut out);
    assert_eq!(
        (a.oldest_pending_offset(), b.oldest_pending_offset()),
        (Some(0), None)
    );
    assert_eq!(texts(&out), ["plain"]);
    assert!(MultilineRules::new(&custom("(", None)).is_err());
}
