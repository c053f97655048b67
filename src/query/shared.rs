//! Backend answers shared between requests.
//!
//! Many HPAs often ask for the same metric at the same moment (one per Deployment of a
//! service, all on a 15 s sync): they render the same query. Three things follow:
//! - **single-flight**: identical calls in flight at the same time share one backend call;
//! - **reuse**: a finished answer is reused for `--query-cache-ttl` (5 s by default);
//! - **last known good**: when the backend fails, an answer younger than `--serve-stale-for`
//!   (off by default, so answers stay honest) is served instead of an error. Its samples keep the
//!   time they were computed at; an error never becomes a zero.
//!
//! Only the backend call is shared: what a request does with the answer (picking its objects,
//! building its JSON) stays its own.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use super::prometheus::{PrometheusClient, PrometheusError, PrometheusSettings, QueryResult};
use crate::rules::backends::BackendSpec;

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Freshness {
    /// From a backend call this request started.
    Fetched,
    /// From a backend call another request had in flight.
    Joined,
    /// From a call that finished within the reuse window.
    Reused,
    /// The backend failed; this is the last good answer, this old.
    Stale(Duration),
}

impl Freshness {
    fn label(self) -> &'static str {
        match self {
            Freshness::Fetched => "fetched",
            Freshness::Joined => "joined",
            Freshness::Reused => "reused",
            Freshness::Stale(_) => "stale",
        }
    }
}

type Flight<V> = Shared<BoxFuture<'static, Result<V, PrometheusError>>>;

struct Inner<V> {
    inflight: Mutex<HashMap<String, Flight<V>>>,
    /// Good answers and when they were fetched, kept for the longer of the two windows.
    recent: quick_cache::sync::Cache<String, (Instant, V)>,
    /// When answers past both windows were last dropped from `recent`.
    last_sweep: Mutex<Instant>,
}

impl<V: Clone> Inner<V> {
    /// Drops remembered answers older than `keep_for`, at most once per `keep_for`. The
    /// capacity bound alone would let a stream of distinct queries (pods come and go, so the
    /// rendered queries change) hold thousands of answers that no request can use any more:
    /// memory that grows for hours before the bound is reached.
    fn sweep(&self, keep_for: Duration) {
        let keep_for = keep_for.max(Duration::from_millis(50));
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < keep_for {
                return;
            }
            *last = Instant::now();
        }
        self.recent.retain(|_, (at, _)| at.elapsed() < keep_for);
    }
}

/// Single-flight, reuse and last-known-good for one kind of answer.
pub struct Coalescer<V> {
    inner: Arc<Inner<V>>,
    reuse_for: Duration,
    stale_for: Duration,
}

impl<V> std::fmt::Debug for Coalescer<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("reuse_for", &self.reuse_for)
            .field("stale_for", &self.stale_for)
            .finish_non_exhaustive()
    }
}

impl<V: Clone + Send + Sync + 'static> Coalescer<V> {
    /// Reuses answers for `reuse_for`, serves them when the backend fails for `stale_for`, and
    /// remembers at most `capacity` of them.
    pub fn new(reuse_for: Duration, stale_for: Duration, capacity: usize) -> Self {
        Coalescer {
            inner: Arc::new(Inner {
                inflight: Mutex::new(HashMap::new()),
                recent: quick_cache::sync::Cache::new(capacity.max(1)),
                last_sweep: Mutex::new(Instant::now()),
            }),
            reuse_for,
            stale_for,
        }
    }

    fn remembered(&self, key: &str, within: Duration) -> Option<(V, Duration)> {
        if within.is_zero() {
            return None;
        }
        let (at, value) = self.inner.recent.get(key)?;
        let age = at.elapsed();
        (age < within).then_some((value, age))
    }

    /// The answer for `key`: reused, joined, or fetched with `fetch`; on failure, the last good
    /// one within the stale window.
    pub async fn get<F, Fut>(&self, key: &str, fetch: F) -> Result<(V, Freshness), PrometheusError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, PrometheusError>> + Send + 'static,
    {
        if let Some((value, _)) = self.remembered(key, self.reuse_for) {
            return Ok((value, Freshness::Reused));
        }
        let (flight, started) = {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match inflight.get(key) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let inner = self.inner.clone();
                    let owned_key = key.to_string();
                    let keep_for = self.reuse_for.max(self.stale_for);
                    let remember = !keep_for.is_zero();
                    let call = fetch();
                    // The call runs as its own task: callers cut off by `--request-timeout` or
                    // a closed connection must not leave it half done for the next caller to
                    // resume; it finishes (and leaves the in-flight map) whoever still waits.
                    let task = tokio::spawn(async move {
                        let result = call.await;
                        // Remember before leaving the in-flight map, so a request arriving in
                        // between finds one or the other.
                        if remember && let Ok(value) = &result {
                            inner.sweep(keep_for);
                            inner
                                .recent
                                .insert(owned_key.clone(), (Instant::now(), value.clone()));
                        }
                        inner
                            .inflight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&owned_key);
                        result
                    });
                    let flight = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(PrometheusError::Settings(format!(
                                "the shared backend call ended abnormally: {e}"
                            )))
                        })
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key.to_string(), flight.clone());
                    (flight, true)
                }
            }
        };
        match flight.await {
            Ok(value) => Ok((
                value,
                if started {
                    Freshness::Fetched
                } else {
                    Freshness::Joined
                },
            )),
            Err(error) => match self.remembered(key, self.stale_for) {
                Some((value, age)) => Ok((value, Freshness::Stale(age))),
                None => Err(error),
            },
        }
    }
}

/// Label sets of series, as standalone mode lists objects from them.
pub type SeriesLabels = Arc<Vec<BTreeMap<String, String>>>;

/// One backend behind its coalescers: coalescing keys are per backend by construction.
#[derive(Debug)]
pub struct Backend {
    /// The checked `backends` entry; `None` for `--prometheus-url`.
    spec: Option<Arc<BackendSpec>>,
    client: PrometheusClient,
    values: Coalescer<Arc<QueryResult>>,
    series: Coalescer<SeriesLabels>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Backend {
    fn new(
        spec: Option<Arc<BackendSpec>>,
        client: PrometheusClient,
        reuse_for: Duration,
        stale_for: Duration,
    ) -> Backend {
        Backend {
            spec,
            client,
            values: Coalescer::new(reuse_for, stale_for, 10_000),
            series: Coalescer::new(reuse_for, stale_for, 10_000),
        }
    }

    /// The client underneath, for what is not shared (discovery, `explain`).
    pub fn client(&self) -> &PrometheusClient {
        &self.client
    }

    /// An instant query at the time its backend call starts.
    pub async fn query(
        &self,
        query: &str,
    ) -> Result<(Arc<QueryResult>, Freshness), PrometheusError> {
        let client = self.client.clone();
        let owned = query.to_string();
        let answer = self
            .values
            .get(query, move || async move {
                client.query(&owned, unix_now()).await.map(Arc::new)
            })
            .await;
        if let Ok((_, freshness)) = &answer {
            crate::telemetry::metrics()
                .query_answers
                .get_or_create(&crate::telemetry::SourceLabels {
                    backend: self.client.name().to_string(),
                    source: freshness.label().into(),
                })
                .inc();
        }
        answer
    }

    /// The label sets of the series matching `selector` with samples in the last `lookback`.
    pub async fn series_labels(
        &self,
        selector: &str,
        lookback: Duration,
    ) -> Result<(SeriesLabels, Freshness), PrometheusError> {
        let client = self.client.clone();
        let owned = selector.to_string();
        let key = format!("{selector}\u{0}{}", lookback.as_millis());
        self.series
            .get(&key, move || async move {
                let end = unix_now();
                let start = end - lookback.as_secs_f64();
                client.series_labels(&owned, start, end).await.map(Arc::new)
            })
            .await
    }
}

/// The client settings of a named backend: its own URL, headers and credentials, and the
/// flags' values for what it leaves unset (never the flags' credentials).
pub fn named_settings(base: &PrometheusSettings, spec: &BackendSpec) -> PrometheusSettings {
    PrometheusSettings {
        name: spec.name.clone(),
        url: spec.url.clone(),
        verb: spec.verb.unwrap_or(base.verb),
        headers: spec.headers.clone(),
        token_file: spec.token_file.clone(),
        ca_file: spec.ca_file.clone(),
        client_cert_file: spec.client_cert_file.clone(),
        client_key_file: spec.client_key_file.clone(),
        query_timeout: spec.timeout.unwrap_or(base.query_timeout),
        ..base.clone()
    }
}

/// Every backend, behind coalescers: what request handlers and discovery query through.
///
/// Named backends are built on first use from the rule's [`BackendSpec`] and kept by name and
/// settings; a reload that changes a backend's settings gets a new client (with no shared
/// answers) beside the old one, which requests still on the old config keep using until
/// discovery prunes it after the next relist. A reload that changes nothing keeps them.
#[derive(Debug)]
pub struct SharedQueries {
    base: PrometheusSettings,
    default: Arc<Backend>,
    /// Per name, the clients of its specs in use: during a reload, requests on the old config
    /// and on the new one both find theirs instead of replacing each other's client.
    named: Mutex<HashMap<String, Vec<Arc<Backend>>>>,
    reuse_for: Duration,
    stale_for: Duration,
}

impl SharedQueries {
    /// Queries through a client built from `settings` (the `--prometheus-*` flags), reusing
    /// answers for `reuse_for` and serving stale ones for `stale_for` when a backend fails.
    pub fn new(
        settings: &PrometheusSettings,
        reuse_for: Duration,
        stale_for: Duration,
    ) -> Result<Self, PrometheusError> {
        let client = PrometheusClient::new(settings)?;
        Ok(SharedQueries {
            base: settings.clone(),
            default: Arc::new(Backend::new(None, client, reuse_for, stale_for)),
            named: Mutex::new(HashMap::new()),
            reuse_for,
            stale_for,
        })
    }

    /// The default backend's client.
    pub fn client(&self) -> &PrometheusClient {
        &self.default.client
    }

    /// The backend a rule names (`None`: `--prometheus-url`), built on first use.
    pub fn backend(
        &self,
        spec: Option<&Arc<BackendSpec>>,
    ) -> Result<Arc<Backend>, PrometheusError> {
        let Some(spec) = spec else {
            return Ok(self.default.clone());
        };
        let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = named.get(&spec.name).and_then(|all| {
            all.iter()
                .find(|b| b.spec.as_deref() == Some(spec.as_ref()))
        }) {
            return Ok(b.clone());
        }
        let client = PrometheusClient::new(&named_settings(&self.base, spec))
            .map_err(|e| PrometheusError::Settings(format!("backend {:?}: {e}", spec.name)))?;
        let backend = Arc::new(Backend::new(
            Some(spec.clone()),
            client,
            self.reuse_for,
            self.stale_for,
        ));
        named
            .entry(spec.name.clone())
            .or_default()
            .push(backend.clone());
        Ok(backend)
    }

    /// Drops the clients (and shared answers) of backends `config` no longer names, or names
    /// with other settings; discovery calls it after each relist.
    pub fn retain_backends(&self, config: &[Arc<BackendSpec>]) {
        let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        for all in named.values_mut() {
            all.retain(|b| {
                b.spec
                    .as_deref()
                    .is_some_and(|s| config.iter().any(|c| c.as_ref() == s))
            });
        }
        named.retain(|_, all| !all.is_empty());
    }

    /// How many named backend clients are held.
    #[cfg(test)]
    fn named_clients(&self) -> usize {
        self.named
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }

    /// An instant query on the default backend (resource metrics).
    pub async fn query(
        &self,
        query: &str,
    ) -> Result<(Arc<QueryResult>, Freshness), PrometheusError> {
        self.default.query(query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn failure() -> PrometheusError {
        PrometheusError::Transport {
            url: "http://p/api/v1/query".into(),
            message: "connection refused".into(),
        }
    }

    fn spec(url: &str) -> Arc<BackendSpec> {
        Arc::new(BackendSpec {
            name: "longterm".into(),
            url: url.into(),
            headers: vec![("X-Scope-OrgID".into(), "team-a".into())],
            token_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            timeout: None,
            verb: Some(super::super::prometheus::Verb::Post),
        })
    }

    #[test]
    fn a_named_backend_inherits_limits_and_timeout_but_never_the_flags_credentials() {
        let base = PrometheusSettings {
            url: "http://prometheus:9090".into(),
            token_file: Some("/var/run/secrets/token".into()),
            headers: vec![("Authorization".into(), "Bearer flags".into())],
            query_timeout: Duration::from_secs(7),
            ..Default::default()
        };
        let s = named_settings(&base, &spec("http://thanos:9090"));
        assert_eq!(s.name, "longterm");
        assert_eq!(s.url, "http://thanos:9090");
        assert_eq!(s.query_timeout, Duration::from_secs(7));
        assert_eq!(s.verb, super::super::prometheus::Verb::Post);
        assert_eq!(s.token_file, None);
        assert_eq!(
            s.headers,
            [("X-Scope-OrgID".to_string(), "team-a".to_string())]
        );
        assert_eq!(s.max_query_bytes, base.max_query_bytes);
    }

    #[test]
    fn a_changed_backend_gets_a_new_client_and_an_unchanged_one_keeps_its_own() {
        let q = SharedQueries::new(
            &PrometheusSettings {
                url: "http://prometheus:9090".into(),
                ..Default::default()
            },
            Duration::from_secs(5),
            Duration::ZERO,
        )
        .unwrap();
        let first = q.backend(Some(&spec("http://thanos:9090"))).unwrap();
        let again = q.backend(Some(&spec("http://thanos:9090"))).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let moved = q.backend(Some(&spec("http://thanos-2:9090"))).unwrap();
        assert!(!Arc::ptr_eq(&first, &moved));
        assert_eq!(moved.client().base_url(), "http://thanos-2:9090");
        // While a reload is under way, requests on the old config keep the old client rather
        // than replacing the new one back and forth.
        let old = q.backend(Some(&spec("http://thanos:9090"))).unwrap();
        assert!(Arc::ptr_eq(&first, &old));
        assert!(Arc::ptr_eq(
            &moved,
            &q.backend(Some(&spec("http://thanos-2:9090"))).unwrap()
        ));
        assert_eq!(q.named_clients(), 2);
        // After the relist, only what the config names stays.
        q.retain_backends(&[spec("http://thanos-2:9090")]);
        assert_eq!(q.named_clients(), 1);
        assert!(Arc::ptr_eq(
            &moved,
            &q.backend(Some(&spec("http://thanos-2:9090"))).unwrap()
        ));
        q.retain_backends(&[]);
        assert_eq!(q.named_clients(), 0);
        assert!(Arc::ptr_eq(&q.backend(None).unwrap(), &q.default));
        let broken = q.backend(Some(&Arc::new(BackendSpec {
            ca_file: Some("/nonexistent/ca.crt".into()),
            ..(*spec("https://thanos:9090")).clone()
        })));
        let e = broken.unwrap_err().to_string();
        assert!(
            e.contains("backend \"longterm\"") && e.contains("/nonexistent/ca.crt"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn concurrent_identical_calls_share_one_fetch() {
        let c: Coalescer<u32> = Coalescer::new(Duration::ZERO, Duration::ZERO, 10);
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let fetch = || {
            let (calls, gate) = (calls.clone(), gate.clone());
            move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _open = gate.acquire().await.unwrap();
                Ok(7)
            }
        };
        let waiters: Vec<_> = (0..20).map(|_| c.get("q", fetch())).collect();
        let all = futures_util::future::join_all(waiters);
        let opener = async {
            tokio::task::yield_now().await;
            gate.add_permits(100);
        };
        let (answers, ()) = tokio::join!(all, opener);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let kinds: Vec<Freshness> = answers.into_iter().map(|a| a.unwrap().1).collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == Freshness::Fetched).count(),
            1
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == Freshness::Joined).count(),
            19
        );
        // Nothing is remembered without a window: the next call fetches again.
        c.get("q", fetch()).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_call_whose_callers_gave_up_still_finishes_and_frees_its_key() {
        let c: Coalescer<u32> = Coalescer::new(Duration::ZERO, Duration::ZERO, 10);
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(1)
        };
        // The only caller is cut off (as by `--request-timeout`) long before the call ends.
        let cut = tokio::time::timeout(Duration::from_millis(5), c.get("q", slow)).await;
        assert!(cut.is_err());
        let in_flight = || c.inner.inflight.lock().unwrap().len();
        assert_eq!(in_flight(), 1);
        // Nobody polls it any more, yet it runs to its end and leaves the in-flight map.
        let deadline = Instant::now() + Duration::from_secs(5);
        while in_flight() > 0 {
            assert!(
                Instant::now() < deadline,
                "the abandoned call never finished"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The next caller fetches anew rather than resuming a half-done call.
        let answer = c.get("q", || async { Ok(2) }).await.unwrap();
        assert_eq!(answer, (2, Freshness::Fetched));
    }

    #[tokio::test]
    async fn a_finished_answer_is_reused_within_the_window_only() {
        let c: Coalescer<u32> = Coalescer::new(Duration::from_millis(200), Duration::ZERO, 10);
        let calls = Arc::new(AtomicUsize::new(0));
        let fetch = |v: u32| {
            let calls = calls.clone();
            move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(v)
            }
        };
        assert_eq!(c.get("q", fetch(1)).await.unwrap(), (1, Freshness::Fetched));
        assert_eq!(c.get("q", fetch(2)).await.unwrap(), (1, Freshness::Reused));
        assert_eq!(
            c.get("other", fetch(3)).await.unwrap(),
            (3, Freshness::Fetched)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(c.get("q", fetch(4)).await.unwrap(), (4, Freshness::Fetched));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failure_serves_the_last_good_answer_within_the_bound_and_never_beyond() {
        let c: Coalescer<u32> = Coalescer::new(Duration::ZERO, Duration::from_millis(300), 10);
        // No answer yet: the failure is the answer.
        assert!(c.get("q", || async { Err(failure()) }).await.is_err());
        c.get("q", || async { Ok(5) }).await.unwrap();
        let (v, f) = c.get("q", || async { Err(failure()) }).await.unwrap();
        assert_eq!(v, 5);
        assert!(matches!(f, Freshness::Stale(age) if age < Duration::from_millis(300)));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(c.get("q", || async { Err(failure()) }).await.is_err());
    }

    #[tokio::test]
    async fn answers_past_both_windows_are_dropped_not_kept_until_the_capacity_bound() {
        let c: Coalescer<u32> = Coalescer::new(Duration::from_millis(60), Duration::ZERO, 10_000);
        for i in 0..100 {
            c.get(&format!("q{i}"), || async { Ok(1) }).await.unwrap();
        }
        assert_eq!(c.inner.recent.len(), 100);
        tokio::time::sleep(Duration::from_millis(120)).await;
        c.get("fresh", || async { Ok(2) }).await.unwrap();
        assert_eq!(
            c.inner.recent.len(),
            1,
            "only the answer still in its window is kept"
        );
        assert_eq!(
            c.get("fresh", || async { Ok(3) }).await.unwrap(),
            (2, Freshness::Reused)
        );
    }
}
