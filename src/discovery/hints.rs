//! One-line hints for a metric name that is not served, for the 404 an HPA shows in its events
//! and for `explain`: the name of a discovered series served under another name (the most
//! copied prometheus-adapter guide serves `flask_http_request_total` as
//! `flask_http_request_per_second`, and HPAs often ask for the series name), or else the
//! closest served names.

use std::collections::BTreeSet;

use super::registry::Registry;
use crate::rules::GroupResource;

/// Names further than this many edits are not suggested.
const MAX_EDITS: usize = 3;

/// Up to this many names are suggested.
const MAX_SUGGESTIONS: usize = 3;

/// The closest of `candidates` to `asked`, nearest first, at most [`MAX_SUGGESTIONS`].
fn closest<'a>(asked: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(usize, &str)> = candidates
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|c| (strsim::levenshtein(asked, c), c))
        .filter(|(d, c)| *d <= MAX_EDITS.min(c.len().max(asked.len()) / 3).max(1))
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, c)| c)
        .collect()
}

impl Registry {
    /// Why custom metric `metric` is not served for `resource` (any resource when `None`), as
    /// a clause for an error message, or `None` when there is nothing to suggest.
    pub fn custom_hint(&self, metric: &str, resource: Option<&GroupResource>) -> Option<String> {
        let mut served_as: Vec<String> = self
            .custom_entries()
            .filter(|(k, m)| &*m.series_name == metric && resource.is_none_or(|r| &k.resource == r))
            .map(|(k, m)| format!("{} by {}", k.metric, m.rule.label()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !served_as.is_empty() {
            served_as.truncate(MAX_SUGGESTIONS);
            return Some(format!(
                "the series {metric} is served as {}",
                served_as.join(", or as ")
            ));
        }
        let near = closest(
            metric,
            self.custom_keys()
                .iter()
                .filter(|k| resource.is_none_or(|r| &k.resource == r))
                .map(|k| k.metric.as_str()),
        );
        (!near.is_empty()).then(|| format!("did you mean {}?", near.join(", ")))
    }

    /// Why external metric `metric` is not served, as a clause, or `None`.
    pub fn external_hint(&self, metric: &str) -> Option<String> {
        let served_as: BTreeSet<String> = self
            .external_entries()
            .filter(|(_, m)| &*m.series_name == metric)
            .map(|(name, m)| format!("{name} by {}", m.rule.label()))
            .collect();
        if !served_as.is_empty() {
            let list: Vec<String> = served_as.into_iter().take(MAX_SUGGESTIONS).collect();
            return Some(format!(
                "the series {metric} is served as {}",
                list.join(", or as ")
            ));
        }
        let near = closest(metric, self.external_names().iter().map(String::as_str));
        (!near.is_empty()).then(|| format!("did you mean {}?", near.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_a_few_edits_away_are_suggested_nearest_first() {
        let served = [
            "flask_http_request_per_second",
            "flask_http_requests_in_flight",
            "queue_length",
        ];
        assert_eq!(
            closest("flask_http_request_per_secnd", served.iter().copied()),
            ["flask_http_request_per_second"]
        );
        assert_eq!(
            closest("queue_lenght", served.iter().copied()),
            ["queue_length"]
        );
        assert!(closest("cpu", served.iter().copied()).is_empty());
        assert!(closest("something_else_entirely", served.iter().copied()).is_empty());
    }
}
