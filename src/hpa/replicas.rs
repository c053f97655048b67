//! What one metric proposes: the replica arithmetic of the HPA controller's
//! `replica_calculator.go` (Kubernetes 1.36), one function per metric and target shape.
//!
//! Values are whole thousandths (`MilliValue()`), as the controller reads every quantity, and
//! the integer divisions happen where the controller's do, so a proposal here is the number the
//! controller computes, not a float approximation of it.

/// The tolerance band around a usage ratio of 1 inside which nothing changes: `scale_down`
/// below, `scale_up` above (per direction since Kubernetes 1.33, `behavior.*.tolerance`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// How far below 1 the ratio may fall without scaling down.
    pub scale_down: f64,
    /// How far above 1 the ratio may rise without scaling up.
    pub scale_up: f64,
}

impl Default for Tolerances {
    /// The controller's `--horizontal-pod-autoscaler-tolerance` default, 0.1 both ways.
    fn default() -> Self {
        Tolerances {
            scale_down: 0.1,
            scale_up: 0.1,
        }
    }
}

impl Tolerances {
    /// The same tolerance both ways.
    pub fn both(t: f64) -> Self {
        Tolerances {
            scale_down: t,
            scale_up: t,
        }
    }

    /// Whether `ratio` is close enough to 1 to leave the replica count alone (bounds included).
    pub fn within(&self, ratio: f64) -> bool {
        1.0 - self.scale_down <= ratio && ratio <= 1.0 + self.scale_up
    }
}

/// What one metric proposes, with the figures the HPA status would show.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proposal {
    /// Replicas the metric asks for (before `minReplicas`/`maxReplicas` and `behavior`).
    pub replicas: i32,
    /// current ÷ target, as the tolerance check saw it (may be infinite with 0 replicas).
    pub usage_ratio: f64,
    /// The current value in thousandths, as `status.currentMetrics` shows it: the average per
    /// pod for per-pod targets, the value itself for `Value` targets; for `Utilization`, the
    /// percentage (not thousandths).
    pub current: i64,
    /// True when the ratio fell inside the tolerance band, so the current count was kept.
    pub within_tolerance: bool,
}

/// Why a metric proposes nothing; the HPA reports it and treats the metric as invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// The scale target has no pods to average over.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// Pods exist but none has a value.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoPodMetrics,
    /// A utilization target over pods without requests.
    #[error("no metrics returned matched known pods")]
    NoRequests,
    /// A target of zero (the API server rejects it; kept for direct callers).
    #[error("the target must be greater than zero")]
    ZeroTarget,
}

fn ceil_i32(x: f64) -> i32 {
    // Go's int32(math.Ceil(x)) on the values the controller can meet; saturate beyond.
    let c = x.ceil();
    if c.is_nan() {
        0
    } else {
        c.clamp(i32::MIN as f64, i32::MAX as f64) as i32
    }
}

/// Per-pod values of a `Pods` metric or a `Resource`/`ContainerResource` `AverageValue`
/// target: pods that reported, and pods that exist but did not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodValues {
    /// Thousandths per pod that has a value.
    pub values: Vec<i64>,
    /// Pods of the target without a value.
    pub missing: usize,
}

fn average_ratio(values: &[i64], target: i64) -> (f64, i64) {
    let total: i64 = values.iter().fold(0i64, |a, v| a.saturating_add(*v));
    let average = total / values.len() as i64;
    (average as f64 / target as f64, average)
}

/// `calcPlainMetricReplicas`: the average over pods against an average target.
///
/// With every pod reporting, `ceil(ratio × pods)` unless within tolerance. Pods without a
/// value are then filled in pessimistically for the direction of the change (0 on a scale-up,
/// exactly the target on a scale-down) and the count is recomputed; if that flips the
/// direction or lands within tolerance, the current count stays.
pub fn plain_metric_replicas(
    current_replicas: i32,
    pods: &PodValues,
    target: i64,
    tolerances: Tolerances,
) -> Result<Proposal, MetricError> {
    if target <= 0 {
        return Err(MetricError::ZeroTarget);
    }
    if pods.values.is_empty() && pods.missing == 0 {
        return Err(MetricError::NoPods);
    }
    if pods.values.is_empty() {
        return Err(MetricError::NoPodMetrics);
    }
    let (ratio, current) = average_ratio(&pods.values, target);
    let keep = |within| Proposal {
        replicas: current_replicas,
        usage_ratio: ratio,
        current,
        within_tolerance: within,
    };
    if pods.missing == 0 {
        if tolerances.within(ratio) {
            return Ok(keep(true));
        }
        return Ok(Proposal {
            replicas: ceil_i32(ratio * pods.values.len() as f64),
            usage_ratio: ratio,
            current,
            within_tolerance: false,
        });
    }
    let fill = if ratio < 1.0 { target } else { 0 };
    let mut all = pods.values.clone();
    all.extend(std::iter::repeat_n(fill, pods.missing));
    let (new_ratio, _) = average_ratio(&all, target);
    let flipped = (ratio > 1.0 && new_ratio < 1.0) || (ratio < 1.0 && new_ratio > 1.0);
    if tolerances.within(new_ratio) || flipped {
        return Ok(keep(tolerances.within(new_ratio)));
    }
    let replicas = ceil_i32(new_ratio * all.len() as f64);
    if (new_ratio < 1.0 && replicas > current_replicas)
        || (new_ratio > 1.0 && replicas < current_replicas)
    {
        return Ok(keep(false));
    }
    Ok(Proposal {
        replicas,
        usage_ratio: ratio,
        current,
        within_tolerance: false,
    })
}

/// `GetResourceReplicas`: CPU or memory `Utilization` over pods with requests. `usage` and
/// `requests` are per pod in thousandths (the same pods, in the same order); `missing` pods
/// exist without a value and, like the others, carry `missing_request` each.
pub fn utilization_replicas(
    current_replicas: i32,
    usage: &[i64],
    requests: &[i64],
    missing: usize,
    missing_request: i64,
    target_percent: i32,
    tolerances: Tolerances,
) -> Result<Proposal, MetricError> {
    if target_percent <= 0 {
        return Err(MetricError::ZeroTarget);
    }
    if usage.is_empty() && missing == 0 {
        return Err(MetricError::NoPods);
    }
    if usage.is_empty() {
        return Err(MetricError::NoPodMetrics);
    }
    let ratio_of = |usage: &[i64], requests: &[i64]| -> Result<(f64, i64), MetricError> {
        let used: i64 = usage.iter().sum();
        let requested: i64 = requests.iter().sum();
        if requested == 0 {
            return Err(MetricError::NoRequests);
        }
        // The controller truncates to a whole percentage before dividing by the target.
        let utilization = used.saturating_mul(100) / requested;
        Ok((utilization as f64 / f64::from(target_percent), utilization))
    };
    let (ratio, utilization) = ratio_of(usage, requests)?;
    let keep = |within| Proposal {
        replicas: current_replicas,
        usage_ratio: ratio,
        current: utilization,
        within_tolerance: within,
    };
    if missing == 0 {
        if tolerances.within(ratio) {
            return Ok(keep(true));
        }
        return Ok(Proposal {
            replicas: ceil_i32(ratio * usage.len() as f64),
            usage_ratio: ratio,
            current: utilization,
            within_tolerance: false,
        });
    }
    let mut all_usage = usage.to_vec();
    let mut all_requests = requests.to_vec();
    if ratio < 1.0 {
        // Missing pods are assumed at the target (at least 100 % of their request).
        let fallback = i64::from(target_percent.max(100));
        all_usage.extend(std::iter::repeat_n(
            missing_request * fallback / 100,
            missing,
        ));
    } else {
        all_usage.extend(std::iter::repeat_n(0, missing));
    }
    all_requests.extend(std::iter::repeat_n(missing_request, missing));
    let (new_ratio, _) = ratio_of(&all_usage, &all_requests)?;
    let flipped = (ratio > 1.0 && new_ratio < 1.0) || (ratio < 1.0 && new_ratio > 1.0);
    if tolerances.within(new_ratio) || flipped {
        return Ok(keep(tolerances.within(new_ratio)));
    }
    let replicas = ceil_i32(new_ratio * all_usage.len() as f64);
    if (new_ratio < 1.0 && replicas > current_replicas)
        || (new_ratio > 1.0 && replicas < current_replicas)
    {
        return Ok(keep(false));
    }
    Ok(Proposal {
        replicas,
        usage_ratio: ratio,
        current: utilization,
        within_tolerance: false,
    })
}

/// `GetObjectMetricReplicas` / `GetExternalMetricReplicas` (`target.value`): the ratio of the
/// value (an external metric's items summed) to the target, times the ready pods; from zero
/// replicas, `ceil(ratio)`.
pub fn value_replicas(
    current_replicas: i32,
    ready_pods: i32,
    usage: i64,
    target: i64,
    tolerances: Tolerances,
) -> Result<Proposal, MetricError> {
    if target <= 0 {
        return Err(MetricError::ZeroTarget);
    }
    let ratio = usage as f64 / target as f64;
    if current_replicas == 0 {
        return Ok(Proposal {
            replicas: ceil_i32(ratio),
            usage_ratio: ratio,
            current: usage,
            within_tolerance: false,
        });
    }
    if tolerances.within(ratio) {
        return Ok(Proposal {
            replicas: current_replicas,
            usage_ratio: ratio,
            current: usage,
            within_tolerance: true,
        });
    }
    Ok(Proposal {
        replicas: ceil_i32(ratio * f64::from(ready_pods)),
        usage_ratio: ratio,
        current: usage,
        within_tolerance: false,
    })
}

/// `GetObjectPerPodMetricReplicas` / `GetExternalPerPodMetricReplicas` (`target.averageValue`):
/// `ceil(value ÷ target)`, with the tolerance checked against value ÷ (target × replicas) where
/// replicas is the scale's `status.replicas`.
pub fn average_value_replicas(
    status_replicas: i32,
    usage: i64,
    target: i64,
    tolerances: Tolerances,
) -> Result<Proposal, MetricError> {
    if target <= 0 {
        return Err(MetricError::ZeroTarget);
    }
    // With no replicas the ratio is infinite (or NaN for 0/0): never within tolerance.
    let ratio = usage as f64 / (target as f64 * f64::from(status_replicas));
    let within = tolerances.within(ratio);
    let replicas = if within {
        status_replicas
    } else {
        ceil_i32(usage as f64 / target as f64)
    };
    let current = if status_replicas == 0 {
        usage
    } else {
        (usage as f64 / f64::from(status_replicas)).ceil() as i64
    };
    Ok(Proposal {
        replicas,
        usage_ratio: ratio,
        current,
        within_tolerance: within,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tolerances = Tolerances {
        scale_down: 0.1,
        scale_up: 0.1,
    };

    fn pods(values: &[i64], missing: usize) -> PodValues {
        PodValues {
            values: values.to_vec(),
            missing,
        }
    }

    #[test]
    fn the_tolerance_band_includes_its_bounds_and_is_per_direction() {
        assert!(T.within(0.9) && T.within(1.1) && T.within(1.0));
        assert!(!T.within(0.89) && !T.within(1.11));
        let asymmetric = Tolerances {
            scale_down: 0.5,
            scale_up: 0.0,
        };
        assert!(asymmetric.within(0.5) && !asymmetric.within(1.01));
        // 3 pods at 10.5 against 10: ratio 1.05, kept; at 12, ceil(1.2 × 3) = 4.
        let p = plain_metric_replicas(3, &pods(&[10_500; 3], 0), 10_000, T).unwrap();
        assert_eq!((p.replicas, p.within_tolerance), (3, true));
        let p = plain_metric_replicas(3, &pods(&[12_000; 3], 0), 10_000, T).unwrap();
        assert_eq!((p.replicas, p.current), (4, 12_000));
        // A zero scale-up tolerance scales on 1 % over the target; the scale-down side keeps 10 %.
        let up0 = Tolerances {
            scale_down: 0.1,
            scale_up: 0.0,
        };
        let p = plain_metric_replicas(10, &pods(&[10_100; 10], 0), 10_000, up0).unwrap();
        assert_eq!(p.replicas, 11);
        let p = plain_metric_replicas(10, &pods(&[9_100; 10], 0), 10_000, up0).unwrap();
        assert_eq!(p.replicas, 10);
    }

    #[test]
    fn the_average_is_taken_in_whole_thousandths() {
        // (1 + 2) / 2 = 1 thousandth (integer division), ratio 1/1 = 1: within tolerance.
        let p = plain_metric_replicas(2, &pods(&[1, 2], 0), 1, T).unwrap();
        assert_eq!((p.current, p.replicas), (1, 2));
    }

    #[test]
    fn missing_pods_are_pessimistic_for_the_direction_of_the_change() {
        // Scale-up: 2 pods at 30 and 2 missing (counted as 0): average 15 vs 10 → ceil(1.5×4) = 6.
        let p = plain_metric_replicas(4, &pods(&[30_000, 30_000], 2), 10_000, T).unwrap();
        assert_eq!(p.replicas, 6);
        // Scale-down: 2 pods at 2 and 2 missing (counted at the target 10): average 6 → ceil(0.6×4) = 3.
        let p = plain_metric_replicas(4, &pods(&[2_000, 2_000], 2), 10_000, T).unwrap();
        assert_eq!(p.replicas, 3);
        // One pod far over with many missing: filling in zeros flips the direction → keep.
        let p = plain_metric_replicas(10, &pods(&[11_500], 9), 10_000, T).unwrap();
        assert_eq!(p.replicas, 10);
        assert_eq!(
            plain_metric_replicas(3, &pods(&[], 3), 10_000, T),
            Err(MetricError::NoPodMetrics)
        );
        assert_eq!(
            plain_metric_replicas(0, &pods(&[], 0), 10_000, T),
            Err(MetricError::NoPods)
        );
    }

    #[test]
    fn value_targets_multiply_the_ratio_by_ready_pods_and_start_from_zero() {
        let p = value_replicas(2, 2, 100_000, 50_000, T).unwrap();
        assert_eq!(p.replicas, 4);
        let p = value_replicas(0, 0, 12_000, 5_000, T).unwrap();
        assert_eq!(p.replicas, 3);
        let p = value_replicas(5, 5, 52_000, 50_000, T).unwrap();
        assert_eq!((p.replicas, p.within_tolerance), (5, true));
    }

    #[test]
    fn average_value_targets_divide_the_total_and_check_tolerance_per_replica() {
        // 2500 messages, 100 per replica, 3 replicas: ceil(25) = 25.
        let p = average_value_replicas(3, 2_500_000, 100_000, T).unwrap();
        assert_eq!((p.replicas, p.current), (25, 833_334));
        // 3 replicas, 310 total: ratio 310/300 = 1.033, within tolerance: keep 3.
        let p = average_value_replicas(3, 310_000, 100_000, T).unwrap();
        assert_eq!((p.replicas, p.within_tolerance), (3, true));
        // From zero replicas the ratio is infinite: ceil(total / target).
        let p = average_value_replicas(0, 250_000, 100_000, T).unwrap();
        assert_eq!(p.replicas, 3);
        let p = average_value_replicas(0, 0, 100_000, T).unwrap();
        assert_eq!(p.replicas, 0);
    }

    #[test]
    fn utilization_truncates_to_a_whole_percentage() {
        // 2 pods using 0.5 and 0.7 cores of 1 core each, target 50 %: 60 % → ceil(1.2 × 2) = 3.
        let p = utilization_replicas(2, &[500, 700], &[1000, 1000], 0, 1000, 50, T).unwrap();
        assert_eq!((p.replicas, p.current), (3, 60));
        // Scale-down with a missing pod: it is assumed at max(100, target) % of its request.
        let p = utilization_replicas(3, &[100, 100], &[1000, 1000], 1, 1000, 50, T).unwrap();
        // (100 + 100 + 1000) × 100 / 3000 = 40 % → 0.8 → ceil(0.8 × 3) = 3 = current: kept.
        assert_eq!(p.replicas, 3);
        assert_eq!(
            utilization_replicas(1, &[5], &[0], 0, 0, 50, T),
            Err(MetricError::NoRequests)
        );
    }
}
