//! One sync of one HPA (`reconcileAutoscaler` and `computeReplicasForMetrics` in Kubernetes
//! 1.36 `horizontal.go`): the bounds checks before any metric is read, the highest proposal
//! over the metrics with the rules for invalid ones, then the legacy or `behavior`
//! normalization, and the scale event it leaves behind.

use super::behavior::{Behavior, History, Limit, normalize_legacy, normalize_with_behavior};
use super::replicas::Tolerances;

/// The controller's own flags that change decisions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ControllerSettings {
    /// `--horizontal-pod-autoscaler-tolerance` (0.1).
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`, in seconds (300).
    pub downscale_stabilization_seconds: i32,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            tolerance: 0.1,
            downscale_stabilization_seconds: 300,
        }
    }
}

/// What a sync needs from the HPA's spec, defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Bounds {
    /// `minReplicas` (1 when unset; 0 only with an Object or External metric).
    pub min_replicas: i32,
    /// `maxReplicas`.
    pub max_replicas: i32,
    /// The defaulted `behavior`, or `None` for the legacy path.
    pub behavior: Option<Behavior>,
}

impl Bounds {
    /// The tolerances of this HPA: the controller's, overridden per direction by
    /// `behavior.scaleUp.tolerance` / `behavior.scaleDown.tolerance`.
    pub fn tolerances(&self, settings: &ControllerSettings) -> Tolerances {
        let mut t = Tolerances::both(settings.tolerance);
        if let Some(b) = &self.behavior {
            if let Some(up) = b.scale_up.tolerance {
                t.scale_up = up;
            }
            if let Some(down) = b.scale_down.tolerance {
                t.scale_down = down;
            }
        }
        t
    }
}

/// One metric's result for a sync.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricResult {
    /// The metric's name, for reasons (`queue_length`, `cpu resource utilization`…).
    pub name: String,
    /// Its proposal, or why it has none.
    pub proposal: Result<i32, String>,
}

/// The decision of one sync.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The replica count the metrics asked for, before stabilization, policies and bounds;
    /// `None` when no metric was read (bounds enforced first) or none could be used.
    pub desired: Option<i32>,
    /// The replica count after the sync.
    pub replicas: i32,
    /// Why, in the controller's words (`queue_length above target`, `All metrics below
    /// target`, the error of an invalid metric…).
    pub reason: String,
    /// A stabilization window that changed the recommendation.
    pub stabilized: Option<Limit>,
    /// A rate limit or bound that changed it after stabilization.
    pub limited: Option<Limit>,
}

impl Decision {
    /// True when a policy, the legacy rate cap or a stabilization window (not the bounds)
    /// changed what the metrics asked for: the points a plot marks.
    pub fn behavior_limited(&self) -> bool {
        self.stabilized.is_some() || self.limited.is_some_and(Limit::is_behavior)
    }
}

/// The controller's memory of one HPA across syncs, and its decisions.
#[derive(Clone, Debug)]
pub struct Controller {
    bounds: Bounds,
    settings: ControllerSettings,
    history: History,
}

impl Controller {
    /// A controller for one HPA, with no history (as after a controller restart).
    pub fn new(bounds: Bounds, settings: ControllerSettings) -> Self {
        Controller {
            bounds,
            settings,
            history: History::default(),
        }
    }

    /// The HPA's bounds and behavior.
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// Whether metrics are read at all this sync with `current` replicas: not when autoscaling
    /// is off (0 replicas with `minReplicas` > 0) nor when the count is outside the bounds,
    /// which are enforced first.
    pub fn reads_metrics(&self, current: i32) -> bool {
        let b = &self.bounds;
        !(current == 0 && b.min_replicas != 0)
            && current <= b.max_replicas
            && current >= b.min_replicas
    }

    /// Runs one sync at `now` (Unix milliseconds) with `current` replicas and each metric's
    /// result (ignored when [`Controller::reads_metrics`] is false).
    pub fn sync(&mut self, now: i64, current: i32, metrics: &[MetricResult]) -> Decision {
        let b = &self.bounds;
        let fixed = |replicas: i32, reason: &str| Decision {
            desired: None,
            replicas,
            reason: reason.to_string(),
            stabilized: None,
            limited: None,
        };
        let decision = if current == 0 && b.min_replicas != 0 {
            fixed(
                0,
                "scaling is disabled since the replica count of the target is zero",
            )
        } else if current > b.max_replicas {
            fixed(
                b.max_replicas,
                "Current number of replicas above Spec.MaxReplicas",
            )
        } else if current < b.min_replicas {
            fixed(
                b.min_replicas,
                "Current number of replicas below Spec.MinReplicas",
            )
        } else {
            self.decide_on_metrics(now, current, metrics)
        };
        if decision.replicas != current {
            self.history.record_scale(
                now,
                self.bounds.behavior.as_ref(),
                current,
                decision.replicas,
            );
        }
        decision
    }

    fn decide_on_metrics(&mut self, now: i64, current: i32, metrics: &[MetricResult]) -> Decision {
        // computeReplicasForMetrics: the highest proposal; the first error is what is reported.
        let mut best: Option<(i32, &str)> = None;
        let mut invalid = 0usize;
        let mut first_error = None;
        for m in metrics {
            match &m.proposal {
                Ok(r) => {
                    if best.is_none_or(|(b, _)| *r > b) {
                        best = Some((*r, &m.name));
                    }
                }
                Err(e) => {
                    invalid += 1;
                    first_error.get_or_insert_with(|| format!("{}: {e}", m.name));
                }
            }
        }
        let error = first_error.map(|e| {
            format!(
                "invalid metrics ({invalid} invalid out of {}), first error is: {e}",
                metrics.len()
            )
        });
        let keep = |reason: String| Decision {
            desired: None,
            replicas: current,
            reason,
            stabilized: None,
            limited: None,
        };
        let Some((desired, metric)) = best else {
            // All invalid (or none at all): no scaling, no recommendation recorded.
            return keep(error.unwrap_or_else(|| "the HPA has no metrics".into()));
        };
        if invalid > 0 && desired < current {
            // Some invalid and the rest would scale down: refusing is the safe choice.
            return keep(error.unwrap_or_default());
        }
        let b = &self.bounds;
        let mut reason = if desired > current {
            format!("{metric} above target")
        } else if desired < current {
            "All metrics below target".to_string()
        } else {
            String::from("within tolerance or at target")
        };
        let n = match &b.behavior {
            None => normalize_legacy(
                &mut self.history,
                now,
                self.settings.downscale_stabilization_seconds,
                (b.min_replicas, b.max_replicas),
                current,
                desired,
            ),
            Some(behavior) => normalize_with_behavior(
                &mut self.history,
                now,
                behavior,
                (b.min_replicas, b.max_replicas),
                current,
                desired,
            ),
        };
        for limit in [n.stabilized, n.limited].into_iter().flatten() {
            reason.push_str(&format!("; {}: {}", limit.reason(), limit.message()));
        }
        if let Some(e) = error {
            reason.push_str(&format!("; {e}"));
        }
        Decision {
            desired: Some(desired),
            replicas: n.replicas,
            reason,
            stabilized: n.stabilized,
            limited: n.limited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::behavior::ScalingRules;
    use super::*;

    fn ok(name: &str, r: i32) -> MetricResult {
        MetricResult {
            name: name.into(),
            proposal: Ok(r),
        }
    }

    fn err(name: &str) -> MetricResult {
        MetricResult {
            name: name.into(),
            proposal: Err("no metrics returned from external metrics API".into()),
        }
    }

    fn controller(min: i32, max: i32, behavior: Option<Behavior>) -> Controller {
        Controller::new(
            Bounds {
                min_replicas: min,
                max_replicas: max,
                behavior,
            },
            ControllerSettings::default(),
        )
    }

    #[test]
    fn the_highest_proposal_wins_and_names_the_reason() {
        let mut c = controller(1, 10, None);
        let d = c.sync(0, 2, &[ok("a", 3), ok("b", 4)]);
        assert_eq!((d.desired, d.replicas), (Some(4), 4));
        assert_eq!(d.reason, "b above target");
    }

    #[test]
    fn several_metrics_with_one_missing() {
        // Scaling up on the valid metric goes ahead, with the error reported.
        let mut c = controller(1, 10, None);
        let d = c.sync(0, 2, &[err("queue"), ok("rps", 4)]);
        assert_eq!(d.replicas, 4);
        assert!(
            d.reason.contains(
                "invalid metrics (1 invalid out of 2), first error is: queue: no metrics"
            ),
            "{}",
            d.reason
        );
        // Scaling down while one metric is invalid is refused, and nothing is recorded.
        let d = c.sync(15_000, 4, &[err("queue"), ok("rps", 1)]);
        assert_eq!((d.desired, d.replicas), (None, 4));
        // All invalid: no change.
        let d = c.sync(30_000, 4, &[err("queue"), err("rps")]);
        assert_eq!((d.desired, d.replicas), (None, 4));
        assert!(d.reason.starts_with("invalid metrics (2 invalid out of 2)"));
    }

    #[test]
    fn bounds_are_enforced_before_metrics_are_read() {
        let c = controller(2, 5, None);
        assert!(!c.reads_metrics(1) && !c.reads_metrics(6) && c.reads_metrics(3));
        let mut c = controller(2, 5, None);
        let d = c.sync(0, 7, &[ok("a", 1)]);
        assert_eq!((d.desired, d.replicas), (None, 5));
        let d = c.sync(0, 0, &[ok("a", 3)]);
        assert_eq!(d.replicas, 0, "autoscaling is off at zero replicas");
        // With minReplicas 0 (scale to zero) a zero count is scaled from.
        let mut c = controller(0, 5, None);
        assert_eq!(c.sync(0, 0, &[ok("a", 3)]).replicas, 3);
    }

    #[test]
    fn behavior_limits_are_reported_and_marked() {
        let behavior = Behavior {
            scale_up: ScalingRules::default_scale_up(),
            scale_down: ScalingRules::default_scale_down(300),
        };
        let mut c = controller(1, 30, Some(behavior));
        let d = c.sync(0, 1, &[ok("q", 30)]);
        assert_eq!((d.desired, d.replicas), (Some(30), 5));
        assert_eq!(d.limited, Some(Limit::ScaleUpLimit));
        assert!(d.behavior_limited());
        assert!(d.reason.contains("ScaleUpLimit"), "{}", d.reason);
        let d = c.sync(15_000, 5, &[ok("q", 1)]);
        assert_eq!(
            (d.replicas, d.stabilized),
            (5, Some(Limit::ScaleDownStabilized))
        );
    }

    #[test]
    fn behavior_tolerances_override_the_controller_per_direction() {
        let mut behavior = Behavior {
            scale_up: ScalingRules::default_scale_up(),
            scale_down: ScalingRules::default_scale_down(300),
        };
        behavior.scale_up.tolerance = Some(0.0);
        let bounds = Bounds {
            min_replicas: 1,
            max_replicas: 3,
            behavior: Some(behavior),
        };
        let t = bounds.tolerances(&ControllerSettings::default());
        assert_eq!((t.scale_up, t.scale_down), (0.0, 0.1));
        let legacy = Bounds {
            behavior: None,
            ..bounds
        };
        assert_eq!(
            legacy.tolerances(&ControllerSettings::default()),
            Tolerances::both(0.1)
        );
    }
}
