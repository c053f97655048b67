//! Offline checks of a compiled config: every rule that cannot work (errors) and every known
//! trap (warnings), for the `check` subcommand.

use serde::Serialize;

use super::mapper::GroupResource;
use super::resources::LabelResource;
use super::{CompiledConfig, RestMapper, RuleKind};

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The rule cannot work.
    Error,
    /// The rule works, probably not as meant.
    Warning,
    /// Worth knowing.
    Info,
}

/// One finding about one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Severity.
    pub level: Level,
    /// `rules[3].metricsQuery (line 14)`.
    pub location: String,
    /// What and why.
    pub message: String,
}

/// Labels commonly present on scraped series that a `<<.Resource>>`-style template turns into
/// resources, multiplying the metrics served.
const COMMON_LABELS: &[&str] = &[
    "job",
    "service",
    "endpoint",
    "instance",
    "container",
    "node",
    "namespace",
    "pod",
];

/// Checks every rule.
pub fn lint(config: &CompiledConfig, mapper: &RestMapper) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in config.problems() {
        out.push(Finding {
            level: Level::Error,
            location: p.location(),
            message: p.message.clone(),
        });
    }
    for w in config.warnings() {
        out.push(Finding {
            level: Level::Warning,
            location: w.location(),
            message: w.message.clone(),
        });
    }
    if let Some(rr) = &config.resource_rules {
        for (name, q) in [("cpu", &rr.cpu), ("memory", &rr.memory)] {
            for (field, t) in [
                ("containerQuery", &q.container_query),
                ("nodeQuery", &q.node_query),
            ] {
                if !t.source().trim().is_empty() && !t.uses_field("LabelMatchers") {
                    out.push(Finding {
                        level: Level::Warning,
                        location: format!("resourceRules.{name}.{field}"),
                        message: "the query never uses <<.LabelMatchers>>, so it cannot be restricted to \
                                  the namespace and objects asked for"
                            .into(),
                    });
                }
            }
        }
    }
    for rule in config.all_rules() {
        let at = |field: &str| format!("{}.{field}", rule.label());
        let query = &rule.metrics_query;
        if !query.source().trim().is_empty() && !query.uses_field("LabelMatchers") {
            out.push(Finding {
                level: Level::Warning,
                location: at("metricsQuery"),
                message:
                    "the query never uses <<.LabelMatchers>>, so requests cannot restrict it: \
                          no namespace matcher, no object matcher, no metric selector"
                        .into(),
            });
        }
        match rule.kind {
            RuleKind::External => {
                if query.uses_field("GroupBy") || query.uses_field("GroupBySlice") {
                    out.push(Finding {
                        level: Level::Warning,
                        location: at("metricsQuery"),
                        message: "<<.GroupBy>> is always empty for external rules, so `by (<<.GroupBy>>)` \
                                  renders `by ()` and sums everything into one value; name the labels \
                                  to keep, such as `by (queue)`"
                            .into(),
                    });
                }
                if !rule.resources.namespaced() {
                    out.push(Finding {
                        level: Level::Info,
                        location: at("resources.namespaced"),
                        message:
                            "cluster-wide: requests from any namespace see every namespace's series"
                                .into(),
                    });
                }
            }
            RuleKind::Custom => {
                if !query.source().trim().is_empty()
                    && !query.uses_field("GroupBy")
                    && !query.uses_field("GroupBySlice")
                {
                    out.push(Finding {
                        level: Level::Warning,
                        location: at("metricsQuery"),
                        message: "the query does not aggregate `by (<<.GroupBy>>)`: when an object has several \
                                  series (one per path, method, …) their samples are summed into one value"
                            .into(),
                    });
                }
                if rule.resources.has_template() {
                    let mapped: Vec<String> = COMMON_LABELS
                        .iter()
                        .filter_map(|l| match rule.resources.resource_for_label(l, mapper) {
                            LabelResource::Resource(gr) if !is_expected(&gr) => {
                                Some(format!("{l} → {gr}"))
                            }
                            _ => None,
                        })
                        .collect();
                    if !mapped.is_empty() {
                        out.push(Finding {
                            level: Level::Warning,
                            location: at("resources.template"),
                            message: format!(
                                "the template also maps common labels to resources ({}), so each series is \
                                 served under several resources; prefer explicit overrides",
                                mapped.join(", ")
                            ),
                        });
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| (a.level, &a.location).cmp(&(b.level, &b.location)));
    out
}

fn is_expected(gr: &GroupResource) -> bool {
    gr.group.is_empty() && matches!(gr.resource.as_str(), "namespaces" | "pods" | "nodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::rules::compile;

    fn findings(yaml: &str) -> Vec<Finding> {
        let m = RestMapper::standalone();
        lint(
            &compile(&config::parse(yaml, "t").unwrap(), &m).unwrap(),
            &m,
        )
    }

    #[test]
    fn every_trap_is_reported() {
        let f = findings(
            r#"
rules:
- seriesQuery: 'x_total'
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "$1_per_second"}
  metricsQuery: 'rate(<<.Series>>[2m])'
externalRules:
- seriesQuery: 'lag'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
- seriesQuery: 'depth'
  resources: {namespaced: false}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
"#,
        );
        let text: Vec<String> = f
            .iter()
            .map(|f| format!("{:?} {} {}", f.level, f.location, f.message))
            .collect();
        let has = |level: Level, loc: &str, word: &str| {
            f.iter().any(|x| {
                x.level == level && x.location.starts_with(loc) && x.message.contains(word)
            })
        };
        assert!(
            has(Level::Error, "rules[0].name.as", "1_per_second"),
            "{text:#?}"
        );
        assert!(
            has(Level::Warning, "rules[0].metricsQuery", "LabelMatchers"),
            "{text:#?}"
        );
        assert!(
            has(Level::Warning, "rules[0].metricsQuery", "summed"),
            "{text:#?}"
        );
        assert!(
            has(
                Level::Warning,
                "rules[0].resources.template",
                "job → jobs.batch"
            ),
            "{text:#?}"
        );
        assert!(
            has(Level::Warning, "externalRules[0].metricsQuery", "by ()"),
            "{text:#?}"
        );
        assert!(
            has(
                Level::Info,
                "externalRules[1].resources.namespaced",
                "cluster-wide"
            ),
            "{text:#?}"
        );
        assert_eq!(f[0].level, Level::Error);
    }

    #[test]
    fn a_clean_rule_has_no_findings() {
        let f = findings(
            "rules:\n- seriesQuery: 'x_total{namespace!=\"\",pod!=\"\"}'\n  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n  name: {matches: '^(.*)_total$', as: '${1}_per_second'}\n  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'\n",
        );
        assert!(f.is_empty(), "{f:?}");
    }
}
