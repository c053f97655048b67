//! Every rule file in config/examples/ is loaded and exercised against a real Prometheus and a
//! real VictoriaMetrics: each served value equals what that backend computes for the same
//! query, and the HPA arithmetic on our answers gives the replica counts the files promise.

#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/hpa.rs"]
mod hpa;
#[path = "common/victoria.rs"]
mod victoria;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use backends::backend_values;
use common::{Adapter, parse_quantity, unix_now};
use hpa::Hpa;
use serde_json::json;

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/config/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A series and its value as a function of time.
type Series = (String, Box<dyn Fn(i64) -> f64>);

/// Samples for every example, now−10 m to now+3 m every 15 s.
fn samples() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (start, end) = (now - 600, now + 180);
    let times: Vec<i64> = (start..=end).step_by(15).collect();
    let mut gauges: Vec<Series> = Vec::new();
    for (p, lag) in [400.0, 400.0, 400.0, 400.0, 450.0, 450.0]
        .into_iter()
        .enumerate()
    {
        gauges.push((
            format!("kafka_consumergroup_lag{{namespace=\"kafka\",consumergroup=\"orders\",topic=\"orders\",partition=\"{p}\"}}"),
            Box::new(move |_| lag),
        ));
    }
    for p in 0..3 {
        gauges.push((
            format!("kafka_consumergroup_lag{{namespace=\"kafka\",consumergroup=\"billing\",topic=\"invoices\",partition=\"{p}\"}}"),
            Box::new(|_| 100.0),
        ));
    }
    gauges.push((
        "kafka_topic_partitions{namespace=\"kafka\",topic=\"orders\"}".into(),
        Box::new(|_| 6.0),
    ));
    gauges.push((
        "kafka_topic_partitions{namespace=\"kafka\",topic=\"invoices\"}".into(),
        Box::new(|_| 3.0),
    ));
    for (pod, in_flight) in [("web-1", 3.0), ("web-2", 5.0), ("web-3", 9.0)] {
        gauges.push((
            format!("http_requests_in_flight{{namespace=\"web\",pod=\"{pod}\",app=\"web\"}}"),
            Box::new(move |_| in_flight),
        ));
    }
    for (pod, rate) in [("web-1", 15.0), ("web-2", 25.0), ("web-3", 20.0)] {
        gauges.push((
            format!("flask_http_request_total{{namespace=\"web\",pod=\"{pod}\",method=\"GET\"}}"),
            Box::new(move |t| (t - start) as f64 * rate),
        ));
    }
    for (pod, rate) in [("web-1", 0.8), ("web-2", 1.2), ("web-3", 2.0)] {
        gauges.push((
            format!("http_request_duration_seconds_sum{{namespace=\"web\",pod=\"{pod}\"}}"),
            Box::new(move |t| (t - start) as f64 * rate),
        ));
    }
    gauges.push((
        "redis_key_size{namespace=\"jobs\",key=\"emails\",db=\"db0\"}".into(),
        Box::new(|_| 42.0),
    ));
    // Five values a minute apart, repeating: every 5-minute window holds each once.
    gauges.push((
        "orders_queue_length{namespace=\"jobs\",queue=\"orders\"}".into(),
        Box::new(|t| 100.0 + ((t / 60) % 5) as f64 * 10.0),
    ));
    gauges.push((
        "emails_queue_length{namespace=\"jobs\",queue=\"emails\"}".into(),
        Box::new(|_| 7.0),
    ));

    gauges.extend(llm_serving_series(start));

    let mut out = String::new();
    let mut typed = std::collections::BTreeSet::new();
    let histograms: std::collections::BTreeSet<&str> = gauges
        .iter()
        .filter_map(|(s, _)| s.split('{').next().unwrap().strip_suffix("_bucket"))
        .collect();
    for (series, f) in &gauges {
        let name = series.split('{').next().unwrap();
        let histogram = ["_bucket", "_count", "_sum"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| histograms.contains(base));
        if let Some(base) = histogram {
            if typed.insert(base.to_string()) {
                writeln!(out, "# TYPE {base} histogram").unwrap();
            }
        } else if typed.insert(name.to_string()) {
            if let Some(base) = name.strip_suffix("_total") {
                writeln!(out, "# TYPE {base} counter").unwrap();
            } else {
                writeln!(out, "# TYPE {name} gauge").unwrap();
            }
        }
        for &t in &times {
            writeln!(out, "{series} {} {t}", f(t)).unwrap();
        }
    }
    out.push_str("# EOF\n");
    out
}

/// vLLM pods in namespace `llm`, in the label shapes vLLM's v1 engine and NVIDIA's dcgm-exporter
/// export (plus the `namespace` and `pod` a pod monitor adds); `vllm-legacy-0` runs an older vLLM
/// that names its KV-cache gauge `vllm:gpu_cache_usage_perc`.
fn llm_serving_series(start: i64) -> Vec<Series> {
    const MODEL: &str = "llama-3.1-8b-instruct";
    let mut out: Vec<Series> = Vec::new();
    /// (pod, waiting, KV-cache fraction, generated tokens/s, GPU utilisations, requests/s)
    type Pod = (&'static str, f64, f64, f64, &'static [f64], f64);
    let pods: [Pod; 4] = [
        ("vllm-0", 2.0, 0.35, 120.0, &[80.0, 90.0], 4.0),
        ("vllm-1", 6.0, 0.92, 340.0, &[40.0], 8.0),
        ("vllm-2", 10.0, 0.61, 250.0, &[60.0], 6.0),
        ("vllm-legacy-0", 6.0, 0.72, 90.0, &[70.0], 2.0),
    ];
    let vllm = |name: &str, pod: &str, extra: &str| {
        format!(
            "{name}{{{extra}engine=\"0\",model_name=\"{MODEL}\",namespace=\"llm\",pod=\"{pod}\",job=\"vllm\"}}"
        )
    };
    for (pod, waiting, kv, tokens, _, _) in pods {
        out.push((
            vllm("vllm:num_requests_waiting", pod, ""),
            Box::new(move |_| waiting),
        ));
        let kv_name = if pod.contains("legacy") {
            "vllm:gpu_cache_usage_perc"
        } else {
            "vllm:kv_cache_usage_perc"
        };
        out.push((vllm(kv_name, pod, ""), Box::new(move |_| kv)));
        out.push((
            vllm("vllm:generation_tokens_total", pod, ""),
            Box::new(move |t| (t - start) as f64 * tokens),
        ));
    }
    for (pod, _, _, _, gpus, _) in pods {
        for (i, util) in gpus.iter().copied().enumerate() {
            out.push((
                format!(
                    "DCGM_FI_DEV_GPU_UTIL{{gpu=\"{i}\",UUID=\"GPU-5fd4f2a1-{pod}-{i}\",device=\"nvidia{i}\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"gpu-node-1\",DCGM_FI_DRIVER_VERSION=\"550.54.15\",container=\"vllm\",namespace=\"llm\",pod=\"{pod}\"}}"
                ),
                Box::new(move |_| util),
            ));
        }
    }
    // Time to first token: the same spread on every pod (20 % within 0.25 s, 50 % within 0.5 s,
    // 80 % within 1 s, all within 2 s), so the model's p90 is 1 + 0.1 / 0.2 × 1 = 1.5 s.
    let buckets = [
        ("0.25", 0.2),
        ("0.5", 0.5),
        ("1.0", 0.8),
        ("2.0", 1.0),
        ("5.0", 1.0),
        ("+Inf", 1.0),
    ];
    for (pod, _, _, _, _, rps) in pods {
        for (le, share) in buckets {
            out.push((
                vllm(
                    "vllm:time_to_first_token_seconds_bucket",
                    pod,
                    &format!("le=\"{le}\","),
                ),
                Box::new(move |t| ((t - start) as f64 * rps * share).round()),
            ));
        }
        out.push((
            vllm("vllm:time_to_first_token_seconds_count", pod, ""),
            Box::new(move |t| ((t - start) as f64 * rps).round()),
        ));
        out.push((
            vllm("vllm:time_to_first_token_seconds_sum", pod, ""),
            Box::new(move |t| (t - start) as f64 * rps * 0.9),
        ));
    }
    out
}

/// (name, URL) of each backend, started once for this test binary.
fn backends() -> Vec<(&'static str, String)> {
    static DATA: OnceLock<String> = OnceLock::new();
    backends::start(DATA.get_or_init(samples))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= b.abs() * 0.01 + 0.001
}

/// Asks the adapter for an external metric and checks every item against the backend's answer
/// to `query` (asked just before and just after, so a window boundary in between cannot make
/// the comparison flaky). Returns the items' values keyed by their labels.
async fn external(
    a: &Adapter,
    backend: (&str, &str),
    path: &str,
    query: &str,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let before = backend_values(backend.1, query, unix_now()).await;
    let (code, body) = a.get(path).await;
    let after = backend_values(backend.1, query, unix_now()).await;
    assert_eq!(code, 200, "{}: {path}: {body}", backend.0);
    assert_eq!(body["kind"], "ExternalMetricValueList");
    let items: Vec<(BTreeMap<String, String>, f64)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let labels = serde_json::from_value(i["metricLabels"].clone()).unwrap_or_default();
            (labels, parse_quantity(i["value"].as_str().unwrap()))
        })
        .collect();
    assert_eq!(
        items.len(),
        before.len().max(after.len()),
        "{}: {path}: {body} vs {before:?}",
        backend.0
    );
    for (labels, v) in &items {
        let matches = |answer: &Vec<(BTreeMap<String, String>, f64)>| {
            answer.iter().any(|(l, x)| l == labels && close(*v, *x))
        };
        assert!(
            matches(&before) || matches(&after),
            "{}: {path}: {labels:?} = {v}, backend said {before:?} / {after:?}",
            backend.0
        );
    }
    items
}

/// Asks the adapter for a per-pod metric and checks it against the backend; returns the values
/// in pod order.
async fn per_pod(a: &Adapter, backend: (&str, &str), path: &str, query: &str) -> Vec<f64> {
    let now = unix_now();
    let (code, body) = a.get(path).await;
    assert_eq!(code, 200, "{}: {path}: {body}", backend.0);
    let expected = backend_values(backend.1, query, now).await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), expected.len(), "{}: {body}", backend.0);
    items
        .iter()
        .map(|i| {
            let pod = i["describedObject"]["name"].as_str().unwrap();
            let v = parse_quantity(i["value"].as_str().unwrap());
            let x = expected
                .iter()
                .find(|(l, _)| l.get("pod").map(String::as_str) == Some(pod))
                .unwrap()
                .1;
            assert!(
                close(v, x),
                "{}: {pod}: adapter {v} vs backend {x}",
                backend.0
            );
            v
        })
        .collect()
}

fn values(items: &[(BTreeMap<String, String>, f64)]) -> Vec<f64> {
    items.iter().map(|(_, v)| *v).collect()
}

const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces";

#[tokio::test]
async fn kafka_consumer_lag_is_summed_per_group_and_drives_the_hpa() {
    for (name, url) in backends() {
        let b = (name, url.as_str());
        let a =
            Adapter::start_with(&example("kafka-consumer-lag.yaml"), &url, &["--standalone"]).await;
        let lag = external(
            &a,
            b,
            &format!("{EXT}/kafka/kafka_consumergroup_lag?labelSelector=consumergroup%3Dorders"),
            r#"sum(kafka_consumergroup_lag{consumergroup="orders",namespace="kafka"}) by (consumergroup, topic)"#,
        )
        .await;
        assert_eq!(values(&lag), [2500.0], "{name}");
        assert_eq!(
            lag[0].0,
            BTreeMap::from([
                ("consumergroup".into(), "orders".into()),
                ("topic".into(), "orders".into())
            ])
        );
        // lag 2,500 against an AverageValue target of 100: 25 replicas, clamped to 10.
        assert_eq!(
            Hpa::new(3, 1, 10).external_average_value(&values(&lag), 100.0),
            10,
            "{name}"
        );
        assert_eq!(
            Hpa::new(3, 1, 100).external_average_value(&values(&lag), 100.0),
            25,
            "{name}"
        );

        // The capped variant never asks for more replicas than partitions.
        let capped_query = example("kafka-consumer-lag.yaml");
        assert!(capped_query.contains("kafka_consumergroup_lag_capped"));
        for (group, partitions) in [("orders", 6u32), ("billing", 3)] {
            let (code, body) = a
                .get(&format!("{EXT}/kafka/kafka_consumergroup_lag_capped?labelSelector=consumergroup%3D{group}"))
                .await;
            assert_eq!(code, 200, "{name}: {body}");
            let v: Vec<f64> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| parse_quantity(i["value"].as_str().unwrap()))
                .collect();
            let desired = Hpa::new(1, 1, 50).external_average_value(&v, 100.0);
            assert!(
                desired <= partitions,
                "{name}: {group}: {v:?} → {desired} replicas > {partitions} partitions"
            );
            assert_eq!(desired, partitions, "{name}: {group}: {v:?}");
        }

        // A group with no lag series at all: `emptyResult: zero` answers an explicit 0.
        let (code, body) = a
            .get(&format!(
                "{EXT}/kafka/kafka_consumergroup_lag?labelSelector=consumergroup%3Dcaught-up"
            ))
            .await;
        assert_eq!(code, 200, "{name}: {body}");
        assert_eq!(body["items"].as_array().unwrap().len(), 1, "{name}: {body}");
        assert_eq!(body["items"][0]["value"], "0");
        assert_eq!(
            body["items"][0]["metricLabels"],
            json!({"consumergroup": "caught-up"})
        );
        assert_eq!(Hpa::new(3, 1, 10).external_average_value(&[0.0], 100.0), 1);
    }
}

#[tokio::test]
async fn flask_request_rate_per_pod_matches_the_backend_and_the_hpa_math() {
    for (name, url) in backends() {
        let b = (name, url.as_str());
        let a = Adapter::start_with(
            &example("http-requests-per-second.yaml"),
            &url,
            &["--standalone"],
        )
        .await;
        let v = per_pod(
            &a,
            b,
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/web/pods/%2A/flask_http_request_per_second",
            r#"sum(rate(flask_http_request_total{namespace="web",pod=~"web-1|web-2|web-3"}[2m])) by (pod)"#,
        )
        .await;
        // 15, 25 and 20 req/s against 10 per pod: ceil(20 / 10 × 3) = 6.
        assert_eq!(
            Hpa::new(3, 1, 10).pods_average_value(&v, 10.0),
            6,
            "{name}: {v:?}"
        );
    }
}

#[tokio::test]
async fn http_concurrency_per_pod_estimated_and_per_app() {
    for (name, url) in backends() {
        let b = (name, url.as_str());
        let a =
            Adapter::start_with(&example("http-concurrency.yaml"), &url, &["--standalone"]).await;
        let in_flight = per_pod(
            &a,
            b,
            "/apis/custom.metrics.k8s.io/v1beta1/namespaces/web/pods/*/http_requests_in_flight",
            r#"sum(http_requests_in_flight{namespace="web",pod=~"web-1|web-2|web-3"}) by (pod)"#,
        )
        .await;
        assert_eq!(in_flight, [3.0, 5.0, 9.0], "{name}");
        assert_eq!(
            Hpa::new(3, 1, 10).pods_average_value(&in_flight, 5.0),
            4,
            "{name}"
        );
        let estimate = per_pod(
            &a,
            b,
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/web/pods/*/http_requests_in_flight_estimate",
            r#"sum(rate(http_request_duration_seconds_sum{namespace="web",pod=~"web-1|web-2|web-3"}[2m])) by (pod)"#,
        )
        .await;
        assert_eq!(estimate.len(), 3);
        let total = external(
            &a,
            b,
            &format!("{EXT}/web/http_requests_in_flight_total?labelSelector=app%3Dweb"),
            r#"sum(http_requests_in_flight{app="web",namespace="web"}) by (app)"#,
        )
        .await;
        // Azure Container Apps' rule: ceil(17 concurrent / 5 per replica) = 4.
        assert_eq!(values(&total), [17.0], "{name}");
        assert_eq!(
            Hpa::new(1, 1, 10).external_average_value(&values(&total), 5.0),
            4,
            "{name}"
        );
    }
}

#[tokio::test]
async fn queue_backlogs_from_redis_and_queue_length_gauges() {
    for (name, url) in backends() {
        let b = (name, url.as_str());
        let a = Adapter::start_with(&example("queue-backlog.yaml"), &url, &["--standalone"]).await;
        let redis = external(
            &a,
            b,
            &format!("{EXT}/jobs/redis_list_length?labelSelector=key%3Demails"),
            r#"max(redis_key_size{key="emails",namespace="jobs"}) by (key)"#,
        )
        .await;
        assert_eq!(values(&redis), [42.0], "{name}");
        assert_eq!(
            Hpa::new(1, 1, 20).external_average_value(&values(&redis), 10.0),
            5
        );
        let emails = external(
            &a,
            b,
            &format!("{EXT}/jobs/emails_queue_length?labelSelector=queue%3Demails"),
            r#"sum(emails_queue_length{queue="emails",namespace="jobs"}) by (queue)"#,
        )
        .await;
        assert_eq!(values(&emails), [7.0], "{name}");
        // A drained list: zero by opt-in; a queue gauge without the opt-in: upstream's empty list.
        let (code, body) = a
            .get(&format!(
                "{EXT}/jobs/redis_list_length?labelSelector=key%3Dgone"
            ))
            .await;
        assert_eq!(
            (code, body["items"][0]["value"].clone()),
            (200, json!("0")),
            "{name}: {body}"
        );
        let (code, body) = a
            .get(&format!(
                "{EXT}/jobs/emails_queue_length?labelSelector=queue%3Dgone"
            ))
            .await;
        assert_eq!(
            (code, body["items"].clone()),
            (200, json!([])),
            "{name}: {body}"
        );
    }
}

#[tokio::test]
async fn time_aggregations_over_a_window_match_the_backend() {
    for (name, url) in backends() {
        let b = (name, url.as_str());
        let a =
            Adapter::start_with(&example("time-aggregation.yaml"), &url, &["--standalone"]).await;
        for (agg, func) in [
            ("avg", "avg_over_time"),
            ("min", "min_over_time"),
            ("max", "max_over_time"),
            ("total", "sum_over_time"),
            ("last", "last_over_time"),
            ("count", "count_over_time"),
        ] {
            let got = external(
                &a,
                b,
                &format!("{EXT}/jobs/orders_queue_length_{agg}_5m?labelSelector=queue%3Dorders"),
                &format!(r#"{func}((sum by (queue) (orders_queue_length{{queue="orders",namespace="jobs"}}))[5m:1m])"#),
            )
            .await;
            assert_eq!(got.len(), 1, "{name}: {agg}");
            if agg == "avg" && name == "prometheus" {
                // Every 5-minute window holds 100, 110, 120, 130 and 140 once.
                assert_eq!(values(&got), [120.0]);
                assert_eq!(
                    Hpa::new(1, 1, 10).external_average_value(&values(&got), 30.0),
                    4
                );
            }
        }
    }
}

#[tokio::test]
async fn every_example_file_is_exercised_here() {
    let dir = format!("{}/config/examples", env!("CARGO_MANIFEST_DIR"));
    let source = include_str!("examples.rs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            source.contains(&format!("example(\"{file}\")")),
            "config/examples/{file} has no test in tests/examples.rs"
        );
    }
}

/// What config/examples/schedule-floor.yaml promises for `storefront-floor`, worked out from the
/// Berlin wall clock without the adapter's cron code: 6 on weekdays 08–18, 2 on weekend days
/// 10–16, else 0.
fn storefront_floor_by_hand(now: chrono::DateTime<chrono::Utc>) -> u32 {
    use chrono::{Datelike, Timelike};
    let local = now.with_timezone(&chrono_tz::Europe::Berlin);
    let (weekday, hour) = (local.weekday().number_from_monday(), local.hour());
    match weekday {
        1..=5 if (8..18).contains(&hour) => 6,
        6 | 7 if (10..16).contains(&hour) => 2,
        _ => 0,
    }
}

#[tokio::test]
async fn schedule_floors_follow_the_wall_clock_and_lift_the_hpa() {
    let config = example("schedule-floor.yaml");
    // No backend: nothing listens on port 9.
    let a = Adapter::start_with(&config, "http://127.0.0.1:9", &["--standalone"]).await;
    let before = storefront_floor_by_hand(chrono::Utc::now());
    let (code, body) = a.get(&format!("{EXT}/shop/storefront-floor")).await;
    let after = storefront_floor_by_hand(chrono::Utc::now());
    assert_eq!(code, 200, "{body}");
    let served = parse_quantity(body["items"][0]["value"].as_str().unwrap()) as u32;
    assert!(
        served == before || served == after,
        "{body}: expected {before}"
    );

    // The batch floor is served in `batch` only, by UTC hours 01–05.
    let (code, body) = a.get(&format!("{EXT}/batch/batch-floor")).await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = a.get(&format!("{EXT}/shop/batch-floor")).await;
    assert_eq!(code, 404);

    // The HPA of the example: the floor's proposal is the floor itself (target 1 per replica),
    // and the HPA keeps the larger of it and the request rate's proposal.
    let hpa = prom_metrics_adapter::hpa::spec::parse_manifest(
        &std::fs::read_to_string(format!(
            "{}/config/hpa/schedule-floor-hpa.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
        &[],
        &Default::default(),
    )
    .expect("the example HPA parses");
    assert_eq!(hpa.metrics.len(), 2);
    let quiet_morning = [2.0, 3.0]; // req/s per pod against 10: proposes 1
    let busy = [40.0, 40.0]; // proposes 8
    for (floor, rate, expected) in [
        (6.0, &quiet_morning, 6),
        (0.0, &quiet_morning, 2),
        (6.0, &busy, 8),
    ] {
        let h = Hpa::new(2, 2, 30);
        let desired = h
            .external_average_value(&[floor], 1.0)
            .max(h.pods_average_value(rate, 10.0));
        assert_eq!(desired, expected, "floor {floor}, rates {rate:?}");
    }
}

#[tokio::test]
async fn llm_serving_presets_serve_names_with_colons_and_match_the_backend() {
    const PODS: &str = "vllm-0|vllm-1|vllm-2|vllm-legacy-0";
    const CUSTOM: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/llm/pods/*";
    for (name, url) in backends() {
        let b = (name, url.as_str());
        let a = Adapter::start_with(&example("llm-serving.yaml"), &url, &["--standalone"]).await;
        let hpa = Hpa::new(4, 1, 20);

        // Discovery lists the names with their colons.
        let (code, body) = a.get("/apis/custom.metrics.k8s.io/v1beta2").await;
        assert_eq!(code, 200, "{name}: {body}");
        let listed: Vec<&str> = body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for metric in [
            "pods/vllm:num_requests_waiting",
            "pods/vllm:kv_cache_usage_perc",
            "pods/vllm:generation_tokens_per_second",
            "pods/gpu_utilization_percent",
        ] {
            assert!(
                listed.contains(&metric),
                "{name}: {metric} not in {listed:?}"
            );
        }

        let waiting = per_pod(
            &a,
            b,
            &format!("{CUSTOM}/vllm:num_requests_waiting"),
            &format!(r#"sum(vllm:num_requests_waiting{{namespace="llm",pod=~"{PODS}"}}) by (pod)"#),
        )
        .await;
        assert_eq!(waiting, [2.0, 6.0, 10.0, 6.0], "{name}");
        assert_eq!(hpa.pods_average_value(&waiting, 5.0), 5, "{name}");
        // The colon percent-encoded, as some clients send it, is the same metric.
        let (code, encoded) = a
            .get(&format!("{CUSTOM}/vllm%3Anum_requests_waiting"))
            .await;
        assert_eq!(code, 200, "{name}: {encoded}");
        assert_eq!(encoded["items"].as_array().unwrap().len(), 4);
        assert_eq!(
            encoded["items"][0]["metric"]["name"],
            "vllm:num_requests_waiting"
        );

        // Old and new KV-cache gauge names under the newer name.
        let kv = per_pod(
            &a,
            b,
            &format!("{CUSTOM}/vllm:kv_cache_usage_perc"),
            &format!(
                r#"max by (pod) ({{__name__=~"vllm:(kv|gpu)_cache_usage_perc",namespace="llm",pod=~"{PODS}"}})"#
            ),
        )
        .await;
        for (got, want) in kv.iter().zip([0.35, 0.92, 0.61, 0.72]) {
            assert!(close(*got, want), "{name}: {kv:?}");
        }
        assert_eq!(hpa.pods_average_value(&kv, 0.5), 6, "{name}");

        let tokens = per_pod(
            &a,
            b,
            &format!("{CUSTOM}/vllm:generation_tokens_per_second"),
            &format!(
                r#"sum(rate(vllm:generation_tokens_total{{namespace="llm",pod=~"{PODS}"}}[2m])) by (pod)"#
            ),
        )
        .await;
        for (got, want) in tokens.iter().zip([120.0, 340.0, 250.0, 90.0]) {
            assert!(close(*got, want), "{name}: {tokens:?}");
        }
        assert_eq!(hpa.pods_average_value(&tokens, 200.0), 4, "{name}");

        let gpu = per_pod(
            &a,
            b,
            &format!("{CUSTOM}/gpu_utilization_percent"),
            &format!(r#"avg(DCGM_FI_DEV_GPU_UTIL{{namespace="llm",pod=~"{PODS}"}}) by (pod)"#),
        )
        .await;
        assert_eq!(gpu, [85.0, 40.0, 60.0, 70.0], "{name}");
        assert_eq!(hpa.pods_average_value(&gpu, 70.0), 4, "{name}");

        let selector = "labelSelector=model_name%3Dllama-3.1-8b-instruct";
        let ttft = external(
            &a,
            b,
            &format!("{EXT}/llm/vllm:time_to_first_token_seconds:p90?{selector}"),
            r#"histogram_quantile(0.9, sum by (le, model_name) (rate(vllm:time_to_first_token_seconds_bucket{model_name="llama-3.1-8b-instruct",namespace="llm"}[2m])))"#,
        )
        .await;
        assert!(close(values(&ttft)[0], 1.5), "{name}: {ttft:?}");
        assert_eq!(hpa.external_value(&values(&ttft), 1.0), 6, "{name}");

        let queued = external(
            &a,
            b,
            &format!("{EXT}/llm/vllm:num_requests_waiting?{selector}"),
            r#"sum(vllm:num_requests_waiting{model_name="llama-3.1-8b-instruct",namespace="llm"}) by (model_name)"#,
        )
        .await;
        assert_eq!(values(&queued), [24.0], "{name}");
        assert_eq!(
            hpa.external_average_value(&values(&queued), 5.0),
            5,
            "{name}"
        );

        // `check` against the backend names what each rule produced, colons and all.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
            .args(["check", "--strict", "-o", "json", "--metrics-max-age=20m"])
            .arg(format!(
                "--config={}/config/examples/llm-serving.yaml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg(format!("--prometheus-url={url}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{name}: {text}");
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        let produced: Vec<String> = report["discovery"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        for metric in [
            "pods/vllm:num_requests_waiting",
            "pods/vllm:kv_cache_usage_perc",
            "vllm:time_to_first_token_seconds:p90",
            "vllm:num_requests_waiting",
        ] {
            assert!(
                produced.iter().any(|p| p == metric),
                "{name}: {metric} not in {produced:?}"
            );
        }
    }
}
