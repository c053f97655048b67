//! Discovery: which series exist, relisted periodically, turned into a [`Registry`].
//!
//! Differences from prometheus-adapter, all in the user's favour: one loop serves custom and
//! external rules (identical `seriesQuery` strings are fetched once across both); every request
//! has a timeout and an `end`; a failing `seriesQuery` keeps its own previous answer instead of
//! discarding the whole relist, and is retried with backoff instead of waiting a full interval.

pub mod hints;
pub mod lookup;
pub mod registry;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub use registry::{CustomMetric, CustomMetricKey, ExternalMetric, Registry, RuleStats, SeriesKey};

use crate::query::prometheus::{PrometheusError, SeriesInfo, SeriesSet};
use crate::query::shared::SharedQueries;
use crate::rules::{CompiledConfig, RestMapper};

/// Discovery settings from the command line.
#[derive(Clone, Debug)]
pub struct DiscoverySettings {
    /// `--metrics-relist-interval`.
    pub relist_interval: Duration,
    /// `--metrics-max-age`: how far back series must have samples.
    pub max_age: Duration,
}

/// A `seriesQuery` that failed.
#[derive(Debug)]
pub struct QueryFailure {
    /// The `seriesQuery` and its backend.
    pub key: SeriesKey,
    /// The error.
    pub error: PrometheusError,
}

/// The outcome of one relist.
#[derive(Debug, Default)]
pub struct RelistReport {
    /// Queries that failed; their previous answers were kept.
    pub failures: Vec<QueryFailure>,
    /// Distinct series queries sent.
    pub queries: usize,
    /// Wall time of the relist.
    pub duration: Duration,
}

/// The series answers behind the registry, and what targeted lookups added since the full
/// answer of the same listing was fetched.
#[derive(Default)]
struct Answers {
    /// Last good full answer per listing.
    full: HashMap<SeriesKey, Arc<SeriesSet>>,
    /// Series shapes found by targeted lookups, each with when the listing that last found it
    /// was sent.
    added: HashMap<SeriesKey, HashMap<SeriesInfo, std::time::Instant>>,
    /// When the full listing in `full` was started, per listing that ever succeeded.
    listed_at: HashMap<SeriesKey, std::time::Instant>,
}

/// `base` with the shapes among `extra` it does not have; `None` when it has them all.
fn with_shapes<'a>(
    base: &SeriesSet,
    extra: impl IntoIterator<Item = &'a SeriesInfo>,
) -> Option<SeriesSet> {
    // A set, not a scan per shape: this runs under the answers' lock, and a listing can hold
    // thousands of shapes.
    let have: HashSet<&SeriesInfo> = base.series.iter().collect();
    let mut seen = HashSet::new();
    let missing: Vec<SeriesInfo> = extra
        .into_iter()
        .filter(|s| !have.contains(s) && seen.insert(*s))
        .cloned()
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut out = base.clone();
    out.raw_count += missing.len();
    out.series.extend(missing);
    Some(out)
}

/// What full relists and targeted lookups share: the answers, and how a registry is built from
/// them and published.
pub struct Catalog {
    queries: Arc<SharedQueries>,
    config: Arc<ArcSwap<CompiledConfig>>,
    mapper: Arc<ArcSwap<RestMapper>>,
    registry: Arc<ArcSwap<Registry>>,
    settings: DiscoverySettings,
    answers: std::sync::Mutex<Answers>,
    publishing: std::sync::Mutex<()>,
}

impl Catalog {
    fn answers(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The backends.
    pub fn queries(&self) -> &Arc<SharedQueries> {
        &self.queries
    }

    /// The current config.
    pub fn config(&self) -> arc_swap::Guard<Arc<CompiledConfig>> {
        self.config.load()
    }

    /// The discovery settings.
    pub fn settings(&self) -> &DiscoverySettings {
        &self.settings
    }

    /// Stores the full answer of `key`, fetched from `started` on: shapes targeted lookups
    /// found since then are kept on top of it (the listing may have begun before their series
    /// existed), each judged by its own time; older ones are superseded by the listing.
    fn store_full(&self, key: SeriesKey, set: SeriesSet, started: std::time::Instant) {
        let mut answers = self.answers();
        answers.listed_at.insert(key.clone(), started);
        let set = match answers.added.get_mut(&key) {
            Some(added) => {
                added.retain(|_, at| *at >= started);
                // In a fixed order: which shape backs a name must not vary between runs.
                let mut kept: Vec<&SeriesInfo> = added.keys().collect();
                kept.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.labels.cmp(&b.labels)));
                let merged = with_shapes(&set, kept).unwrap_or(set);
                if added.is_empty() {
                    answers.added.remove(&key);
                }
                merged
            }
            None => set,
        };
        answers.full.insert(key, Arc::new(set));
    }

    /// Adds the shapes a targeted lookup found, in a listing sent at `sent`, to `key`'s answer;
    /// true when any was new, after which the caller publishes.
    pub fn add_found(&self, key: &SeriesKey, found: &SeriesSet, sent: std::time::Instant) -> bool {
        let mut answers = self.answers();
        if answers.listed_at.get(key).is_some_and(|at| *at > sent) {
            // A full listing started after this one was sent: it knows better.
            return false;
        }
        let added = answers.added.entry(key.clone()).or_default();
        for shape in &found.series {
            let at = added.entry(shape.clone()).or_insert(sent);
            *at = (*at).max(sent);
        }
        let current = answers.full.get(key).cloned().unwrap_or_default();
        let Some(merged) = with_shapes(&current, &found.series) else {
            return false;
        };
        answers.full.insert(key.clone(), Arc::new(merged));
        true
    }

    /// Whether a full listing of `key` has succeeded since it became part of the config.
    pub fn has_listing(&self, key: &SeriesKey) -> bool {
        self.answers().listed_at.contains_key(key)
    }

    /// The distinct non-empty listings (`seriesQuery` and backend) of the current config.
    fn current_queries(&self) -> Vec<SeriesKey> {
        let config = self.config.load();
        let mut keys: Vec<SeriesKey> = Vec::new();
        for rule in config.all_rules() {
            let key = SeriesKey::of(rule);
            if !key.query.trim().is_empty() && !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// Rebuilds the registry from the answers at hand and publishes it.
    pub fn publish(&self) -> Arc<Registry> {
        // One publish at a time: a build from an older snapshot must not be stored after a
        // newer one (a relist racing a targeted lookup).
        let _one = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let config = self.config.load_full();
        let queries = self.current_queries();
        let mapper = self.mapper.load_full();
        let full = {
            let mut answers = self.answers();
            answers.full.retain(|q, _| queries.contains(q));
            answers.added.retain(|q, _| queries.contains(q));
            answers.listed_at.retain(|q, _| queries.contains(q));
            // A map of `Arc`s: cheap to copy, so the build does not hold the lock.
            answers.full.clone()
        };
        let registry = Arc::new(Registry::build(&config, &mapper, &full, SystemTime::now()));
        self.registry.store(registry.clone());
        registry
    }

    /// [`Catalog::publish`] on the blocking pool: the build takes milliseconds for large
    /// registries and waits for any other publish, neither of which belongs on a worker that
    /// serves requests.
    pub async fn publish_off_thread(self: &Arc<Self>) -> Arc<Registry> {
        let catalog = self.clone();
        match tokio::task::spawn_blocking(move || catalog.publish()).await {
            Ok(registry) => registry,
            // Only a panic in the build gets here; the registry in place stays.
            Err(e) => {
                tracing::error!(error = %e, "building the registry failed");
                self.registry.load_full()
            }
        }
    }

    /// Distinct series shapes held.
    fn series_count(&self) -> usize {
        self.answers().full.values().map(|a| a.series.len()).sum()
    }
}

/// Runs discovery and publishes registries.
pub struct Discoverer {
    catalog: Arc<Catalog>,
    /// Wakes the loop for a full relist now (a reloaded config).
    relist_now: Arc<tokio::sync::Notify>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Discoverer {
    /// A discoverer publishing into `registry`.
    pub fn new(
        queries: Arc<SharedQueries>,
        config: Arc<ArcSwap<CompiledConfig>>,
        mapper: Arc<ArcSwap<RestMapper>>,
        registry: Arc<ArcSwap<Registry>>,
        settings: DiscoverySettings,
    ) -> Self {
        Discoverer {
            catalog: Arc::new(Catalog {
                queries,
                config,
                mapper,
                registry,
                settings,
                answers: Default::default(),
                publishing: Default::default(),
            }),
            relist_now: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// What wakes the loop for a full relist before the interval is over.
    pub fn relist_trigger(&self) -> Arc<tokio::sync::Notify> {
        self.relist_now.clone()
    }

    /// The answers and the registry they make, for targeted lookups between relists.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.clone()
    }

    /// Fetches `keys` concurrently, keeping each success; returns the failures.
    async fn fetch(&mut self, keys: &[SeriesKey]) -> Vec<QueryFailure> {
        let started = std::time::Instant::now();
        let end = unix_now();
        let start = end - self.catalog.settings.max_age.as_secs_f64();
        let fetches = keys.iter().map(|key| {
            let backend = self.catalog.queries.backend(key.backend.as_ref());
            async move {
                let result = match backend {
                    Ok(b) => b.client().series(&key.query, start, end).await,
                    Err(e) => Err(e),
                };
                (key.clone(), result)
            }
        });
        let mut failures = Vec::new();
        for (key, result) in futures_util::future::join_all(fetches).await {
            match result {
                Ok(set) => {
                    tracing::debug!(series_query = %key.query, backend = key.backend_name(), series = set.raw_count, distinct = set.series.len(), "listed series");
                    self.catalog.store_full(key, set, started);
                }
                Err(error) => {
                    tracing::warn!(series_query = %key.query, backend = key.backend_name(), %error, "unable to list series; keeping the previous answer");
                    failures.push(QueryFailure { key, error });
                }
            }
        }
        failures
    }

    /// Rebuilds the registry from the answers at hand and publishes it.
    async fn publish(&self) -> Arc<Registry> {
        self.catalog.publish_off_thread().await
    }

    /// Lists series for every distinct `seriesQuery` once, rebuilds the registry and publishes
    /// it. Failed queries keep their previous answers and are reported.
    pub async fn relist(&mut self) -> RelistReport {
        let started = std::time::Instant::now();
        let queries = self.catalog.current_queries();
        let failures = self.fetch(&queries).await;
        // Clients of backends the config no longer names (or names with other settings) go.
        self.catalog
            .queries
            .retain_backends(&self.catalog.config().backends);
        let registry = self.publish().await;
        let report = RelistReport {
            queries: queries.len(),
            failures,
            duration: started.elapsed(),
        };
        let m = crate::telemetry::metrics();
        m.relist_duration.observe(report.duration.as_secs_f64());
        m.discovered_series.set(self.catalog.series_count() as i64);
        for (api, n) in [
            ("custom", registry.custom_keys().len()),
            ("external", registry.external_names().len()),
        ] {
            m.discovered_metrics
                .get_or_create(&crate::telemetry::ApiLabels { api: api.into() })
                .set(n as i64);
        }
        if report.failures.is_empty() {
            m.last_successful_relist.set(unix_now() as i64);
        }
        tracing::info!(
            custom_metrics = registry.custom_keys().len(),
            external_metrics = registry.external_names().len(),
            failed_queries = report.failures.len(),
            duration_ms = report.duration.as_millis() as u64,
            "relisted series"
        );
        report
    }

    /// Relists forever, `relist_interval` after each full relist starts, or at once when the
    /// [`Discoverer::relist_trigger`] fires. In between, queries that failed transiently are
    /// retried alone with exponential backoff (1 s doubling), and the registry is republished
    /// after each retry. `first_done` turns true after the first attempt, success or not.
    pub async fn run(mut self, first_done: watch::Sender<bool>) {
        let interval = self.catalog.settings.relist_interval;
        crate::telemetry::metrics()
            .relist_interval
            .set(interval.as_secs() as i64);
        let trigger = self.relist_now.clone();
        loop {
            let started = std::time::Instant::now();
            let report = self.relist().await;
            first_done.send_replace(true);
            let mut pending: Vec<SeriesKey> = transient(report.failures);
            let mut backoff = Duration::from_secs(1);
            let mut woken = false;
            while !woken && !pending.is_empty() && started.elapsed() + backoff < interval {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = trigger.notified() => { woken = true; continue; }
                }
                backoff *= 2;
                let failures = self.fetch(&pending).await;
                self.publish().await;
                pending = transient(failures);
            }
            if !woken {
                tokio::select! {
                    _ = tokio::time::sleep(interval.saturating_sub(started.elapsed())) => {}
                    _ = trigger.notified() => {}
                }
            }
        }
    }
}

fn transient(failures: Vec<QueryFailure>) -> Vec<SeriesKey> {
    failures
        .into_iter()
        .filter(|f| f.error.is_transient())
        .map(|f| f.key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::prometheus::{PrometheusSettings, decode_series};

    fn set(names: &[&str]) -> SeriesSet {
        let body = serde_json::json!({
            "status": "success",
            "data": names.iter().map(|n| serde_json::json!({"__name__": n, "namespace": "a", "pod": "p"})).collect::<Vec<_>>(),
        });
        decode_series("test", body.to_string().as_bytes()).unwrap()
    }

    fn catalog() -> (Arc<Catalog>, SeriesKey) {
        let raw = crate::config::parse(
            "rules:\n- seriesQuery: '{__name__=~\"^app_.*\",namespace!=\"\",pod!=\"\"}'\n  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n",
            "t",
        )
        .unwrap();
        let mapper = RestMapper::standalone();
        let compiled = crate::rules::compile(&raw, &mapper).unwrap();
        let key = SeriesKey::of(&compiled.rules[0]);
        let queries = Arc::new(
            SharedQueries::new(
                &PrometheusSettings::default(),
                Duration::ZERO,
                Duration::ZERO,
            )
            .unwrap(),
        );
        let d = Discoverer::new(
            queries,
            Arc::new(ArcSwap::from_pointee(compiled)),
            Arc::new(ArcSwap::from_pointee(mapper)),
            Arc::new(ArcSwap::from_pointee(Registry::default())),
            DiscoverySettings {
                relist_interval: Duration::from_secs(3600),
                max_age: Duration::from_secs(3600),
            },
        );
        (d.catalog(), key)
    }

    fn served(c: &Catalog) -> Vec<String> {
        c.registry
            .load()
            .custom_keys()
            .iter()
            .filter(|k| k.resource.to_string() == "pods")
            .map(|k| k.metric.clone())
            .collect()
    }

    #[test]
    fn a_lookup_during_a_relist_survives_it_and_one_before_it_is_superseded() {
        let (c, key) = catalog();
        c.store_full(key.clone(), set(&["app_ready"]), std::time::Instant::now());
        c.publish();
        assert_eq!(served(&c), ["app_ready"]);

        // A relist starts, a lookup finds a new series, then the relist's older answer lands.
        let relist_started = std::time::Instant::now();
        assert!(c.add_found(&key, &set(&["app_inflight"]), std::time::Instant::now()));
        assert!(
            !c.add_found(&key, &set(&["app_inflight"]), std::time::Instant::now()),
            "nothing new the second time"
        );
        c.publish();
        assert_eq!(served(&c), ["app_inflight", "app_ready"]);
        c.store_full(key.clone(), set(&["app_ready"]), relist_started);
        c.publish();
        assert_eq!(
            served(&c),
            ["app_inflight", "app_ready"],
            "kept over the older listing"
        );

        // The next relist started after the lookup: its answer is the whole truth.
        std::thread::sleep(Duration::from_millis(5));
        c.store_full(key, set(&["app_ready"]), std::time::Instant::now());
        c.publish();
        assert_eq!(served(&c), ["app_ready"]);
    }

    #[test]
    fn each_found_shape_is_judged_by_when_it_was_found() {
        let (c, key) = catalog();
        c.store_full(key.clone(), set(&["app_ready"]), std::time::Instant::now());
        // Found before the relist starts: the relist's answer is the truth about it.
        assert!(c.add_found(&key, &set(&["app_gone"]), std::time::Instant::now()));
        std::thread::sleep(Duration::from_millis(5));
        let relist_started = std::time::Instant::now();
        // Found while the relist runs: kept, as the listing may predate it.
        assert!(c.add_found(&key, &set(&["app_new"]), std::time::Instant::now()));
        c.store_full(key, set(&["app_ready"]), relist_started);
        c.publish();
        assert_eq!(served(&c), ["app_new", "app_ready"]);
    }

    #[test]
    fn merging_shapes_adds_each_missing_one_once() {
        let base = set(&["a", "b"]);
        let extra = set(&["b", "c", "c", "d"]);
        let merged = with_shapes(&base, extra.series.iter().chain(&extra.series)).unwrap();
        let names: Vec<&str> = merged.series.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert!(with_shapes(&merged, &extra.series).is_none());
    }
}
