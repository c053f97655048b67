//! metrics.k8s.io from kube-prometheus' resourceRules, unchanged, against a real Prometheus
//! with cAdvisor- and kubelet-shaped series; standalone and cluster mode.

mod common;
#[path = "common/hpa.rs"]
mod hpa;

use std::fmt::Write as _;
use std::sync::OnceLock;

use common::fake_kube::FakeKube;
use common::{Adapter, parse_quantity};
use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
use serde_json::{Value, json};

fn rules() -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/compat/kube-prometheus-resource-rules.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

const MI: f64 = 1024.0 * 1024.0;

/// (namespace, pod, container, CPU cores, memory bytes); `None` means no series.
type Container = (
    &'static str,
    &'static str,
    &'static str,
    Option<f64>,
    Option<f64>,
);

const CONTAINERS: &[Container] = &[
    ("default", "web-1", "app", Some(0.25), Some(100.0 * MI)),
    ("default", "web-1", "sidecar", Some(0.05), Some(20.0 * MI)),
    ("default", "web-2", "app", Some(0.5), Some(200.0 * MI)),
    ("default", "web-3", "app", Some(0.75), None),
    ("default", "worker-1", "app", Some(1.0), Some(f64::NAN)),
    ("other", "web-9", "app", Some(1.1), Some(3100.0)),
];

/// (node, CPU cores, memory bytes)
const NODES: &[(&str, f64, f64)] = &[("node-a", 1.5, 4096.0 * MI), ("node-b", 0.25, 1536.0 * MI)];

fn samples() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (start, end) = (now - 600, now + 180);
    let mut out = String::from("# TYPE container_cpu_usage_seconds counter\n");
    for t in (start..=end).step_by(15) {
        for (ns, pod, c, cpu, _) in CONTAINERS {
            if let Some(cpu) = cpu {
                writeln!(out, "container_cpu_usage_seconds_total{{namespace=\"{ns}\",pod=\"{pod}\",container=\"{c}\",id=\"/x\"}} {} {t}", (t - start) as f64 * cpu).unwrap();
            }
        }
    }
    out.push_str("# TYPE container_memory_working_set_bytes gauge\n");
    for t in (start..=end).step_by(15) {
        for (ns, pod, c, _, mem) in CONTAINERS {
            if let Some(mem) = mem {
                writeln!(out, "container_memory_working_set_bytes{{namespace=\"{ns}\",pod=\"{pod}\",container=\"{c}\"}} {mem} {t}").unwrap();
            }
        }
    }
    out.push_str("# TYPE node_cpu_usage_seconds counter\n");
    for t in (start..=end).step_by(15) {
        for (node, cpu, _) in NODES {
            writeln!(
                out,
                "node_cpu_usage_seconds_total{{node=\"{node}\"}} {} {t}",
                (t - start) as f64 * cpu
            )
            .unwrap();
        }
    }
    out.push_str("# TYPE node_memory_working_set_bytes gauge\n");
    for t in (start..=end).step_by(15) {
        for (node, _, mem) in NODES {
            writeln!(
                out,
                "node_memory_working_set_bytes{{node=\"{node}\"}} {mem} {t}"
            )
            .unwrap();
        }
    }
    out.push_str("# EOF\n");
    out
}

fn prometheus() -> &'static LocalPrometheus {
    static PROM: OnceLock<LocalPrometheus> = OnceLock::new();
    PROM.get_or_init(|| LocalPrometheus::start(&samples()).expect("start Prometheus"))
}

async fn standalone() -> Adapter {
    Adapter::start_with(&rules(), prometheus().url(), &["--standalone"]).await
}

const API: &str = "/apis/metrics.k8s.io/v1beta1";

fn containers(pod: &Value) -> Vec<(String, f64, f64)> {
    pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                parse_quantity(c["usage"]["cpu"].as_str().unwrap()),
                parse_binary(c["usage"]["memory"].as_str().unwrap()),
            )
        })
        .collect()
}

fn parse_binary(q: &str) -> f64 {
    for (suffix, mult) in [("Ki", 1024.0), ("Mi", MI), ("Gi", MI * 1024.0)] {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap() * mult;
        }
    }
    parse_quantity(q)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= b.abs() * 0.02 + 0.002
}

#[tokio::test]
async fn pods_in_a_namespace_have_per_container_usage_matching_prometheus() {
    let a = standalone().await;
    let (code, body) = a.get(&format!("{API}/namespaces/default/pods")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "PodMetricsList");
    assert_eq!(body["apiVersion"], "metrics.k8s.io/v1beta1");
    let pods: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    // web-3 has CPU but no memory series: left out rather than given a made-up 0.
    assert_eq!(pods, ["web-1", "web-2", "worker-1"]);
    let web1 = &body["items"][0];
    assert_eq!(web1["metadata"]["namespace"], "default");
    assert_eq!(web1["window"], "5m0s");
    let c = containers(web1);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].0, "app");
    assert!(close(c[0].1, 0.25) && close(c[0].2, 100.0 * MI), "{c:?}");
    assert_eq!(web1["containers"][0]["usage"]["memory"], "100Mi");
    // The same query asked of Prometheus directly.
    let direct: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prometheus().url()))
        .query(&[("query", r#"sum by (pod,container) (irate(container_cpu_usage_seconds_total{namespace="default",pod="web-2",container!="",pod!=""}[4m]))"#)])
        .send().await.unwrap().json().await.unwrap();
    let expected: f64 = direct["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (_, web2) = a.get(&format!("{API}/namespaces/default/pods/web-2")).await;
    assert_eq!(web2["kind"], "PodMetrics");
    assert!(
        close(containers(&web2)[0].1, expected),
        "{web2} vs {expected}"
    );
    // NaN memory reads as 0, as upstream.
    let worker = &body["items"][2];
    assert_eq!(worker["containers"][0]["usage"]["memory"], "0");
}

#[tokio::test]
async fn a_pod_without_metrics_is_not_found_with_upstreams_message() {
    let a = standalone().await;
    let (code, body) = a.get(&format!("{API}/namespaces/default/pods/ghost")).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(
        body["message"],
        "podmetrics.metrics.k8s.io \"default/ghost\" not found"
    );
    let (code, body) = a.get(&format!("{API}/nodes/ghost")).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(
        body["message"],
        "nodemetrics.metrics.k8s.io \"ghost\" not found"
    );
}

#[tokio::test]
async fn nodes_and_all_namespaces_are_listed() {
    let a = standalone().await;
    let (code, body) = a.get(&format!("{API}/nodes")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "NodeMetricsList");
    let nodes: Vec<(String, f64, f64)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                parse_quantity(n["usage"]["cpu"].as_str().unwrap()),
                parse_binary(n["usage"]["memory"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes[0].0 == "node-a" && close(nodes[0].1, 1.5) && close(nodes[0].2, 4096.0 * MI),
        "{nodes:?}"
    );
    assert_eq!(body["items"][0]["usage"]["memory"], "4Gi");
    let (code, node) = a.get(&format!("{API}/nodes/node-b")).await;
    assert_eq!(code, 200);
    assert_eq!(node["kind"], "NodeMetrics");
    assert_eq!(node["usage"]["memory"], "1536Mi");
    let (code, body) = a.get(&format!("{API}/pods")).await;
    assert_eq!(code, 200);
    let all: Vec<(String, String)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["namespace"].as_str().unwrap().to_string(),
                p["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(all.contains(&("other".into(), "web-9".into())), "{all:?}");
    let (_, web9) = a.get(&format!("{API}/namespaces/other/pods/web-9")).await;
    assert_eq!(
        web9["containers"][0]["usage"],
        json!({"cpu": "1100m", "memory": "3100"})
    );
    let (code, discovery) = a.get(API).await;
    assert_eq!(code, 200);
    assert_eq!(discovery["resources"][1]["kind"], "PodMetrics");
}

#[tokio::test]
async fn cluster_mode_lists_running_pods_by_label_and_carries_their_labels() {
    let fake = FakeKube::start().await;
    let flag = fake.flag();
    let a = Adapter::start_with(&rules(), prometheus().url(), &[&flag]).await;
    let (code, body) = a
        .get(&format!(
            "{API}/namespaces/default/pods?labelSelector=app%3Dweb"
        ))
        .await;
    assert_eq!(code, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    let pods: Vec<&str> = items
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(pods, ["web-1", "web-2"]);
    assert_eq!(items[0]["metadata"]["labels"], json!({"app": "web"}));
    assert!(
        fake.state
            .selectors
            .lock()
            .unwrap()
            .iter()
            .any(|s| s == "app=web")
    );

    // A CPU-utilisation HPA on app=web: requests of 250m per container, target 60 %.
    // usage = 0.25 + 0.05 + 0.5 = 0.8 cores; requests = 3 × 0.25 = 0.75; utilisation 106.7 %;
    // ratio 1.78 → ceil(1.78 × 2 ready pods) = 4.
    let per_pod_usage: Vec<f64> = items
        .iter()
        .map(|p| containers(p).iter().map(|c| c.1).sum())
        .collect();
    let per_pod_requests: Vec<f64> = items
        .iter()
        .map(|p| 0.25 * p["containers"].as_array().unwrap().len() as f64)
        .collect();
    assert!(close(per_pod_usage.iter().sum(), 0.8), "{per_pod_usage:?}");
    assert_eq!(
        hpa::Hpa::new(2, 1, 10).resource_utilization(&per_pod_usage, &per_pod_requests, 60.0),
        4
    );

    let (code, body) = a
        .get(&format!(
            "{API}/nodes?labelSelector=kubernetes.io%2Farch%3Darm64"
        ))
        .await;
    assert_eq!(code, 200, "{body}");
    let nodes: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["node-b"]);
}

#[tokio::test]
async fn a_failed_node_query_is_an_error_not_an_empty_list() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = Adapter::start_with(
        &rules(),
        &format!("http://127.0.0.1:{port}"),
        &["--standalone"],
    )
    .await;
    let (code, body) = a.get(&format!("{API}/nodes")).await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unable to fetch cpu metrics"),
        "{body}"
    );
    let (code, _) = a.get(&format!("{API}/namespaces/default/pods")).await;
    assert_eq!(code, 500);
}

#[tokio::test]
async fn a_label_selector_without_a_cluster_is_refused_clearly() {
    let a = standalone().await;
    let (code, body) = a
        .get(&format!(
            "{API}/namespaces/default/pods?labelSelector=app%3Dweb"
        ))
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("cluster mode"));
}

#[tokio::test]
async fn container_queries_without_the_namespace_matcher_cannot_leak_another_namespace() {
    let leaky = rules().replace("{<<.LabelMatchers>>,", "{");
    assert_ne!(leaky, rules());
    let a = Adapter::start_with(&leaky, prometheus().url(), &["--standalone"]).await;
    let (code, body) = a.get(&format!("{API}/namespaces/default/pods")).await;
    assert_eq!(code, 200, "{body}");
    let pods: Vec<(&str, &str)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pods,
        [
            ("default", "web-1"),
            ("default", "web-2"),
            ("default", "worker-1")
        ]
    );
}
