//! Cluster mode as a real aggregated API server: HTTPS, delegated authentication (front proxy,
//! client certificates, bearer tokens) and authorization, against a fake Kubernetes API that
//! serves TokenReview, SubjectAccessReview and the extension-apiserver-authentication ConfigMap.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use common::fake_kube::FakeKube;
use common::{fixture, prometheus};
use prom_metrics_adapter::cli::flags::ServerFlags;
use prom_metrics_adapter::cli::start_cluster;
use prom_metrics_adapter::config;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};

const HPA_USER: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";
const HPA_PATH: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb";

/// A certificate authority for tests.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) of a client certificate.
    fn client(&self, cn: &str, orgs: &[&str]) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        (
            params.signed_by(&key, &self.issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }

    /// (certificate PEM, key PEM) of a serving certificate for localhost.
    fn server(&self) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        (
            params.signed_by(&key, &self.issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }
}

fn auth_configmap(client_ca: &Ca, front_proxy_ca: &Ca) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("client-ca-file".to_string(), client_ca.pem.clone()),
        (
            "requestheader-client-ca-file".to_string(),
            front_proxy_ca.pem.clone(),
        ),
        (
            "requestheader-allowed-names".to_string(),
            r#"["front-proxy-client"]"#.to_string(),
        ),
        (
            "requestheader-username-headers".to_string(),
            r#"["X-Remote-User"]"#.to_string(),
        ),
        (
            "requestheader-group-headers".to_string(),
            r#"["X-Remote-Group"]"#.to_string(),
        ),
        (
            "requestheader-extra-headers-prefix".to_string(),
            r#"["X-Remote-Extra-"]"#.to_string(),
        ),
    ])
}

struct Server {
    addr: SocketAddr,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(fake: &FakeKube, extra: &[String]) -> Server {
    prom_metrics_adapter::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "adapter".to_string(),
        fake.flag(),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=0".into(),
        format!("--cert-dir={}", dir.path().join("certs").display()),
        format!("--prometheus-url={}", prometheus().url()),
        "--metrics-relist-interval=1h".into(),
        "--authentication-config-refresh-interval=1s".into(),
        "--cert-reload-interval=1s".into(),
    ];
    args.extend(extra.iter().cloned());
    let flags = ServerFlags::try_parse_from(args).unwrap();
    let raw = config::parse(&fixture("custom-rules.yaml"), "test").unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, _task) = start_cluster(&flags, &raw, async move {
        let _ = rx.await;
    })
    .await
    .expect("start the cluster-mode server");
    let s = Server {
        addr,
        _shutdown: tx,
        _dir: dir,
    };
    let c = client(None);
    for _ in 0..200 {
        if let Ok(r) = c.get(s.url("/readyz")).send().await
            && r.status() == 200
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never ready");
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}

fn client_with(identity: Option<&(String, String)>, trust: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0);
    b = match trust {
        Some(pem) => {
            b.tls_certs_only(reqwest::Certificate::from_pem_bundle(pem.as_bytes()).unwrap())
        }
        None => b.tls_danger_accept_invalid_certs(true),
    };
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn client(identity: Option<&(String, String)>) -> reqwest::Client {
    client_with(identity, None)
}

async fn get(
    c: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Value), String> {
    let mut req = c
        .get(url)
        .header("Accept", "application/vnd.kubernetes.protobuf, */*");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
    let code = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

const HPA_HEADERS: &[(&str, &str)] = &[
    ("X-Remote-User", HPA_USER),
    ("X-Remote-Group", "system:serviceaccounts"),
    ("X-Remote-Group", "system:serviceaccounts:kube-system"),
    ("X-Remote-Group", "system:authenticated"),
    (
        "X-Remote-Extra-Authentication.kubernetes.io%2Fcredential-id",
        "JTI=abc",
    ),
];

async fn setup() -> (FakeKube, Ca, Ca, Server) {
    let fake = FakeKube::start().await;
    let client_ca = Ca::new("client-ca");
    let front_proxy_ca = Ca::new("front-proxy-ca");
    *fake.state.auth_configmap.lock().unwrap() = Some(auth_configmap(&client_ca, &front_proxy_ca));
    fake.state
        .allowed_users
        .lock()
        .unwrap()
        .extend([HPA_USER.to_string(), "alice".to_string()]);
    fake.state.tokens.lock().unwrap().extend([
        (
            "good-token".to_string(),
            ("alice".to_string(), vec!["devs".to_string()]),
        ),
        ("carol-token".to_string(), ("carol".to_string(), vec![])),
    ]);
    let server = start(&fake, &[]).await;
    (fake, client_ca, front_proxy_ca, server)
}

#[tokio::test]
async fn the_front_proxy_identity_is_authorized_with_the_hpa_s_user_and_groups() {
    let (fake, _, fp_ca, s) = setup().await;
    let fp = fp_ca.client("front-proxy-client", &[]);
    let (code, body) = get(&client(Some(&fp)), &s.url(HPA_PATH), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["describedObject"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1", "web-2"]);
    let reviews = fake.state.access_reviews.lock().unwrap().clone();
    let sar = reviews.last().unwrap();
    assert_eq!(sar["user"], HPA_USER);
    assert_eq!(
        sar["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated"
        ])
    );
    assert_eq!(
        sar["extra"],
        json!({"authentication.kubernetes.io/credential-id": ["JTI=abc"]})
    );
    assert_eq!(
        sar["resourceAttributes"],
        json!({"group": "custom.metrics.k8s.io", "version": "v1beta2", "resource": "pods", "subresource": "flask_http_request_per_second",
               "name": "*", "namespace": "default", "verb": "get"})
    );
}

#[tokio::test]
async fn without_credentials_the_request_is_anonymous_and_forbidden() {
    let (fake, _, _, s) = setup().await;
    let (code, body) = get(&client(None), &s.url(HPA_PATH), &[]).await.unwrap();
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Forbidden");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("system:anonymous") && msg.contains("pods/flask_http_request_per_second"),
        "{msg}"
    );
    // The same headers without the front-proxy certificate are ignored.
    let (code, _) = get(&client(None), &s.url(HPA_PATH), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 403);
    let reviews = fake.state.access_reviews.lock().unwrap().clone();
    assert!(
        reviews.iter().all(|r| r["user"] == "system:anonymous"),
        "{reviews:?}"
    );
}

#[tokio::test]
async fn headers_are_never_trusted_from_a_non_front_proxy_certificate() {
    let (fake, client_ca, fp_ca, s) = setup().await;
    // A client-CA certificate: the identity is its CN and O, never the headers.
    let bob = client_ca.client("bob", &["team-a"]);
    let (code, _) = get(&client(Some(&bob)), &s.url(HPA_PATH), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 403);
    let last = fake
        .state
        .access_reviews
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        (last["user"].clone(), last["groups"].clone()),
        (json!("bob"), json!(["team-a", "system:authenticated"]))
    );
    // The front-proxy CA but a CN that is not allowed: 401.
    let wrong_cn = fp_ca.client("someone-else", &[]);
    let (code, body) = get(&client(Some(&wrong_cn)), &s.url(HPA_PATH), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 401, "{body}");
    // A certificate from another CA does not get through the TLS handshake.
    let rogue = Ca::new("rogue").client("front-proxy-client", &[]);
    assert!(
        get(&client(Some(&rogue)), &s.url(HPA_PATH), HPA_HEADERS)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn bearer_tokens_are_reviewed_and_cached() {
    let (fake, _, _, s) = setup().await;
    let c = client(None);
    let auth = [("Authorization", "Bearer good-token")];
    let (code, body) = get(&c, &s.url(HPA_PATH), &auth).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let reviews_after_first = fake.state.access_reviews.lock().unwrap().len();
    let (code, _) = get(&c, &s.url(HPA_PATH), &auth).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        fake.state.token_reviews.load(Ordering::SeqCst),
        1,
        "the TokenReview is cached"
    );
    assert_eq!(
        fake.state.access_reviews.lock().unwrap().len(),
        reviews_after_first,
        "the SAR is cached"
    );
    let (code, body) = get(
        &c,
        &s.url(HPA_PATH),
        &[("Authorization", "Bearer bad-token")],
    )
    .await
    .unwrap();
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["reason"], "Unauthorized");
    // Authenticated but denied by the SubjectAccessReview.
    let (code, body) = get(
        &c,
        &s.url(HPA_PATH),
        &[("Authorization", "Bearer carol-token")],
    )
    .await
    .unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("User \"carol\""),
        "{body}"
    );
}

#[tokio::test]
async fn health_paths_need_no_identity_but_metrics_paths_do() {
    let (_, _, _, s) = setup().await;
    for p in ["/healthz", "/livez", "/readyz"] {
        let (code, _) = get(&client(None), &s.url(p), &[]).await.unwrap();
        assert_eq!(code, 200, "{p}");
    }
    let (code, _) = get(
        &client(None),
        &s.url("/apis/custom.metrics.k8s.io/v1beta1"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(code, 403);
}

#[tokio::test]
async fn system_masters_needs_no_review() {
    let (fake, _, fp_ca, s) = setup().await;
    let fp = fp_ca.client("front-proxy-client", &[]);
    let before = fake.state.access_reviews.lock().unwrap().len();
    let (code, _) = get(
        &client(Some(&fp)),
        &s.url("/apis/custom.metrics.k8s.io/v1beta1"),
        &[
            ("X-Remote-User", "system:kube-aggregator"),
            ("X-Remote-Group", "system:masters"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    assert_eq!(fake.state.access_reviews.lock().unwrap().len(), before);
}

#[tokio::test]
async fn a_rotated_front_proxy_ca_in_the_configmap_applies_without_a_restart() {
    let (fake, client_ca, old_fp_ca, s) = setup().await;
    let new_fp_ca = Ca::new("front-proxy-ca-2");
    *fake.state.auth_configmap.lock().unwrap() = Some(auth_configmap(&client_ca, &new_fp_ca));
    let new_fp = new_fp_ca.client("front-proxy-client", &[]);
    let mut code = 0;
    for _ in 0..100 {
        if let Ok((c, _)) = get(&client(Some(&new_fp)), &s.url(HPA_PATH), HPA_HEADERS).await {
            code = c;
            if c == 200 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, 200, "the new front-proxy CA was never accepted");
    let old_fp = old_fp_ca.client("front-proxy-client", &[]);
    assert!(
        get(&client(Some(&old_fp)), &s.url(HPA_PATH), HPA_HEADERS)
            .await
            .is_err(),
        "the old CA must be refused"
    );
}

#[tokio::test]
async fn a_rotated_serving_certificate_on_disk_applies_without_a_restart() {
    let fake = FakeKube::start().await;
    let client_ca = Ca::new("client-ca");
    let fp_ca = Ca::new("front-proxy-ca");
    *fake.state.auth_configmap.lock().unwrap() = Some(auth_configmap(&client_ca, &fp_ca));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let serving_ca_1 = Ca::new("serving-1");
    let serving_ca_2 = Ca::new("serving-2");
    let (c1, k1) = serving_ca_1.server();
    std::fs::write(&cert, c1).unwrap();
    std::fs::write(&key, k1).unwrap();
    let s = start(
        &fake,
        &[
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-private-key-file={}", key.display()),
        ],
    )
    .await;
    let (code, _) = get(
        &client_with(None, Some(&serving_ca_1.pem)),
        &s.url("/healthz"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    assert!(
        get(
            &client_with(None, Some(&serving_ca_2.pem)),
            &s.url("/healthz"),
            &[]
        )
        .await
        .is_err()
    );
    let (c2, k2) = serving_ca_2.server();
    std::fs::write(&key, k2).unwrap();
    std::fs::write(&cert, c2).unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if let Ok((200, _)) = get(
            &client_with(None, Some(&serving_ca_2.pem)),
            &s.url("/healthz"),
            &[],
        )
        .await
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the rotated serving certificate was never served");
}
