//! external.metrics.k8s.io basics against a real Prometheus (the full feature set is issue 3).

mod common;

use common::{Adapter, fixture};
use serde_json::json;

#[tokio::test]
async fn an_external_metric_is_served_per_sample_with_its_labels() {
    let a = Adapter::start(&fixture("custom-rules.yaml")).await;
    let (code, body) = a
        .get("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length?labelSelector=queue%3Dorders")
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "ExternalMetricValueList");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metricName"], "queue_length");
    assert_eq!(items[0]["metricLabels"], json!({"queue": "orders"}));
    assert_eq!(items[0]["value"], "120");
    let (code, body) = a
        .get("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length")
        .await;
    assert_eq!(code, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    // Another namespace has no such samples: an empty list, as upstream.
    let (code, body) = a
        .get("/apis/external.metrics.k8s.io/v1beta1/namespaces/other/queue_length")
        .await;
    assert_eq!(code, 200);
    assert_eq!(body["items"], json!([]));
    let (code, body) = a.get("/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(code, 200);
    assert_eq!(body["resources"][0]["name"], "queue_length");
    assert_eq!(body["resources"][0]["kind"], "ExternalMetricValueList");
    let (code, _) = a
        .get("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/nope")
        .await;
    assert_eq!(code, 404);
}
