//! Tests of the rules stages: an in-memory [`SeriesSource`] fixture, expression and rule
//! file errors with exact positions, and each operator and function with exact values.

use std::sync::Mutex;

use super::eval::{eval, EvalError};
use super::expr::parse;
use super::*;
use crate::series::{Labels, Matcher, Sample, Series, SeriesSource};

/// In-memory series (and sketch quantiles) for tests.
#[derive(Default)]
pub struct MemorySource {
    pub series: Mutex<Vec<Series>>,
    /// (metric, labels, q) → value, returned for any range.
    pub quantiles: Mutex<Vec<(String, Labels, f64, f64)>>,
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl MemorySource {
    pub fn add(&self, metric: &str, l: &[(&str, &str)], samples: &[(i64, f64)]) {
        let mut labels = labels(l);
        labels.insert("__name__".into(), metric.into());
        let samples: Vec<Sample> = samples
            .iter()
            .map(|&(ts_ms, value)| Sample { ts_ms, value })
            .collect();
        let mut all = self.series.lock().unwrap();
        match all.iter_mut().find(|s| s.labels == labels) {
            Some(s) => s.samples.extend(samples),
            None => all.push(Series { labels, samples }),
        }
    }
}

impl SeriesSource for MemorySource {
    fn select(
        &self,
        metric: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Series> {
        self.series
            .lock()
            .unwrap()
            .iter()
            .filter(|s| {
                s.labels.get("__name__").is_some_and(|n| n == metric)
                    && matchers.iter().all(|m| m.matches(&s.labels))
            })
            .map(|s| Series {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|x| x.ts_ms > start_ms && x.ts_ms <= end_ms)
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect()
    }
    fn quantile(
        &self,
        metric: &str,
        matchers: &[Matcher],
        q: f64,
        _s: i64,
        _e: i64,
    ) -> Vec<(Labels, f64)> {
        self.quantiles
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, l, qq, _)| {
                m == metric && *qq == q && matchers.iter().all(|x| x.matches(l))
            })
            .map(|(_, l, _, v)| (l.clone(), *v))
            .collect()
    }
}

const T: i64 = 1_000_000;

fn fixture() -> MemorySource {
    let s = MemorySource::default();
    // error_rate every 10 s over the last minute.
    s.add(
        "error_rate",
        &[("service", "checkout"), ("cluster", "prod")],
        &[
            (T - 50_000, 0.01),
            (T - 40_000, 0.03),
            (T - 30_000, 0.02),
            (T - 20_000, 0.10),
            (T - 10_000, 0.06),
            (T, 0.08),
        ],
    );
    s.add(
        "error_rate",
        &[("service", "cart"), ("cluster", "prod")],
        &[(T - 20_000, 0.01), (T, 0.02)],
    );
    s.add(
        "error_rate",
        &[("service", "search"), ("cluster", "dev")],
        &[(T - 120_000, 0.9)],
    ); // stale: outside lookback
    s.add(
        "request_count",
        &[("service", "checkout"), ("cluster", "prod")],
        &[(T, 200.0)],
    );
    s.add(
        "request_count",
        &[("service", "cart"), ("cluster", "prod")],
        &[(T, 50.0)],
    );
    s.add(
        "error_count",
        &[("service", "checkout"), ("cluster", "prod")],
        &[(T, 16.0)],
    );
    s.add(
        "error_count",
        &[("service", "cart"), ("cluster", "prod")],
        &[(T, 1.0)],
    );
    // A counter with a reset: 10, 20, 30, 5, 15 at 10 s steps ending at T.
    s.add(
        "requests_total",
        &[("service", "checkout")],
        &[
            (T - 40_000, 10.0),
            (T - 30_000, 20.0),
            (T - 20_000, 30.0),
            (T - 10_000, 5.0),
            (T, 15.0),
        ],
    );
    s.add(
        "log_pattern_count",
        &[("service", "checkout"), ("pattern", "OutOfMemoryError")],
        &[(T - 10_000, 2.0), (T, 3.0)],
    );
    s.quantiles.lock().unwrap().push((
        "request_latency_seconds".into(),
        labels(&[("service", "checkout")]),
        0.99,
        1.25,
    ));
    s
}

/// Evaluates and returns `(labels as {k=v,..} string, value)` sorted.
fn run(src: &MemorySource, e: &str) -> Vec<(String, f64)> {
    let expr = parse(e).unwrap_or_else(|err| panic!("{e}: {err}"));
    let mut out: Vec<(String, f64)> = eval(&expr, src, T)
        .unwrap_or_else(|err| panic!("{e}: {err}"))
        .into_iter()
        .map(|(l, v)| {
            (
                l.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                (v * 1e9).round() / 1e9,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn row(l: &str, v: f64) -> (String, f64) {
    (l.to_string(), v)
}

#[test]
fn selectors_lookback_and_matchers() {
    let s = fixture();
    assert_eq!(
        run(&s, "error_rate"),
        vec![
            row("__name__=error_rate,cluster=prod,service=cart", 0.02),
            row("__name__=error_rate,cluster=prod,service=checkout", 0.08)
        ]
    );
    assert_eq!(
        run(&s, r#"error_rate{service="checkout"}"#),
        vec![row(
            "__name__=error_rate,cluster=prod,service=checkout",
            0.08
        )]
    );
    assert_eq!(
        run(&s, r#"error_rate{service=~"c.*t", service!="cart"}"#).len(),
        1
    );
    assert_eq!(
        run(&s, r#"{__name__="error_rate", cluster!~"prod"}"#),
        vec![]
    );
    assert_eq!(
        run(&s, r#"log_pattern_count{pattern="OutOfMemoryError"} > 2"#),
        vec![row(
            "__name__=log_pattern_count,pattern=OutOfMemoryError,service=checkout",
            3.0
        )]
    );
}

#[test]
fn range_functions_exact_values() {
    let s = fixture();
    let c = "cluster=prod,service=checkout";
    assert_eq!(
        run(&s, r#"avg_over_time(error_rate{service="checkout"}[1m])"#),
        vec![row(c, 0.05)]
    );
    assert_eq!(
        run(&s, r#"max_over_time(error_rate{service="checkout"}[30s])"#),
        vec![row(c, 0.10)]
    );
    assert_eq!(
        run(&s, r#"min_over_time(error_rate{service="checkout"}[30s])"#),
        vec![row(c, 0.06)]
    );
    assert_eq!(
        run(&s, r#"sum_over_time(error_rate{service="checkout"}[20s])"#),
        vec![row(c, 0.14)]
    );
    assert_eq!(
        run(&s, r#"count_over_time(error_rate{service="checkout"}[1m])"#),
        vec![row(c, 6.0)]
    );
    // quantile over samples: 0.01 0.02 0.03 0.06 0.08 0.10, φ=0.5 → rank 2.5 → 0.045.
    assert_eq!(
        run(
            &s,
            r#"quantile_over_time(0.5, error_rate{service="checkout"}[1m])"#
        ),
        vec![row(c, 0.045)]
    );
    // Sketch-backed: SeriesSource::quantile.
    assert_eq!(
        run(&s, "quantile_over_time(0.99, request_latency_seconds[5m])"),
        vec![row("service=checkout", 1.25)]
    );
    // increase with a reset: (15-10)+30 = 35 over 40 s sampled; the first sample is 10 s
    // (< 1.1 × 10 s) after the range start and ≥ the zero point → extrapolated by
    // min(10 s, 40 s × 10/35 = 11.43 s) = 10 s: 35 × 50/40 = 43.75.
    assert_eq!(
        run(&s, "increase(requests_total[50s])"),
        vec![row("service=checkout", 43.75)]
    );
    assert_eq!(
        run(&s, "rate(requests_total[50s])"),
        vec![row("service=checkout", 0.875)]
    );
    // Range start far before the first sample: extrapolate by half an interval (5 s).
    assert_eq!(
        run(&s, "increase(requests_total[2m])"),
        vec![row("service=checkout", 39.375)]
    );
}

#[test]
fn operators_exact_values() {
    let s = fixture();
    let (ca, co) = ("cluster=prod,service=cart", "cluster=prod,service=checkout");
    assert_eq!(
        run(&s, "error_count / request_count"),
        vec![row(ca, 0.02), row(co, 0.08)]
    );
    assert_eq!(
        run(&s, "error_count * 2 + 1"),
        vec![row(ca, 3.0), row(co, 33.0)]
    );
    assert_eq!(
        run(&s, "error_count % 5 - 2 ^ 2"),
        vec![row(ca, -3.0), row(co, -3.0)]
    );
    assert_eq!(run(&s, "-error_count"), vec![row(ca, -1.0), row(co, -16.0)]);
    assert_eq!(
        run(&s, "100 - error_count"),
        vec![row(ca, 99.0), row(co, 84.0)]
    );
    assert_eq!(
        run(&s, "2 ^ 3 ^ 2 + error_count * 0"),
        vec![row(ca, 512.0), row(co, 512.0)]
    );
    // Filtering keeps the metric name and the vector's value, also with the scalar first.
    assert_eq!(
        run(&s, "error_rate > 0.05"),
        vec![row(
            "__name__=error_rate,cluster=prod,service=checkout",
            0.08
        )]
    );
    assert_eq!(
        run(&s, "0.05 < error_rate"),
        vec![row(
            "__name__=error_rate,cluster=prod,service=checkout",
            0.08
        )]
    );
    assert_eq!(
        run(&s, "error_rate > bool 0.05"),
        vec![row(ca, 0.0), row(co, 1.0)]
    );
    assert_eq!(
        run(&s, "error_rate == 0.02"),
        vec![row("__name__=error_rate,cluster=prod,service=cart", 0.02)]
    );
    assert_eq!(run(&s, "error_rate != 0.02").len(), 1);
    assert_eq!(run(&s, "error_rate >= 0.02").len(), 2);
    assert_eq!(run(&s, "error_rate <= 0.02").len(), 1);
    assert_eq!(run(&s, "error_rate < 0.02").len(), 0);
    assert_eq!(
        run(&s, "error_count > request_count / 20"),
        vec![row(
            "__name__=error_count,cluster=prod,service=checkout",
            16.0
        )]
    );
    // Set operators.
    assert_eq!(
        run(&s, "error_count and error_rate > 0.05"),
        vec![row(
            "__name__=error_count,cluster=prod,service=checkout",
            16.0
        )]
    );
    assert_eq!(
        run(&s, "error_count unless error_rate > 0.05"),
        vec![row("__name__=error_count,cluster=prod,service=cart", 1.0)]
    );
    assert_eq!(
        run(&s, r#"error_rate > 0.05 or log_pattern_count"#),
        vec![
            row("__name__=error_rate,cluster=prod,service=checkout", 0.08),
            row(
                "__name__=log_pattern_count,pattern=OutOfMemoryError,service=checkout",
                3.0
            )
        ]
    );
    assert_eq!(
        run(&s, "error_count and on (service) log_pattern_count"),
        vec![row(
            "__name__=error_count,cluster=prod,service=checkout",
            16.0
        )]
    );
    // on / ignoring for arithmetic.
    assert_eq!(
        run(&s, "error_count / on (service) log_pattern_count"),
        vec![row("service=checkout", 5.333333333)]
    );
    // ignoring(pattern) leaves {service} on the left but {cluster, service} on the right.
    assert_eq!(
        run(&s, "log_pattern_count / ignoring (pattern) error_count"),
        vec![]
    );
    assert_eq!(
        run(
            &s,
            "log_pattern_count / ignoring (pattern) sum by (service) (error_count)"
        ),
        vec![row("service=checkout", 0.1875)]
    );
    // Scalars need bool to compare.
    assert_eq!(
        run(&s, "error_count * (1 < bool 2)"),
        vec![row(ca, 1.0), row(co, 16.0)]
    );
}

#[test]
fn aggregations_exact_values() {
    let s = fixture();
    assert_eq!(run(&s, "sum(error_count)"), vec![row("", 17.0)]);
    assert_eq!(
        run(&s, "sum by (cluster) (error_count)"),
        vec![row("cluster=prod", 17.0)]
    );
    assert_eq!(
        run(&s, "sum(error_count) by (cluster)"),
        vec![row("cluster=prod", 17.0)]
    );
    assert_eq!(
        run(&s, "avg without (service) (error_count)"),
        vec![row("cluster=prod", 8.5)]
    );
    assert_eq!(
        run(&s, "min by (cluster) (error_count)"),
        vec![row("cluster=prod", 1.0)]
    );
    assert_eq!(
        run(&s, "max by (cluster) (error_count)"),
        vec![row("cluster=prod", 16.0)]
    );
    assert_eq!(
        run(&s, "count by (cluster) (error_rate)"),
        vec![row("cluster=prod", 2.0)]
    );
    assert_eq!(
        run(
            &s,
            "sum by (service) (error_count) / sum by (service) (request_count) > 0.05"
        ),
        vec![row("service=checkout", 0.08)]
    );
}

#[test]
fn eval_errors() {
    let s = fixture();
    s.add(
        "error_count",
        &[("service", "checkout"), ("cluster", "dev")],
        &[(T, 4.0)],
    );
    let e = parse("error_count / on (service) request_count").unwrap();
    assert!(matches!(
        eval(&e, &s, T),
        Err(EvalError::DuplicateMatch(..))
    ));
    let e = parse("1 + 1").unwrap();
    assert_eq!(eval(&e, &s, T), Err(EvalError::ScalarResult));
}

#[test]
fn parse_errors_have_positions() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("error_rate > = 1", 1, 14, "unexpected '='"),
        ("rate(error_rate)", 1, 6, "rate needs a range vector"),
        (
            "error_rate[5m] > 1",
            1,
            16,
            "binary operators need instant vectors",
        ),
        ("error_rate[5x]", 1, 12, "bad range duration"),
        ("error_rate[5m:1m]", 1, 11, "subqueries"),
        (
            "error_rate offset 5m",
            1,
            12,
            "offset and @ modifiers are not supported",
        ),
        (
            "histogram_quantile(0.9, x)",
            1,
            1,
            "unsupported function \"histogram_quantile\"",
        ),
        ("topk(3, x)", 1, 1, "aggregation \"topk\" is not supported"),
        ("a * on (x) group_left b", 1, 12, "group_left"),
        (
            "sum(\n  error_rate{service=\"x\"\n)",
            3,
            1,
            "expected ',' or '}'",
        ),
        ("1 > 2", 1, 3, "must use the bool modifier"),
        ("1 and x", 1, 3, "set operators"),
        ("x{a=~\"(\"}", 1, 6, "invalid regex"),
        ("x{a=\"b}", 1, 5, "unterminated string"),
        ("", 1, 1, "empty expression"),
    ];
    for (src, line, col, msg) in cases {
        let e = parse(src).expect_err(src);
        assert_eq!((e.line, e.column), (*line, *col), "{src}: {e}");
        assert!(e.message.contains(msg), "{src}: {e}");
    }
}

#[test]
fn rule_file_errors_have_file_line_column() {
    let p = std::path::Path::new("rules/app.yml");
    let err = |text: &str| parse_rule_file(p, text, 10_000).unwrap_err().to_string();
    let head = "groups:\n  - name: checkout\n    rules:\n      - alert: HighErrors\n";
    assert_eq!(
        err(&format!("{head}        expr: error_rate > = 1\n")),
        "rules/app.yml:5:28: alert \"HighErrors\": expr: unexpected '=' (expression 1:14)"
    );
    assert_eq!(
        err(&format!("{head}        expr: |\n          sum(error_rate)\n            > bool\n")),
        "rules/app.yml:7:19: alert \"HighErrors\": expr: unexpected end of expression (expression 2:9)"
    );
    assert!(
        err(&format!("{head}        expr: x > 1\n        fore: 5m\n"))
            .starts_with("rules/app.yml:6:9: unknown field `fore`")
    );
    assert_eq!(
        err(&format!("{head}        expr: x > 1\n        for: 5 minutes\n")),
        "rules/app.yml:6:14: alert \"HighErrors\": for: \"5 minutes\": missing unit (one of y, w, d, h, m, s, ms)"
    );
    assert_eq!(
        err("groups:\n  - name: a\n    rules: []\n  - name: a\n    rules: []\n"),
        "rules/app.yml:4:11: group name \"a\" is repeated in this file (first at line 2)"
    );
    assert_eq!(
        err(&format!("{head}        expr: x > 1\n        annotations:\n          summary: \"{{{{ $labels.service }}}} at {{{{ $valu }}}}\"\n")),
        "rules/app.yml:7:49: alert \"HighErrors\": annotation \"summary\": template: unknown variable \"$valu\" (use $labels.<name>, $labels or $value)"
    );
    assert_eq!(
        err(&format!("{head}        expr: \"1 + 1\"\n")),
        "rules/app.yml:5:15: alert \"HighErrors\": expr is a scalar; an alert needs an instant vector (e.g. compare a selector with a threshold)"
    );
    assert!(
        err("groups:\n  - name: a\n    rules:\n      - record: x\n        expr: y\n")
            .contains("4:17: recording rules are not supported")
    );
    assert!(err("groups:\n  - name: a\n    interval: 0s\n")
        .contains("3:15: interval must be greater than 0"));
    // A valid file.
    let g = parse_rule_file(p, &format!("{head}        expr: x > 1\n        for: 1h30m\n        keep_firing_for: 30s\n        labels: {{ severity: page }}\n"), 10_000).unwrap();
    assert_eq!(
        (
            g[0].interval_ms,
            g[0].rules[0].for_ms,
            g[0].rules[0].keep_firing_for_ms
        ),
        (10_000, 5_400_000, 30_000)
    );
}
