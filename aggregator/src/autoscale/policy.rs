//! The policy math, pure: target tracking (the HPA's formula), step adjustments (App Auto
//! Scaling's `StepAdjustment` bounds and rounding), clamping, the scale-in stabilization
//! window and the cooldown guards.

use std::collections::VecDeque;

use serde::Serialize;

use super::config::{PolicyConfig, StepScaling, TargetTracking};

/// Tolerance for float noise in `ceil` (so 3 × 70 / 70 stays 3).
const EPS: f64 = 1e-9;

/// Target tracking recommendation from the **running** count (App Auto Scaling's baseline):
/// `⌈running × metric / target⌉` (Kubernetes HPA,
/// `horizontal-pod-autoscale.md`), or `None` when `|metric / target − 1| ≤ tolerance` (no
/// change). With no task running and the metric above the band, recommends 1 (the formula
/// cannot scale from zero). Not clamped: see [`clamp`].
pub fn target_tracking(running: u32, metric: f64, t: &TargetTracking) -> Option<u32> {
    if !metric.is_finite() || metric < 0.0 {
        return None;
    }
    let ratio = metric / t.target_value;
    if (ratio - 1.0).abs() <= t.tolerance + EPS {
        return None;
    }
    if running == 0 {
        return (ratio > 1.0).then_some(1);
    }
    let want = (f64::from(running) * ratio - EPS).ceil();
    Some(to_count(want))
}

/// Step scaling recommendation for an alert `value`: the step whose range holds the
/// breach `value − threshold` (lower bound inclusive and upper exclusive for a breach ≥ 0,
/// the reverse below 0, as App Auto Scaling) applied to the running count. `None` when no
/// step matches. Percent changes round as App Auto Scaling does (above 1: down; between 0
/// and 1: to 1; between −1 and 0: to −1; below −1: up) and are raised to
/// `min_adjustment_magnitude`. Not clamped.
pub fn step(running: u32, value: f64, s: &StepScaling) -> Option<u32> {
    if !value.is_finite() {
        return None;
    }
    let breach = value - s.threshold;
    let adj = s.adjustments.iter().find(|a| {
        let lo = a.lower_bound.unwrap_or(f64::NEG_INFINITY);
        let hi = a.upper_bound.unwrap_or(f64::INFINITY);
        if breach >= 0.0 {
            lo <= breach && breach < hi
        } else {
            lo < breach && breach <= hi
        }
    })?;
    let running_f = f64::from(running);
    let desired = if let Some(n) = adj.exact_capacity {
        f64::from(n)
    } else if let Some(c) = adj.change_in_capacity {
        running_f + c as f64
    } else {
        let pct = adj.percent_change_in_capacity.unwrap_or(0.0);
        let raw = running_f * pct / 100.0;
        let mut change = if raw > 1.0 {
            raw.floor()
        } else if raw > 0.0 {
            1.0
        } else if raw < -1.0 {
            raw.ceil()
        } else if raw < 0.0 {
            -1.0
        } else {
            0.0
        };
        if let Some(m) = s.min_adjustment_magnitude {
            let m = f64::from(m);
            if change != 0.0 && change.abs() < m {
                change = m.copysign(change);
            }
        }
        running_f + change
    };
    Some(to_count(desired))
}

fn to_count(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x as u32
    }
}

/// `desired` limited to `[min_capacity, max_capacity]`.
pub fn clamp(desired: u32, policy: &PolicyConfig) -> u32 {
    desired.clamp(
        policy.min_capacity,
        policy.max_capacity.max(policy.min_capacity),
    )
}

/// Recent recommendations of one policy, for the HPA's scale-in stabilization: a scale-in
/// goes only as low as the **highest** recommendation of the last `window_ms` (a rolling
/// maximum), so a brief dip does not remove tasks.
#[derive(Clone, Debug, Default)]
pub struct Stabilizer {
    recs: VecDeque<(i64, u32)>,
}

impl Stabilizer {
    /// Records `rec` at `now_ms`, forgets those older than `window_ms`, and returns the
    /// highest recommendation in the window (including `rec`).
    pub fn push(&mut self, now_ms: i64, window_ms: i64, rec: u32) -> u32 {
        self.recs.push_back((now_ms, rec));
        let oldest = now_ms.saturating_sub(window_ms);
        while self.recs.front().is_some_and(|(t, _)| *t < oldest) {
            self.recs.pop_front();
        }
        self.recs.iter().map(|(_, r)| *r).max().unwrap_or(rec)
    }
}

/// Direction of a change relative to the current desired count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// More tasks.
    ScaleOut,
    /// Fewer tasks.
    ScaleIn,
}

/// Why a wanted change was not made (or no change was wanted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The metric had no data (App Auto Scaling does not act on missing data).
    NoData,
    /// The metric is within the tolerance band, or the recommendation equals the desired
    /// count.
    NoChange,
    /// Inside the scale-out cooldown of the last scale-out (blocks scale-out and scale-in).
    ScaleOutCooldown,
    /// Inside the scale-in cooldown of the last scale-in (blocks scale-in only).
    ScaleInCooldown,
    /// The stabilization window holds a higher recommendation.
    Stabilization,
    /// Another policy of the service does not agree to scale in (scale in only when all
    /// agree), or the policy has `disable_scale_in`.
    ScaleInNotAgreed,
    /// Another action on the service is in flight.
    InProgress,
    /// The provider could not report the current count.
    ProviderError,
}

impl SkipReason {
    /// The snake_case name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoData => "no_data",
            SkipReason::NoChange => "no_change",
            SkipReason::ScaleOutCooldown => "scale_out_cooldown",
            SkipReason::ScaleInCooldown => "scale_in_cooldown",
            SkipReason::Stabilization => "stabilization",
            SkipReason::ScaleInNotAgreed => "scale_in_not_agreed",
            SkipReason::InProgress => "in_progress",
            SkipReason::ProviderError => "provider_error",
        }
    }
}

/// Cooldown state of one service: when each cooldown ends (Unix ms; 0 = none).
///
/// Rules (App Auto Scaling's, with one stricter choice): after a scale-out, neither
/// scale-out nor scale-in until its cooldown ends; after a scale-in, no scale-in until its
/// cooldown ends, but a scale-out proceeds at once and cancels the scale-in cooldown.
/// App Auto Scaling lets a *larger* scale-out through during the scale-out cooldown; we do
/// not, because providers such as Docker report the new tasks as running at once, so the
/// running-count baseline would compound while the metric catches up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cooldowns {
    /// End of the scale-out cooldown.
    pub scale_out_until_ms: i64,
    /// End of the scale-in cooldown.
    pub scale_in_until_ms: i64,
}

impl Cooldowns {
    /// Whether a change in `dir` may happen at `now_ms`.
    pub fn check(&self, dir: Direction, now_ms: i64) -> Result<(), SkipReason> {
        if now_ms < self.scale_out_until_ms {
            return Err(SkipReason::ScaleOutCooldown);
        }
        if dir == Direction::ScaleIn && now_ms < self.scale_in_until_ms {
            return Err(SkipReason::ScaleInCooldown);
        }
        Ok(())
    }

    /// Starts the cooldown of a change in `dir` made at `now_ms` by `policy`.
    pub fn started(&mut self, dir: Direction, now_ms: i64, policy: &PolicyConfig) {
        match dir {
            Direction::ScaleOut => {
                self.scale_out_until_ms = now_ms.saturating_add(policy.scale_out_cooldown);
                self.scale_in_until_ms = 0;
            }
            Direction::ScaleIn => {
                self.scale_in_until_ms = now_ms.saturating_add(policy.scale_in_cooldown);
            }
        }
    }
}
