//! The serving certificate the adapter manages itself (`--cert-secret-name`), against the fake
//! API server with `manifests/`' RBAC and APIServices: the first replica creates the Secret and
//! sets the APIServices' `caBundle`, a second reuses it, replicas starting together agree on one
//! CA, a blanked bundle is restored, and a CA rotation keeps the old CA trusted for its grace
//! period while the new certificate is already served.

mod common;

use std::time::{Duration, SystemTime};

use common::fake_kube::FakeKube;
use common::secure::{Ca, Server, auth_configmap, start};
use prom_metrics_adapter::k8s::serving_cert::pki;
use serde_json::{Value, json};

const SECRET: &str = "prom-metrics-adapter-serving-cert";
const HOST: &str = "prom-metrics-adapter.monitoring.svc";

fn manifests_api_services() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    [
        "30-apiservice-custom-metrics-v1beta1.yaml",
        "31-apiservice-custom-metrics-v1beta2.yaml",
        "32-apiservice-external-metrics-v1beta1.yaml",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
    .collect::<Vec<_>>()
    .join("\n---\n")
}

async fn cluster() -> FakeKube {
    let fake = FakeKube::start().await;
    *fake.state.auth_configmap.lock().unwrap() = Some(auth_configmap(
        &Ca::new("client-ca"),
        &Ca::new("front-proxy-ca"),
    ));
    fake.register_api_services(&manifests_api_services());
    fake
}

fn flags(grace: &str) -> Vec<String> {
    vec![
        format!("--cert-secret-name={SECRET}"),
        "--cert-secret-namespace=monitoring".into(),
        "--cert-service-name=prom-metrics-adapter".into(),
        "--cert-resync-interval=100ms".into(),
        format!("--cert-ca-rotation-grace={grace}"),
    ]
}

/// The Secret as stored, and its `ca.crt`.
fn secret(fake: &FakeKube) -> Option<(Value, String)> {
    let s = fake
        .state
        .secrets
        .lock()
        .unwrap()
        .get(&("monitoring".to_string(), SECRET.to_string()))
        .cloned()?;
    let bundle: k8s_openapi::ByteString =
        serde_json::from_value(s["data"]["ca.crt"].clone()).unwrap();
    Some((s, String::from_utf8(bundle.0).unwrap()))
}

/// Whether `server` answers over TLS verified with `bundle` for the Service's name.
async fn verified_by(server: &Server, bundle: &str) -> bool {
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).unwrap())
        .resolve(HOST, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client
        .get(format!("https://{HOST}:{}/healthz", server.addr.port()))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// Polls `done` every 20 ms for up to 10 s.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test]
async fn the_first_replica_creates_the_secret_and_the_second_reuses_it() {
    let fake = cluster().await;
    let first = start(&fake, &flags("10m")).await;
    let (stored, bundle) = secret(&fake).expect("the Secret was created");
    assert_eq!(stored["type"], "Opaque");
    assert_eq!(pki::split_bundle(&bundle).len(), 1);
    for (name, b) in fake.api_service_bundles() {
        assert_eq!(b.as_deref(), Some(bundle.as_str()), "{name}");
    }
    assert!(verified_by(&first, &bundle).await);
    let second = start(&fake, &flags("10m")).await;
    let (again, _) = secret(&fake).unwrap();
    assert_eq!(
        again["metadata"]["resourceVersion"], stored["metadata"]["resourceVersion"],
        "the second replica wrote nothing"
    );
    assert!(verified_by(&second, &bundle).await);
    assert!(fake.state.refused.lock().unwrap().is_empty());
}

#[tokio::test]
async fn replicas_starting_together_agree_on_one_ca() {
    let fake = cluster().await;
    let flags = flags("10m");
    let (a, b) = tokio::join!(start(&fake, &flags), start(&fake, &flags));
    let (_, bundle) = secret(&fake).unwrap();
    assert_eq!(pki::split_bundle(&bundle).len(), 1);
    assert!(verified_by(&a, &bundle).await);
    assert!(verified_by(&b, &bundle).await);
}

#[tokio::test]
async fn a_blanked_bundle_is_restored() {
    let fake = cluster().await;
    let _server = start(&fake, &flags("10m")).await;
    let (_, bundle) = secret(&fake).unwrap();
    // What a `kubectl apply` of an old manifest does.
    for api in fake.state.api_services.lock().unwrap().values_mut() {
        let spec = api["spec"].as_object_mut().unwrap();
        spec.remove("caBundle");
        spec.insert("insecureSkipTLSVerify".into(), json!(true));
    }
    eventually("the bundles being restored", async || {
        fake.api_service_bundles()
            .values()
            .all(|b| b.as_deref() == Some(bundle.as_str()))
    })
    .await;
    for api in fake.state.api_services.lock().unwrap().values() {
        assert!(api["spec"].get("insecureSkipTLSVerify").is_none(), "{api}");
    }
}

#[tokio::test]
async fn a_ca_rotation_keeps_the_old_ca_trusted_until_the_new_certificate_is_served() {
    prom_metrics_adapter::install_crypto_provider();
    let fake = cluster().await;
    // A Secret from eight years ago: its CA is in the last third of its life.
    let then = SystemTime::now() - Duration::from_secs(8 * 365 * 24 * 3600);
    let old_ca = pki::new_ca("prom-metrics-adapter", then).unwrap();
    let old_serving = pki::new_serving(
        &old_ca,
        &pki::service_names("prom-metrics-adapter", "monitoring"),
        then,
    )
    .unwrap();
    let b64 =
        |s: &str| serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec())).unwrap();
    fake.state.secrets.lock().unwrap().insert(
        ("monitoring".into(), SECRET.into()),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": SECRET, "namespace": "monitoring", "resourceVersion": "7"},
               "data": {"ca.crt": b64(&old_ca.cert), "ca.key": b64(&old_ca.key),
                        "tls.crt": b64(&old_serving.cert), "tls.key": b64(&old_serving.key)}}),
    );
    let server = start(&fake, &flags("2s")).await;
    let (_, bundle) = secret(&fake).unwrap();
    let cas = pki::split_bundle(&bundle);
    assert_eq!(cas.len(), 2, "new and old CA");
    assert_eq!(cas[1], old_ca.cert);
    for b in fake.api_service_bundles().into_values() {
        assert_eq!(b.as_deref(), Some(bundle.as_str()));
    }
    // Already served: the new certificate, from the new CA alone.
    assert!(verified_by(&server, &cas[0]).await);
    assert!(!verified_by(&server, &old_ca.cert).await);
    // After the grace period the old CA leaves the Secret and the bundles.
    eventually("the old CA leaving", async || {
        fake.api_service_bundles()
            .values()
            .all(|b| b.as_deref() == Some(cas[0].as_str()))
    })
    .await;
    assert_eq!(secret(&fake).unwrap().1, cas[0]);
    assert!(verified_by(&server, &cas[0]).await);
}
