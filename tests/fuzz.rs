//! Every parser of outside input, fed random and mutated input with proptest: label selectors,
//! request paths (percent-decoding and the router), query parameters, Go and Prometheus
//! durations, quantities, the template engine, Prometheus' JSON answers, and the rules file.
//! The property everywhere: an answer or an error, never a panic, and within a bound of time
//! (a hang shows as a case that takes seconds). Rendered queries keeping the namespace matcher
//! is `tests/namespace_matcher.rs`' job.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prom_metrics_adapter::api::request::{parse_params, segments};
use prom_metrics_adapter::duration::{parse_go_duration, parse_prometheus_duration};
use prom_metrics_adapter::query::prometheus::{decode_query, decode_series};
use prom_metrics_adapter::query::quantity::{binary_si_from_f64, decimal_si_from_f64};
use prom_metrics_adapter::rules::selector::Selector;
use prom_metrics_adapter::rules::template::{Template, Value};
use proptest::prelude::*;
use tower::ServiceExt;

/// Generous: each input is microseconds of work; seconds mean a loop.
const BOUND: Duration = Duration::from_secs(2);

fn within_bound<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    assert!(
        started.elapsed() < BOUND,
        "{what} took {:?}",
        started.elapsed()
    );
    out
}

/// Strings over an alphabet that the parsers care about, so random input reaches deep.
fn tokens(alphabet: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(alphabet), 0..max).prop_map(|v| v.concat())
}

const SELECTOR_ALPHABET: &[&str] = &[
    "app", "=", "==", "!=", ",", " ", "in", "notin", "(", ")", "!", "a", "b.c/d", "-", "_", "x",
    "1", "\"", "'", "\\", "\u{e9}", "\t", ">", "<", "%", "",
];

const TEMPLATE_ALPHABET: &[&str] = &[
    "<<",
    ">>",
    "<<-",
    "-<<",
    "->>",
    " ",
    ".",
    ".Series",
    ".LabelMatchers",
    ".GroupBy",
    ".GroupBySlice",
    ".LabelValuesByName",
    "range",
    "if",
    "else",
    "end",
    "with",
    "index",
    "printf",
    "\"%s\"",
    "\"%q\"",
    "$x",
    ":=",
    "=",
    "|",
    "(",
    ")",
    "`raw`",
    "'a'",
    "1",
    "-1",
    "0x1f",
    "1e3",
    "len",
    "eq",
    "ne",
    "and",
    "or",
    "not",
    "join",
    "define",
    "template",
    "block",
    "break",
    "continue",
    "nil",
    "true",
    "\"",
    "\\",
    "/*",
    "*/",
    "sum(",
    "{",
    "}",
];

const PATH_ALPHABET: &[&str] = &[
    "/",
    "apis",
    "custom.metrics.k8s.io",
    "external.metrics.k8s.io",
    "metrics.k8s.io",
    "v1beta1",
    "v1beta2",
    "namespaces",
    "default",
    "pods",
    "nodes",
    "metrics",
    "%2A",
    "*",
    "%2F",
    "%25",
    "%",
    "%zz",
    "%00",
    "..",
    ".",
    "a",
    "web-1",
    "flask_http_request_per_second",
    "deployments.apps",
    "?",
    "&",
    "labelSelector=",
    "metricLabelSelector=",
    "app%3Dweb",
    "%E2%9C%93",
    "\u{2713}",
    ";",
    "#",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn selectors_parse_or_refuse(text in tokens(SELECTOR_ALPHABET, 40), raw in ".{0,80}") {
        for s in [&text, &raw] {
            if let Ok(sel) = within_bound("Selector::parse", || Selector::parse(s)) {
                // A parsed selector can be matched and shown without panicking.
                let _ = sel.matches(&Default::default());
                let _ = sel.to_label_selector_json();
            }
        }
    }

    #[test]
    fn paths_and_query_strings_decode_or_refuse(path in tokens(PATH_ALPHABET, 20), raw in ".{0,80}") {
        for s in [&path, &raw] {
            let _ = within_bound("segments", || segments(s));
            let _ = within_bound("parse_params", || parse_params(Some(s)));
        }
    }

    #[test]
    fn durations_parse_or_refuse(
        text in tokens(&["1", "0", ".", "5", "h", "m", "s", "ms", "us", "\u{b5}s", "ns", "d", "w", "y", "-", "+", "9223372036854775807", "e", " "], 12),
        raw in ".{0,40}",
    ) {
        for s in [&text, &raw] {
            let _ = within_bound("parse_go_duration", || parse_go_duration(s));
            let _ = within_bound("parse_prometheus_duration", || parse_prometheus_duration(s));
        }
    }

    #[test]
    fn any_float_is_a_quantity_or_an_error(bits in any::<u64>(), v in any::<f64>()) {
        for x in [f64::from_bits(bits), v, v * 1e300, v / 1e300] {
            let _ = within_bound("decimal_si_from_f64", || decimal_si_from_f64(x));
            let _ = within_bound("binary_si_from_f64", || binary_si_from_f64(x));
        }
    }

    #[test]
    fn templates_parse_and_render_or_refuse(text in tokens(TEMPLATE_ALPHABET, 30)) {
        let parsed = within_bound("Template::parse", || {
            Template::parse("fuzz", &text, &["Series", "LabelMatchers", "GroupBy", "GroupBySlice", "LabelValuesByName"])
        });
        if let Ok(t) = parsed {
            let data = [
                ("Series", Value::Str("http_requests_total".into())),
                ("LabelMatchers", Value::Str("namespace=\"default\"".into())),
                ("GroupBy", Value::Str("pod".into())),
                ("GroupBySlice", Value::List(vec!["pod".into(), "namespace".into()])),
                ("LabelValuesByName", Value::Map([("pod".to_string(), "a|b".to_string())].into())),
            ];
            let _ = within_bound("Template::render", || t.render(&data));
        }
    }

    #[test]
    fn prometheus_answers_decode_or_refuse(
        raw in prop::collection::vec(any::<u8>(), 0..300),
        cut in 0usize..400,
        flip in 0usize..400,
        byte in any::<u8>(),
    ) {
        let valid = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"web-1","namespace":"default"},"value":[1700000000.5,"2.5"]},{"metric":{},"value":[1,"NaN"]}]},"warnings":["w"]}"#;
        let series = br#"{"status":"success","data":[{"__name__":"up","pod":"a"},{"__name__":"x","namespace":"b"}]}"#;
        // Random bytes, the valid answers cut short, and one byte of them changed.
        let mut mutated = valid.to_vec();
        let i = flip % mutated.len();
        mutated[i] = byte;
        let mut mutated_series = series.to_vec();
        let j = flip % mutated_series.len();
        mutated_series[j] = byte;
        for body in [
            raw.as_slice(),
            &valid[..cut.min(valid.len())],
            &mutated,
            &series[..cut.min(series.len())],
            &mutated_series,
        ] {
            for status in [200, 400, 422, 503] {
                let _ = within_bound("decode_query", || decode_query("u", status, body));
            }
            let _ = within_bound("decode_series", || decode_series("u", body));
        }
    }

    #[test]
    fn rules_files_load_or_refuse_with_a_message(
        text in tokens(&["rules:\n", "externalRules:\n", "resourceRules:\n", "- ", "  ", "seriesQuery: ", "'x{a!=\"\"}'", "metricsQuery: ", "'<<.Series>>'", "name: ", "{matches: \"^(.*)$\", as: \"$1\"}", "resources: ", "{template: <<.Resource>>}", "{overrides: {namespace: {resource: namespace}}}", "\n", ":", "[", "]", "{", "}", "'", "\"", "&a", "*a", "!!str", "~", "null"], 30),
    ) {
        if let Ok(raw) = within_bound("config::parse", || prom_metrics_adapter::config::parse(&text, "fuzz")) {
            let _ = within_bound("rules::compile", || {
                prom_metrics_adapter::rules::compile(&raw, &prom_metrics_adapter::rules::RestMapper::standalone())
            });
        }
    }
}

/// A standalone router on the fixture rules, whose backend is unreachable: every request
/// reaches a handler and fails or succeeds there.
fn router() -> axum::Router {
    static ROUTER: OnceLock<axum::Router> = OnceLock::new();
    ROUTER
        .get_or_init(|| {
            use clap::Parser;
            prom_metrics_adapter::install_crypto_provider();
            let flags = prom_metrics_adapter::cli::flags::ServerFlags::try_parse_from([
                "fuzz",
                "--standalone",
                "--prometheus-url=http://127.0.0.1:9",
                "--prometheus-query-timeout=200ms",
            ])
            .unwrap();
            let raw =
                prom_metrics_adapter::config::parse(&common::fixture("custom-rules.yaml"), "t")
                    .unwrap();
            let adapter = prom_metrics_adapter::cli::build_standalone(&flags, &raw).unwrap();
            let state: Arc<_> = adapter.state;
            prom_metrics_adapter::api::router(state)
        })
        .clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_router_answers_every_path_with_a_status(path in tokens(PATH_ALPHABET, 16)) {
        let uri = format!("/{}", path.trim_start_matches('/'));
        // Some random strings are not URIs at all; hyper would refuse those before us.
        let Ok(request) = axum::http::Request::get(&uri).body(axum::body::Body::empty()) else {
            return Ok(());
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let status = runtime.block_on(async {
            tokio::time::timeout(BOUND, router().oneshot(request)).await
        });
        let status = status.expect("the router hung").unwrap().status().as_u16();
        prop_assert!(
            matches!(status, 200 | 400 | 404 | 405 | 500),
            "{uri} answered {status}"
        );
    }
}
