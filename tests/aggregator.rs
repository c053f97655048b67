//! What a real kube-apiserver (v1.36) sends once our APIServices are registered, replayed
//! request for request through the front-proxy certificate, with the identities and headers it
//! uses, against a fake cluster whose RBAC is a fresh cluster's bootstrap roles plus what
//! `manifests/` (or the chart) grants, and nothing else:
//! - availability checks: `GET /apis/<group>/<version>` as `system:kube-aggregator` in
//!   `system:masters`;
//! - aggregated discovery: `GET /apis` asking for `apidiscovery.k8s.io/v2` (then `v2beta1`) as
//!   `system:kube-aggregator` in `system:masters`, revalidated with `If-None-Match`;
//! - per-version discovery, its fallback: `GET /apis/<group>/<version>` as
//!   `system:kube-aggregator` with no groups;
//! - OpenAPI: `/openapi/v2`, `/openapi/v3` and the documents its index lists, as
//!   `system:aggregator` with no groups;
//! - the HPA controller's metric reads, as its service account, `*` sent as `%2A`, protobuf
//!   first in `Accept`;
//! - `kubectl top`, as kubeadm's admin and as a namespace viewer.

mod common;

use common::fake_kube::FakeKube;
use common::rbac::Rbac;
use common::secure::{
    Ca, HPA_USER, Server, auth_configmap, client, get, send, start_with_config,
    try_start_with_config,
};
use common::{fixture, tools};
use serde_json::{Value, json};

/// `resourceRules` over the fixture's cAdvisor-shaped series, so `metrics.k8s.io` is served.
const RESOURCE_RULES: &str = r#"
resourceRules:
  cpu:
    containerQuery: sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[2m]))
    nodeQuery: sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,id="/"}[2m]))
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
    containerLabel: container
  memory:
    containerQuery: sum by (<<.GroupBy>>) (container_memory_working_set_bytes{<<.LabelMatchers>>,container!=""})
    nodeQuery: sum by (<<.GroupBy>>) (container_memory_working_set_bytes{<<.LabelMatchers>>,id="/"})
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
    containerLabel: container
  window: 2m
"#;

const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
const JSON: &str = "application/json";
const PROTOBUF_FIRST: &str = "application/vnd.kubernetes.protobuf, */*";

/// A user as the front proxy forwards it.
#[derive(Clone, Copy, Debug)]
struct Identity {
    user: &'static str,
    groups: &'static [&'static str],
}

/// The aggregator's availability checks and aggregated discovery.
const AGGREGATOR_AS_MASTER: Identity = Identity {
    user: "system:kube-aggregator",
    groups: &["system:masters"],
};
/// The aggregator's per-version discovery fallback: no groups at all.
const AGGREGATOR: Identity = Identity {
    user: "system:kube-aggregator",
    groups: &[],
};
/// The aggregator's OpenAPI downloads: another name, no groups.
const OPENAPI_AGGREGATOR: Identity = Identity {
    user: "system:aggregator",
    groups: &[],
};
/// The HPA controller, as kube-apiserver authenticated its token.
const HPA: Identity = Identity {
    user: HPA_USER,
    groups: &[
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
        "system:authenticated",
    ],
};
/// `kubectl` with kubeadm's admin.conf (1.29+: not in system:masters).
const KUBEADM_ADMIN: Identity = Identity {
    user: "kubernetes-admin",
    groups: &["kubeadm:cluster-admins", "system:authenticated"],
};

/// A fake cluster with `rbac` and the adapter registered in it.
struct Cluster {
    fake: FakeKube,
    client_ca: Ca,
    front_proxy: (String, String),
    /// The CAs the APIServices' `caBundle` holds, which the aggregator verifies us with.
    bundle: String,
    /// `https://<service>.<namespace>.svc:<port>`, resolved to the adapter.
    base: String,
    server: Server,
}

impl Cluster {
    /// Installs the adapter as `manifests/` (with `manifests/optional/`) does.
    async fn start(rbac: Rbac) -> Cluster {
        Cluster::install(rbac, &manifests_yaml()).await
    }

    /// Installs the adapter as the Deployment of `install` runs it (its namespace, service
    /// account and serving-certificate flags), with the APIServices of `install` registered,
    /// and connects to it as the aggregator does: verifying its certificate with the CA the
    /// APIServices' `caBundle` holds, for `<service>.<namespace>.svc`.
    async fn install(rbac: Rbac, install: &str) -> Cluster {
        let docs: Vec<Value> = serde_saphyr::from_multiple(install).unwrap();
        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("a Deployment");
        let namespace = deployment["metadata"]["namespace"].as_str().unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let account = pod["serviceAccountName"].as_str().unwrap();
        let mut flags: Vec<String> = pod["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .filter(|a| a.starts_with("--cert-") && !a.starts_with("--cert-dir"))
            .map(str::to_string)
            .collect();
        let service = flags
            .iter()
            .find_map(|f| f.strip_prefix("--cert-service-name="))
            .expect("the Deployment manages its serving certificate")
            .to_string();
        // In a pod the namespace comes from the service account's mount.
        flags.push(format!("--cert-secret-namespace={namespace}"));
        let fake = FakeKube::start().await;
        *fake.state.adapter_account.lock().unwrap() = (namespace.into(), account.into());
        fake.register_api_services(install);
        let client_ca = Ca::new("client-ca");
        let front_proxy_ca = Ca::new("front-proxy-ca");
        *fake.state.auth_configmap.lock().unwrap() =
            Some(auth_configmap(&client_ca, &front_proxy_ca));
        *fake.state.rbac.lock().unwrap() = rbac;
        let config = format!("{}{RESOURCE_RULES}", fixture("custom-rules.yaml"));
        let server = start_with_config(&fake, &config, &flags).await;
        let bundles = fake.api_service_bundles();
        let bundle = bundles
            .values()
            .next()
            .cloned()
            .flatten()
            .expect("the adapter set the APIServices' caBundle");
        assert!(
            bundles.values().all(|b| b.as_ref() == Some(&bundle)),
            "every APIService gets the same bundle: {bundles:?}"
        );
        let host = format!("{service}.{namespace}.svc");
        let base = format!("https://{host}:{}", server.addr.port());
        Cluster {
            fake,
            client_ca,
            front_proxy: front_proxy_ca.client("front-proxy-client", &[]),
            bundle,
            base,
            server,
        }
    }

    /// A client presenting the front-proxy certificate and trusting only the APIServices'
    /// bundle, as the aggregator.
    fn aggregator(&self) -> reqwest::Client {
        let host = self.base.trim_start_matches("https://");
        let host = host.split(':').next().unwrap();
        let (cert, key) = &self.front_proxy;
        reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(self.bundle.as_bytes()).unwrap())
            .identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap())
            .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// Sends `path` through the front proxy as `who`, with `accept` and `extra` headers;
    /// returns (status, headers, body).
    async fn send(
        &self,
        who: Identity,
        path: &str,
        accept: &str,
        extra: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut headers = vec![("X-Remote-User", who.user), ("Accept", accept)];
        headers.extend(who.groups.iter().map(|g| ("X-Remote-Group", *g)));
        if who.user == HPA_USER {
            headers.push((
                "X-Remote-Extra-Authentication.kubernetes.io%2Fcredential-id",
                "JTI=6f2b1c",
            ));
        }
        headers.extend_from_slice(extra);
        send(
            &self.aggregator(),
            &format!("{}{path}", self.base),
            &headers,
        )
        .await
        .unwrap_or_else(|e| panic!("GET {path} as {}: {e}", who.user))
    }

    /// [`Cluster::send`] without extra headers, the body as JSON.
    async fn get(&self, who: Identity, path: &str, accept: &str) -> (u16, Value) {
        let (code, _, body) = self.send(who, path, accept, &[]).await;
        (
            code,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// The SubjectAccessReview specs the adapter sent so far.
    fn reviews(&self) -> Vec<Value> {
        self.fake.state.access_reviews.lock().unwrap().clone()
    }
}

/// The (group, version) of every APIService in a YAML stream.
fn api_services(yaml: &str) -> Vec<(String, String)> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    docs.iter()
        .filter(|d| d["kind"] == "APIService")
        .map(|d| {
            (
                d["spec"]["group"].as_str().unwrap().to_string(),
                d["spec"]["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn manifests_yaml() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = ["manifests", "manifests/optional"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The adapter's own calls to the API server (discovery, the authentication ConfigMap,
/// TokenReviews, SubjectAccessReviews, pod and node lists) were all allowed by the same RBAC.
fn assert_adapter_was_never_refused(cluster: &Cluster) {
    let refused = cluster.fake.state.refused.lock().unwrap().clone();
    assert!(
        refused.is_empty(),
        "the API server refused the adapter: {refused:?}"
    );
    assert!(
        !cluster.reviews().is_empty(),
        "the adapter never asked for a SubjectAccessReview"
    );
}

/// One request the cluster sends: what it is, who sends it, where, with which `Accept`.
struct Replayed {
    what: String,
    who: Identity,
    path: String,
    accept: &'static str,
}

/// Every request kube-apiserver and its clients send for these APIServices, in the order a
/// new registration sees them. OpenAPI v3 documents are followed from the index, as the
/// aggregator does.
fn replayed_requests(services: &[(String, String)]) -> Vec<Replayed> {
    let r = |what: &str, who, path: &str, accept| Replayed {
        what: what.to_string(),
        who,
        path: path.to_string(),
        accept,
    };
    let mut out = Vec::new();
    for (g, v) in services {
        out.push(r(
            "availability check",
            AGGREGATOR_AS_MASTER,
            &format!("/apis/{g}/{v}"),
            JSON,
        ));
    }
    out.push(r(
        "aggregated discovery v2",
        AGGREGATOR_AS_MASTER,
        "/apis",
        AGGREGATED_V2,
    ));
    out.push(r(
        "aggregated discovery v2beta1",
        AGGREGATOR_AS_MASTER,
        "/apis",
        AGGREGATED_V2BETA1,
    ));
    for (g, v) in services {
        out.push(r(
            "per-version discovery",
            AGGREGATOR,
            &format!("/apis/{g}/{v}"),
            JSON,
        ));
    }
    out.push(r("OpenAPI v2", OPENAPI_AGGREGATOR, "/openapi/v2", JSON));
    out.push(r(
        "OpenAPI v3 index",
        OPENAPI_AGGREGATOR,
        "/openapi/v3",
        JSON,
    ));
    for (g, v) in services {
        let hpa = |what: &str, path: String| r(what, HPA, &path, PROTOBUF_FIRST);
        match g.as_str() {
            "custom.metrics.k8s.io" => {
                out.push(hpa(
                    "HPA Pods metric",
                    format!("/apis/{g}/{v}/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb"),
                ));
                out.push(hpa(
                    "HPA Object metric",
                    format!(
                        "/apis/{g}/{v}/namespaces/default/deployments.apps/web/deployment_inflight"
                    ),
                ));
            }
            "external.metrics.k8s.io" => out.push(hpa(
                "HPA External metric",
                format!(
                    "/apis/{g}/{v}/namespaces/default/queue_length?labelSelector=queue%3Dorders"
                ),
            )),
            "metrics.k8s.io" => {
                out.push(hpa(
                    "HPA CPU utilisation",
                    format!("/apis/{g}/{v}/namespaces/default/pods?labelSelector=app%3Dweb"),
                ));
                out.push(r(
                    "kubectl top pods",
                    KUBEADM_ADMIN,
                    &format!("/apis/{g}/{v}/namespaces/default/pods"),
                    JSON,
                ));
                out.push(r(
                    "kubectl top nodes",
                    KUBEADM_ADMIN,
                    &format!("/apis/{g}/{v}/nodes"),
                    JSON,
                ));
            }
            other => panic!("an APIService for a group we do not serve: {other}"),
        }
    }
    out
}

/// Sends every replayed request, and every OpenAPI v3 document the index lists, and asserts
/// that each answered 200 (listing those that did not, with status and body), and that the
/// API server refused none of the adapter's own calls.
async fn assert_every_replayed_request_succeeds(cluster: &Cluster, services: &[(String, String)]) {
    let mut failed = Vec::new();
    let mut requests = replayed_requests(services);
    let (_, index) = cluster.get(OPENAPI_AGGREGATOR, "/openapi/v3", JSON).await;
    for entry in index["paths"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .values()
    {
        requests.push(Replayed {
            what: "OpenAPI v3 document".into(),
            who: OPENAPI_AGGREGATOR,
            path: entry["serverRelativeURL"].as_str().unwrap().to_string(),
            accept: JSON,
        });
    }
    for req in &requests {
        let (code, _, body) = cluster.send(req.who, &req.path, req.accept, &[]).await;
        if code != 200 {
            failed.push(format!(
                "{} as {} {:?}: GET {} → {code} {}",
                req.what, req.who.user, req.who.groups, req.path, body
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "refused or failed:\n{}",
        failed.join("\n")
    );
    assert_adapter_was_never_refused(cluster);
}

#[tokio::test]
async fn every_request_of_the_aggregator_and_the_hpa_succeeds_with_the_manifests_rbac_alone() {
    let cluster = Cluster::start(Rbac::with_manifests(true)).await;
    let services = api_services(&manifests_yaml());
    assert_eq!(services.len(), 4, "{services:?}");
    assert_every_replayed_request_succeeds(&cluster, &services).await;
}

#[tokio::test]
async fn every_request_of_the_aggregator_and_the_hpa_succeeds_with_the_charts_rbac_alone() {
    let rendered = tools::helm_template(
        "adapter",
        "monitoring",
        &[
            "-f",
            "tests/fixtures/helm/resource-rules-values.yaml",
            "--set-json",
            r#"rules.external=[{"seriesQuery":"queue_length{namespace!=\"\"}","resources":{"overrides":{"namespace":{"resource":"namespace"}}},"metricsQuery":"sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)"}]"#,
        ],
    );
    let mut rbac = Rbac::bootstrap();
    rbac.add_yaml(&rendered, "helm template");
    let cluster = Cluster::install(rbac, &rendered).await;
    let services = api_services(&rendered);
    let groups: Vec<&str> = services.iter().map(|(g, _)| g.as_str()).collect();
    for g in [
        "custom.metrics.k8s.io",
        "external.metrics.k8s.io",
        "metrics.k8s.io",
    ] {
        assert!(
            groups.contains(&g),
            "the chart did not register {g}: {services:?}"
        );
    }
    assert_every_replayed_request_succeeds(&cluster, &services).await;
}

#[tokio::test]
async fn aggregated_discovery_lists_every_served_group_version_and_resource() {
    let cluster = Cluster::start(Rbac::with_manifests(true)).await;
    let (code, headers, body) = cluster
        .send(AGGREGATOR_AS_MASTER, "/apis", AGGREGATED_V2, &[])
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(headers["content-type"], AGGREGATED_V2);
    assert_eq!(headers["vary"], "Accept");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["kind"], "APIGroupDiscoveryList");
    assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
    let group = |name: &str| -> Value {
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from {doc}"))
    };
    let custom = group("custom.metrics.k8s.io");
    let versions: Vec<&str> = custom["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1beta1", "v1beta2"]);
    let v1beta2 = &custom["versions"][1];
    assert_eq!(v1beta2["freshness"], "Current");
    let pods = v1beta2["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "pods")
        .unwrap();
    assert_eq!(pods["scope"], "Namespaced");
    assert!(
        pods["subresources"]
            .as_array()
            .unwrap()
            .contains(&json!({"subresource": "flask_http_request_per_second",
                "responseKind": {"group": "custom.metrics.k8s.io", "version": "v1beta2", "kind": "MetricValueList"},
                "verbs": ["get"]})),
        "{pods}"
    );
    let external = group("external.metrics.k8s.io");
    assert_eq!(
        external["versions"][0]["resources"][0],
        json!({"resource": "queue_length", "responseKind": {"group": "external.metrics.k8s.io", "version": "v1beta1", "kind": "ExternalMetricValueList"},
               "scope": "Namespaced", "singularResource": "", "verbs": ["get"]})
    );
    let resource = group("metrics.k8s.io");
    let kinds: Vec<(&str, &str)> = resource["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resource"].as_str().unwrap(),
                r["responseKind"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("nodes", "NodeMetrics"), ("pods", "PodMetrics")]);

    // v2beta1 has the same shape under its own apiVersion and content type.
    let (code, headers, beta) = cluster
        .send(AGGREGATOR_AS_MASTER, "/apis", AGGREGATED_V2BETA1, &[])
        .await;
    assert_eq!(code, 200);
    assert_eq!(headers["content-type"], AGGREGATED_V2BETA1);
    let beta: Value = serde_json::from_str(&beta).unwrap();
    assert_eq!(beta["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    assert_eq!(beta["items"], doc["items"]);

    // Plain JSON is still the legacy APIGroupList, with metrics.k8s.io in it.
    let (code, legacy) = cluster.get(AGGREGATOR_AS_MASTER, "/apis", JSON).await;
    assert_eq!(code, 200);
    assert_eq!(legacy["kind"], "APIGroupList");
    let names: Vec<&str> = legacy["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "custom.metrics.k8s.io",
            "external.metrics.k8s.io",
            "metrics.k8s.io"
        ]
    );
}

#[tokio::test]
async fn the_aggregator_revalidates_discovery_with_its_etag() {
    let cluster = Cluster::start(Rbac::with_manifests(true)).await;
    let (code, headers, _) = cluster
        .send(AGGREGATOR_AS_MASTER, "/apis", AGGREGATED_V2, &[])
        .await;
    assert_eq!(code, 200);
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let (code, headers, body) = cluster
        .send(
            AGGREGATOR_AS_MASTER,
            "/apis",
            AGGREGATED_V2,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(code, 304);
    assert!(body.is_empty(), "{body}");
    assert_eq!(headers["etag"].to_str().unwrap(), etag);
    // Another representation never matches that tag.
    let (code, headers, _) = cluster
        .send(
            AGGREGATOR_AS_MASTER,
            "/apis",
            AGGREGATED_V2BETA1,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(code, 200);
    assert_ne!(headers["etag"].to_str().unwrap(), etag);
    // A stale tag gets the document.
    let (code, _, body) = cluster
        .send(
            AGGREGATOR_AS_MASTER,
            "/apis",
            AGGREGATED_V2,
            &[("If-None-Match", "\"0000\"")],
        )
        .await;
    assert_eq!(code, 200);
    assert!(body.contains("APIGroupDiscoveryList"));
}

#[tokio::test]
async fn the_aggregators_group_less_requests_pass_through_system_authenticated() {
    let cluster = Cluster::start(Rbac::with_manifests(true)).await;
    for path in [
        "/apis/custom.metrics.k8s.io/v1beta2",
        "/apis/custom.metrics.k8s.io/v1beta1",
        "/apis/external.metrics.k8s.io/v1beta1",
        "/apis/metrics.k8s.io/v1beta1",
    ] {
        let (code, body) = cluster.get(AGGREGATOR, path, JSON).await;
        assert_eq!(code, 200, "{path}: {body}");
        assert_eq!(body["kind"], "APIResourceList");
        assert_eq!(body["groupVersion"], path.trim_start_matches("/apis/"));
    }
    let (code, body) = cluster
        .get(AGGREGATOR, "/apis/custom.metrics.k8s.io/v1beta2", JSON)
        .await;
    assert_eq!(code, 200);
    assert!(
        body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "pods/flask_http_request_per_second"),
        "{body}"
    );
    let (code, _) = cluster.get(OPENAPI_AGGREGATOR, "/openapi/v2", JSON).await;
    assert_eq!(code, 200);
    // The adapter asked RBAC with the group k8s.io/apiserver adds, and RBAC's
    // system:discovery binding is what allowed it.
    let reviews = cluster.reviews();
    let review = reviews
        .iter()
        .find(|r| r["user"] == "system:kube-aggregator")
        .expect("a review for the aggregator");
    assert_eq!(review["groups"], json!(["system:authenticated"]));
    assert_eq!(
        review["nonResourceAttributes"],
        json!({"path": "/apis/custom.metrics.k8s.io/v1beta2", "verb": "get"})
    );
    let decision = cluster
        .fake
        .state
        .rbac
        .lock()
        .unwrap()
        .decide(&serde_json::from_value(review.clone()).unwrap());
    assert!(
        decision
            .reason
            .contains("ClusterRoleBinding \"system:discovery\""),
        "{decision:?}"
    );
}

#[tokio::test]
async fn the_hpa_controllers_reads_return_the_shapes_its_clients_decode() {
    let cluster = Cluster::start(Rbac::with_manifests(true)).await;
    for version in ["v1beta1", "v1beta2"] {
        let (code, body) = cluster
            .get(
                HPA,
                &format!("/apis/custom.metrics.k8s.io/{version}/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb"),
                PROTOBUF_FIRST,
            )
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["kind"], "MetricValueList");
        assert_eq!(
            body["apiVersion"],
            format!("custom.metrics.k8s.io/{version}")
        );
        let pods: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["describedObject"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(pods, ["web-1", "web-2"]);
    }
    let (code, body) = cluster
        .get(
            HPA,
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/deployments.apps/web/deployment_inflight",
            PROTOBUF_FIRST,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["items"][0]["describedObject"]["kind"], "Deployment");
    assert_eq!(body["items"][0]["value"], "20500m");
    let (code, body) = cluster
        .get(
            HPA,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length?labelSelector=queue%3Dorders",
            PROTOBUF_FIRST,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "ExternalMetricValueList");
    assert_eq!(body["items"][0]["value"], "120");
    let (code, body) = cluster
        .get(
            HPA,
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dweb",
            PROTOBUF_FIRST,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "PodMetricsList");
    assert!(!body["items"].as_array().unwrap().is_empty(), "{body}");
    // Each went through a SubjectAccessReview with the HPA's own groups.
    let hpa_reviews: Vec<Value> = cluster
        .reviews()
        .into_iter()
        .filter(|r| r["user"] == HPA_USER)
        .collect();
    assert_eq!(hpa_reviews.len(), 5, "{hpa_reviews:?}");
    assert!(hpa_reviews.iter().all(|r| r["groups"] == json!(HPA.groups)));
}

#[tokio::test]
async fn kubectl_top_works_for_admins_and_namespace_viewers_only() {
    let cluster = Cluster::start(Rbac::with_manifests(true)).await;
    let top = "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods";
    let (code, body) = cluster.get(KUBEADM_ADMIN, top, JSON).await;
    assert_eq!(code, 200, "{body}");
    // A developer with `view` in default: the chart's aggregated reader role reaches them
    // through view's aggregation rule.
    cluster.fake.state.rbac.lock().unwrap().add_yaml(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {name: dev-view, namespace: default}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\n\
         subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: dev}]\n",
        "dev's binding",
    );
    let dev = Identity {
        user: "dev",
        groups: &["developers", "system:authenticated"],
    };
    let (code, body) = cluster.get(dev, top, JSON).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = cluster
        .get(
            dev,
            "/apis/metrics.k8s.io/v1beta1/namespaces/other/pods",
            JSON,
        )
        .await;
    assert_eq!(code, 403, "{body}");
}

#[tokio::test]
async fn the_fake_cluster_refuses_what_rbac_refuses() {
    let cluster = Cluster::start(Rbac::with_manifests(true)).await;
    // system:discovery covers discovery and OpenAPI, not the adapter's own /metrics.
    let (code, body) = cluster.get(OPENAPI_AGGREGATOR, "/metrics", JSON).await;
    assert_eq!(code, 403, "{body}");
    // Another service account may not read the HPA's metrics.
    let app = Identity {
        user: "system:serviceaccount:default:app",
        groups: &[
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated",
        ],
    };
    let (code, body) = cluster
        .get(
            app,
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second",
            PROTOBUF_FIRST,
        )
        .await;
    assert_eq!(code, 403, "{body}");
    // Without credentials, discovery is refused: the unauthenticated group only has
    // system:public-info-viewer (health and version).
    let (code, body) = get(&client(None), &cluster.server.url("/apis"), &[])
        .await
        .unwrap();
    assert_eq!(code, 403, "{body}");
    let (code, body) = get(&client(None), &cluster.server.url("/version"), &[])
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn without_the_manifests_rbac_the_adapter_is_refused_and_names_the_missing_grant() {
    let fake = FakeKube::start().await;
    *fake.state.auth_configmap.lock().unwrap() = Some(auth_configmap(
        &Ca::new("client-ca"),
        &Ca::new("front-proxy-ca"),
    ));
    *fake.state.rbac.lock().unwrap() = Rbac::bootstrap();
    let err = match try_start_with_config(&fake, &fixture("custom-rules.yaml"), &[]).await {
        Ok(_) => panic!("started without being allowed to read the authentication ConfigMap"),
        Err(e) => e,
    };
    assert!(
        err.contains("extension-apiserver-authentication-reader") && err.contains("Forbidden"),
        "{err}"
    );
    let refused = fake.state.refused.lock().unwrap().clone();
    assert!(
        refused.iter().any(|r| r.contains("configmaps")),
        "{refused:?}"
    );
}

/// Runs the real kubectl with `kubeconfig` and `args`; returns stdout, panicking with stderr
/// when it fails.
async fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let cache = kubeconfig.with_file_name("cache");
    let out = tokio::process::Command::new(tools::kubectl())
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--cache-dir={}", cache.display()))
        .args(args)
        .output()
        .await
        .expect("running kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {}: {stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_real_kubectl_reads_aggregated_discovery_and_kubectl_top_prints_pod_usage() {
    let cluster = Cluster::start(Rbac::with_manifests(true)).await;
    // kubeadm's admin.conf identity, straight to the adapter with a client certificate.
    let (cert, key) = cluster
        .client_ca
        .client("kubernetes-admin", &["kubeadm:cluster-admins"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("admin.crt"), dir.path().join("admin.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: adapter\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\n\
             users:\n- name: admin\n  user:\n    client-certificate: {}\n    client-key: {}\n\
             contexts:\n- name: adapter\n  context: {{cluster: adapter, user: admin}}\ncurrent-context: adapter\n",
            cluster.server.url(""),
            cert_file.display(),
            key_file.display()
        ),
    )
    .unwrap();
    let versions = kubectl(&kubeconfig, &["api-versions"]).await;
    let versions: Vec<&str> = versions.lines().collect();
    assert_eq!(
        versions,
        [
            "custom.metrics.k8s.io/v1beta1",
            "custom.metrics.k8s.io/v1beta2",
            "external.metrics.k8s.io/v1beta1",
            "metrics.k8s.io/v1beta1"
        ]
    );
    // api-resources comes from the same aggregated document: external metrics and pod/node
    // metrics are resources; custom metrics are subresources, which it hides.
    let resources = kubectl(
        &kubeconfig,
        &["api-resources", "--no-headers", "-o", "name"],
    )
    .await;
    let mut resources: Vec<&str> = resources.lines().collect();
    resources.sort();
    assert_eq!(
        resources,
        [
            "nodes.metrics.k8s.io",
            "pods.metrics.k8s.io",
            "queue_length.external.metrics.k8s.io"
        ]
    );
    let top = kubectl(
        &kubeconfig,
        &["top", "pods", "-n", "default", "--no-headers"],
    )
    .await;
    // Each fixture container uses 0.2 cores (rate() may land a millicore off) and 1 MiB.
    let rows: Vec<(&str, u32, &str)> = top
        .lines()
        .map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [pod, cpu, memory] => (pod, cpu.trim_end_matches('m').parse().unwrap_or(0), memory),
            _ => panic!("kubectl top pods printed {l:?}"),
        })
        .collect();
    let pods: Vec<&str> = rows.iter().map(|r| r.0).collect();
    assert_eq!(pods, ["web-1", "web-2", "worker-1"], "{top}");
    assert!(
        rows.iter()
            .all(|(_, cpu, memory)| (195..=205).contains(cpu) && *memory == "1Mi"),
        "kubectl top pods printed:\n{top}"
    );
}
