//! external.metrics.k8s.io against a real Prometheus and a real VictoriaMetrics: selectors, the
//! namespaced flag both ways, scalars, empty answers with and without `emptyResult: zero`,
//! NaN and ±Inf, and the errors.

#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/victoria.rs"]
mod victoria;

use std::fmt::Write as _;
use std::sync::OnceLock;

use common::{Adapter, fixture};
use serde_json::{Value, json};

fn samples() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let series: &[(&str, &str)] = &[
        (r#"queue_length{namespace="a",queue="q1"}"#, "5"),
        (r#"queue_length{namespace="a",queue="q2"}"#, "7"),
        (r#"queue_length{namespace="b",queue="q1"}"#, "100"),
        (r#"cluster_queue_depth{namespace="x",queue="q1"}"#, "11"),
        (r#"cluster_queue_depth{namespace="y",queue="q1"}"#, "4"),
        (r#"odd_value{kind="nan"}"#, "NaN"),
        (r#"odd_value{kind="inf"}"#, "+Inf"),
        (r#"total_backlog{shard="1"}"#, "30"),
        (r#"total_backlog{shard="2"}"#, "12"),
        (r#"matrix_thing{x="1"}"#, "1"),
        (r#"unmapped_lag{namespace="a"}"#, "3"),
        (r#"consumer_lag{namespace="a",group="busy"}"#, "250"),
    ];
    let mut out = String::new();
    let mut last = "";
    for (s, v) in series {
        let name = s.split('{').next().unwrap();
        if name != last {
            writeln!(out, "# TYPE {name} gauge").unwrap();
            last = name;
        }
        for t in (now - 600..=now + 180).step_by(15) {
            writeln!(out, "{s} {v} {t}").unwrap();
        }
    }
    out.push_str("# EOF\n");
    out
}

fn backends() -> Vec<(&'static str, String)> {
    static DATA: OnceLock<String> = OnceLock::new();
    backends::start(DATA.get_or_init(samples))
}

async fn adapter(url: &str) -> Adapter {
    Adapter::start_with(&fixture("external-rules.yaml"), url, &["--standalone"]).await
}

const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces";

fn items(body: &Value) -> Vec<(Value, String)> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {body}"))
        .iter()
        .map(|i| {
            (
                i["metricLabels"].clone(),
                i["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn label_selectors_become_matchers_next_to_the_namespace() {
    for (name, url) in backends() {
        let a = adapter(&url).await;
        let (code, body) = a.get(&format!("{EXT}/a/queue_length")).await;
        assert_eq!(code, 200, "{name}: {body}");
        assert_eq!(
            items(&body),
            [
                (json!({"queue": "q1"}), "5".to_string()),
                (json!({"queue": "q2"}), "7".to_string())
            ],
            "{name}"
        );
        let (_, body) = a
            .get(&format!("{EXT}/a/queue_length?labelSelector=queue%3Dq2"))
            .await;
        assert_eq!(
            items(&body),
            [(json!({"queue": "q2"}), "7".to_string())],
            "{name}"
        );
        let (_, body) = a
            .get(&format!(
                "{EXT}/a/queue_length?labelSelector=queue+notin+(q2)"
            ))
            .await;
        assert_eq!(
            items(&body),
            [(json!({"queue": "q1"}), "5".to_string())],
            "{name}"
        );
        let (_, body) = a
            .get(&format!(
                "{EXT}/b/queue_length?labelSelector=queue+in+(q1,q2)"
            ))
            .await;
        assert_eq!(
            items(&body),
            [(json!({"queue": "q1"}), "100".to_string())],
            "{name}"
        );
        // A selector naming another namespace cannot reach it: both matchers apply.
        let (_, body) = a
            .get(&format!("{EXT}/a/queue_length?labelSelector=namespace%3Db"))
            .await;
        assert_eq!(body["items"], json!([]), "{name}: {body}");
        // Timestamps are the samples' own.
        assert!(body["items"].as_array().unwrap().is_empty());
        let (code, body) = a
            .get(&format!("{EXT}/a/queue_length?labelSelector=size%3E3"))
            .await;
        assert_eq!(code, 400, "{name}: {body}");
    }
}

#[tokio::test]
async fn a_cluster_wide_rule_ignores_the_request_namespace() {
    for (name, url) in backends() {
        let a = adapter(&url).await;
        let (code, body) = a.get(&format!("{EXT}/anything/cluster_queue_depth")).await;
        assert_eq!(code, 200, "{name}: {body}");
        assert_eq!(
            items(&body),
            [(json!({"queue": "q1"}), "15".to_string())],
            "{name}"
        );
        let (_, body) = a
            .get(&format!(
                "{EXT}/anything/cluster_queue_depth?labelSelector=namespace%3Dx"
            ))
            .await;
        assert_eq!(
            items(&body),
            [(json!({"queue": "q1"}), "11".to_string())],
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_scalar_is_one_item_with_null_labels_and_a_matrix_is_an_error() {
    for (name, url) in backends() {
        let a = adapter(&url).await;
        let (code, body) = a.get(&format!("{EXT}/a/total_backlog")).await;
        assert_eq!(code, 200, "{name}: {body}");
        // VictoriaMetrics answers scalar() as a one-sample vector without labels, so its
        // item carries `{}` where Prometheus' scalar gives `null`.
        let labels = if name == "prometheus" {
            Value::Null
        } else {
            json!({})
        };
        assert_eq!(items(&body), [(labels, "42".to_string())], "{name}");
        assert!(
            body["items"][0]
                .as_object()
                .unwrap()
                .contains_key("metricLabels")
        );
        let (code, body) = a.get(&format!("{EXT}/a/matrix_thing")).await;
        assert_eq!(code, 500, "{name}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("matrix"),
            "{name}: {body}"
        );
    }
}

#[tokio::test]
async fn empty_answers_are_empty_lists_unless_the_rule_opts_into_zero() {
    for (name, url) in backends() {
        let a = adapter(&url).await;
        let (code, body) = a.get(&format!("{EXT}/zzz/queue_length")).await;
        assert_eq!(
            (code, body["items"].clone()),
            (200, json!([])),
            "{name}: {body}"
        );
        let (code, body) = a
            .get(&format!("{EXT}/a/consumer_lag?labelSelector=group%3Dbusy"))
            .await;
        assert_eq!(code, 200, "{name}: {body}");
        assert_eq!(
            items(&body),
            [(json!({"group": "busy"}), "250".to_string())],
            "{name}"
        );
        let (code, body) = a
            .get(&format!("{EXT}/a/consumer_lag?labelSelector=group%3Didle"))
            .await;
        assert_eq!(code, 200, "{name}: {body}");
        assert_eq!(
            items(&body),
            [(json!({"group": "idle"}), "0".to_string())],
            "{name}"
        );
    }
}

#[tokio::test]
async fn nan_is_zero_and_infinity_is_an_error() {
    for (name, url) in backends() {
        let a = adapter(&url).await;
        let (code, body) = a
            .get(&format!("{EXT}/a/odd_value?labelSelector=kind%3Dnan"))
            .await;
        assert_eq!(code, 200, "{name}: {body}");
        // Prometheus keeps the NaN sample (served as 0, never -9223372036854775808m);
        // VictoriaMetrics drops NaN samples at ingestion, so it has nothing to serve.
        match name {
            "prometheus" => assert_eq!(items(&body), [(json!({"kind": "nan"}), "0".to_string())]),
            _ => assert!(items(&body).iter().all(|(_, v)| v == "0"), "{name}: {body}"),
        }
        let (code, body) = a
            .get(&format!("{EXT}/a/odd_value?labelSelector=kind%3Dinf"))
            .await;
        assert_eq!(code, 500, "{name}: {body}");
        let msg = body["message"].as_str().unwrap();
        assert!(
            msg.contains("+Inf") && msg.contains("odd_value"),
            "{name}: {msg}"
        );
    }
}

#[tokio::test]
async fn rule_problems_and_unknown_metrics_are_statuses() {
    for (name, url) in backends() {
        let a = adapter(&url).await;
        let (code, body) = a.get(&format!("{EXT}/a/unmapped_lag")).await;
        assert_eq!(code, 500, "{name}: {body}");
        let msg = body["message"].as_str().unwrap();
        assert!(
            msg.contains("externalRules[5]") && msg.contains("namespace"),
            "{name}: {msg}"
        );
        let (code, body) = a.get(&format!("{EXT}/a/nope")).await;
        assert_eq!(code, 404, "{name}: {body}");
        assert_eq!(body["reason"], "NotFound");
        let (code, _) = a
            .get("/apis/external.metrics.k8s.io/v1beta2/namespaces/a/queue_length")
            .await;
        assert_eq!(code, 404, "{name}");
        let (code, body) = a.get("/apis/external.metrics.k8s.io/v1beta1").await;
        assert_eq!(code, 200);
        let names: Vec<&str> = body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "cluster_queue_depth",
                "consumer_lag",
                "matrix_thing",
                "odd_value",
                "queue_length",
                "total_backlog",
                "unmapped_lag"
            ],
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_unknown_external_name_gets_the_closest_served_name() {
    let (_, url) = backends().remove(0);
    let a = adapter(&url).await;
    let (code, body) = a.get(&format!("{EXT}/default/queue_lenght")).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(
        body["message"],
        "the server could not find the metric queue_lenght for namespaces: did you mean queue_length?"
    );
}
