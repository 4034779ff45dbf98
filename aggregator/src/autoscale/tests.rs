//! Policy math, configuration, the controller's guards on a manual clock, and property
//! tests of the guards.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use proptest::prelude::*;

use super::*;
use crate::alert::{Alert, AlertStatus, MemoryActionLog};
use crate::rules::ManualClock;
use crate::series::Labels;

const MIN: i64 = 60_000;

fn tt(metric: &str, target: f64) -> TargetTracking {
    TargetTracking {
        metric: metric.into(),
        target_value: target,
        tolerance: 0.1,
        disable_scale_in: false,
    }
}

fn policy(name: &str, min: u32, max: u32) -> PolicyConfig {
    PolicyConfig {
        name: name.into(),
        service: "checkout".into(),
        provider: ProviderKind::Webhook,
        min_capacity: min,
        max_capacity: max,
        scale_out_cooldown: 5 * MIN,
        scale_in_cooldown: 5 * MIN,
        scale_in_stabilization: 5 * MIN,
        dry_run: false,
        target_tracking: Some(tt("cpu_utilization", 70.0)),
        step_scaling: None,
    }
}

fn adj(lo: Option<f64>, hi: Option<f64>) -> StepAdjustment {
    StepAdjustment {
        lower_bound: lo,
        upper_bound: hi,
        ..Default::default()
    }
}

#[test]
fn target_tracking_is_the_hpa_formula_with_tolerance() {
    let t = tt("cpu_utilization", 70.0);
    assert_eq!(policy::target_tracking(2, 140.0, &t), Some(4));
    assert_eq!(policy::target_tracking(10, 50.0, &t), Some(8)); // ceil(7.14)
    assert_eq!(policy::target_tracking(3, 71.0, &t), None); // within 10 %
    assert_eq!(policy::target_tracking(3, 77.0, &t), None); // exactly 10 %: no change
    assert_eq!(policy::target_tracking(3, 63.0, &t), None);
    assert_eq!(policy::target_tracking(3, 78.0, &t), Some(4)); // ceil(3.34)
    assert_eq!(policy::target_tracking(4, 35.0, &t), Some(2)); // exact, no float creep
    assert_eq!(policy::target_tracking(0, 200.0, &t), Some(1));
    assert_eq!(policy::target_tracking(0, 10.0, &t), None); // nothing to remove
    assert_eq!(policy::target_tracking(2, f64::NAN, &t), None);
    assert_eq!(policy::target_tracking(5, 0.0, &t), Some(0));
}

#[test]
fn step_bounds_and_adjustment_kinds() {
    let s = StepScaling {
        threshold: 70.0,
        min_adjustment_magnitude: None,
        adjustments: vec![
            StepAdjustment {
                change_in_capacity: Some(-1),
                ..adj(None, Some(0.0))
            },
            StepAdjustment {
                change_in_capacity: Some(1),
                ..adj(Some(0.0), Some(10.0))
            },
            StepAdjustment {
                change_in_capacity: Some(3),
                ..adj(Some(10.0), None)
            },
        ],
    };
    assert_eq!(policy::step(4, 75.0, &s), Some(5));
    assert_eq!(policy::step(4, 80.0, &s), Some(7)); // lower bound inclusive above 0
    assert_eq!(policy::step(4, 70.0, &s), Some(5)); // breach 0 goes to [0, 10)
    assert_eq!(policy::step(4, 60.0, &s), Some(3));
    assert_eq!(policy::step(0, 60.0, &s), Some(0)); // never negative
    let pct = |p: f64, mag: Option<u32>| StepScaling {
        threshold: 0.0,
        min_adjustment_magnitude: mag,
        adjustments: vec![StepAdjustment {
            percent_change_in_capacity: Some(p),
            ..adj(None, None)
        }],
    };
    assert_eq!(policy::step(10, 1.0, &pct(25.0, None)), Some(12)); // 2.5 rounds down
    assert_eq!(policy::step(2, 1.0, &pct(25.0, None)), Some(3)); // 0.5 rounds to 1
    assert_eq!(policy::step(2, 1.0, &pct(-25.0, None)), Some(1)); // -0.5 to -1
    assert_eq!(policy::step(10, 1.0, &pct(-25.0, None)), Some(8)); // -2.5 rounds up
    assert_eq!(policy::step(4, 1.0, &pct(25.0, Some(3))), Some(7)); // magnitude 3
    let exact = StepScaling {
        threshold: 0.0,
        min_adjustment_magnitude: None,
        adjustments: vec![StepAdjustment {
            exact_capacity: Some(6),
            ..adj(Some(0.0), None)
        }],
    };
    assert_eq!(policy::step(2, 5.0, &exact), Some(6));
    assert_eq!(policy::step(2, -5.0, &exact), None); // no step matches
    let p = policy("p", 2, 5);
    assert_eq!(policy::clamp(9, &p), 5);
    assert_eq!(policy::clamp(0, &p), 2);
    assert_eq!(policy::clamp(3, &p), 3);
}

#[test]
fn stabilizer_is_a_rolling_maximum() {
    let mut s = Stabilizer::default();
    assert_eq!(s.push(0, 5 * MIN, 6), 6);
    assert_eq!(s.push(MIN, 5 * MIN, 3), 6);
    assert_eq!(s.push(5 * MIN, 5 * MIN, 2), 6); // 0 is still inside [0, 5m]
    assert_eq!(s.push(5 * MIN + 1, 5 * MIN, 2), 3);
    assert_eq!(s.push(20 * MIN, 5 * MIN, 2), 2);
}

#[test]
fn config_parses_and_validates() {
    let toml_src = r#"
        interval = "30s"
        [ecs]
        cluster = "prod"
        region = "eu-west-1"
        [webhook]
        url = "https://hooks.example.com/scale?token=abc"
        [[policies]]
        name = "checkout-cpu"
        service = "checkout"
        provider = "ecs"
        min_capacity = 2
        max_capacity = 20
        scale_in_cooldown = "10m"
        [policies.target_tracking]
        metric = "cpu_utilization"
        target_value = 70.0
        [[policies]]
        name = "cart-errors"
        service = "cart"
        provider = "webhook"
        min_capacity = 1
        max_capacity = 8
        [policies.step_scaling]
        threshold = 0.05
        adjustments = [
          { upper_bound = 0.0, change_in_capacity = -1 },
          { lower_bound = 0.0, upper_bound = 0.1, change_in_capacity = 1 },
          { lower_bound = 0.1, percent_change_in_capacity = 50.0 },
        ]
    "#;
    let cfg: AutoscaleConfig = toml::from_str(toml_src).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.interval, 30_000);
    assert_eq!(cfg.policies[0].scale_out_cooldown, 300_000);
    assert_eq!(cfg.policies[0].scale_in_cooldown, 600_000);
    assert_eq!(cfg.policies[0].scale_in_stabilization, 300_000);
    assert!(!format!("{cfg:?}").contains("token=abc"));

    let bad = |edit: &dyn Fn(&mut AutoscaleConfig), want: &str| {
        let mut c = cfg.clone();
        edit(&mut c);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    };
    bad(&|c| c.policies[0].min_capacity = 30, "min_capacity");
    bad(&|c| c.policies[1].name = "checkout-cpu".into(), "duplicate");
    bad(
        &|c| c.policies[0].step_scaling = c.policies[1].step_scaling.clone(),
        "exactly one",
    );
    bad(
        &|c| c.policies[0].target_tracking.as_mut().unwrap().metric = "avg(".into(),
        "target_tracking.metric: 1:",
    );
    bad(
        &|c| c.policies[0].target_tracking.as_mut().unwrap().target_value = 0.0,
        "positive",
    );
    bad(&|c| c.ecs = None, "needs an [autoscale.ecs] table");
    bad(
        &|c| c.policies[1].step_scaling.as_mut().unwrap().adjustments[1].upper_bound = Some(0.2),
        "contiguous",
    );
    bad(
        &|c| c.policies[1].step_scaling.as_mut().unwrap().adjustments[0].exact_capacity = Some(1),
        "exactly one of change_in_capacity",
    );
    bad(
        &|c| c.policies[1].service = "checkout".into(),
        "same provider",
    );
    bad(
        &|c| c.webhook.as_mut().unwrap().url = crate::notify::Secret::new("ftp://x"),
        "http(s)",
    );

    let unknown = toml::from_str::<AutoscaleConfig>("[[policies]]\nname = \"x\"\nbogus = 1\n");
    assert!(unknown.unwrap_err().to_string().contains("bogus"));
    let dur = toml::from_str::<AutoscaleConfig>("interval = \"5x\"\n");
    assert!(dur.unwrap_err().to_string().contains("unknown unit"));
}

/// A provider in memory; `running` follows `desired` at once (as Docker does).
#[derive(Default)]
pub(super) struct FakeProvider {
    pub cap: Mutex<Option<Capacity>>,
    pub calls: Mutex<Vec<u32>>,
}

impl FakeProvider {
    fn new(desired: u32) -> Arc<Self> {
        Arc::new(FakeProvider {
            cap: Mutex::new(Some(Capacity {
                desired_count: desired,
                running_count: desired,
            })),
            calls: Mutex::default(),
        })
    }
    fn calls(&self) -> Vec<u32> {
        self.calls.lock().unwrap().clone()
    }
}

impl ScalingProvider for FakeProvider {
    fn current<'a>(&'a self, s: &'a str) -> BoxFuture<'a, Result<Capacity, ProviderError>> {
        let c = *self.cap.lock().unwrap();
        Box::pin(async move { c.ok_or(ProviderError::NotFound(s.to_string())) })
    }
    fn set_desired<'a>(
        &'a self,
        _s: &'a str,
        n: u32,
        _ctx: &'a ScaleContext,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        self.calls.lock().unwrap().push(n);
        *self.cap.lock().unwrap() = Some(Capacity {
            desired_count: n,
            running_count: n,
        });
        Box::pin(async { Ok(()) })
    }
}

/// Metric values by policy name.
#[derive(Default)]
pub(super) struct FakeMetrics(pub Mutex<HashMap<String, f64>>);

impl FakeMetrics {
    fn set(&self, policy: &str, v: Option<f64>) {
        let mut m = self.0.lock().unwrap();
        match v {
            Some(v) => m.insert(policy.into(), v),
            None => m.remove(policy),
        };
    }
}

impl MetricSource for FakeMetrics {
    fn metric(&self, p: &PolicyConfig, _now: i64) -> Option<f64> {
        self.0.lock().unwrap().get(&p.name).copied()
    }
}

struct Rig {
    c: Controller,
    clock: Arc<ManualClock>,
    provider: Arc<FakeProvider>,
    metrics: Arc<FakeMetrics>,
    log: Arc<MemoryActionLog>,
}

fn rig(policies: Vec<PolicyConfig>, desired: u32) -> Rig {
    let cfg = AutoscaleConfig {
        interval: 15_000,
        history_limit: 100,
        alert_timeout: 300_000,
        webhook: Some(WebhookConfig {
            url: crate::notify::Secret::new("http://127.0.0.1:9/"),
            status_url: None,
            timeout: 1000,
            max_attempts: 1,
        }),
        policies,
        ..Default::default()
    };
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let provider = FakeProvider::new(desired);
    let metrics = Arc::new(FakeMetrics::default());
    let log = Arc::new(MemoryActionLog::default());
    let providers: BTreeMap<ProviderKind, Arc<dyn ScalingProvider>> = BTreeMap::from([(
        ProviderKind::Webhook,
        provider.clone() as Arc<dyn ScalingProvider>,
    )]);
    let c = Controller::new(cfg, providers, metrics.clone(), log.clone(), clock.clone()).unwrap();
    Rig {
        c,
        clock,
        provider,
        metrics,
        log,
    }
}

impl Rig {
    async fn step(&self, metric: Option<f64>) -> Decision {
        self.metrics.set("p", metric);
        let mut d = self.c.evaluate().await;
        assert_eq!(d.len(), 1);
        d.remove(0)
    }
    fn actions(&self) -> Vec<(String, String)> {
        let log = self.log.0.lock().unwrap();
        log.iter()
            .map(|e| (e.action.clone(), e.outcome.clone().unwrap_or_default()))
            .collect()
    }
}

#[tokio::test]
async fn cooldowns_and_stabilization_on_a_manual_clock() {
    let r = rig(vec![policy("p", 1, 10)], 2);
    // 140 % of target from 2 running: 4.
    let d = r.step(Some(140.0)).await;
    assert_eq!((d.outcome, d.desired), (Outcome::Updated, Some(4)));
    assert_eq!(d.direction, Some(Direction::ScaleOut));
    assert_eq!(r.provider.calls(), vec![4]);
    // Still hot within the scale-out cooldown: held.
    r.clock.advance_ms(MIN);
    let d = r.step(Some(140.0)).await;
    assert_eq!(d.skip_reason, Some(SkipReason::ScaleOutCooldown));
    assert_eq!(d.desired, Some(8));
    // Cold within the scale-out cooldown: no scale-in either (the stabilization window,
    // holding 8 from 1m ago, is the first guard to say so).
    r.clock.advance_ms(MIN);
    let d = r.step(Some(10.0)).await;
    assert_eq!(d.skip_reason, Some(SkipReason::Stabilization));
    assert_eq!(r.provider.calls(), vec![4]);
    // Cooldown over, but the stabilization window still holds 8 (from 1m).
    r.clock.advance_ms(3 * MIN + 1);
    let d = r.step(Some(10.0)).await;
    assert_eq!(d.skip_reason, Some(SkipReason::Stabilization));
    // Past the window: scale in to the highest recommendation left (ceil(4*10/70) = 1).
    r.clock.advance_ms(5 * MIN);
    let d = r.step(Some(10.0)).await;
    assert_eq!((d.outcome, d.desired), (Outcome::Updated, Some(1)));
    assert_eq!(d.direction, Some(Direction::ScaleIn));
    // A scale-out during the scale-in cooldown proceeds (and cancels it).
    r.clock.advance_ms(MIN);
    let d = r.step(Some(300.0)).await;
    assert_eq!((d.outcome, d.desired), (Outcome::Updated, Some(5)));
    assert_eq!(r.provider.calls(), vec![4, 1, 5]);
    // Within tolerance: nothing, and not audited.
    r.clock.advance_ms(10 * MIN);
    let d = r.step(Some(72.0)).await;
    assert_eq!(d.skip_reason, Some(SkipReason::NoChange));
    let actions = r.actions();
    assert_eq!(
        actions,
        vec![
            ("scaling.update_desired_count".into(), "updated".into()),
            ("scaling.skipped".into(), "scale_out_cooldown".into()),
            ("scaling.skipped".into(), "stabilization".into()),
            ("scaling.update_desired_count".into(), "updated".into()),
            ("scaling.update_desired_count".into(), "updated".into()),
        ]
    );
    assert_eq!(r.c.history().len(), 7);
    let ev = &r.log.0.lock().unwrap()[0];
    assert_eq!(ev.resource.service, "checkout");
    assert_eq!(ev.attributes["scaling.desired"], "4");
    assert_eq!(ev.attributes["scaling.metric_value"], "140");
}

#[tokio::test]
async fn scale_in_cooldown_blocks_scale_in_and_max_caps() {
    let mut p = policy("p", 2, 6);
    p.scale_in_stabilization = 0;
    let r = rig(vec![p], 6);
    let d = r.step(Some(35.0)).await; // 6 * 0.5 = 3
    assert_eq!(d.desired, Some(3));
    r.clock.advance_ms(MIN);
    let d = r.step(Some(35.0)).await; // would be 2
    assert_eq!(d.skip_reason, Some(SkipReason::ScaleInCooldown));
    r.clock.advance_ms(5 * MIN);
    let d = r.step(Some(1000.0)).await; // ceil(3 * 14.3) = 43, capped at 6
    assert_eq!(d.desired, Some(6));
    r.clock.advance_ms(10 * MIN);
    let d = r.step(Some(1000.0)).await; // already at max
    assert_eq!(d.skip_reason, Some(SkipReason::NoChange));
    assert_eq!(r.provider.calls(), vec![3, 6]);
}

#[tokio::test]
async fn missing_data_dry_run_and_disable_scale_in() {
    let mut p = policy("p", 1, 10);
    p.dry_run = true;
    let r = rig(vec![p], 2);
    let d = r.step(None).await;
    assert_eq!(d.skip_reason, Some(SkipReason::NoData));
    r.clock.advance_ms(MIN);
    r.step(None).await; // same skip: recorded once
    let d = r.step(Some(140.0)).await;
    assert_eq!(
        (d.outcome, d.desired, d.dry_run),
        (Outcome::DryRun, Some(4), true)
    );
    assert!(r.provider.calls().is_empty());
    assert_eq!(
        r.actions(),
        vec![
            ("scaling.skipped".into(), "no_data".into()),
            ("scaling.update_desired_count".into(), "dry_run".into()),
        ]
    );

    let mut p = policy("p", 1, 10);
    p.target_tracking.as_mut().unwrap().disable_scale_in = true;
    let r = rig(vec![p], 5);
    let d = r.step(Some(10.0)).await;
    assert_eq!(d.skip_reason, Some(SkipReason::ScaleInNotAgreed));
    assert!(r.provider.calls().is_empty());
}

#[tokio::test]
async fn any_policy_scales_out_all_must_agree_to_scale_in() {
    let mut q = policy("q", 1, 10);
    q.target_tracking = Some(tt("memory_utilization", 50.0));
    let mut p = policy("p", 1, 10);
    p.scale_in_stabilization = 0;
    q.scale_in_stabilization = 0;
    let r = rig(vec![p, q], 4);
    r.metrics.set("q", Some(100.0)); // q: 8
    let d = r.step(Some(105.0)).await; // p: 6
    assert_eq!((d.policy.as_str(), d.desired), ("q", Some(8)));
    r.clock.advance_ms(10 * MIN);
    r.metrics.set("q", Some(50.0)); // q: hold
    let d = r.step(Some(10.0)).await; // p wants in
    assert_eq!(d.skip_reason, Some(SkipReason::ScaleInNotAgreed));
    r.clock.advance_ms(1); // past the (zero) stabilization window of the last evaluation
    r.metrics.set("q", Some(20.0)); // q: ceil(8 * 0.4) = 4
    let d = r.step(Some(35.0)).await; // p: 4 * ... ceil(8 * 0.5) = 4
    assert_eq!(d.desired, Some(4));
    r.metrics.set("q", None);
    r.clock.advance_ms(10 * MIN);
    let d = r.step(Some(10.0)).await; // q has no data: no scale-in
    assert_eq!(d.skip_reason, Some(SkipReason::ScaleInNotAgreed));
}

fn alert(policy: &str, value: f64, status: AlertStatus) -> Alert {
    let labels: Labels = [
        ("alertname".to_string(), "HighErrors".to_string()),
        (SCALE_POLICY_LABEL.to_string(), policy.to_string()),
    ]
    .into();
    Alert {
        labels,
        annotations: Labels::new(),
        status,
        starts_at_ms: 0,
        ends_at_ms: None,
        value,
        generator_url: String::new(),
        samples: vec![],
    }
}

#[tokio::test]
async fn step_policy_fires_on_alerts() {
    let mut p = policy("errors", 1, 10);
    p.target_tracking = None;
    p.step_scaling = Some(StepScaling {
        threshold: 0.05,
        min_adjustment_magnitude: None,
        adjustments: vec![
            StepAdjustment {
                change_in_capacity: Some(1),
                ..adj(Some(0.0), Some(0.1))
            },
            StepAdjustment {
                change_in_capacity: Some(3),
                ..adj(Some(0.1), None)
            },
        ],
    });
    let r = rig(vec![p], 2);
    assert!(r.c.evaluate().await.is_empty()); // not firing: no opinion
    let d =
        r.c.handle_alerts(&[alert("errors", 0.2, AlertStatus::Firing)])
            .await;
    assert_eq!(d[0].desired, Some(5));
    assert_eq!(d[0].metric_value, Some(0.2));
    r.clock.advance_ms(MIN);
    let d = r.c.evaluate().await; // still firing, in cooldown
    assert_eq!(d[0].skip_reason, Some(SkipReason::ScaleOutCooldown));
    r.clock.advance_ms(5 * MIN);
    // Re-sent by the rules after the cooldown: another step.
    let d =
        r.c.handle_alerts(&[alert("errors", 0.2, AlertStatus::Firing)])
            .await;
    assert_eq!(d[0].desired, Some(8));
    // An alert the rules stop sending without a resolved notice (its rule removed on
    // reload) stops triggering the policy after `alert_timeout` (5 min).
    r.clock.advance_ms(4 * MIN);
    assert_eq!(
        r.c.evaluate().await[0].skip_reason,
        Some(SkipReason::ScaleOutCooldown)
    );
    r.clock.advance_ms(2 * MIN);
    assert!(
        r.c.evaluate().await.is_empty(),
        "expired alert still scales"
    );
    r.c.handle_alerts(&[alert("errors", 0.2, AlertStatus::Resolved)])
        .await;
    r.clock.advance_ms(10 * MIN);
    assert!(r.c.evaluate().await.is_empty());
    assert!(r
        .c
        .handle_alerts(&[alert("nope", 1.0, AlertStatus::Firing)])
        .await
        .is_empty());
    assert_eq!(r.provider.calls(), vec![5, 8]);
}

#[derive(Debug, Clone)]
enum Op {
    Advance(i64),
    Metric(Option<f64>),
    External(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0i64..8 * MIN).prop_map(Op::Advance),
        proptest::option::weighted(0.9, 0.0f64..500.0).prop_map(Op::Metric),
        (0u32..30).prop_map(Op::External),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the metric, clock and outside changes: the controller only sets counts in
    /// [min, max], never scales in within a scale-out cooldown nor out twice within one,
    /// and a dry-run policy never calls the provider.
    #[test]
    fn guards_hold(ops in proptest::collection::vec(op(), 1..60), min in 0u32..4,
                   span in 0u32..8, dry in any::<bool>(), stab in 0i64..6) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let max = min + span;
            let mut p = policy("p", min, max);
            p.dry_run = dry;
            p.scale_in_stabilization = stab * MIN;
            let out_cd = p.scale_out_cooldown;
            let r = rig(vec![p], min.max(1));
            let mut last_out: Option<i64> = None;
            for o in ops {
                match o {
                    Op::Advance(ms) => r.clock.advance_ms(ms),
                    Op::Metric(m) => r.metrics.set("p", m),
                    Op::External(n) => *r.provider.cap.lock().unwrap() = Some(Capacity {
                        desired_count: n, running_count: n,
                    }),
                }
                let before = r.provider.cap.lock().unwrap().unwrap().desired_count;
                let calls = r.provider.calls().len();
                let d = r.c.evaluate().await.remove(0);
                let now = r.clock.now_ms();
                if dry {
                    prop_assert!(r.provider.calls().is_empty());
                }
                if d.outcome == Outcome::Updated || d.outcome == Outcome::DryRun {
                    let n = d.desired.unwrap();
                    prop_assert!(n >= min && n <= max, "{n} outside [{min}, {max}]");
                    if let Some(t) = last_out {
                        prop_assert!(now >= t + out_cd, "action within scale-out cooldown");
                    }
                    if n > before {
                        last_out = Some(now);
                    }
                    if !dry {
                        prop_assert_eq!(r.provider.calls().len(), calls + 1);
                    }
                } else {
                    prop_assert_eq!(r.provider.calls().len(), calls);
                }
                if d.metric_value.is_none() && d.outcome != Outcome::Skipped {
                    prop_assert!(false, "acted without data");
                }
            }
            Ok(())
        })?;
    }
}

use crate::rules::Clock as _;

/// Fixed series: (labels incl. `__name__`, one sample at `ts`).
struct Series1(Vec<(Labels, i64, f64)>);

impl crate::series::SeriesSource for Series1 {
    fn select(
        &self,
        metric: &str,
        matchers: &[crate::series::Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<crate::series::Series> {
        self.0
            .iter()
            .filter(|(l, ts, _)| {
                l.get("__name__").is_some_and(|n| n == metric)
                    && matchers.iter().all(|m| m.matches(l))
                    && *ts > start_ms
                    && *ts <= end_ms
            })
            .map(|(l, ts, v)| crate::series::Series {
                labels: l.clone(),
                samples: vec![crate::series::Sample {
                    ts_ms: *ts,
                    value: *v,
                }],
            })
            .collect()
    }
    fn quantile(
        &self,
        _m: &str,
        _x: &[crate::series::Matcher],
        _q: f64,
        _s: i64,
        _e: i64,
    ) -> Vec<(Labels, f64)> {
        Vec::new()
    }
}

#[test]
fn rules_metric_source_scopes_names_to_the_service() {
    let l = |name: &str, svc: &str, host: &str| -> Labels {
        [("__name__", name), ("service", svc), ("host", host)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let now = 1_000_000;
    let src = RulesMetricSource::new(Series1(vec![
        (l("cpu_utilization", "checkout", "a"), now - 5_000, 60.0),
        (l("cpu_utilization", "checkout", "b"), now - 5_000, 100.0),
        (l("cpu_utilization", "cart", "a"), now - 5_000, 10.0),
        (l("running_task_count", "checkout", "a"), now - 5_000, 2.0),
        (l("running_task_count", "checkout", "b"), now - 5_000, 3.0),
    ]));
    let mut p = policy("p", 1, 10);
    assert_eq!(src.metric(&p, now), Some(80.0)); // avg over the service's series
    p.target_tracking.as_mut().unwrap().metric =
        "max(cpu_utilization{service=\"checkout\"})".into();
    assert_eq!(src.metric(&p, now), Some(100.0));
    // Several series: the one of the policy's service.
    p.target_tracking.as_mut().unwrap().metric = "max by (service) (cpu_utilization)".into();
    assert_eq!(src.metric(&p, now), Some(100.0));
    // Several series of the service: ambiguous, no data.
    p.target_tracking.as_mut().unwrap().metric = "cpu_utilization{service=\"checkout\"}".into();
    assert_eq!(src.metric(&p, now), None);
    p.service = "nowhere".into();
    p.target_tracking.as_mut().unwrap().metric = "cpu_utilization".into();
    assert_eq!(src.metric(&p, now), None);
    assert_eq!(src.running_count("checkout", now), Some(5.0));
    assert_eq!(src.running_count("cart", now), None);
}
