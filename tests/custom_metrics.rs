//! custom.metrics.k8s.io in standalone mode, against a real Prometheus and a real
//! VictoriaMetrics loaded with the same samples: every test runs on both.

#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/victoria.rs"]
mod victoria;

use std::sync::OnceLock;

use backends::backend_values;
use common::{Adapter, FLASK_PODS, fixture, parse_quantity, unix_now};
use serde_json::json;

fn backends() -> Vec<(&'static str, String)> {
    static DATA: OnceLock<String> = OnceLock::new();
    backends::start(DATA.get_or_init(common::fixture_samples))
}

async fn adapter(url: &str) -> Adapter {
    Adapter::start_with(&fixture("custom-rules.yaml"), url, &["--standalone"]).await
}

fn items(body: &serde_json::Value) -> &Vec<serde_json::Value> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
}

#[tokio::test]
async fn per_pod_request_rate_matches_what_prometheus_computes() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second")
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["kind"], "MetricValueList");
        assert_eq!(body["apiVersion"], "custom.metrics.k8s.io/v1beta2");
        let now = unix_now();
        let got = items(&body);
        let pods: Vec<&str> = got
            .iter()
            .map(|i| i["describedObject"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(pods, ["web-1", "web-2", "worker-1"]);
        for item in got {
            let pod = item["describedObject"]["name"].as_str().unwrap();
            assert_eq!(item["describedObject"]["kind"], "Pod");
            assert_eq!(item["describedObject"]["namespace"], "default");
            assert_eq!(item["describedObject"]["apiVersion"], "/v1");
            assert_eq!(
                item["metric"],
                json!({"name": "flask_http_request_per_second", "selector": null})
            );
            let expected = backend_values(
                &url,
                &format!(
                    "sum(rate(flask_http_request_total{{namespace=\"default\",pod=\"{pod}\"}}[2m]))"
                ),
                now,
            )
            .await[0]
                .1;
            let value = parse_quantity(item["value"].as_str().unwrap());
            assert!(
                (value - expected).abs() <= expected.abs() * 0.01 + 0.001,
                "{pod}: adapter {value} vs Prometheus {expected}"
            );
            let fixture_rate: f64 = FLASK_PODS
                .iter()
                .filter(|p| p.0 == "default" && p.1 == pod)
                .map(|p| p.4)
                .sum();
            assert!(
                (value - fixture_rate).abs() < fixture_rate * 0.05,
                "{pod}: {value} vs {fixture_rate}"
            );
        }
    }
}

#[tokio::test]
async fn v1beta1_serves_the_same_values_in_its_own_shape() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (_, v2) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/flask_http_request_per_second")
            .await;
        let (code, v1) = a
            .get("/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/*/flask_http_request_per_second")
            .await;
        assert_eq!(code, 200, "{v1}");
        assert_eq!(v1["apiVersion"], "custom.metrics.k8s.io/v1beta1");
        for (a, b) in items(&v1).iter().zip(items(&v2)) {
            assert_eq!(a["metricName"], "flask_http_request_per_second");
            assert_eq!(a["selector"], serde_json::Value::Null);
            assert!(
                a.as_object().unwrap().contains_key("selector"),
                "selector must be present as null"
            );
            assert_eq!(a["describedObject"], b["describedObject"]);
            let (x, y) = (
                parse_quantity(a["value"].as_str().unwrap()),
                parse_quantity(b["value"].as_str().unwrap()),
            );
            assert!((x - y).abs() <= y * 0.01 + 0.001, "{x} vs {y}");
        }
    }
}

#[tokio::test]
async fn label_selector_picks_pods_by_series_labels_in_standalone_mode() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb")
            .await;
        assert_eq!(code, 200, "{body}");
        let pods: Vec<&str> = items(&body)
            .iter()
            .map(|i| i["describedObject"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(pods, ["web-1", "web-2"]);
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/flask_http_request_per_second?labelSelector=app+notin+(web)")
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(items(&body).len(), 1);
        // No object matches: 404, as upstream.
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/flask_http_request_per_second?labelSelector=app%3Dnone")
            .await;
        assert_eq!(code, 404, "{body}");
    }
}

#[tokio::test]
async fn metric_label_selector_filters_series_and_is_echoed() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/flask_http_request_per_second?metricLabelSelector=method%3DPOST")
            .await;
        assert_eq!(code, 200, "{body}");
        let item = &items(&body)[0];
        assert!(
            (parse_quantity(item["value"].as_str().unwrap()) - 0.5).abs() < 0.03,
            "{item}"
        );
        assert_eq!(
            item["metric"]["selector"],
            json!({"matchLabels": {"method": "POST"}})
        );
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/web-1/flask_http_request_per_second?metricLabelSelector=method%3DGET")
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            items(&body)[0]["selector"],
            json!({"matchLabels": {"method": "GET"}})
        );
        // An operator Prometheus cannot express is a client error.
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/flask_http_request_per_second?metricLabelSelector=code%3E400")
            .await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["kind"], "Status");
    }
}

#[tokio::test]
async fn a_named_pod_gives_exactly_one_item_and_unaggregated_series_are_summed() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/worker-1/worker_busy_threads")
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(items(&body).len(), 1);
        assert_eq!(items(&body)[0]["value"], "7");
    }
}

#[tokio::test]
async fn a_metric_describing_a_namespace_uses_the_metrics_path() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/metrics/queue_items")
            .await;
        assert_eq!(code, 200, "{body}");
        let item = &items(&body)[0];
        assert_eq!(
            item["describedObject"],
            json!({"kind": "Namespace", "name": "default", "apiVersion": "/v1"})
        );
        assert_eq!(item["value"], "42");
    }
}

#[tokio::test]
async fn a_cluster_scoped_node_metric_is_served_without_a_namespace() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta1/nodes/node-b/node_load_ratio")
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(items(&body)[0]["value"], "1500m");
        assert_eq!(
            items(&body)[0]["describedObject"],
            json!({"kind": "Node", "name": "node-b", "apiVersion": "/v1"})
        );
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta1/nodes/*/node_load_ratio")
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(items(&body).len(), 2);
        // Asking for it in a namespace is asking for a metric that does not exist.
        let (code, _) = a
            .get("/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/nodes/node-b/node_load_ratio")
            .await;
        assert_eq!(code, 404);
    }
}

#[tokio::test]
async fn a_deployment_metric_is_reached_through_its_owner_label() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/deployments.apps/web/deployment_inflight")
            .await;
        assert_eq!(code, 200, "{body}");
        let item = &items(&body)[0];
        assert_eq!(
            item["describedObject"],
            json!({"kind": "Deployment", "namespace": "default", "name": "web", "apiVersion": "apps/v1"})
        );
        assert_eq!(item["value"], "20500m");
    }
}

#[tokio::test]
async fn unknown_metrics_objects_and_paths_are_not_found_statuses() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/nope")
            .await;
        assert_eq!(code, 404);
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "NotFound");
        assert_eq!(
            body["message"],
            "the server could not find the metric nope for pods"
        );
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/ghost/flask_http_request_per_second")
            .await;
        assert_eq!(code, 404);
        assert_eq!(
            body["message"],
            "the server could not find the metric flask_http_request_per_second for pods ghost"
        );
        // A short name is not a resource in a URL (as in the Go adapter), the singular is.
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/po/web-1/flask_http_request_per_second")
            .await;
        assert_eq!(code, 404, "{body}");
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pod/web-1/flask_http_request_per_second")
            .await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/foo")
            .await;
        assert_eq!(code, 400, "{body}");
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/a%22b/x")
            .await;
        assert_eq!(code, 400, "{body}");
    }
}

#[tokio::test]
async fn nan_is_zero_and_infinity_is_an_error_naming_the_query() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/odd_nan")
            .await;
        if backend == "prometheus" {
            assert_eq!(code, 200, "{body}");
            assert_eq!(items(&body)[0]["value"], "0");
        } else {
            // VictoriaMetrics does not return NaN samples: the series is not discovered.
            assert_eq!(code, 404, "{body}");
        }
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/odd_inf")
            .await;
        assert_eq!(code, 500, "{body}");
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains("+Inf") && msg.contains("odd_inf"), "{msg}");
    }
}

#[tokio::test]
async fn discovery_documents_list_what_was_discovered() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a.get("/apis/custom.metrics.k8s.io/v1beta1").await;
        assert_eq!(code, 200);
        assert_eq!(body["kind"], "APIResourceList");
        assert_eq!(body["groupVersion"], "custom.metrics.k8s.io/v1beta1");
        let names: Vec<(&str, bool)> = body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap(),
                    r["namespaced"].as_bool().unwrap(),
                )
            })
            .collect();
        for expected in [
            ("pods/flask_http_request_per_second", true),
            ("namespaces/flask_http_request_per_second", false),
            ("nodes/node_load_ratio", false),
            ("deployments.apps/deployment_inflight", true),
            ("namespaces/queue_items", false),
        ] {
            assert!(
                names.contains(&expected),
                "{expected:?} missing from {names:?}"
            );
        }
        // A rule with a dangling `$1_rate` still lists what upstream would list ("broken_").
        assert!(names.contains(&("pods/broken_", true)), "{names:?}");
        let r = &body["resources"][0];
        assert_eq!(r["kind"], "MetricValueList");
        assert_eq!(r["verbs"], json!(["get"]));
        assert_eq!(r["singularName"], "");
        let (code, body) = a.get("/apis").await;
        assert_eq!(code, 200);
        let groups: Vec<&str> = body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(groups, ["custom.metrics.k8s.io", "external.metrics.k8s.io"]);
        let (code, body) = a.get("/apis/custom.metrics.k8s.io").await;
        assert_eq!(code, 200);
        assert_eq!(body["kind"], "APIGroup");
        assert_eq!(body["preferredVersion"]["version"], "v1beta1");
    }
}

#[tokio::test]
async fn a_rule_that_cannot_work_answers_500_naming_the_rule_and_the_problem() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/broken_")
            .await;
        assert_eq!(code, 500, "{body}");
        let msg = body["message"].as_str().unwrap();
        assert!(
            msg.contains("rules[6].name.as") && msg.contains("1_rate"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn self_metrics_and_openapi_documents_are_served() {
    let url = common::prometheus().url().to_string();
    let a = adapter(&url).await;
    let (code, _) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/flask_http_request_per_second")
        .await;
    assert_eq!(code, 200);
    let resp = a
        .http
        .get(format!("{}/metrics", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = resp.text().await.unwrap();
    for (name, labels) in [
        (
            "prom_metrics_adapter_http_requests_total",
            &[("handler", "custom_metrics"), ("code", "200")][..],
        ),
        (
            "prom_metrics_adapter_prometheus_request_duration_seconds_count",
            &[("endpoint", "/api/v1/query")],
        ),
        (
            "prom_metrics_adapter_discovered_metrics",
            &[("api", "custom")],
        ),
        ("prom_metrics_adapter_relist_duration_seconds_count", &[]),
        (
            "prom_metrics_adapter_last_successful_relist_timestamp_seconds",
            &[],
        ),
    ] {
        let v = common::sample_value(&text, name, labels);
        assert!(
            v.is_some_and(|v| v > 0.0),
            "{name}{labels:?}: {v:?} in:\n{text}"
        );
    }
    let (code, v2) = a.get("/openapi/v2").await;
    assert_eq!(code, 200);
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["paths"]["/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/{resource}/{name}/{metric}"].is_object());
    let (code, v3) = a.get("/openapi/v3").await;
    assert_eq!(code, 200);
    let url = v3["paths"]["apis/external.metrics.k8s.io/v1beta1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, doc) = a.get(&url).await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.0.0");
}

#[tokio::test]
async fn health_endpoints_answer() {
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = adapter(&url).await;
        for p in ["/healthz", "/livez", "/readyz"] {
            let (code, _) = a.get(p).await;
            assert_eq!(code, 200, "{p}");
        }
    }
}

#[tokio::test]
async fn a_query_without_the_namespace_matcher_cannot_leak_another_namespace() {
    // Both queries forget <<.LabelMatchers>>: Prometheus answers for every namespace.
    const LEAKY: &str = r#"
rules:
- seriesQuery: 'flask_http_request_total{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_leaky"}
  metricsQuery: 'sum(rate(<<.Series>>[2m])) by (<<.GroupBy>>, namespace)'
externalRules:
- seriesQuery: 'queue_items{namespace!=""}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>) by (namespace)'
"#;
    for (backend, url) in backends() {
        eprintln!("-- on {backend}");
        let a = Adapter::start_with(LEAKY, &url, &["--standalone"]).await;
        // web-9 lives in `other`: asked for in `default`, it does not exist.
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-9/flask_http_request_leaky")
            .await;
        assert_eq!(code, 404, "{body}");
        let (code, body) = a
            .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/other/pods/web-9/flask_http_request_leaky")
            .await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = a
            .get("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_items")
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(items(&body).len(), 1, "{body}");
        assert_eq!(items(&body)[0]["metricLabels"]["namespace"], "default");
        assert_eq!(items(&body)[0]["value"], "42");
        let text = a
            .http
            .get(format!("{}/metrics", a.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for rule in ["rules[0]", "externalRules[0]"] {
            let dropped = common::sample_value(
                &text,
                "prom_metrics_adapter_namespace_mismatch_samples_dropped_total",
                &[("rule", rule)],
            );
            assert!(dropped.is_some_and(|d| d >= 1.0), "{rule}: {dropped:?}");
        }
    }
}

#[tokio::test]
async fn a_404_says_which_name_serves_a_series_and_what_a_typo_meant() {
    let url = common::prometheus().url().to_string();
    let a = adapter(&url).await;
    // The guide's rule serves flask_http_request_total as …_per_second; its HPA asks for the
    // series name.
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_total?labelSelector=app%3Dweb")
        .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(
        body["message"],
        "the server could not find the metric flask_http_request_total for pods: the series flask_http_request_total is served as flask_http_request_per_second by rules[0]"
    );
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_secnd")
        .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(
        body["message"],
        "the server could not find the metric flask_http_request_per_secnd for pods: did you mean flask_http_request_per_second?"
    );
    // Nothing close: the plain message, as upstream's.
    let (_, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/cpu")
        .await;
    assert_eq!(
        body["message"],
        "the server could not find the metric cpu for pods"
    );
}

/// The API calls Prometheus has answered, by its own `prometheus_http_requests_total`.
async fn prometheus_api_calls(url: &str) -> f64 {
    let text = common::metrics_text(url).await;
    common::scrape(&text)
        .samples
        .into_iter()
        .filter(|s| s.metric == "prometheus_http_requests_total")
        .filter(|s| {
            s.labels
                .get("handler")
                .is_some_and(|h| h.starts_with("/api/"))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn a_wildcard_request_in_standalone_mode_is_one_backend_call() {
    // A Prometheus of its own: the other tests' calls must not move its counters.
    let prom = prom_metrics_adapter::cli::local_prometheus::LocalPrometheus::start(
        &common::fixture_samples(),
    )
    .expect("start Prometheus");
    let a = adapter(prom.url()).await;
    let paths = [
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/flask_http_request_per_second?labelSelector=app%3Dweb",
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/*/worker_busy_threads?metricLabelSelector=pool%3Dio",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/flask_http_request_per_second?labelSelector=app+in+(worker)",
    ];
    let expected: [&[&str]; 4] = [
        &["web-1", "web-2", "worker-1"],
        &["web-1", "web-2"],
        &["web-1", "worker-1"],
        &["worker-1"],
    ];
    for (path, pods) in paths.iter().zip(expected) {
        let before = prometheus_api_calls(prom.url()).await;
        let (code, body) = a.get(path).await;
        assert_eq!(code, 200, "{path}: {body}");
        let got: Vec<&str> = items(&body)
            .iter()
            .map(|i| i["describedObject"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(got, pods, "{path}");
        // Prometheus counts a call once its handler returns, which can be just after the answer
        // reached us: wait for the first call to show.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut calls = prometheus_api_calls(prom.url()).await - before;
        while calls < 1.0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            calls = prometheus_api_calls(prom.url()).await - before;
        }
        // A second call, if there were one, would be counted by now.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let calls = prometheus_api_calls(prom.url()).await - before;
        assert_eq!(calls, 1.0, "{path} made {calls} backend calls");
    }
    // The answers are the ones the series lookup gave: the pool=io threads per pod.
    let (_, body) = a.get(paths[2]).await;
    let values: Vec<&str> = items(&body)
        .iter()
        .map(|i| i["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["1", "3"]);
}
