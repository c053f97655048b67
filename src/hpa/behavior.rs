//! `behavior`: stabilization windows and scaling policies, and the legacy limits that apply
//! when an HPA has no `behavior` at all (Kubernetes 1.36 `horizontal.go`).
//!
//! The controller keeps, per HPA, the unstabilized recommendations of recent syncs and the
//! scale events of recent periods; [`History`] is that memory. Times are Unix milliseconds:
//! the controller compares `time.Time`s with `After`/`Before`, and integers keep those
//! comparisons exact where a sync lands precisely on a window's edge.

/// `Pods` or `Percent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// A number of pods per period.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// One `HPAScalingPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalingPolicy {
    /// `type`.
    pub kind: PolicyKind,
    /// `value` (greater than zero).
    pub value: i32,
    /// `periodSeconds` (1 to 1800).
    pub period_seconds: i32,
}

/// `selectPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The policy allowing the largest change (the default).
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// One direction of `behavior`, with the API's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingRules {
    /// `stabilizationWindowSeconds`.
    pub stabilization_window_seconds: i32,
    /// `selectPolicy`.
    pub select_policy: SelectPolicy,
    /// `policies`.
    pub policies: Vec<ScalingPolicy>,
    /// `tolerance` (Kubernetes 1.33+); `None` uses the controller's.
    pub tolerance: Option<f64>,
}

impl ScalingRules {
    /// The scale-up defaults (`GenerateHPAScaleUpRules`): no stabilization, 4 pods or 100 %
    /// per 15 s, whichever allows more.
    pub fn default_scale_up() -> Self {
        ScalingRules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                ScalingPolicy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period_seconds: 15,
                },
                ScalingPolicy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period_seconds: 15,
                },
            ],
            tolerance: None,
        }
    }

    /// The scale-down defaults (`GenerateHPAScaleDownRules`): 100 % per 15 s, and the
    /// controller's `--horizontal-pod-autoscaler-downscale-stabilization` as the window.
    pub fn default_scale_down(stabilization_window_seconds: i32) -> Self {
        ScalingRules {
            stabilization_window_seconds,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                kind: PolicyKind::Percent,
                value: 100,
                period_seconds: 15,
            }],
            tolerance: None,
        }
    }

    fn longest_period_ms(&self) -> i64 {
        self.policies
            .iter()
            .map(|p| i64::from(p.period_seconds) * 1000)
            .max()
            .unwrap_or(0)
    }
}

/// A defaulted `behavior`.
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    /// `scaleUp`.
    pub scale_up: ScalingRules,
    /// `scaleDown`.
    pub scale_down: ScalingRules,
}

/// The legacy per-sync scale-up cap when an HPA has no `behavior`: `max(2 × current, 4)`.
pub fn legacy_scale_up_limit(current: i32) -> i32 {
    (2.0 * f64::from(current)).max(4.0) as i32
}

/// Why the replica count differs from what the metrics asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A scale-up stabilization window kept a lower recent recommendation.
    ScaleUpStabilized,
    /// A scale-down stabilization window kept a higher recent recommendation.
    ScaleDownStabilized,
    /// A scale-up policy (or the legacy `max(2×, 4)` cap) allowed fewer pods.
    ScaleUpLimit,
    /// A scale-down policy allowed removing fewer pods.
    ScaleDownLimit,
    /// `maxReplicas`.
    TooManyReplicas,
    /// `minReplicas`.
    TooFewReplicas,
}

impl Limit {
    /// The controller's condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            Limit::ScaleUpStabilized => "ScaleUpStabilized",
            Limit::ScaleDownStabilized => "ScaleDownStabilized",
            Limit::ScaleUpLimit => "ScaleUpLimit",
            Limit::ScaleDownLimit => "ScaleDownLimit",
            Limit::TooManyReplicas => "TooManyReplicas",
            Limit::TooFewReplicas => "TooFewReplicas",
        }
    }

    /// The controller's condition message.
    pub fn message(self) -> &'static str {
        match self {
            Limit::ScaleUpStabilized => {
                "recent recommendations were lower than current one, applying the lowest recent recommendation"
            }
            Limit::ScaleDownStabilized => {
                "recent recommendations were higher than current one, applying the highest recent recommendation"
            }
            Limit::ScaleUpLimit => {
                "the desired replica count is increasing faster than the maximum scale rate"
            }
            Limit::ScaleDownLimit => {
                "the desired replica count is decreasing faster than the maximum scale rate"
            }
            Limit::TooManyReplicas => {
                "the desired replica count is more than the maximum replica count"
            }
            Limit::TooFewReplicas => {
                "the desired replica count is less than the minimum replica count"
            }
        }
    }

    /// True for what `behavior` (or the legacy rate cap and window) decided, as opposed to
    /// the `[minReplicas, maxReplicas]` bounds.
    pub fn is_behavior(self) -> bool {
        !matches!(self, Limit::TooManyReplicas | Limit::TooFewReplicas)
    }
}

/// The outcome of normalizing one recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// The replica count to scale to.
    pub replicas: i32,
    /// Set when a stabilization window changed the recommendation.
    pub stabilized: Option<Limit>,
    /// Set when a rate limit or the bounds changed it after stabilization.
    pub limited: Option<Limit>,
}

/// What the controller remembers about one HPA between syncs.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// (time, unstabilized recommendation).
    recommendations: Vec<(i64, i32)>,
    /// (time, pods added).
    scale_up_events: Vec<(i64, i32)>,
    /// (time, pods removed).
    scale_down_events: Vec<(i64, i32)>,
}

/// Sum of the changes strictly after `now − period` (`getReplicasChangePerPeriod`).
fn change_in_period(events: &[(i64, i32)], now: i64, period_seconds: i32) -> i32 {
    let cutoff = now - i64::from(period_seconds) * 1000;
    events
        .iter()
        .filter(|(at, _)| *at > cutoff)
        .map(|(_, change)| *change)
        .sum()
}

impl History {
    /// The recommendation history, oldest first (for tests and explanations).
    pub fn recommendations(&self) -> &[(i64, i32)] {
        &self.recommendations
    }

    /// Stores a recommendation, reusing the slot of one older than `keep_ms` as the controller
    /// does (so the list stays bounded by the window).
    fn record(&mut self, now: i64, keep_ms: i64, recommendation: i32, old: impl Fn(i64) -> bool) {
        match self.recommendations.iter().rposition(|(at, _)| old(*at)) {
            Some(i) => self.recommendations[i] = (now, recommendation),
            None => self.recommendations.push((now, recommendation)),
        }
        // Beyond what the controller keeps: drop what no window can reach any more, so a
        // replay over days stays small. Entries the controller would reuse are never read.
        self.recommendations.retain(|(at, _)| now - *at <= keep_ms);
    }

    /// Legacy stabilization (no `behavior`): the highest recommendation not older than
    /// `window_seconds` (`stabilizeRecommendation`), recording this one.
    pub fn stabilize_legacy(&mut self, now: i64, window_seconds: i32, desired: i32) -> i32 {
        let cutoff = now - i64::from(window_seconds) * 1000;
        let highest = self
            .recommendations
            .iter()
            .filter(|(at, _)| *at >= cutoff)
            .map(|(_, r)| *r)
            .fold(desired, i32::max);
        self.record(now, i64::from(window_seconds) * 1000, desired, |at| {
            at < cutoff
        });
        highest
    }

    /// Stabilization with `behavior` (`stabilizeRecommendationWithBehaviors`): the current count
    /// is raised to the lowest recommendation of the scale-up window and lowered to the highest
    /// of the scale-down window (each including this one); returns the stabilized count and
    /// records the unstabilized recommendation.
    pub fn stabilize(
        &mut self,
        now: i64,
        behavior: &Behavior,
        current: i32,
        desired: i32,
    ) -> (i32, Option<Limit>) {
        let up_cutoff = now - i64::from(behavior.scale_up.stabilization_window_seconds) * 1000;
        let down_cutoff = now - i64::from(behavior.scale_down.stabilization_window_seconds) * 1000;
        let (mut up, mut down) = (desired, desired);
        for (at, r) in &self.recommendations {
            if *at > up_cutoff {
                up = up.min(*r);
            }
            if *at > down_cutoff {
                down = down.max(*r);
            }
        }
        let stabilized = current.max(up).min(down);
        let keep = now - up_cutoff.min(down_cutoff);
        self.record(now, keep, desired, |at| at < up_cutoff && at < down_cutoff);
        let limit = (stabilized != desired).then_some(if desired >= current {
            Limit::ScaleUpStabilized
        } else {
            Limit::ScaleDownStabilized
        });
        (stabilized, limit)
    }

    /// The most replicas the scale-up policies allow now
    /// (`calculateScaleUpLimitWithScalingRules`): per policy, the count at the start of its
    /// period plus what it allows, combined by `selectPolicy`.
    pub fn scale_up_limit(&self, now: i64, current: i32, rules: &ScalingRules) -> i32 {
        let combine: fn(i32, i32) -> i32 = match rules.select_policy {
            SelectPolicy::Disabled => return current,
            SelectPolicy::Min => i32::min,
            SelectPolicy::Max => i32::max,
        };
        let mut result = match rules.select_policy {
            SelectPolicy::Min => i32::MAX,
            _ => i32::MIN,
        };
        for p in &rules.policies {
            let start = current - change_in_period(&self.scale_up_events, now, p.period_seconds)
                + change_in_period(&self.scale_down_events, now, p.period_seconds);
            let proposed = match p.kind {
                PolicyKind::Pods => start.saturating_add(p.value),
                // Rounded up, or a small deployment could never grow by a percentage.
                PolicyKind::Percent => {
                    (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
                }
            };
            result = combine(result, proposed);
        }
        result
    }

    /// The fewest replicas the scale-down policies allow now
    /// (`calculateScaleDownLimitWithBehaviors`).
    pub fn scale_down_limit(&self, now: i64, current: i32, rules: &ScalingRules) -> i32 {
        let combine: fn(i32, i32) -> i32 = match rules.select_policy {
            SelectPolicy::Disabled => return current,
            SelectPolicy::Min => i32::max,
            SelectPolicy::Max => i32::min,
        };
        let mut result = match rules.select_policy {
            SelectPolicy::Min => i32::MIN,
            _ => i32::MAX,
        };
        for p in &rules.policies {
            let start = current - change_in_period(&self.scale_up_events, now, p.period_seconds)
                + change_in_period(&self.scale_down_events, now, p.period_seconds);
            let proposed = match p.kind {
                PolicyKind::Pods => start - p.value,
                // Truncated, as Go's int32() conversion does.
                PolicyKind::Percent => {
                    (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
                }
            };
            result = combine(result, proposed);
        }
        result
    }

    /// Records a change of scale (`storeScaleEvent`); nothing is kept without `behavior`,
    /// where no policy reads it.
    pub fn record_scale(&mut self, now: i64, behavior: Option<&Behavior>, from: i32, to: i32) {
        let Some(behavior) = behavior else {
            return;
        };
        let (events, rules, change) = if to > from {
            (&mut self.scale_up_events, &behavior.scale_up, to - from)
        } else {
            (&mut self.scale_down_events, &behavior.scale_down, from - to)
        };
        let keep = rules.longest_period_ms();
        events.retain(|(at, _)| now - *at <= keep);
        events.push((now, change));
    }
}

/// `normalizeDesiredReplicasWithBehaviors`: stabilize, then apply the policies' rate limit and
/// the bounds.
pub fn normalize_with_behavior(
    history: &mut History,
    now: i64,
    behavior: &Behavior,
    (min, max): (i32, i32),
    current: i32,
    desired: i32,
) -> Normalized {
    let (stabilized, stabilized_by) = history.stabilize(now, behavior, current, desired);
    let mut out = Normalized {
        replicas: stabilized,
        stabilized: stabilized_by,
        limited: None,
    };
    if stabilized > current {
        let limit = history
            .scale_up_limit(now, current, &behavior.scale_up)
            .max(current);
        let (allowed, why) = if max > limit {
            (limit, Limit::ScaleUpLimit)
        } else {
            (max, Limit::TooManyReplicas)
        };
        if stabilized > allowed {
            out.replicas = allowed;
            out.limited = Some(why);
        }
    } else if stabilized < current {
        let limit = history
            .scale_down_limit(now, current, &behavior.scale_down)
            .min(current);
        let (allowed, why) = if min < limit {
            (limit, Limit::ScaleDownLimit)
        } else {
            (min, Limit::TooFewReplicas)
        };
        if stabilized < allowed {
            out.replicas = allowed;
            out.limited = Some(why);
        }
    }
    out
}

/// `normalizeDesiredReplicas` (no `behavior`): the highest recommendation of the downscale
/// window, then the bounds and the `max(2 × current, 4)` cap.
pub fn normalize_legacy(
    history: &mut History,
    now: i64,
    downscale_window_seconds: i32,
    (min, max): (i32, i32),
    current: i32,
    desired: i32,
) -> Normalized {
    let stabilized = history.stabilize_legacy(now, downscale_window_seconds, desired);
    let mut out = Normalized {
        replicas: stabilized,
        stabilized: (stabilized != desired).then_some(Limit::ScaleDownStabilized),
        limited: None,
    };
    let cap = legacy_scale_up_limit(current);
    let (allowed_max, why) = if max > cap {
        (cap, Limit::ScaleUpLimit)
    } else {
        (max, Limit::TooManyReplicas)
    };
    if stabilized < min {
        out.replicas = min;
        out.limited = Some(Limit::TooFewReplicas);
    } else if stabilized > allowed_max {
        out.replicas = allowed_max;
        out.limited = Some(why);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn defaults() -> Behavior {
        Behavior {
            scale_up: ScalingRules::default_scale_up(),
            scale_down: ScalingRules::default_scale_down(300),
        }
    }

    /// Runs syncs every 15 s with a constant recommendation, feeding each result back.
    fn run(
        behavior: Option<&Behavior>,
        bounds: (i32, i32),
        start: i32,
        desired: &[i32],
    ) -> Vec<i32> {
        let mut h = History::default();
        let mut current = start;
        let mut out = vec![current];
        for (i, d) in desired.iter().enumerate() {
            let now = i as i64 * 15 * S;
            let n = match behavior {
                Some(b) => normalize_with_behavior(&mut h, now, b, bounds, current, *d),
                None => normalize_legacy(&mut h, now, 300, bounds, current, *d),
            };
            if n.replicas != current {
                h.record_scale(now, behavior, current, n.replicas);
            }
            current = n.replicas;
            out.push(current);
        }
        out
    }

    #[test]
    fn without_behavior_scale_up_is_capped_at_twice_or_four() {
        assert_eq!(legacy_scale_up_limit(1), 4);
        assert_eq!(legacy_scale_up_limit(3), 6);
        assert_eq!(run(None, (1, 30), 1, &[30; 5]), [1, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn default_policies_allow_four_pods_or_double_per_15s() {
        assert_eq!(
            run(Some(&defaults()), (1, 30), 1, &[30; 5]),
            [1, 5, 10, 20, 30, 30]
        );
    }

    #[test]
    fn policies_count_the_change_over_their_period() {
        // At most 2 pods per 60 s: +2 at t=0, then nothing until the event leaves the period.
        let mut b = defaults();
        b.scale_up.policies = vec![ScalingPolicy {
            kind: PolicyKind::Pods,
            value: 2,
            period_seconds: 60,
        }];
        let series = run(Some(&b), (1, 30), 1, &[30; 9]);
        // t=0 → 3; t=15..45 still within 60 s of it; t=60 the event is exactly 60 s old: out.
        assert_eq!(series, [1, 3, 3, 3, 3, 5, 5, 5, 5, 7]);
        // 900 % per 15 s reaches 30 from 1 in two syncs (1 → 10 → 30).
        b.scale_up.policies = vec![ScalingPolicy {
            kind: PolicyKind::Percent,
            value: 900,
            period_seconds: 15,
        }];
        assert_eq!(run(Some(&b), (1, 30), 1, &[30; 3]), [1, 10, 30, 30]);
    }

    #[test]
    fn select_policy_min_max_and_disabled() {
        let mut b = defaults();
        b.scale_up.select_policy = SelectPolicy::Min;
        // Min of (+4 pods, +100 %) from 10 is 14.
        assert_eq!(run(Some(&b), (1, 100), 10, &[50]), [10, 14]);
        b.scale_up.select_policy = SelectPolicy::Max;
        assert_eq!(run(Some(&b), (1, 100), 10, &[50]), [10, 20]);
        b.scale_up.select_policy = SelectPolicy::Disabled;
        assert_eq!(run(Some(&b), (1, 100), 10, &[50, 50]), [10, 10, 10]);
        // Scale-down: Max removes the most (Pods 2 vs 50 %): from 10 to 5; Min removes the least: 8.
        let mut b = defaults();
        b.scale_down.stabilization_window_seconds = 0;
        b.scale_down.policies = vec![
            ScalingPolicy {
                kind: PolicyKind::Pods,
                value: 2,
                period_seconds: 15,
            },
            ScalingPolicy {
                kind: PolicyKind::Percent,
                value: 50,
                period_seconds: 15,
            },
        ];
        assert_eq!(run(Some(&b), (1, 100), 10, &[1]), [10, 5]);
        b.scale_down.select_policy = SelectPolicy::Min;
        assert_eq!(run(Some(&b), (1, 100), 10, &[1]), [10, 8]);
        b.scale_down.select_policy = SelectPolicy::Disabled;
        assert_eq!(run(Some(&b), (1, 100), 10, &[1, 1]), [10, 10, 10]);
    }

    #[test]
    fn scale_down_keeps_the_highest_recommendation_of_the_window() {
        // 20 syncs asking for 10, then 1s: with a 300 s window the drop waits until the last
        // 10 is exactly 300 s old (it no longer counts: strictly after the cutoff).
        let mut desired = vec![10; 20];
        desired.extend([1; 25]);
        let series = run(Some(&defaults()), (1, 10), 10, &desired);
        let first_drop = series.iter().position(|r| *r == 1).unwrap();
        // series[0] is the start; sync i (time 15·i) produced series[i + 1].
        let last_high_sync = 19;
        assert_eq!((first_drop - 1 - last_high_sync) * 15, 300);
        // Legacy: the window includes a recommendation exactly at its edge, one sync more.
        let series = run(None, (1, 10), 10, &desired);
        let first_drop = series.iter().position(|r| *r == 1).unwrap();
        assert_eq!((first_drop - 1 - last_high_sync) * 15, 315);
    }

    #[test]
    fn scale_up_stabilization_takes_the_lowest_recommendation() {
        let mut b = defaults();
        b.scale_up.stabilization_window_seconds = 60;
        let mut h = History::default();
        let n = normalize_with_behavior(&mut h, 0, &b, (1, 100), 4, 4);
        assert_eq!(n.replicas, 4);
        let n = normalize_with_behavior(&mut h, 15 * S, &b, (1, 100), 4, 8);
        assert_eq!(
            (n.replicas, n.stabilized),
            (4, Some(Limit::ScaleUpStabilized))
        );
        // 60 s after the last 4, only 8s remain in the window.
        for t in [30, 45, 60] {
            normalize_with_behavior(&mut h, t * S, &b, (1, 100), 4, 8);
        }
        let n = normalize_with_behavior(&mut h, 75 * S, &b, (1, 100), 4, 8);
        assert_eq!((n.replicas, n.stabilized), (8, None));
        assert!(h.recommendations().len() <= 6);
    }

    #[test]
    fn bounds_are_reported_apart_from_rate_limits() {
        let mut h = History::default();
        let n = normalize_with_behavior(&mut h, 0, &defaults(), (1, 6), 5, 9);
        assert_eq!((n.replicas, n.limited), (6, Some(Limit::TooManyReplicas)));
        assert!(!Limit::TooManyReplicas.is_behavior() && Limit::ScaleUpLimit.is_behavior());
        let n = normalize_legacy(&mut History::default(), 0, 300, (2, 10), 3, 0);
        assert_eq!((n.replicas, n.limited), (2, Some(Limit::TooFewReplicas)));
    }
}
