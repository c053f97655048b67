//! Discovery: which series exist, relisted periodically, turned into a [`Registry`].
//!
//! Differences from prometheus-adapter, all in the user's favour: one loop serves custom and
//! external rules (identical `seriesQuery` strings are fetched once across both); every request
//! has a timeout and an `end`; a failing `seriesQuery` keeps its own previous answer instead of
//! discarding the whole relist, and is retried with backoff instead of waiting a full interval.

pub mod registry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub use registry::{CustomMetric, CustomMetricKey, ExternalMetric, Registry, RuleStats};

use crate::query::prometheus::{PrometheusClient, PrometheusError, SeriesSet};
use crate::rules::{CompiledConfig, RestMapper};

/// Discovery settings from the command line.
#[derive(Clone, Debug)]
pub struct DiscoverySettings {
    /// `--metrics-relist-interval`.
    pub relist_interval: Duration,
    /// `--metrics-max-age`: how far back series must have samples.
    pub max_age: Duration,
}

/// The outcome of one relist.
#[derive(Debug, Default)]
pub struct RelistReport {
    /// `seriesQuery` strings that failed, with their errors (their previous answers were kept).
    pub failures: Vec<(String, String)>,
    /// Distinct series queries sent.
    pub queries: usize,
    /// Wall time of the relist.
    pub duration: Duration,
}

/// Runs discovery and publishes registries.
pub struct Discoverer {
    client: PrometheusClient,
    config: Arc<ArcSwap<CompiledConfig>>,
    mapper: Arc<ArcSwap<RestMapper>>,
    registry: Arc<ArcSwap<Registry>>,
    settings: DiscoverySettings,
    /// Last good answer per `seriesQuery`.
    answers: HashMap<String, Arc<SeriesSet>>,
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
        client: PrometheusClient,
        config: Arc<ArcSwap<CompiledConfig>>,
        mapper: Arc<ArcSwap<RestMapper>>,
        registry: Arc<ArcSwap<Registry>>,
        settings: DiscoverySettings,
    ) -> Self {
        Discoverer {
            client,
            config,
            mapper,
            registry,
            settings,
            answers: HashMap::new(),
        }
    }

    /// Lists series for every distinct `seriesQuery` once, rebuilds the registry and publishes
    /// it. Failed queries keep their previous answers and are reported.
    pub async fn relist(&mut self) -> RelistReport {
        let started = std::time::Instant::now();
        let config = self.config.load_full();
        let mut queries: Vec<String> = config.all_rules().map(|r| r.series_query.clone()).collect();
        queries.sort();
        queries.dedup();
        queries.retain(|q| !q.trim().is_empty());

        let end = unix_now();
        let start = end - self.settings.max_age.as_secs_f64();
        let fetches = queries.iter().map(|q| {
            let client = self.client.clone();
            async move { (q.clone(), client.series(q, start, end).await) }
        });
        let results: Vec<(String, Result<SeriesSet, PrometheusError>)> =
            futures_util::future::join_all(fetches).await;

        let mut report = RelistReport {
            queries: queries.len(),
            ..Default::default()
        };
        for (query, result) in results {
            match result {
                Ok(set) => {
                    tracing::debug!(series_query = %query, series = set.raw_count, distinct = set.series.len(), "listed series");
                    self.answers.insert(query, Arc::new(set));
                }
                Err(e) => {
                    tracing::warn!(series_query = %query, error = %e, "unable to list series; keeping the previous answer");
                    report.failures.push((query, e.to_string()));
                }
            }
        }
        self.answers.retain(|q, _| queries.contains(q));
        let mapper = self.mapper.load_full();
        let registry = Registry::build(&config, &mapper, &self.answers, SystemTime::now());
        report.duration = started.elapsed();
        tracing::info!(
            custom_metrics = registry.custom_keys().len(),
            external_metrics = registry.external_names().len(),
            failed_queries = report.failures.len(),
            duration_ms = report.duration.as_millis() as u64,
            "relisted series"
        );
        self.registry.store(Arc::new(registry));
        report
    }

    /// Relists forever: every `relist_interval` after the previous relist ends, or sooner with
    /// exponential backoff (1 s doubling, capped at the interval) while some query fails.
    /// `first_done` is set to true after the first attempt, success or not.
    pub async fn run(mut self, first_done: watch::Sender<bool>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let report = self.relist().await;
            first_done.send_replace(true);
            let wait = if report.failures.is_empty() {
                backoff = Duration::from_secs(1);
                self.settings.relist_interval
            } else {
                let w = backoff.min(self.settings.relist_interval);
                backoff = (backoff * 2).min(self.settings.relist_interval);
                w
            };
            tokio::time::sleep(wait).await;
        }
    }
}
