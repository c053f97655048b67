//! The HPA's replica arithmetic (spec hpa-and-peers.md §1.1), applied to our API's answers so
//! that examples are proved end to end.

#![allow(dead_code)]

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

    fn clamp(&self, desired: u32) -> u32 {
        desired.clamp(self.min, self.max)
    }

    fn within_tolerance(&self, ratio: f64) -> bool {
        (1.0 - self.tolerance..=1.0 + self.tolerance).contains(&ratio)
    }

    /// External metric, target `AverageValue`: all items summed, `ceil(sum / target)`; the
    /// tolerance is checked against `sum / (target × current)`.
    pub fn external_average_value(&self, values: &[f64], target: f64) -> u32 {
        let sum: f64 = values.iter().sum();
        if self.current > 0 && self.within_tolerance(sum / (target * self.current as f64)) {
            return self.clamp(self.current);
        }
        self.clamp((sum / target).ceil() as u32)
    }

    /// External metric, target `Value`: `ceil(sum / target × current)`, or `ceil(sum / target)`
    /// from zero replicas.
    pub fn external_value(&self, values: &[f64], target: f64) -> u32 {
        let sum: f64 = values.iter().sum();
        let ratio = sum / target;
        if self.current == 0 {
            return self.clamp(ratio.ceil() as u32);
        }
        if self.within_tolerance(ratio) {
            return self.clamp(self.current);
        }
        self.clamp((ratio * self.current as f64).ceil() as u32)
    }

    /// Pods metric, target `AverageValue`: the per-pod values averaged,
    /// `ceil(average / target × pods)` (every pod ready and reporting).
    pub fn pods_average_value(&self, per_pod: &[f64], target: f64) -> u32 {
        let avg = per_pod.iter().sum::<f64>() / per_pod.len() as f64;
        let ratio = avg / target;
        if self.within_tolerance(ratio) {
            return self.clamp(self.current);
        }
        self.clamp((ratio * per_pod.len() as f64).ceil() as u32)
    }
}

impl Hpa {
    /// Resource metric, target `Utilization`: `100 × Σusage / Σrequests` over the pods with
    /// metrics, against the target percentage; `ceil(ratio × pods)`.
    pub fn resource_utilization(
        &self,
        usage: &[f64],
        requests: &[f64],
        target_percent: f64,
    ) -> u32 {
        let utilization = 100.0 * usage.iter().sum::<f64>() / requests.iter().sum::<f64>();
        let ratio = utilization / target_percent;
        if self.within_tolerance(ratio) {
            return self.clamp(self.current);
        }
        self.clamp((ratio * usage.len() as f64).ceil() as u32)
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
