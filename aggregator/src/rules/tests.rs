//! Tests across the rules stages: an in-memory [`SeriesSource`], expression errors with
//! exact positions, each operator and function with exact values, property tests of the
//! state machine against a reference model of Prometheus' semantics (with restarts through
//! the persisted JSON), and the manager end to end through real files.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::eval::{eval, EvalError};
use super::expr::parse;
use super::state::{AlertState, ResultElement, RuleState, RESOLVED_RETENTION_MS};
use super::*;
use crate::alert::AlertStatus;
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

// ---- State machine: property tests against a reference model ----

/// Reference model of one alert instance (a label set), written from the Prometheus
/// documentation rather than from `RuleState`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Model {
    Absent,
    Pending {
        active: i64,
    },
    Firing {
        active: i64,
        fired: i64,
        missing_since: Option<i64>,
    },
    Resolved {
        active: i64,
        fired: i64,
        resolved: i64,
    },
}

fn model_step(m: Model, present: bool, ts: i64, for_ms: i64, keep_ms: i64) -> Model {
    use Model::*;
    match (m, present) {
        (Absent, false) => Absent,
        (Pending { .. }, false) => Absent,
        (Absent, true) | (Resolved { .. }, true) => {
            if for_ms == 0 {
                Firing {
                    active: ts,
                    fired: ts,
                    missing_since: None,
                }
            } else {
                Pending { active: ts }
            }
        }
        (Pending { active }, true) => {
            if ts - active >= for_ms {
                Firing {
                    active,
                    fired: ts,
                    missing_since: None,
                }
            } else {
                Pending { active }
            }
        }
        (Firing { active, fired, .. }, true) => Firing {
            active,
            fired,
            missing_since: None,
        },
        (
            Firing {
                active,
                fired,
                missing_since,
            },
            false,
        ) => {
            let since = missing_since.unwrap_or(ts);
            if keep_ms > 0 && ts - since < keep_ms {
                Firing {
                    active,
                    fired,
                    missing_since: Some(since),
                }
            } else {
                Resolved {
                    active,
                    fired,
                    resolved: ts,
                }
            }
        }
        (Resolved { resolved, .. }, false) if ts - resolved > RESOLVED_RETENTION_MS => Absent,
        (r @ Resolved { .. }, false) => r,
    }
}

fn series_labels(i: usize) -> Labels {
    labels(&[
        ("alertname", "A"),
        ("service", ["checkout", "cart", "search"][i]),
    ])
}

fn check_matches(state: &RuleState, models: &[Model]) -> Result<(), TestCaseError> {
    for (i, m) in models.iter().enumerate() {
        let fp = crate::alert::fingerprint(&series_labels(i));
        let got = state.alerts.get(&fp);
        match (m, got) {
            (Model::Absent, None) => {}
            (Model::Pending { active }, Some(a)) => {
                prop_assert_eq!(a.state, AlertState::Pending);
                prop_assert_eq!(a.active_at_ms, *active);
            }
            (Model::Firing { active, fired, .. }, Some(a)) => {
                prop_assert_eq!(a.state, AlertState::Firing);
                prop_assert_eq!((a.active_at_ms, a.fired_at_ms), (*active, Some(*fired)));
            }
            (
                Model::Resolved {
                    active,
                    fired,
                    resolved,
                },
                Some(a),
            ) => {
                prop_assert_eq!(a.state, AlertState::Inactive);
                prop_assert_eq!(
                    (a.active_at_ms, a.fired_at_ms, a.resolved_at_ms),
                    (*active, Some(*fired), Some(*resolved))
                );
            }
            (m, a) => prop_assert!(false, "series {}: model {:?}, state {:?}", i, m, a),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn state_machine_matches_reference_model(
        for_steps in 0i64..5,
        keep_steps in 0i64..4,
        step_ms in prop::sample::select(vec![10_000i64, 60_000, 300_000]),
        steps in prop::collection::vec(prop::collection::vec(any::<bool>(), 3), 1..60),
        restart_at in any::<prop::sample::Index>(),
    ) {
        let (for_ms, keep_ms) = (for_steps * 10_000, keep_steps * 10_000);
        let restart = restart_at.index(steps.len());
        let mut state = RuleState::default();
        let mut models = [Model::Absent; 3];
        for (n, present) in steps.iter().enumerate() {
            let ts = 1_000_000 + n as i64 * step_ms;
            if n == restart {
                // Restart: through the persisted JSON.
                let json = serde_json::to_string(&state).unwrap();
                state = serde_json::from_str(&json).unwrap();
            }
            let result = (0..3).filter(|&i| present[i]).map(|i| ResultElement { labels: series_labels(i), annotations: Labels::new(), value: i as f64 }).collect();
            state.update(ts, result, for_ms, keep_ms).unwrap();
            for i in 0..3 {
                models[i] = model_step(models[i], present[i], ts, for_ms, keep_ms);
            }
            check_matches(&state, &models)?;
            // Never send pending alerts; send every firing/resolved one.
            let sent = state.to_send().count();
            let expected = models.iter().filter(|m| matches!(m, Model::Firing { .. } | Model::Resolved { .. })).count();
            prop_assert_eq!(sent, expected);
        }
    }
}

#[test]
fn raising_for_returns_firing_to_pending_and_duplicates_fail() {
    let mut st = RuleState::default();
    let el = || {
        vec![ResultElement {
            labels: series_labels(0),
            annotations: Labels::new(),
            value: 1.0,
        }]
    };
    st.update(0, el(), 0, 0).unwrap();
    assert_eq!(st.alerts.values().next().unwrap().state, AlertState::Firing);
    st.update(10_000, el(), 60_000, 0).unwrap();
    let a = st.alerts.values().next().unwrap();
    assert_eq!((a.state, a.fired_at_ms), (AlertState::Pending, None));
    st.update(60_000, el(), 60_000, 0).unwrap();
    assert_eq!(st.alerts.values().next().unwrap().state, AlertState::Firing);
    let before = st.clone();
    let mut dup = el();
    dup.extend(el());
    assert!(st.update(70_000, dup, 0, 0).is_err());
    assert_eq!(st, before);
}

// ---- Manager end to end ----

struct Harness {
    _dir: tempfile::TempDir,
    rules: std::path::PathBuf,
    config: RuleManagerConfig,
    source: Arc<MemorySource>,
    clock: Arc<ManualClock>,
}

const RULES: &str = r#"groups:
  - name: checkout
    rules:
      - alert: HighErrorRate
        expr: error_rate{service="checkout"} > 0.05
        for: 30s
        labels:
          severity: page
          team: "{{ $labels.service }}-oncall"
        annotations:
          summary: "{{ $labels.service }} errors at {{ $value | humanizePercentage }}"
"#;

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let config = RuleManagerConfig {
        rule_files: vec![rules.clone()],
        evaluation_interval_ms: 10_000,
        lookback_ms: 60_000,
        external_url: "https://sightline.example/".into(),
        state_file: Some(dir.path().join("alerts.json")),
    };
    Harness {
        _dir: dir,
        rules,
        config,
        source: Arc::new(MemorySource::default()),
        clock: Arc::new(ManualClock::new(0)),
    }
}

impl Harness {
    fn manager(&self) -> RuleManager {
        RuleManager::new(self.config.clone(), self.source.clone(), self.clock.clone()).unwrap()
    }
    /// Sets error_rate at the clock's time and evaluates what is due.
    fn tick(&self, m: &mut RuleManager, rate: Option<f64>) -> Vec<Vec<crate::alert::Alert>> {
        self.clock.advance(10_000);
        if let Some(v) = rate {
            self.source.add(
                "error_rate",
                &[("service", "checkout"), ("cluster", "prod")],
                &[(self.clock.now_ms(), v)],
            );
        }
        m.evaluate_due()
    }
}

#[test]
fn manager_fires_resolves_and_builds_alerts() {
    let h = harness();
    h.clock.set(1_000_000);
    let mut m = h.manager();
    assert_eq!(m.evaluate_due(), vec![Vec::<crate::alert::Alert>::new()]);
    // Pending for 30 s, not sent.
    for _ in 0..3 {
        assert_eq!(h.tick(&mut m, Some(0.08)), vec![vec![]]);
    }
    let sent = h.tick(&mut m, Some(0.08));
    let a = &sent[0][0];
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(
        a.labels,
        labels(&[
            ("alertname", "HighErrorRate"),
            ("cluster", "prod"),
            ("service", "checkout"),
            ("severity", "page"),
            ("team", "checkout-oncall")
        ])
    );
    assert_eq!(
        a.annotations,
        labels(&[("summary", "checkout errors at 8%")])
    );
    assert_eq!(
        (a.starts_at_ms, a.ends_at_ms, a.value),
        (1_040_000, None, 0.08)
    );
    assert_eq!(
        a.generator_url,
        "https://sightline.example/rules?group=checkout&alert=HighErrorRate"
    );
    assert!(a.samples.is_empty());
    assert!(m.status()[0].last_error.is_none());
    // The load stops: the last sample leaves the 1 min lookback 60 s later.
    let mut resolved_at = None;
    for _ in 0..7 {
        let sent = h.tick(&mut m, None);
        if sent[0][0].status == AlertStatus::Resolved && resolved_at.is_none() {
            resolved_at = sent[0][0].ends_at_ms;
        }
    }
    assert_eq!(resolved_at, Some(1_100_000));
    // Re-sent as resolved for 15 min, then dropped.
    h.clock.set(1_100_000 + RESOLVED_RETENTION_MS);
    assert_eq!(m.evaluate_due()[0].len(), 1);
    h.clock.advance(10_000);
    assert_eq!(m.evaluate_due(), vec![Vec::<crate::alert::Alert>::new()]);
}

#[test]
fn state_survives_restart_through_the_file_and_reload_keeps_it() {
    let h = harness();
    h.clock.set(1_000_000);
    let mut m = h.manager();
    h.source.add(
        "error_rate",
        &[("service", "checkout"), ("cluster", "prod")],
        &[(1_000_000, 0.08)],
    );
    m.evaluate_due(); // pending, active_at = 1_000_000
    h.tick(&mut m, Some(0.08));
    drop(m);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.config.state_file.as_ref().unwrap()).unwrap())
            .unwrap();
    assert_eq!(saved["version"], 1);
    // Restart 10 s later: `for` keeps counting from the persisted active_at.
    let mut m = h.manager();
    assert!(m.restore_error().is_none());
    assert_eq!(h.tick(&mut m, Some(0.08)), vec![vec![]]); // 1_020_000: 20 s
    let sent = h.tick(&mut m, Some(0.08)); // 1_030_000: 30 s → firing
    assert_eq!(sent[0][0].status, AlertStatus::Firing);
    assert_eq!(sent[0][0].starts_at_ms, 1_030_000);
    // Reload with a longer `for`: state kept, firing goes back to pending.
    std::fs::write(&h.rules, RULES.replace("for: 30s", "for: 5m")).unwrap();
    m.reload().unwrap();
    assert_eq!(h.tick(&mut m, Some(0.08)), vec![vec![]]);
    assert_eq!(m.status()[0].alerts[0].active_at_ms, 1_000_000);
    // A broken reload keeps the current rules and reports line:column.
    std::fs::write(&h.rules, RULES.replace("> 0.05", "> > 0.05")).unwrap();
    let e = m.reload().unwrap_err().to_string();
    assert!(
        e.ends_with(
            "rules.yml:5:48: alert \"HighErrorRate\": expr: unexpected '>' (expression 1:34)"
        ),
        "{e}"
    );
    assert_eq!(m.status().len(), 1);
    // A corrupt state file does not stop alerting.
    std::fs::write(&h.rules, RULES).unwrap();
    std::fs::write(h.config.state_file.as_ref().unwrap(), b"{\"version\": 9}").unwrap();
    let m = h.manager();
    assert!(m.restore_error().unwrap().contains("unsupported version 9"));
}

#[test]
fn config_validation() {
    let h = harness();
    let mut c = h.config.clone();
    c.external_url = "sightline".into();
    assert!(c.validate().is_err());
    let parsed: RuleManagerConfig = toml::from_str(
        "external_url = \"http://x\"\nevaluation_interval_ms = \"30s\"\nlookback_ms = \"2m\"\n",
    )
    .unwrap();
    assert_eq!(
        (parsed.evaluation_interval_ms, parsed.lookback_ms),
        (30_000, 120_000)
    );
    assert!(
        toml::from_str::<RuleManagerConfig>("external_url = \"http://x\"\nbogus = 1\n").is_err()
    );
    let _ = BTreeMap::<String, String>::new();
}
