//! State-machine property tests against a reference model of Prometheus' semantics
//! (restarts through the persisted JSON in the middle), and the manager end to end with
//! real rule and state files.

use std::sync::Arc;

use proptest::prelude::*;

use super::state::{AlertState, ResultElement, RuleState, RESOLVED_RETENTION_MS};
use super::tests::{labels, MemorySource};
use super::*;
use crate::alert::AlertStatus;
use crate::series::Labels;

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
        state_file: Some(dir.path().join("alerts").join("alerts.json")), // dir made on save
        log_samples: 5,
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
        self.clock.advance_ms(10_000);
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
        "https://sightline.example/api/v1/rules?group=checkout&alert=HighErrorRate"
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
    h.clock.advance_ms(10_000);
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
    let evaluated = m.status()[0].last_evaluation_ms;
    assert!(evaluated.is_some());
    m.reload().unwrap();
    // Health carries over a reload, as Prometheus' `CopyState`.
    assert_eq!(m.status()[0].last_evaluation_ms, evaluated);
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
}
