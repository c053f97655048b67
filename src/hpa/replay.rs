//! Replaying recorded metric values through the controller, one sync per step.
//!
//! The history was recorded with the replica counts that really ran, the replay asks what
//! another HPA would have done with it. Values that do not depend on the pod count (a queue's
//! length, an object's metric) are used as recorded. Per-pod values do: the replay keeps each
//! step's recorded **total** and spreads it evenly over the simulated pods, the assumption
//! that the work is shared among however many pods there are (a pod added halves the others'
//! share). With recorded replica counts (`--replicas-from-history`) the per-pod values are
//! used as recorded, and pods without a value count as missing, as the controller treats them.

use super::controller::{Controller, ControllerSettings, Decision, MetricResult};
use super::replicas::{
    MetricError, PodValues, Proposal, Tolerances, average_value_replicas, plain_metric_replicas,
    utilization_replicas, value_replicas,
};
use super::spec::{Hpa, Metric, Source, Target};

/// What the adapter would have answered for one metric at one step.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// No usable answer (a 404, an empty list, an error), with what the HPA would report.
    Missing(String),
    /// One value per pod (a `Pods` metric, or CPU/memory usage per pod).
    Pods(Vec<f64>),
    /// The items of an `External` metric, or the single item of an `Object` metric.
    Items(Vec<f64>),
}

/// Everything a replay reads besides the HPA.
#[derive(Clone, Debug)]
pub struct ReplayInput<'a> {
    /// Sync times, Unix milliseconds, ascending.
    pub times: &'a [i64],
    /// Per metric of the HPA (same order), one observation per sync time.
    pub observed: &'a [Vec<Observed>],
    /// Recorded replica counts per sync time; when given they are fed back instead of the
    /// simulated ones (a gap keeps the previous count).
    pub recorded_replicas: Option<&'a [Option<i32>]>,
    /// The replica count before the first sync.
    pub initial_replicas: i32,
    /// Per metric, each pod's request in thousandths, for `Utilization` targets.
    pub requests: &'a [Option<i64>],
}

/// One metric at one sync.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMetric {
    /// The current value as the HPA's status shows it (the average per pod for per-pod targets,
    /// the percentage for utilization); `None` without an answer.
    pub value: Option<f64>,
    /// What the metric proposed.
    pub proposal: Option<i32>,
    /// Why it proposed nothing.
    pub error: Option<String>,
}

/// One sync of the replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Unix milliseconds.
    pub time: i64,
    /// Replicas before the sync.
    pub current: i32,
    /// Per metric of the HPA.
    pub metrics: Vec<StepMetric>,
    /// The controller's decision.
    pub decision: Decision,
}

/// Why a replay cannot start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReplayError(pub String);

/// Thousandths of a served value, as the adapter writes it (`int64(v × 1000)`).
fn served_milli(v: f64) -> i64 {
    crate::query::quantity::milli_from_f64(v)
        .ok()
        .and_then(|m| i64::try_from(m).ok())
        .unwrap_or(if v > 0.0 { i64::MAX } else { 0 })
}

/// The per-pod values the controller would have seen with `current` pods.
fn pods_seen(values: &[f64], current: i32, rescale: bool) -> PodValues {
    let current = usize::try_from(current).unwrap_or(0);
    if rescale {
        if current == 0 {
            return PodValues::default();
        }
        let total: f64 = values.iter().sum();
        let each = served_milli(total / current as f64);
        return PodValues {
            values: vec![each; current],
            missing: 0,
        };
    }
    PodValues {
        values: values.iter().map(|v| served_milli(*v)).collect(),
        missing: current.saturating_sub(values.len()),
    }
}

fn evaluate(
    metric: &Metric,
    observed: &Observed,
    current: i32,
    rescale: bool,
    request: Option<i64>,
    tolerances: Tolerances,
) -> Result<Proposal, String> {
    let metric_error = |e: MetricError| e.to_string();
    match (observed, &metric.source, metric.target) {
        (Observed::Missing(why), _, _) => Err(why.clone()),
        (Observed::Pods(values), _, Target::Utilization(percent)) => {
            let request = request.ok_or_else(|| {
                format!(
                    "a Utilization target needs the pods' {} request (--pod-request)",
                    metric.label()
                )
            })?;
            let pods = pods_seen(values, current, rescale);
            let requests = vec![request; pods.values.len()];
            utilization_replicas(
                current,
                &pods.values,
                &requests,
                pods.missing,
                request,
                percent,
                tolerances,
            )
            .map_err(metric_error)
        }
        (Observed::Pods(values), _, Target::AverageValue(target)) => {
            let pods = pods_seen(values, current, rescale);
            plain_metric_replicas(current, &pods, target, tolerances).map_err(metric_error)
        }
        (Observed::Items(items), Source::Object { .. }, _) if items.len() != 1 => Err(format!(
            "the custom metrics API returned {} results when we asked for exactly one",
            items.len()
        )),
        (Observed::Items(items), _, _) if items.is_empty() => {
            Err("no metrics returned from external metrics API".into())
        }
        (Observed::Items(items), _, Target::Value(target)) => {
            let usage = items.iter().map(|v| served_milli(*v)).sum();
            value_replicas(current, current, usage, target, tolerances).map_err(metric_error)
        }
        (Observed::Items(items), _, Target::AverageValue(target)) => {
            let usage = items.iter().map(|v| served_milli(*v)).sum();
            average_value_replicas(current, usage, target, tolerances).map_err(metric_error)
        }
        (Observed::Pods(_), _, Target::Value(_))
        | (Observed::Items(_), _, Target::Utilization(_)) => Err(format!(
            "{} metrics cannot have this target type",
            metric.kind()
        )),
    }
}

/// Replays `input` through `hpa`, one controller sync per time.
pub fn replay(
    hpa: &Hpa,
    settings: ControllerSettings,
    input: &ReplayInput<'_>,
) -> Result<Vec<Step>, ReplayError> {
    if input.observed.len() != hpa.metrics.len() {
        return Err(ReplayError(format!(
            "{} metric histories for {} metrics",
            input.observed.len(),
            hpa.metrics.len()
        )));
    }
    if let Some(bad) = input.observed.iter().find(|o| o.len() != input.times.len()) {
        return Err(ReplayError(format!(
            "a metric history has {} steps, the replay {}",
            bad.len(),
            input.times.len()
        )));
    }
    let tolerances = hpa.bounds.tolerances(&settings);
    let mut controller = Controller::new(hpa.bounds.clone(), settings);
    let rescale = input.recorded_replicas.is_none();
    let mut current = input.initial_replicas;
    let mut steps = Vec::with_capacity(input.times.len());
    for (k, &time) in input.times.iter().enumerate() {
        if let Some(recorded) = input.recorded_replicas
            && let Some(Some(r)) = recorded.get(k)
        {
            current = *r;
        }
        let mut results = Vec::with_capacity(hpa.metrics.len());
        let mut shown = Vec::with_capacity(hpa.metrics.len());
        for (i, metric) in hpa.metrics.iter().enumerate() {
            let request = input.requests.get(i).copied().flatten();
            let outcome = evaluate(
                metric,
                &input.observed[i][k],
                current,
                rescale,
                request,
                tolerances,
            );
            let scale = match metric.target {
                Target::Utilization(_) => 1.0,
                _ => 1000.0,
            };
            shown.push(match &outcome {
                Ok(p) => StepMetric {
                    value: Some(p.current as f64 / scale),
                    proposal: Some(p.replicas),
                    error: None,
                },
                Err(e) => StepMetric {
                    value: None,
                    proposal: None,
                    error: Some(e.clone()),
                },
            });
            results.push(MetricResult {
                name: metric.label(),
                proposal: outcome.map(|p| p.replicas),
            });
        }
        let decision = controller.sync(time, current, &results);
        let next = decision.replicas;
        steps.push(Step {
            time,
            current,
            metrics: shown,
            decision,
        });
        if rescale {
            current = next;
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::spec::parse_manifest;

    fn hpa(metrics: &str, extra: &str) -> Hpa {
        let text = format!(
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: t}}\nspec:\n  scaleTargetRef: {{kind: Deployment, name: web}}\n  minReplicas: 1\n  maxReplicas: 30\n  metrics: {metrics}\n{extra}"
        );
        parse_manifest(&text, &[], &ControllerSettings::default()).unwrap()
    }

    fn times(n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| i * 15_000).collect()
    }

    fn run(h: &Hpa, observed: Vec<Vec<Observed>>, recorded: Option<&[Option<i32>]>) -> Vec<Step> {
        let t = times(observed[0].len());
        replay(
            h,
            ControllerSettings::default(),
            &ReplayInput {
                times: &t,
                observed: &observed,
                recorded_replicas: recorded,
                initial_replicas: 1,
                requests: &[Some(500)],
            },
        )
        .unwrap()
    }

    const QUEUE: &str = "[{type: External, external: {metric: {name: q}, target: {type: AverageValue, averageValue: '100'}}}]";
    const RPS: &str = "[{type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: '100'}}}]";

    #[test]
    fn a_backlog_spike_without_behavior_doubles_per_sync() {
        let h = hpa(QUEUE, "");
        let obs = vec![vec![Observed::Items(vec![3000.0]); 5]];
        let steps = run(&h, obs, None);
        let replicas: Vec<i32> = steps.iter().map(|s| s.decision.replicas).collect();
        assert_eq!(replicas, [4, 8, 16, 30, 30]);
        assert_eq!(steps[0].decision.desired, Some(30));
        assert!(steps[0].decision.behavior_limited());
        // The value shown is the average per current replica: 3000 / 1.
        assert_eq!(steps[0].metrics[0].value, Some(3000.0));
    }

    #[test]
    fn per_pod_values_are_rescaled_to_the_simulated_pods() {
        // Recorded: 2 pods at 300 req/s each (600 in total), target 100 per pod.
        let h = hpa(
            RPS,
            "  behavior: {scaleUp: {policies: [{type: Percent, value: 1000, periodSeconds: 15}]}}\n",
        );
        let obs = vec![vec![Observed::Pods(vec![300.0, 300.0]); 3]];
        let steps = run(&h, obs, None);
        // From 1 pod: it would carry all 600 req/s → ceil(6 × 1) = 6; then 100 each: stays.
        assert_eq!(steps[0].metrics[0].value, Some(600.0));
        assert_eq!(
            steps
                .iter()
                .map(|s| s.decision.replicas)
                .collect::<Vec<_>>(),
            [6, 6, 6]
        );
        assert_eq!(steps[1].metrics[0].value, Some(100.0));
    }

    #[test]
    fn recorded_replicas_are_fed_back_and_missing_pods_count() {
        let h = hpa(RPS, "");
        let obs = vec![vec![Observed::Pods(vec![300.0, 300.0]); 3]];
        let recorded = [Some(2), None, Some(3)];
        let steps = run(&h, obs, Some(&recorded));
        assert_eq!(
            steps.iter().map(|s| s.current).collect::<Vec<_>>(),
            [2, 2, 3]
        );
        // 2 pods at 300: ceil(3 × 2) = 6. With 3 recorded pods and 2 values, the third is
        // missing and counted as 0 on a scale-up: average 200 → ceil(2 × 3) = 6.
        assert_eq!(steps[0].decision.desired, Some(6));
        assert_eq!(steps[2].decision.desired, Some(6));
    }

    #[test]
    fn missing_answers_keep_the_count_and_say_why() {
        let h = hpa(QUEUE, "");
        let obs = vec![vec![
            Observed::Items(vec![500.0]),
            Observed::Missing("no metrics returned from external metrics API".into()),
            Observed::Items(vec![]),
        ]];
        let steps = run(&h, obs, None);
        assert_eq!(steps[0].decision.replicas, 4);
        assert_eq!(steps[1].decision.replicas, 4);
        assert!(steps[1].decision.reason.contains("no metrics returned"));
        assert_eq!(
            steps[2].metrics[0].error.as_deref(),
            Some("no metrics returned from external metrics API")
        );
    }

    #[test]
    fn utilization_needs_requests_and_uses_them() {
        let h = hpa(
            "[{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]",
            "",
        );
        // One pod using 1 core with a 500m request: 200 % → ceil(4 × 1) = 4.
        let steps = run(&h, vec![vec![Observed::Pods(vec![1.0])]], None);
        assert_eq!(steps[0].decision.desired, Some(4));
        assert_eq!(steps[0].metrics[0].value, Some(200.0));
        let t = times(1);
        let no_request = replay(
            &h,
            ControllerSettings::default(),
            &ReplayInput {
                times: &t,
                observed: &[vec![Observed::Pods(vec![1.0])]],
                recorded_replicas: None,
                initial_replicas: 1,
                requests: &[None],
            },
        )
        .unwrap();
        assert!(
            no_request[0].metrics[0]
                .error
                .as_deref()
                .unwrap()
                .contains("--pod-request")
        );
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let h = hpa(QUEUE, "");
        let t = times(2);
        let r = replay(
            &h,
            ControllerSettings::default(),
            &ReplayInput {
                times: &t,
                observed: &[vec![Observed::Items(vec![1.0])]],
                recorded_replicas: None,
                initial_replicas: 1,
                requests: &[],
            },
        );
        assert!(r.is_err());
    }
}
