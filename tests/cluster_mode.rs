//! Cluster mode against a fake Kubernetes API: resources come from API discovery and `*`
//! objects from a metadata-only LIST with the request's label selector.

mod common;

use std::sync::atomic::Ordering;

use common::fake_kube::FakeKube;
use common::{Adapter, fixture, prometheus};

async fn cluster_adapter(fake: &FakeKube) -> Adapter {
    let flag = fake.flag();
    Adapter::start_with(&fixture("custom-rules.yaml"), prometheus().url(), &[&flag]).await
}

fn pod_names(body: &serde_json::Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {body}"))
        .iter()
        .map(|i| i["describedObject"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn star_with_a_label_selector_lists_pods_from_the_api_server() {
    let fake = FakeKube::start().await;
    let a = cluster_adapter(&fake).await;
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb")
        .await;
    assert_eq!(code, 200, "{body}");
    // web-3 is listed by the API server but has no samples: left out, as upstream.
    assert_eq!(pod_names(&body), ["web-1", "web-2"]);
    // The first request came before the watch cache synced: one LIST with the selector.
    assert_eq!(fake.state.pod_lists.load(Ordering::SeqCst), 1);
    assert_eq!(fake.state.selectors.lock().unwrap().as_slice(), ["app=web"]);
}

#[tokio::test]
async fn once_the_watch_has_synced_requests_list_nothing_and_follow_events() {
    let fake = FakeKube::start().await;
    let a = cluster_adapter(&fake).await;
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb";
    let (code, _) = a.get(path).await;
    assert_eq!(code, 200);
    // Wait for the cache's initial list and watch.
    for _ in 0..100 {
        if fake.state.pod_watches.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(fake.state.cluster_pod_lists.load(Ordering::SeqCst), 1);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let lists_before = fake.state.pod_lists.load(Ordering::SeqCst);
    for _ in 0..5 {
        let (code, body) = a.get(path).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(pod_names(&body), ["web-1", "web-2"]);
    }
    assert_eq!(
        fake.state.pod_lists.load(Ordering::SeqCst),
        lists_before,
        "requests must not LIST once the cache synced"
    );

    // A deleted pod disappears from answers without a LIST.
    fake.pod_event("DELETED", "default", "web-2", &[("app", "web")]);
    let mut names = Vec::new();
    for _ in 0..100 {
        let (_, body) = a.get(path).await;
        names = pod_names(&body);
        if names == ["web-1"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(names, ["web-1"]);
    // A relabelled pod joins the selection.
    fake.pod_event("MODIFIED", "default", "worker-1", &[("app", "web")]);
    for _ in 0..100 {
        let (_, body) = a.get(path).await;
        names = pod_names(&body);
        if names.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(names, ["web-1", "worker-1"]);
    assert_eq!(fake.state.pod_lists.load(Ordering::SeqCst), lists_before);
}

#[tokio::test]
async fn no_matching_pods_is_not_found() {
    let fake = FakeKube::start().await;
    let a = cluster_adapter(&fake).await;
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/flask_http_request_per_second?labelSelector=app%3Dnone")
        .await;
    assert_eq!(code, 404, "{body}");
}

#[tokio::test]
async fn discovery_falls_back_to_per_group_documents_and_skips_a_group_that_is_down() {
    let fake = FakeKube::start().await;
    fake.state.no_aggregated.store(true, Ordering::SeqCst);
    let a = cluster_adapter(&fake).await;
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/deployments.apps/web/deployment_inflight")
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"][0]["describedObject"]["kind"], "Deployment");
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/flask_http_request_per_second?labelSelector=app%3Dworker")
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(pod_names(&body), ["worker-1"]);
}

#[tokio::test]
async fn resources_the_cluster_does_not_serve_are_not_found() {
    let fake = FakeKube::start().await;
    let a = cluster_adapter(&fake).await;
    // The fake cluster has no jobs.batch; the standalone table would.
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/jobs.batch/x/flask_http_request_per_second")
        .await;
    assert_eq!(code, 404, "{body}");
}

/// Polls `done` every 20 ms for up to 5 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..250 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test]
async fn an_object_watch_nobody_uses_is_stopped_and_restarted_on_demand() {
    let fake = FakeKube::start().await;
    let flag = fake.flag();
    let a = Adapter::start_with(
        &fixture("custom-rules.yaml"),
        prometheus().url(),
        &[&flag, "--object-watch-idle-timeout=300ms"],
    )
    .await;
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb";
    let (code, _) = a.get(path).await;
    assert_eq!(code, 200);
    eventually("the pod watch opening", || {
        fake.state.open_watches.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually("the idle pod watch closing", || {
        fake.state.open_watches.load(Ordering::SeqCst) == 0
    })
    .await;
    // The next request starts it again, and is answered meanwhile by a LIST.
    let (code, body) = a.get(path).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(pod_names(&body), ["web-1", "web-2"]);
    eventually("a new pod watch", || {
        fake.state.pod_watches.load(Ordering::SeqCst) == 2
    })
    .await;
}

#[tokio::test]
async fn a_forbidden_object_watch_is_retried_with_backoff_not_in_a_loop() {
    let fake = FakeKube::start().await;
    // A fresh cluster without manifests/: the adapter may not list pods.
    *fake.state.rbac.lock().unwrap() = common::rbac::Rbac::bootstrap();
    let a = cluster_adapter(&fake).await;
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb")
        .await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unable to list matching resources"),
        "{body}"
    );
    let refused_pods = || {
        fake.state
            .refused
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains("/pods"))
            .count()
    };
    eventually("the watch being refused", || refused_pods() >= 2).await;
    let before = refused_pods();
    // The backoff starts near a second and doubles: a handful of tries in 1.5 s, not hundreds.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let tries = refused_pods() - before;
    assert!(tries <= 4, "{tries} refused tries in 1.5 s");
}

#[tokio::test]
async fn the_kube_api_going_away_leaves_the_cached_objects_serving_and_the_adapter_ready() {
    let fake = FakeKube::start().await;
    let a = cluster_adapter(&fake).await;
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb";
    let (code, _) = a.get(path).await;
    assert_eq!(code, 200);
    eventually("the pod watch opening", || {
        fake.state.open_watches.load(Ordering::SeqCst) == 1
    })
    .await;
    // Until the cache has synced the adapter lists; once it has, requests answer from it.
    let lists = fake.state.pod_lists.load(Ordering::SeqCst);
    for _ in 0..100 {
        a.get(path).await;
        if fake.state.pod_lists.load(Ordering::SeqCst) == lists {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    fake.go_away();
    eventually("the watch ending", || {
        fake.state.open_watches.load(Ordering::SeqCst) == 0
    })
    .await;
    let (code, body) = a.get(path).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(pod_names(&body), ["web-1", "web-2"]);
    let (code, _) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/deployments.apps/web/deployment_inflight")
        .await;
    assert_eq!(code, 200, "the resource list from discovery is kept");
    let (code, _) = a.get("/readyz").await;
    assert_eq!(code, 200);
}
