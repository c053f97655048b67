//! Rendering one request's query: matchers from the path and selector, then the template.
//! Target (issue 2): ≤ 5 µs median for the per-pod rate rule.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use prom_metrics_adapter::config;
use prom_metrics_adapter::rules::query::{ObjectNames, ObjectScope, render_custom};
use prom_metrics_adapter::rules::selector::Selector;
use prom_metrics_adapter::rules::{RestMapper, compile};

const RULE: &str = r#"
rules:
- seriesQuery: 'flask_http_request_total{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
"#;

fn render(c: &mut Criterion) {
    let cfg = compile(
        &config::parse(RULE, "bench").unwrap(),
        &RestMapper::standalone(),
    )
    .unwrap();
    let rule = cfg.rules[0].clone();
    let one = vec!["web-7cfb596f98-8h5fv".to_string()];
    let fifty: Vec<String> = (0..50).map(|i| format!("web-7cfb596f98-{i:05}")).collect();
    let selector = Selector::parse("method=GET").unwrap();
    let empty = Selector::default();
    let mut g = c.benchmark_group("render_query");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (name, names, selector) in [
        ("one_pod", &one, &empty),
        ("one_pod_with_metric_selector", &one, &selector),
        ("fifty_pods", &fifty, &empty),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                render_custom(
                    &rule,
                    "flask_http_request_total",
                    ObjectScope {
                        namespace: Some(("namespace", "default")),
                        resource_label: "pod",
                        names: ObjectNames::Listed(black_box(names)),
                    },
                    selector,
                )
                .unwrap()
            })
        });
    }
    g.bench_function("parse_selector_and_render", |b| {
        b.iter(|| {
            let s = Selector::parse(black_box("method in (GET,POST),code!=500")).unwrap();
            render_custom(
                &rule,
                "flask_http_request_total",
                ObjectScope {
                    namespace: Some(("namespace", "default")),
                    resource_label: "pod",
                    names: ObjectNames::Listed(&one),
                },
                &s,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
