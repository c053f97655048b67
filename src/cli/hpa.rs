//! The HPA controller's replica arithmetic (Kubernetes 1.36 `replica_calculator.go`), step by
//! step, for `explain --hpa`.

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
    /// Target value.
    pub target: f64,
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
                "target" => spec.target = num(v)?,
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
        if spec.target.is_nan() || spec.target <= 0.0 {
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

impl HpaSpec {
    fn within(&self, ratio: f64) -> bool {
        (1.0 - self.tolerance..=1.0 + self.tolerance).contains(&ratio)
    }

    /// Applies the HPA's formulas to the values the API answered.
    pub fn compute(&self, kind: MetricKind, values: &[f64]) -> Result<HpaResult, String> {
        if values.is_empty() {
            return Err("the answer has no items: the HPA reports \"no metrics returned\" and keeps the current size".into());
        }
        let mut steps = Vec::new();
        let current = self.current as f64;
        let (raw, ratio_for_tolerance) = match (kind, self.target_kind) {
            (MetricKind::Pods, TargetKind::AverageValue)
            | (MetricKind::Pods, TargetKind::Value) => {
                let avg = values.iter().sum::<f64>() / values.len() as f64;
                let ratio = avg / self.target;
                steps.push(format!("average over {} pods = {avg}", values.len()));
                steps.push(format!("ratio = {avg} / {} = {ratio:.4}", self.target));
                steps.push(format!(
                    "ceil({ratio:.4} × {} pods) = {}",
                    values.len(),
                    (ratio * values.len() as f64).ceil()
                ));
                ((ratio * values.len() as f64).ceil(), ratio)
            }
            (MetricKind::Object, _) if values.len() != 1 => {
                return Err(format!(
                    "an Object metric needs exactly one item, the answer has {}",
                    values.len()
                ));
            }
            (MetricKind::Object | MetricKind::External, TargetKind::Value) => {
                let total: f64 = values.iter().sum();
                if values.len() > 1 {
                    steps.push(format!("sum of {} items = {total}", values.len()));
                }
                let ratio = total / self.target;
                steps.push(format!("ratio = {total} / {} = {ratio:.4}", self.target));
                let desired = if self.current == 0 {
                    ratio.ceil()
                } else {
                    (ratio * current).ceil()
                };
                steps.push(format!(
                    "ceil({ratio:.4} × {} current) = {desired}",
                    self.current.max(1)
                ));
                (desired, ratio)
            }
            (MetricKind::Object | MetricKind::External, TargetKind::AverageValue) => {
                let total: f64 = values.iter().sum();
                if values.len() > 1 {
                    steps.push(format!("sum of {} items = {total}", values.len()));
                }
                let desired = (total / self.target).ceil();
                steps.push(format!("ceil({total} / {}) = {desired}", self.target));
                let ratio = if self.current == 0 {
                    f64::INFINITY
                } else {
                    total / (self.target * current)
                };
                (desired, ratio)
            }
        };
        let mut desired = raw.max(0.0).min(u32::MAX as f64) as u32;
        if self.current > 0 && self.within(ratio_for_tolerance) {
            steps.push(format!(
                "usage ratio {ratio_for_tolerance:.4} is within the tolerance of {}: no change",
                self.tolerance
            ));
            desired = self.current;
        }
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
        assert_eq!(
            spec("target=10,current=3,max=10")
                .compute(MetricKind::Pods, &[10.5, 10.0, 9.5])
                .unwrap()
                .desired,
            3
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
    }
}
