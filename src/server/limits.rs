//! Bounded work per request, as kube-apiserver's filters: at most `--max-requests-inflight`
//! requests are served at once (the rest get a 429 with `Retry-After`, not a queue), and each
//! gets `--request-timeout` to finish (then a 504). Health paths are exempt, so a busy server
//! is not restarted by its probes, and so is `system:masters` (the aggregator's availability
//! checks), as k8s.io/apiserver exempts it.
//!
//! Before any of that, a path longer than [`MAX_PATH_BYTES`] is refused with a 414: no path this
//! server serves comes near it, and a request that is about to wait for a SubjectAccessReview
//! should not hold (and copy into that review) tens of kilobytes an anonymous caller chose.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::authn::UserInfo;
use crate::api::error::ApiError;

/// The longest request path served: a Kubernetes object name is at most 253 bytes and a
/// metric name rarely more than a few hundred; the query string is not counted.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Refuses paths longer than [`MAX_PATH_BYTES`] with a 414, before authentication.
pub async fn refuse_long_paths(req: Request, next: Next) -> Response {
    let len = req.uri().path().len();
    if len > MAX_PATH_BYTES {
        return ApiError::UriTooLong(format!(
            "the request path is {len} bytes long; no path served here is longer than {MAX_PATH_BYTES}"
        ))
        .into_response();
    }
    next.run(req).await
}

/// The limits of one server.
#[derive(Debug)]
pub struct Limits {
    permits: Option<Arc<Semaphore>>,
    timeout: Duration,
    exempt_paths: Vec<String>,
    draining: Arc<AtomicBool>,
}

impl Limits {
    /// `max_inflight` requests at once (0: no limit, as kube-apiserver), each given `timeout`;
    /// `exempt_paths` (health) are neither counted nor timed out.
    pub fn new(max_inflight: usize, timeout: Duration, exempt_paths: Vec<String>) -> Self {
        Limits {
            permits: (max_inflight > 0).then(|| Arc::new(Semaphore::new(max_inflight))),
            timeout,
            exempt_paths,
            draining: Arc::default(),
        }
    }

    /// Once `draining` is set (shutdown began), answers carry `Connection: close`, so a
    /// client's next request opens a new connection, which goes to another replica.
    pub fn draining(mut self, draining: Arc<AtomicBool>) -> Self {
        self.draining = draining;
        self
    }
}

/// The middleware. In cluster mode it runs after authentication, so it can see who is asking
/// (a [`UserInfo`] in the request's extensions), and before authorization, so requests beyond
/// the limit cost no SubjectAccessReview.
pub async fn limit(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    if limits.exempt_paths.iter().any(|p| p == req.uri().path()) {
        return next.run(req).await;
    }
    let privileged = req
        .extensions()
        .get::<UserInfo>()
        .is_some_and(|u| u.groups.iter().any(|g| g == "system:masters"));
    let _permit = match (&limits.permits, privileged) {
        (Some(permits), false) => match permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                crate::telemetry::metrics().rejected_requests.inc();
                return ApiError::TooManyRequests.into_response();
            }
        },
        _ => None,
    };
    let mut response = match tokio::time::timeout(limits.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    };
    if limits.draining.load(Ordering::Acquire) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    /// `/slow` answers once `gate` has a permit (a gate that stays open once opened).
    fn app(limits: Limits, gate: Arc<Semaphore>) -> Router {
        Router::new()
            .route(
                "/slow",
                get(move || {
                    let gate = gate.clone();
                    async move {
                        let _pass = gate.acquire().await.unwrap();
                        "done"
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(limits),
                limit,
            ))
    }

    async fn status(app: &Router, path: &str, user: Option<UserInfo>) -> (u16, Option<String>) {
        let mut req = Request::get(path).body(Body::empty()).unwrap();
        if let Some(u) = user {
            req.extensions_mut().insert(u);
        }
        let resp = app.clone().oneshot(req).await.unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), retry)
    }

    #[tokio::test]
    async fn beyond_the_limit_requests_get_429_with_retry_after_but_masters_and_health_pass() {
        let gate = Arc::new(Semaphore::new(0));
        let app = app(
            Limits::new(2, Duration::from_secs(60), vec!["/healthz".into()]),
            gate.clone(),
        );
        // Two requests hold both permits.
        let held: Vec<_> = (0..2)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { status(&app, "/slow", None).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let mut third = (0, None);
        for _ in 0..100 {
            third = status(&app, "/slow", None).await;
            if third.0 == 429 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(third, (429, Some("1".to_string())));
        assert_eq!(status(&app, "/healthz", None).await.0, 200);
        let master = UserInfo {
            name: "system:kube-aggregator".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        let app2 = app.clone();
        let privileged = tokio::spawn(async move { status(&app2, "/slow", Some(master)).await });
        gate.add_permits(100);
        for h in held {
            assert_eq!(h.await.unwrap().0, 200);
        }
        assert_eq!(privileged.await.unwrap().0, 200);
    }

    #[tokio::test]
    async fn paths_beyond_the_longest_served_are_414_before_anything_else() {
        let app = Router::new()
            .route("/{*rest}", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(refuse_long_paths));
        let ok = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert_eq!(status(&app, &ok, None).await.0, 200);
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(status(&app, &long, None).await.0, 414);
        // A long query string is not the path.
        let query = format!("/a?labelSelector={}", "b".repeat(MAX_PATH_BYTES * 2));
        assert_eq!(status(&app, &query, None).await.0, 200);
    }

    #[tokio::test]
    async fn a_request_beyond_the_timeout_is_a_504() {
        let app = app(
            Limits::new(0, Duration::from_millis(50), vec![]),
            Arc::new(Semaphore::new(0)),
        );
        assert_eq!(status(&app, "/slow", None).await.0, 504);
    }
}
