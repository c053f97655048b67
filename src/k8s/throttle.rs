//! Client-side rate limiting of calls to the API server, as client-go's token bucket
//! (`--client-qps`, `--client-burst`): a request waits for a token before it is sent, so a
//! burst of work on our side becomes a bounded request rate on the API server's.
//!
//! A tower layer over kube's HTTP stack, so every call through a client shares one bucket
//! (discovery, LISTs, watches starting, TokenReviews, SubjectAccessReviews). kube has no rate
//! limiter of its own; `governor` supplies the bucket.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A token bucket: `qps` tokens a second, at most `burst` at once.
#[derive(Clone, Debug, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second; zero or less means no limit, as in client-go.
    pub qps: f32,
    /// Requests that may go at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    /// k8s.io/apiserver's rate for its delegated authentication and authorization clients
    /// (TokenReview, SubjectAccessReview): high, since it bounds how fast requests are
    /// answered.
    pub const DELEGATED: Rate = Rate {
        qps: 200.0,
        burst: 400,
    };
}

/// The layer; cloning it shares the bucket.
#[derive(Clone, Debug)]
pub struct ThrottleLayer {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl ThrottleLayer {
    /// A bucket for `rate`; `qps <= 0` lets everything through.
    pub fn new(rate: Rate) -> Self {
        if rate.qps <= 0.0 || !rate.qps.is_finite() {
            return ThrottleLayer { limiter: None };
        }
        let period =
            Duration::from_secs_f64(1.0 / f64::from(rate.qps)).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        ThrottleLayer {
            limiter: Some(Arc::new(RateLimiter::direct(quota))),
        }
    }
}

impl<S> tower::Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle {
            inner,
            limiter: self.limiter.clone(),
            waiting: None,
            granted: false,
        }
    }
}

/// The service: not ready until a token is taken, one token per call. Waiting in
/// `poll_ready` rather than in the call's future keeps the inner service unshared (kube's
/// stack is a `BoxService`, which cannot be cloned) and lets kube's request buffer hold
/// requests while the bucket refills.
pub struct Throttle<S> {
    inner: S,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    granted: bool,
}

impl<S> std::fmt::Debug for Throttle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("limited", &self.limiter.is_some())
            .field("granted", &self.granted)
            .finish_non_exhaustive()
    }
}

impl<S, R> tower::Service<R> for Throttle<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if let Some(limiter) = &self.limiter
            && !self.granted
        {
            let waiting = self.waiting.get_or_insert_with(|| {
                let limiter = limiter.clone();
                Box::pin(async move { limiter.until_ready().await })
            });
            if waiting.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.waiting = None;
            self.granted = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.granted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{Layer, Service, ServiceExt};

    type Echo = tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, Infallible>>>;

    fn echo(rate: Rate) -> Throttle<Echo> {
        let f: fn(u32) -> std::future::Ready<Result<u32, Infallible>> =
            |x| std::future::ready(Ok(x));
        ThrottleLayer::new(rate).layer(tower::service_fn(f))
    }

    #[tokio::test]
    async fn a_burst_goes_at_once_and_then_requests_wait_for_tokens() {
        // One token every 100 s: without the burst the second call would wait that long.
        let mut svc = echo(Rate {
            qps: 0.01,
            burst: 5,
        });
        let burst = async {
            for i in 0..5 {
                assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
            }
        };
        tokio::time::timeout(Duration::from_secs(5), burst)
            .await
            .expect("the burst had to wait");
        // The sixth waits for a token.
        let sixth = tokio::time::timeout(Duration::from_millis(200), async {
            svc.ready().await.unwrap().call(5).await
        })
        .await;
        assert!(
            sixth.is_err(),
            "the sixth call went through without a token"
        );
        // At 50 a second, five calls after the burst take at least ~80 ms.
        let mut svc = echo(Rate {
            qps: 50.0,
            burst: 1,
        });
        let started = std::time::Instant::now();
        for i in 0..6 {
            svc.ready().await.unwrap().call(i).await.unwrap();
        }
        assert!(
            started.elapsed() >= Duration::from_millis(80),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn zero_or_negative_qps_means_no_limit() {
        for qps in [0.0, -1.0] {
            let mut svc = echo(Rate { qps, burst: 1 });
            let all = async {
                for i in 0..100 {
                    svc.ready().await.unwrap().call(i).await.unwrap();
                }
            };
            tokio::time::timeout(Duration::from_secs(5), all)
                .await
                .expect("calls were throttled");
        }
    }
}
