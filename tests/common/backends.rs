//! Both real backends, Prometheus and VictoriaMetrics, loaded with the same samples once per
//! test binary, and a way to ask either for its own answer to a query.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
use serde_json::Value;

use crate::victoria::LocalVictoria;

/// Starts (once) both backends with `samples`; returns (name, URL) of each.
pub fn start(samples: &'static str) -> Vec<(&'static str, String)> {
    static PROM: OnceLock<LocalPrometheus> = OnceLock::new();
    static VM: OnceLock<LocalVictoria> = OnceLock::new();
    let prom = PROM.get_or_init(|| LocalPrometheus::start(samples).expect("start Prometheus"));
    let vm = VM.get_or_init(|| LocalVictoria::start(samples).expect("start VictoriaMetrics"));
    vec![
        ("prometheus", prom.url().to_string()),
        ("victoriametrics", vm.url().to_string()),
    ]
}

/// The backend's own answer to `query` at `time`: (labels, value) per sample.
pub async fn backend_values(
    url: &str,
    query: &str,
    time: f64,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let resp: Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", query), ("time", &format!("{time:.3}"))])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["status"], "success", "{query}: {resp}");
    resp["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = serde_json::from_value(s["metric"].clone()).unwrap();
            (labels, s["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}
