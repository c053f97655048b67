//! One sync of the HPA's arithmetic, step by step, for `explain --hpa`: the numbers come from
//! [`super::replicas`], this file only says how they were reached.

use super::quantity::parse_milli;
use super::replicas::{
    PodValues, Proposal, Tolerances, average_value_replicas, plain_metric_replicas, value_replicas,
};

/// Which kind of HPA metric the answer feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// `type: Pods` (per-pod values, averaged).
    Pods,
    /// `type: Object` (one value).
    Object,
    /// `type: External` (all items summed).
    External,
}

/// The target type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// `target.value`.
    Value,
    /// `target.averageValue`.
    AverageValue,
}

/// An HPA to simulate, from `type=AverageValue,target=100,current=3,min=1,max=10`.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaSpec {
    /// Target type.
    pub target_kind: TargetKind,
    /// Target value, as given.
    pub target: f64,
    /// Target value in thousandths, as the controller reads it.
    pub target_milli: i64,
    /// Current replicas.
    pub current: u32,
    /// `minReplicas`.
    pub min: u32,
    /// `maxReplicas`.
    pub max: u32,
    /// Tolerance (0.1 by default).
    pub tolerance: f64,
    /// Metric kind, when given (`metric=Pods|Object|External`); else taken from the path.
    pub metric: Option<MetricKind>,
}

impl std::str::FromStr for HpaSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut spec = HpaSpec {
            target_kind: TargetKind::AverageValue,
            target: f64::NAN,
            target_milli: 0,
            current: 1,
            min: 1,
            max: u32::MAX,
            tolerance: 0.1,
            metric: None,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=value"))?;
            let num = |v: &str| {
                v.parse::<f64>()
                    .map_err(|_| format!("{k}: {v:?} is not a number"))
            };
            let int = |v: &str| {
                v.parse::<u32>()
                    .map_err(|_| format!("{k}: {v:?} is not a whole number"))
            };
            match k {
                "type" => {
                    spec.target_kind = match v {
                        "Value" => TargetKind::Value,
                        "AverageValue" => TargetKind::AverageValue,
                        _ => return Err(format!("type: {v:?}; use Value or AverageValue")),
                    }
                }
                "target" => {
                    spec.target = num(v)?;
                    spec.target_milli = parse_milli(v).map_err(|e| format!("target: {e}"))?;
                }
                "current" => spec.current = int(v)?,
                "min" => spec.min = int(v)?,
                "max" => spec.max = int(v)?,
                "tolerance" => spec.tolerance = num(v)?,
                "metric" => {
                    spec.metric = Some(match v {
                        "Pods" => MetricKind::Pods,
                        "Object" => MetricKind::Object,
                        "External" => MetricKind::External,
                        _ => return Err(format!("metric: {v:?}; use Pods, Object or External")),
                    })
                }
                _ => {
                    return Err(format!(
                        "unknown key {k:?} (type, target, current, min, max, tolerance, metric)"
                    ));
                }
            }
        }
        if spec.target.is_nan() || spec.target_milli <= 0 {
            return Err("target must be given and greater than 0".into());
        }
        if spec.min > spec.max {
            return Err("min must not exceed max".into());
        }
        Ok(spec)
    }
}

/// The computation, step by step.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaResult {
    /// Replicas the HPA will ask for.
    pub desired: u32,
    /// Human-readable steps.
    pub steps: Vec<String>,
}

/// Thousandths of a value the adapter served (already a whole number of thousandths).
fn milli(v: f64) -> i64 {
    (v * 1000.0).round() as i64
}

fn show(milli: i64) -> String {
    format!("{}", milli as f64 / 1000.0)
}

impl HpaSpec {
    /// Applies the HPA's formulas to the values the API answered.
    pub fn compute(&self, kind: MetricKind, values: &[f64]) -> Result<HpaResult, String> {
        if values.is_empty() {
            return Err("the answer has no items: the HPA reports \"no metrics returned\" and keeps the current size".into());
        }
        let tol = Tolerances::both(self.tolerance);
        let current = i32::try_from(self.current).unwrap_or(i32::MAX);
        let target = show(self.target_milli);
        let mut steps = Vec::new();
        let total: i64 = values.iter().map(|v| milli(*v)).sum();
        if kind != MetricKind::Pods && values.len() > 1 {
            steps.push(format!("sum of {} items = {}", values.len(), show(total)));
        }
        let p: Proposal = match (kind, self.target_kind) {
            (MetricKind::Object, _) if values.len() != 1 => {
                return Err(format!(
                    "an Object metric needs exactly one item, the answer has {}",
                    values.len()
                ));
            }
            (MetricKind::Pods, _) => {
                let pods = PodValues {
                    values: values.iter().map(|v| milli(*v)).collect(),
                    missing: 0,
                };
                let p = plain_metric_replicas(current, &pods, self.target_milli, tol)
                    .map_err(|e| e.to_string())?;
                steps.push(format!(
                    "average over {} pods = {}",
                    values.len(),
                    show(p.current)
                ));
                steps.push(format!(
                    "ratio = {} / {target} = {:.4}",
                    show(p.current),
                    p.usage_ratio
                ));
                if !p.within_tolerance {
                    steps.push(format!(
                        "ceil({:.4} × {} pods) = {}",
                        p.usage_ratio,
                        values.len(),
                        p.replicas
                    ));
                }
                p
            }
            (_, TargetKind::Value) => {
                let p = value_replicas(current, current, total, self.target_milli, tol)
                    .map_err(|e| e.to_string())?;
                steps.push(format!(
                    "ratio = {} / {target} = {:.4}",
                    show(total),
                    p.usage_ratio
                ));
                if !p.within_tolerance {
                    steps.push(format!(
                        "ceil({:.4} × {} current) = {}",
                        p.usage_ratio,
                        self.current.max(1),
                        p.replicas
                    ));
                }
                p
            }
            (_, TargetKind::AverageValue) => {
                let p = average_value_replicas(current, total, self.target_milli, tol)
                    .map_err(|e| e.to_string())?;
                if !p.within_tolerance {
                    steps.push(format!("ceil({} / {target}) = {}", show(total), p.replicas));
                }
                p
            }
        };
        if p.within_tolerance {
            steps.push(format!(
                "usage ratio {:.4} is within the tolerance of {}: no change",
                p.usage_ratio, self.tolerance
            ));
        }
        let desired = u32::try_from(p.replicas.max(0)).unwrap_or(0);
        let clamped = desired.clamp(self.min, self.max);
        if clamped != desired {
            steps.push(format!(
                "clamped to [{}, {}] = {clamped}",
                self.min, self.max
            ));
        }
        Ok(HpaResult {
            desired: clamped,
            steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> HpaSpec {
        s.parse().unwrap()
    }

    #[test]
    fn external_lag_example_clamps_to_max() {
        let r = spec("type=AverageValue,target=100,current=3,min=1,max=10")
            .compute(MetricKind::External, &[2500.0])
            .unwrap();
        assert_eq!(r.desired, 10);
        assert!(
            r.steps.iter().any(|s| s.contains("ceil(2500 / 100) = 25")),
            "{:?}",
            r.steps
        );
    }

    #[test]
    fn pods_tolerance_and_value_targets() {
        assert_eq!(
            spec("target=10,current=3,max=10")
                .compute(MetricKind::Pods, &[15.0, 25.0, 20.0])
                .unwrap()
                .desired,
            6
        );
        let within = spec("target=10,current=3,max=10")
            .compute(MetricKind::Pods, &[10.5, 10.0, 9.5])
            .unwrap();
        assert_eq!(within.desired, 3);
        assert!(
            within
                .steps
                .iter()
                .any(|s| s.contains("within the tolerance"))
        );
        assert_eq!(
            spec("type=Value,target=50,current=2,max=10")
                .compute(MetricKind::Object, &[100.0])
                .unwrap()
                .desired,
            4
        );
        assert_eq!(
            spec("type=Value,target=5,current=0,min=0,max=10")
                .compute(MetricKind::External, &[12.0])
                .unwrap()
                .desired,
            3
        );
        assert!(
            spec("target=1")
                .compute(MetricKind::Object, &[1.0, 2.0])
                .is_err()
        );
        assert!(spec("target=1").compute(MetricKind::Pods, &[]).is_err());
        assert!("target=0".parse::<HpaSpec>().is_err());
        assert!("type=Utilization,target=5".parse::<HpaSpec>().is_err());
        // A decimal target is read exactly: 0.1 is 100 thousandths, so 0.11 over it is within 10 %.
        assert_eq!(
            spec("target=0.1,current=2,max=10")
                .compute(MetricKind::Pods, &[0.11, 0.11])
                .unwrap()
                .desired,
            2
        );
    }
}
