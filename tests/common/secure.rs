//! Cluster mode over HTTPS for the integration tests: certificate authorities, the
//! authentication ConfigMap kube-apiserver publishes, a cluster-mode adapter on a free port, and
//! clients that present the front-proxy or a client certificate.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use prom_metrics_adapter::cli::flags::ServerFlags;
use prom_metrics_adapter::cli::start_cluster;
use prom_metrics_adapter::config;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;

use super::fake_kube::FakeKube;
use super::{fixture, prometheus};

/// The HPA controller's identity (its own service account, kube-controller-manager's default).
pub const HPA_USER: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";
/// What the HPA asks for a Pods metric: `*` percent-encoded, a label selector.
pub const HPA_PATH: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb";

/// A certificate authority for tests.
pub struct Ca {
    /// The CA certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA.
    pub fn new(name: &str) -> Ca {
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
    pub fn client(&self, cn: &str, orgs: &[&str]) -> (String, String) {
        self.client_subject(&[cn], orgs)
    }

    /// (certificate PEM, key PEM) of a client certificate whose subject has these CNs and Os,
    /// in order (at most two of each: rcgen keeps one value per attribute type, so the second
    /// is written under the same OID as a custom type).
    pub fn client_subject(&self, cns: &[&str], orgs: &[&str]) -> (String, String) {
        const CN: &[u64] = &[2, 5, 4, 3];
        const O: &[u64] = &[2, 5, 4, 10];
        assert!(
            cns.len() <= 2 && orgs.len() <= 2,
            "at most two CNs and two Os"
        );
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        for (i, cn) in cns.iter().enumerate() {
            let ty = if i == 0 {
                DnType::CommonName
            } else {
                DnType::CustomDnType(CN.to_vec())
            };
            params.distinguished_name.push(ty, *cn);
        }
        for (i, o) in orgs.iter().enumerate() {
            let ty = if i == 0 {
                DnType::OrganizationName
            } else {
                DnType::CustomDnType(O.to_vec())
            };
            params.distinguished_name.push(ty, *o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        (
            params.signed_by(&key, &self.issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }

    /// (certificate PEM, key PEM) of a serving certificate for localhost.
    pub fn server(&self) -> (String, String) {
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

/// The `extension-apiserver-authentication` ConfigMap data kube-apiserver publishes.
pub fn auth_configmap(client_ca: &Ca, front_proxy_ca: &Ca) -> BTreeMap<String, String> {
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

/// A running cluster-mode adapter.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// Starts the adapter in cluster mode on the fixture's custom and external rules.
pub async fn start(fake: &FakeKube, extra: &[String]) -> Server {
    start_with_config(fake, &fixture("custom-rules.yaml"), extra).await
}

/// Starts the adapter in cluster mode against `fake` and the shared Prometheus, with `config`,
/// and waits until it is ready.
pub async fn start_with_config(fake: &FakeKube, config: &str, extra: &[String]) -> Server {
    try_start_with_config(fake, config, extra)
        .await
        .unwrap_or_else(|e| panic!("start the cluster-mode server: {e}"))
}

/// [`start_with_config`], returning why the adapter would not start.
pub async fn try_start_with_config(
    fake: &FakeKube,
    config: &str,
    extra: &[String],
) -> Result<Server, String> {
    prom_metrics_adapter::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["adapter".to_string()];
    let overridden = |name: &str| extra.iter().any(|e| e.starts_with(&format!("{name}=")));
    if !overridden("--prometheus-url") {
        // Started only when needed: a test with a backend of its own starts no other.
        args.push(format!("--prometheus-url={}", prometheus().url()));
    }
    // Defaults, unless `extra` sets the same flag.
    for default in [
        fake.flag(),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=0".into(),
        format!("--cert-dir={}", dir.path().join("certs").display()),
        "--metrics-relist-interval=1h".into(),
        "--authentication-config-refresh-interval=1s".into(),
        "--cert-reload-interval=1s".into(),
    ] {
        if !overridden(default.split('=').next().unwrap()) {
            args.push(default);
        }
    }
    args.extend(extra.iter().cloned());
    let flags = ServerFlags::try_parse_from(args).unwrap();
    let raw = config::parse(config, "test").unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, _task) = start_cluster(&flags, &raw, async move {
        let _ = rx.await;
    })
    .await
    .map_err(|e| format!("{e:#}"))?;
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
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err("started, but /readyz never answered 200 within 5 s".into())
}

impl Server {
    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}

/// A client trusting `trust` (any certificate when `None`), presenting `identity`.
pub fn client_with(identity: Option<&(String, String)>, trust: Option<&str>) -> reqwest::Client {
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

/// A client that accepts any serving certificate.
pub fn client(identity: Option<&(String, String)>) -> reqwest::Client {
    client_with(identity, None)
}

/// Sends a GET with `headers` (and the HPA's protobuf-first `Accept` unless they set one);
/// returns (status, response headers, body).
pub async fn send(
    c: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, reqwest::header::HeaderMap, String), String> {
    let mut req = c.get(url);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        req = req.header("Accept", "application/vnd.kubernetes.protobuf, */*");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
    let code = resp.status().as_u16();
    let response_headers = resp.headers().clone();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((code, response_headers, text))
}

/// [`send`], with the body parsed as JSON when it is JSON.
pub async fn get(
    c: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Value), String> {
    let (code, _, text) = send(c, url, headers).await?;
    Ok((
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// The headers the aggregator adds when it proxies one of the HPA controller's requests.
pub const HPA_HEADERS: &[(&str, &str)] = &[
    ("X-Remote-User", HPA_USER),
    ("X-Remote-Group", "system:serviceaccounts"),
    ("X-Remote-Group", "system:serviceaccounts:kube-system"),
    ("X-Remote-Group", "system:authenticated"),
    (
        "X-Remote-Extra-Authentication.kubernetes.io%2Fcredential-id",
        "JTI=abc",
    ),
];
