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

/// A five-field cron expression for `offset_minutes` from now (UTC), daily.
fn daily_at(offset_minutes: i64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::minutes(offset_minutes);
    format!(
        "{} {} * * *",
        chrono::Timelike::minute(&t),
        chrono::Timelike::hour(&t)
    )
}

#[tokio::test]
async fn a_schedule_floor_answers_the_highest_active_window_without_any_backend() {
    // Windows placed around the present: two active (5 and 3 replicas), one later today (9).
    let config = format!(
        r#"
scheduleRules:
- name: checkout-floor
  timezone: UTC
  namespaces: [shop]
  windows:
  - {{start: "{a0}", end: "{a1}", replicas: 5}}
  - {{start: "{b0}", end: "{b1}", replicas: 3}}
  - {{start: "{c0}", end: "{c1}", replicas: 9}}
- name: tokyo-floor
  timezone: Asia/Tokyo
  windows:
  - {{start: "{t0}", end: "{t1}", replicas: 2}}
"#,
        a0 = daily_at(-60),
        a1 = daily_at(60),
        b0 = daily_at(-120),
        b1 = daily_at(120),
        c0 = daily_at(180),
        c1 = daily_at(240),
        // Tokyo is UTC+9 all year: these clock times are an hour either side of now there,
        // and eight to ten hours ahead if they were wrongly read as UTC.
        t0 = daily_at(9 * 60 - 60),
        t1 = daily_at(9 * 60 + 60),
    );
    // Nothing listens on port 9: the floors must not need Prometheus.
    let a = Adapter::start_with(&config, "http://127.0.0.1:9", &["--standalone"]).await;
    let (code, body) = a.get(&format!("{EXT}/shop/checkout-floor")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "ExternalMetricValueList");
    assert_eq!(items(&body), [(json!({}), "5".to_string())]);
    assert_eq!(body["items"][0]["metricName"], "checkout-floor");
    // Any namespace when none are listed; a well-formed selector is accepted and selects nothing.
    let (code, body) = a
        .get(&format!(
            "{EXT}/anywhere/tokyo-floor?labelSelector=app%3Dweb"
        ))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(items(&body), [(json!({}), "2".to_string())]);
    // Outside its namespaces the name is unknown; a malformed selector is still a 400.
    let (code, body) = a.get(&format!("{EXT}/default/checkout-floor")).await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = a
        .get(&format!(
            "{EXT}/shop/checkout-floor?labelSelector=app%3D%3D%3D"
        ))
        .await;
    assert_eq!(code, 400, "{body}");
    // With no externalRules the group is still served, listing the floors.
    let (code, body) = a.get("/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(code, 200, "{body}");
    let names: Vec<&str> = body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["checkout-floor", "tokyo-floor"]);
    let (code, body) = a.get("/apis").await;
    assert_eq!(code, 200);
    assert!(
        body.to_string().contains("external.metrics.k8s.io"),
        "{body}"
    );
}

#[tokio::test]
async fn schedule_floors_are_listed_beside_discovered_external_metrics() {
    let (name, url) = backends().remove(0);
    let config = fixture("external-rules.yaml")
        + r#"
scheduleRules:
- name: weekday-floor
  timezone: Europe/Berlin
  windows: [{start: "0 8 * * 1-5", end: "0 18 * * 1-5", replicas: 4}]
"#;
    let a = Adapter::start_with(&config, &url, &["--standalone"]).await;
    let (code, body) = a.get("/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(code, 200, "{name}: {body}");
    let names: Vec<&str> = body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"weekday-floor") && names.contains(&"queue_length"),
        "{names:?}"
    );
    let (code, body) = a
        .get(&format!("{EXT}/a/queue_length?labelSelector=queue%3Dq1"))
        .await;
    assert_eq!(code, 200, "{name}: {body}");
    assert_eq!(items(&body)[0].1, "5");
}
