//! Cluster mode as a real aggregated API server: HTTPS, delegated authentication (front proxy,
//! client certificates, bearer tokens) and authorization, against a fake Kubernetes API that
//! serves TokenReview, SubjectAccessReview and the extension-apiserver-authentication ConfigMap.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fake_kube::FakeKube;
use common::rbac::cluster_role_binding;
use common::secure::{
    Ca, HPA_HEADERS, HPA_PATH, HPA_USER, Server, auth_configmap, client, client_with, get, start,
};
use serde_json::json;

async fn setup() -> (FakeKube, Ca, Ca, Server) {
    let fake = FakeKube::start().await;
    let client_ca = Ca::new("client-ca");
    let front_proxy_ca = Ca::new("front-proxy-ca");
    *fake.state.auth_configmap.lock().unwrap() = Some(auth_configmap(&client_ca, &front_proxy_ca));
    // The HPA is allowed by what manifests/ grants; alice by a binding of her own.
    fake.state.rbac.lock().unwrap().add_yaml(
        &cluster_role_binding(
            "alice-reads-metrics",
            "prom-metrics-adapter-hpa-metrics-reader",
            "User",
            "alice",
        ),
        "alice's binding",
    );
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
    // The front-proxy CA but a CN that is not allowed: 401, saying nothing more.
    let wrong_cn = fp_ca.client("someone-else", &[]);
    let (code, body) = get(&client(Some(&wrong_cn)), &s.url(HPA_PATH), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["message"], "Unauthorized");
    assert_eq!(body["reason"], "Unauthorized");
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_completes_the_handshake_and_fails_authentication() {
    let (fake, _, _, s) = setup().await;
    // As Go's RequestClientCert: the handshake succeeds, x509 authentication fails.
    let rogue = Ca::new("rogue").client("front-proxy-client", &[]);
    let (code, body) = get(&client(Some(&rogue)), &s.url(HPA_PATH), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["message"], "Unauthorized");
    // The bearer token is still tried, and authenticates.
    let mut with_token = HPA_HEADERS.to_vec();
    with_token.push(("Authorization", "Bearer good-token"));
    let (code, body) = get(&client(Some(&rogue)), &s.url(HPA_PATH), &with_token)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let last = fake.state.access_reviews.lock().unwrap().last().cloned();
    assert_eq!(last.unwrap()["user"], "alice");
}

#[tokio::test]
async fn the_last_common_name_is_the_identity_as_in_go() {
    let (fake, client_ca, fp_ca, s) = setup().await;
    // kube-apiserver reads CN=front-proxy-client, CN=mallory as "mallory": not an allowed
    // front proxy, so the headers are not trusted.
    let two_cns = fp_ca.client_subject(&["front-proxy-client", "mallory"], &[]);
    let (code, body) = get(&client(Some(&two_cns)), &s.url(HPA_PATH), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 401, "{body}");
    // The other order is an allowed front proxy.
    let allowed_last = fp_ca.client_subject(&["mallory", "front-proxy-client"], &[]);
    let (code, body) = get(&client(Some(&allowed_last)), &s.url(HPA_PATH), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    // From the client CA, the user is the last CN and the groups every O.
    let cert = client_ca.client_subject(&["alice", "bob"], &["team-a", "team-b"]);
    let (code, _) = get(&client(Some(&cert)), &s.url(HPA_PATH), &[])
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
    assert_eq!(last["user"], "bob");
    assert_eq!(
        last["groups"],
        json!(["team-a", "team-b", "system:authenticated"])
    );
}

#[tokio::test]
async fn front_proxy_header_edge_cases_follow_k8s_apiserver() {
    let (fake, _, fp_ca, s) = setup().await;
    let fp = fp_ca.client("front-proxy-client", &[]);
    // The front proxy's certificate without a user header: not anonymous, a 401.
    let (code, body) = get(
        &client(Some(&fp)),
        &s.url(HPA_PATH),
        &[("X-Remote-Group", "system:masters")],
    )
    .await
    .unwrap();
    assert_eq!(code, 401, "{body}");
    // Empty group values are dropped; system:authenticated is added once.
    let (code, body) = get(
        &client(Some(&fp)),
        &s.url(HPA_PATH),
        &[
            ("X-Remote-User", HPA_USER),
            ("X-Remote-Group", ""),
            ("X-Remote-Group", "system:serviceaccounts"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let last = fake
        .state
        .access_reviews
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        last["groups"],
        json!(["system:serviceaccounts", "system:authenticated"])
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
    // The old certificate is used, so its verified chain is remembered, before the rotation.
    let old_fp = old_fp_ca.client("front-proxy-client", &[]);
    let (code, _) = get(&client(Some(&old_fp)), &s.url(HPA_PATH), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(code, 200);
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
    let (code, _) = get(&client(Some(&old_fp)), &s.url(HPA_PATH), HPA_HEADERS)
        .await
        .unwrap();
    assert_eq!(
        code, 401,
        "the old CA must be refused, even for a chain verified before the rotation"
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

#[tokio::test]
async fn a_user_in_150_groups_gets_through_on_http1_and_http2_and_a_megabyte_of_headers_does_not() {
    let (fake, _, fp_ca, s) = setup().await;
    let fp = fp_ca.client("front-proxy-client", &[]);
    let groups: Vec<String> = (0..150).map(|i| format!("team-{i:03}")).collect();
    let mut headers: Vec<(&str, &str)> = vec![("X-Remote-User", HPA_USER)];
    headers.extend(groups.iter().map(|g| ("X-Remote-Group", g.as_str())));
    let identity = reqwest::Identity::from_pem(format!("{}\n{}", fp.0, fp.1).as_bytes()).unwrap();
    for http1 in [true, false] {
        let mut b = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .identity(identity.clone());
        if http1 {
            b = b.http1_only();
        }
        let c = b.build().unwrap();
        let (code, body) = get(&c, &s.url(HPA_PATH), &headers).await.unwrap();
        assert_eq!(code, 200, "http1={http1}: {body}");
        let last = fake.state.access_reviews.lock().unwrap().last().cloned();
        assert_eq!(
            last.unwrap()["groups"].as_array().unwrap().len(),
            151,
            "150 groups and system:authenticated"
        );
    }
    // Beyond Go's 1 MiB of headers the request is refused before it reaches us.
    let huge = "x".repeat((1 << 20) + 1024);
    let c = client(Some(&fp));
    let reviews = fake.state.access_reviews.lock().unwrap().len();
    // Refused with 431, or the connection closed: either way it never reaches authorization.
    if let Ok((code, _)) = get(
        &c,
        &s.url(HPA_PATH),
        &[("X-Remote-User", HPA_USER), ("X-Padding", &huge)],
    )
    .await
    {
        assert_eq!(code, 431);
    }
    assert_eq!(fake.state.access_reviews.lock().unwrap().len(), reviews);
}

#[tokio::test]
async fn the_audit_log_records_what_the_policy_asks_for_field_by_field() {
    let fake = FakeKube::start().await;
    let client_ca = Ca::new("client-ca");
    let fp_ca = Ca::new("front-proxy-ca");
    *fake.state.auth_configmap.lock().unwrap() = Some(auth_configmap(&client_ca, &fp_ca));
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
             - level: None\n  nonResourceURLs: [\"/healthz*\"]\n\
             - level: Metadata\n  users: [\"{HPA_USER}\"]\n\
             - level: Metadata\n  nonResourceURLs: [\"/openapi/*\"]\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("logs/audit.log");
    let s = start(
        &fake,
        &[
            format!("--audit-log-path={}", log.display()),
            format!("--audit-policy-file={}", policy.display()),
        ],
    )
    .await;
    let fp = fp_ca.client("front-proxy-client", &[]);
    let c = client(Some(&fp));
    // Not recorded: health (rule None), someone else (no rule).
    get(&c, &s.url("/healthz"), &[]).await.unwrap();
    get(&c, &s.url(HPA_PATH), &[("X-Remote-User", "alice")])
        .await
        .unwrap();
    let mut headers = HPA_HEADERS.to_vec();
    headers.extend([
        ("Audit-ID", "6a1b0c3e-aggregator-id"),
        ("X-Forwarded-For", "10.1.2.3"),
        (
            "User-Agent",
            "kube-controller-manager/v1.36.3 (linux/amd64)",
        ),
    ]);
    let (code, resp_headers, _) = common::secure::send(&c, &s.url(HPA_PATH), &headers)
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(resp_headers["audit-id"], "6a1b0c3e-aggregator-id");
    let (code, _) = get(
        &c,
        &s.url("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/ghost/flask_http_request_per_second"),
        HPA_HEADERS,
    )
    .await
    .unwrap();
    assert_eq!(code, 404);
    // A failed authentication is recorded too, with no user.
    let (code, _) = get(
        &client(None),
        &s.url("/openapi/v2"),
        &[("Authorization", "Bearer not-a-token")],
    )
    .await
    .unwrap();
    assert_eq!(code, 401);
    let mut events: Vec<serde_json::Value> = Vec::new();
    for _ in 0..250 {
        events = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if events.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(events.len(), 3, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["kind"], "Event");
    assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(e["level"], "Metadata");
    assert_eq!(e["auditID"], "6a1b0c3e-aggregator-id");
    assert_eq!(e["stage"], "ResponseComplete");
    assert_eq!(e["requestURI"], HPA_PATH);
    assert_eq!(e["verb"], "get");
    assert_eq!(
        e["user"],
        json!({"username": HPA_USER,
               "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
               "extra": {"authentication.kubernetes.io/credential-id": ["JTI=abc"]}})
    );
    assert_eq!(e["sourceIPs"], json!(["10.1.2.3", "127.0.0.1"]));
    assert_eq!(
        e["userAgent"],
        "kube-controller-manager/v1.36.3 (linux/amd64)"
    );
    assert_eq!(
        e["objectRef"],
        json!({"resource": "pods", "namespace": "default", "name": "*",
               "apiGroup": "custom.metrics.k8s.io", "apiVersion": "v1beta2",
               "subresource": "flask_http_request_per_second"})
    );
    assert_eq!(e["responseStatus"], json!({"metadata": {}, "code": 200}));
    assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "allow");
    assert!(
        e["annotations"]["authorization.k8s.io/reason"]
            .as_str()
            .unwrap()
            .contains("RBAC"),
        "{e}"
    );
    let (received, staged) = (
        e["requestReceivedTimestamp"].as_str().unwrap(),
        e["stageTimestamp"].as_str().unwrap(),
    );
    for t in [received, staged] {
        // RFC 3339 with microseconds, UTC: 2026-11-30T13:01:16.123456Z
        assert_eq!(t.len(), 27, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
    }
    assert!(staged >= received);
    let missing = &events[1];
    assert_ne!(missing["auditID"], e["auditID"]);
    assert_eq!(missing["responseStatus"]["reason"], "NotFound", "{missing}");
    assert_eq!(missing["responseStatus"]["status"], "Failure");
    assert_eq!(missing["responseStatus"]["code"], 404);
    let refused = &events[2];
    assert_eq!(refused["requestURI"], "/openapi/v2");
    assert_eq!(refused["user"], json!({}));
    assert_eq!(
        refused["responseStatus"],
        json!({"metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
}

#[tokio::test]
async fn a_cpu_profile_is_served_to_whom_rbac_allows_and_pprof_decodes_it() {
    use pprof::protos::Message as _;
    let (fake, _, _, s) = setup().await;
    fake.state.rbac.lock().unwrap().add_yaml(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: profiler}\n\
         rules:\n- nonResourceURLs: [\"/debug/pprof/*\"]\n  verbs: [get]\n",
        "profiler role",
    );
    fake.state.rbac.lock().unwrap().add_yaml(
        &cluster_role_binding("dave-profiles", "profiler", "User", "dave"),
        "dave's binding",
    );
    fake.state
        .tokens
        .lock()
        .unwrap()
        .insert("dave-token".into(), ("dave".into(), vec![]));
    let url = s.url("/debug/pprof/profile?seconds=1");
    // Anonymous and a user without the grant (alice may read metrics, not profiles): refused.
    let (code, _) = get(&client(None), &url, &[]).await.unwrap();
    assert_eq!(code, 403);
    let (code, body) = get(
        &client(None),
        &url,
        &[("Authorization", "Bearer good-token")],
    )
    .await
    .unwrap();
    assert_eq!(code, 403, "{body}");
    let take = |query: &'static str| {
        let c = client(None);
        let url = s.url(&format!("/debug/pprof/profile?{query}"));
        async move {
            let resp = c.get(url).bearer_auth("dave-token").send().await.unwrap();
            let status = resp.status().as_u16();
            let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
            (status, kind, resp.bytes().await.unwrap())
        }
    };
    // CPU work to sample, until the profile is back.
    let under_load = |query: &'static str| async move {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = tokio::task::spawn_blocking({
            let stop = stop.clone();
            move || {
                let mut x = 0u64;
                // Mostly arithmetic: samples that land in the vDSO's clock are dropped.
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                }
                x
            }
        });
        let answer = take(query).await;
        stop.store(true, Ordering::Relaxed);
        busy.await.unwrap();
        answer
    };
    let (code, kind, body) = under_load("seconds=1").await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(kind, "application/octet-stream");
    let profile = pprof::protos::Profile::decode(body.as_ref()).expect("a pprof protobuf");
    // profile.proto: string 0 is "", sample types name strings of the table.
    assert_eq!(profile.string_table[0], "");
    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| {
            (
                profile.string_table[t.ty as usize].as_str(),
                profile.string_table[t.unit as usize].as_str(),
            )
        })
        .collect();
    assert!(types.contains(&("cpu", "nanoseconds")), "{types:?}");
    assert!(!profile.sample.is_empty(), "no samples in a busy second");
    assert!(
        profile
            .function
            .iter()
            .all(|f| (f.name as usize) < profile.string_table.len())
    );
    let (code, kind, body) = under_load("seconds=1&format=svg").await;
    assert_eq!(code, 200);
    assert_eq!(kind, "image/svg+xml");
    assert!(
        String::from_utf8_lossy(&body).contains("<svg"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Longer than the request timeout allows: a client error, not a cut-off answer.
    let (code, _, body) = take("seconds=3600").await;
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
}
