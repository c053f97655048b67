//! From Prometheus samples to per-object values.

use std::collections::HashMap;

use super::prometheus::Sample;
use super::quantity::{QuantityError, decimal_si_from_f64};

/// The value of one object, and how many samples were summed into it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObjectValue {
    /// The sum of the object's samples, NaN read as 0.
    pub value: f64,
    /// How many samples were summed (more than one means the query did not aggregate by object).
    pub samples: usize,
}

/// Values by object name. Hashed with foldhash rather than SipHash: a 500-pod answer is hashed
/// per request, and the names come from Prometheus' answer, not from the client.
pub type ObjectValues<'a> = HashMap<&'a str, ObjectValue, foldhash::fast::RandomState>;

/// Groups samples by the value of `label`, summing several samples of one object.
///
/// Upstream keeps whichever sample came last; summing is what a `sum by (<<.GroupBy>>)` would
/// have given and does not depend on Prometheus' result order. NaN counts as 0, as upstream does
/// for custom metrics. Samples without the label are ignored.
pub fn values_by_label<'a>(
    samples: impl IntoIterator<Item = &'a Sample>,
    label: &str,
) -> ObjectValues<'a> {
    let mut out = ObjectValues::default();
    for s in samples {
        let Some(name) = s.labels.get(label) else {
            continue;
        };
        let v = if s.value.is_nan() { 0.0 } else { s.value };
        let e = out.entry(name.as_str()).or_insert(ObjectValue {
            value: 0.0,
            samples: 0,
        });
        e.value += v;
        e.samples += 1;
    }
    out
}

/// Drops the samples whose `label` names a namespace other than `namespace`, and returns how
/// many: defence in depth for a rule whose query forgets `<<.LabelMatchers>>` (the namespace
/// matcher), which would otherwise let another namespace's series into the answer. Samples
/// without the label are kept: an aggregation such as `sum by (pod)` removes it, and nothing
/// then says they came from elsewhere.
pub fn keep_namespace(samples: &mut Vec<Sample>, label: &str, namespace: &str) -> usize {
    let before = samples.len();
    samples.retain(|s| in_namespace(s, label, namespace));
    before - samples.len()
}

/// Whether [`keep_namespace`] keeps `sample`: for callers that read a shared answer in place
/// rather than filter their own copy of it.
pub fn in_namespace(sample: &Sample, label: &str, namespace: &str) -> bool {
    sample.labels.get(label).is_none_or(|ns| ns == namespace)
}

/// Formats a value as a Kubernetes quantity; NaN becomes `0`, infinities and values beyond
/// any quantity are errors that name `what`. `what` is only formatted for an error: it names
/// the query, and formatting that for each of a list's items was a measurable share of a
/// request.
pub fn to_quantity(value: f64, what: impl std::fmt::Display) -> Result<String, String> {
    if value.is_nan() {
        return Ok("0".into());
    }
    decimal_si_from_f64(value).map_err(|e| match e {
        QuantityError::Infinite => format!(
            "{what} is {}; an infinite value cannot be served (check the query for a division \
             by zero)",
            if value > 0.0 { "+Inf" } else { "-Inf" }
        ),
        other => format!("{what} cannot be written as a quantity: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sample(pod: &str, v: f64) -> Sample {
        Sample {
            labels: BTreeMap::from([("pod".to_string(), pod.to_string())]),
            timestamp: 1.0,
            value: v,
        }
    }

    #[test]
    fn several_samples_of_one_object_are_summed_and_nan_is_zero() {
        let samples = [
            sample("a", 1.5),
            sample("a", 2.0),
            sample("b", f64::NAN),
            sample("c", 4.0),
        ];
        let v = values_by_label(&samples, "pod");
        assert_eq!(
            v["a"],
            ObjectValue {
                value: 3.5,
                samples: 2
            }
        );
        assert_eq!(v["b"].value, 0.0);
        assert_eq!(v.len(), 3);
        assert!(values_by_label(&samples, "node").is_empty());
    }

    #[test]
    fn samples_of_another_namespace_are_dropped_and_unlabelled_ones_kept() {
        let with_ns = |ns: Option<&str>| {
            let mut s = sample("a", 1.0);
            if let Some(ns) = ns {
                s.labels.insert("namespace".into(), ns.into());
            }
            s
        };
        let mut samples = vec![with_ns(Some("web")), with_ns(Some("other")), with_ns(None)];
        assert_eq!(keep_namespace(&mut samples, "namespace", "web"), 1);
        assert_eq!(samples.len(), 2);
        assert!(
            samples
                .iter()
                .all(|s| s.labels.get("namespace").is_none_or(|n| n == "web"))
        );
    }

    #[test]
    fn quantities_follow_upstream_and_reject_infinity() {
        assert_eq!(to_quantity(0.5, "x").unwrap(), "500m");
        assert_eq!(to_quantity(20.5, "x").unwrap(), "20500m");
        assert_eq!(to_quantity(f64::NAN, "x").unwrap(), "0");
        let err = to_quantity(f64::INFINITY, "the value of pod a").unwrap_err();
        assert!(err.contains("pod a is +Inf"), "{err}");
    }
}
