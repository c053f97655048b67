//! The HPA's replica arithmetic (spec hpa-and-peers.md §1.1), applied to our API's answers so
//! that examples are proved end to end. The arithmetic itself is the library's
//! (`prom_metrics_adapter::hpa::replicas`, the one copy `explain --hpa` and `simulate` use);
//! this is the shape the example tests call it in, with the result clamped to the bounds.

#![allow(dead_code)]

use prom_metrics_adapter::hpa::replicas::{
    PodValues, Tolerances, average_value_replicas, plain_metric_replicas, utilization_replicas,
    value_replicas,
};

/// An HPA's bounds and state.
#[derive(Clone, Copy, Debug)]
pub struct Hpa {
    /// Current replicas.
    pub current: u32,
    /// `minReplicas`.
    pub min: u32,
    /// `maxReplicas`.
    pub max: u32,
    /// `--horizontal-pod-autoscaler-tolerance` (0.1 by default).
    pub tolerance: f64,
}

/// Thousandths of a value the API served (a quantity, so a whole number of thousandths).
fn milli(v: f64) -> i64 {
    (v * 1000.0).round() as i64
}

impl Hpa {
    /// An HPA with the default tolerance.
    pub fn new(current: u32, min: u32, max: u32) -> Hpa {
        Hpa {
            current,
            min,
            max,
            tolerance: 0.1,
        }
    }

    fn clamp(&self, desired: i32) -> u32 {
        u32::try_from(desired.max(0))
            .unwrap_or(0)
            .clamp(self.min, self.max)
    }

    fn current(&self) -> i32 {
        i32::try_from(self.current).unwrap()
    }

    fn tolerances(&self) -> Tolerances {
        Tolerances::both(self.tolerance)
    }

    /// External metric, target `AverageValue`: all items summed, `ceil(sum / target)`; the
    /// tolerance is checked against `sum / (target × current)`.
    pub fn external_average_value(&self, values: &[f64], target: f64) -> u32 {
        let sum = values.iter().map(|v| milli(*v)).sum();
        let p =
            average_value_replicas(self.current(), sum, milli(target), self.tolerances()).unwrap();
        self.clamp(p.replicas)
    }

    /// External metric, target `Value`: `ceil(sum / target × current)`, or `ceil(sum / target)`
    /// from zero replicas.
    pub fn external_value(&self, values: &[f64], target: f64) -> u32 {
        let sum = values.iter().map(|v| milli(*v)).sum();
        let p = value_replicas(
            self.current(),
            self.current(),
            sum,
            milli(target),
            self.tolerances(),
        )
        .unwrap();
        self.clamp(p.replicas)
    }

    /// Pods metric, target `AverageValue`: the per-pod values averaged,
    /// `ceil(average / target × pods)` (every pod ready and reporting).
    pub fn pods_average_value(&self, per_pod: &[f64], target: f64) -> u32 {
        let pods = PodValues {
            values: per_pod.iter().map(|v| milli(*v)).collect(),
            missing: 0,
        };
        let p =
            plain_metric_replicas(self.current(), &pods, milli(target), self.tolerances()).unwrap();
        self.clamp(p.replicas)
    }

    /// Resource metric, target `Utilization`: `100 × Σusage / Σrequests` over the pods with
    /// metrics, against the target percentage; `ceil(ratio × pods)`.
    pub fn resource_utilization(
        &self,
        usage: &[f64],
        requests: &[f64],
        target_percent: f64,
    ) -> u32 {
        let usage: Vec<i64> = usage.iter().map(|v| milli(*v)).collect();
        let requests: Vec<i64> = requests.iter().map(|v| milli(*v)).collect();
        let p = utilization_replicas(
            self.current(),
            &usage,
            &requests,
            0,
            0,
            target_percent as i32,
            self.tolerances(),
        )
        .unwrap();
        self.clamp(p.replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_examples_hold() {
        let hpa = Hpa::new(3, 1, 10);
        assert_eq!(hpa.external_average_value(&[2500.0], 100.0), 10);
        assert_eq!(
            Hpa::new(3, 1, 100).external_average_value(&[2500.0], 100.0),
            25
        );
        assert_eq!(hpa.external_average_value(&[310.0], 100.0), 3); // within tolerance
        assert_eq!(hpa.pods_average_value(&[15.0, 25.0, 20.0], 10.0), 6);
        assert_eq!(Hpa::new(0, 0, 10).external_value(&[0.0], 5.0), 0);
    }
}
