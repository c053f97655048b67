//! Sharing `external.metrics.k8s.io` with KEDA: names no rule of ours serves are forwarded,
//! after our own authorization, to a second external metrics server (a stand-in faithful to
//! KEDA's answer shapes), authenticated with the adapter's service-account token, and its answer
//! returned as is; our names always win, discovery merges both lists, and a fallback that is
//! down fails only its own metrics.

mod common;
#[path = "common/keda.rs"]
mod keda;

use std::time::Duration;

use common::fake_kube::FakeKube;
use common::secure::{Ca, HPA_HEADERS, auth_configmap, client, get, start};

const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";

#[tokio::test]
async fn unserved_external_names_go_to_the_fallback_after_our_own_authorization() {
    let keda = keda::start("adapter-sa-token").await;
    keda.state.lock().unwrap().values.insert(
        (
            "default".into(),
            "orders-consumer".into(),
            "s0-rabbitmq-orders".into(),
        ),
        "12".into(),
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "adapter-sa-token\n").unwrap();
    let ca = dir.path().join("keda-ca.crt");
    std::fs::write(&ca, &keda.ca_pem).unwrap();

    let fake = FakeKube::start().await;
    let client_ca = Ca::new("client-ca");
    let front_proxy_ca = Ca::new("front-proxy-ca");
    *fake.state.auth_configmap.lock().unwrap() = Some(auth_configmap(&client_ca, &front_proxy_ca));
    fake.state
        .tokens
        .lock()
        .unwrap()
        .insert("carol-token".into(), ("carol".into(), vec![]));
    let server = start(
        &fake,
        &[
            format!("--external-metrics-fallback={}", keda.url),
            format!("--external-metrics-fallback-ca-file={}", ca.display()),
            format!("--external-metrics-fallback-token-file={}", token.display()),
        ],
    )
    .await;
    let hpa = client(Some(&front_proxy_ca.client("front-proxy-client", &[])));

    // KEDA's metric, asked as the HPA asks for it.
    let keda_path = format!(
        "{EXT}/namespaces/default/s0-rabbitmq-orders?labelSelector=scaledobject.keda.sh%2Fname%3Dorders-consumer"
    );
    let (code, body) = get(&hpa, &server.url(&keda_path), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "ExternalMetricValueList");
    assert_eq!(body["items"][0]["value"], "12");
    // As KEDA wrote it: its timestamp and its null labels.
    assert_eq!(body["items"][0]["timestamp"], "2026-11-30T12:00:00Z");
    assert!(body["items"][0]["metricLabels"].is_null(), "{body}");
    let seen = keda.state.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, keda_path, "the same path and query");
    assert_eq!(seen[0].1, "Bearer adapter-sa-token");

    // KEDA's own errors come back as KEDA wrote them.
    let (code, body) = get(
        &hpa,
        &server.url(&format!(
            "{EXT}/namespaces/default/s1-cron?labelSelector=scaledobject.keda.sh%2Fname%3Dnone"
        )),
        HPA_HEADERS,
    )
    .await
    .unwrap();
    assert_eq!(code, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no matching ScaledObject"),
        "{body}"
    );

    // Our names always win: queue_length is ours, answered from Prometheus.
    let before = keda.state.lock().unwrap().seen.len();
    let (code, body) = get(
        &hpa,
        &server.url(&format!(
            "{EXT}/namespaces/default/queue_length?labelSelector=queue%3Dorders"
        )),
        HPA_HEADERS,
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["items"][0]["metricLabels"]["queue"], "orders",
        "{body}"
    );
    assert_eq!(keda.state.lock().unwrap().seen.len(), before);

    // A caller our RBAC does not allow never reaches the fallback.
    let (code, body) = get(
        &client(None),
        &server.url(&keda_path),
        &[("Authorization", "Bearer carol-token")],
    )
    .await
    .unwrap();
    assert_eq!(code, 403, "{body}");
    assert_eq!(keda.state.lock().unwrap().seen.len(), before);

    // Discovery lists both: ours and KEDA's placeholder, once its list has been read.
    let mut names = Vec::new();
    for _ in 0..100 {
        let (code, body) = get(&hpa, &server.url(EXT), HPA_HEADERS).await.unwrap();
        assert_eq!(code, 200, "{body}");
        names = body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        if names.iter().any(|n| n == "externalmetrics") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(names.iter().any(|n| n == "externalmetrics"), "{names:?}");
    assert!(names.iter().any(|n| n == "queue_length"), "{names:?}");

    // KEDA down: its metrics fail with a 503 naming it; ours still answer.
    let keda_url = keda.url.clone();
    drop(keda);
    let (code, body) = get(&hpa, &server.url(&keda_path), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 503, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("external metrics fallback") && message.contains(&keda_url),
        "{message}"
    );
    let (code, body) = get(
        &hpa,
        &server.url(&format!(
            "{EXT}/namespaces/default/queue_length?labelSelector=queue%3Dorders"
        )),
        HPA_HEADERS,
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
}

/// Only an external rule whose names end in `_per_second`, against a Prometheus that is down.
const RULES_WITH_BACKEND_DOWN: &str = r#"
externalRules:
- seriesQuery: '{__name__=~"^queue_.*_total$",namespace!=""}'
  resources: {overrides: {namespace: {resource: namespace}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m]))'
"#;

#[tokio::test]
async fn a_name_of_ours_is_not_forwarded_while_our_backend_cannot_be_asked() {
    let keda = keda::start("adapter-sa-token").await;
    {
        let mut state = keda.state.lock().unwrap();
        state.values.insert(
            (
                "default".into(),
                "orders-consumer".into(),
                "s0-rabbitmq-orders".into(),
            ),
            "12".into(),
        );
        state.oversized.insert("s1-huge".into(), 17 << 20);
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "adapter-sa-token\n").unwrap();
    let ca = dir.path().join("keda-ca.crt");
    std::fs::write(&ca, &keda.ca_pem).unwrap();
    // Nothing listens on the port of a socket just closed.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };

    let fake = FakeKube::start().await;
    let front_proxy_ca = Ca::new("front-proxy-ca");
    *fake.state.auth_configmap.lock().unwrap() =
        Some(auth_configmap(&Ca::new("client-ca"), &front_proxy_ca));
    let server = common::secure::start_with_config(
        &fake,
        RULES_WITH_BACKEND_DOWN,
        &[
            format!("--prometheus-url={down}"),
            format!("--external-metrics-fallback={}", keda.url),
            format!("--external-metrics-fallback-ca-file={}", ca.display()),
            format!("--external-metrics-fallback-token-file={}", token.display()),
        ],
    )
    .await;
    let hpa = client(Some(&front_proxy_ca.client("front-proxy-client", &[])));

    // A rule of ours could produce this name and its backend is down: a 503 that says so,
    // never KEDA's "not found" for one of our own metrics; not once, but at every request
    // until the backend answers (the HPA asks every 15 s).
    for _ in 0..3 {
        let (code, body) = get(
            &hpa,
            &server.url(&format!("{EXT}/namespaces/default/queue_orders_per_second")),
            HPA_HEADERS,
        )
        .await
        .unwrap();
        assert_eq!(code, 503, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("queue_orders_per_second") && message.contains(&down),
            "{message}"
        );
    }
    assert!(keda.state.lock().unwrap().seen.is_empty());

    // A name no rule of ours can produce still goes to KEDA.
    let (code, body) = get(
        &hpa,
        &server.url(&format!(
            "{EXT}/namespaces/default/s0-rabbitmq-orders?labelSelector=scaledobject.keda.sh%2Fname%3Dorders-consumer"
        )),
        HPA_HEADERS,
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"][0]["value"], "12");

    // An answer far beyond any metric list is refused as a bad gateway, not passed on.
    let (code, body) = get(
        &hpa,
        &server.url(&format!("{EXT}/namespaces/default/s1-huge")),
        HPA_HEADERS,
    )
    .await
    .unwrap();
    assert_eq!(code, 502, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("answered more than"),
        "{body}"
    );
}
