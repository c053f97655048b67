//! Real-world prometheus-adapter configs load unchanged, and bad ones fail naming the rule,
//! the field and the line.

use prom_metrics_adapter::config;
use prom_metrics_adapter::rules::{RestMapper, compile};

fn load(name: &str) -> config::MetricsDiscoveryConfig {
    let path = format!(
        "{}/tests/fixtures/compat/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    config::load_file(std::path::Path::new(&path)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_compat_fixture_loads_and_compiles_without_problems() {
    let mapper = RestMapper::standalone();
    for name in [
        "chart-default-rules.yaml",
        "kube-prometheus-resource-rules.yaml",
        "config-walkthrough.yaml",
        "external-metrics-doc.yaml",
        "walkthrough-multiline.yaml",
    ] {
        let compiled = compile(&load(name), &mapper).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(
            compiled.problems().is_empty(),
            "{name}: {:?}",
            compiled.problems()
        );
        assert!(
            compiled.warnings().is_empty(),
            "{name}: {:?}",
            compiled.warnings()
        );
    }
}

#[test]
fn the_chart_defaults_have_six_rules_and_wrapped_queries_fold_to_one_line() {
    let cfg = load("chart-default-rules.yaml");
    assert_eq!(cfg.rules.len(), 6);
    assert_eq!(
        cfg.rules[0].metrics_query.value,
        r#"sum(rate(<<.Series>>{<<.LabelMatchers>>,container!="POD"}[5m])) by (<<.GroupBy>>)"#
    );
}

#[test]
fn kube_prometheus_resource_rules_keep_their_window_and_newlines() {
    let cfg = load("kube-prometheus-resource-rules.yaml");
    let rr = cfg.resource_rules.as_ref().unwrap();
    assert_eq!(rr.window.value, "5m");
    assert!(rr.cpu.container_query.value.contains('\n'));
    let compiled = compile(&cfg, &RestMapper::standalone()).unwrap();
    assert_eq!(
        compiled.resource_rules.unwrap().window,
        std::time::Duration::from_secs(300)
    );
}

fn compile_errors(yaml: &str) -> String {
    match config::parse(yaml, "bad.yaml") {
        Err(e) => e.to_string(),
        Ok(cfg) => match compile(&cfg, &RestMapper::standalone()) {
            Err(errors) => errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            Ok(_) => panic!("config unexpectedly valid:\n{yaml}"),
        },
    }
}

#[test]
fn negative_fixtures_fail_with_rule_field_and_line() {
    let cases: &[(&str, &[&str])] = &[
        (
            "rules:\n- seriesQuery: up\n  metricQuery: x\n",
            &["metricQuery", "line 3", "rules[0]"],
        ),
        (
            "rules:\n- seriesQuery: up\n  seriesFilters:\n  - is: a\n    isNot: b\n",
            &["rules[0].seriesFilters[0]", "both", "line 4"],
        ),
        (
            "rules:\n- seriesQuery: up\n  name:\n    matches: '^(a)(b)$'\n",
            &["rules[0].name.as", "must specify an 'as' value", "line 4"],
        ),
        (
            "rules:\n- seriesQuery: up\n- seriesQuery: up\n  resources:\n    template: 'kube_<<.Group>>'\n",
            &["rules[1].resources.template", "<<.Resource>>", "line 5"],
        ),
        (
            "rules:\n- seriesQuery: up\n  resources:\n    overrides:\n      x: {resource: gadget}\n",
            &["rules[0].resources.overrides.x", "unable to normalize"],
        ),
        (
            "resourceRules:\n  cpu: {containerQuery: x, nodeQuery: y}\n  memory: {containerQuery: x, nodeQuery: y}\n  window: '5'\n",
            &["resourceRules.window", "line 4"],
        ),
        (
            "externalRules:\n- seriesQuery: up\n  name: {matches: '(['}\n",
            &["externalRules[0].name.matches", "invalid regex", "line 3"],
        ),
        (
            "rules:\n- seriesQuery: up\n  metricsQuery: 'sum(<<join .GroupBySlice>>)'\n",
            &["rules[0].metricsQuery", "join", "line 3"],
        ),
        (
            "rules:\n- seriesQuery: up\n  seriesQuery: x\n",
            &["duplicate", "line 3"],
        ),
    ];
    for (yaml, needles) in cases {
        let err = compile_errors(yaml);
        for needle in *needles {
            assert!(
                err.contains(needle),
                "{needle:?} missing from error:\n{err}\nfor:\n{yaml}"
            );
        }
    }
}

#[test]
fn rules_upstream_accepts_but_that_cannot_work_are_reported_as_problems() {
    let cfg = config::parse(
        "rules:\n- seriesQuery: 'x_total'\n  name: {matches: '^(.*)_total$', as: '$1_per_second'}\n  metricsQuery: 'sum(<<.Series>>)'\nexternalRules:\n- seriesQuery: 'lag'\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'\n",
        "t",
    )
    .unwrap();
    let compiled = compile(&cfg, &RestMapper::standalone()).unwrap();
    let problems: Vec<String> = compiled.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("rules[0].name.as (line 3)") && problems[0].contains("1_per_second"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].contains("externalRules[0]") && problems[1].contains("namespace"),
        "{}",
        problems[1]
    );
}

#[test]
fn a_query_that_is_not_promql_is_a_warning() {
    let cfg = config::parse(
        "rules:\n- seriesQuery: 'x'\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}'\n",
        "t",
    )
    .unwrap();
    let compiled = compile(&cfg, &RestMapper::standalone()).unwrap();
    assert!(compiled.problems().is_empty());
    let w = compiled.warnings();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].to_string().contains("rules[0].metricsQuery (line 3)"),
        "{}",
        w[0]
    );
}

#[test]
fn the_shipped_configs_load_without_problems_or_warnings() {
    let dir = format!("{}/config", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.extend(
        std::fs::read_dir(format!("{dir}/examples"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    for path in paths {
        if path.extension().is_some_and(|e| e == "yaml") {
            let cfg = config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            let compiled = compile(&cfg, &RestMapper::standalone())
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            assert!(
                compiled.problems().is_empty(),
                "{}: {:?}",
                path.display(),
                compiled.problems()
            );
            assert!(
                compiled.warnings().is_empty(),
                "{}: {:?}",
                path.display(),
                compiled.warnings()
            );
            seen += 1;
        }
    }
    assert!(seen >= 7, "no configs found in {dir}");
}
