//! Targeted lookups: a metric the registry does not know yet is looked for at once, instead of
//! answering "not found" until the next relist (10 minutes upstream by default), which leaves a
//! fresh HPA reporting "no metrics returned".
//!
//! Only the rules whose `as` can produce the name are asked, each restricted to the request's
//! namespace; what they find joins the registry at once. Concurrent requests for the same name
//! share one lookup, and identical listings in flight are sent once. A name whose lookup was
//! conclusive (every listing sent after the request came, none failed) is not looked for again
//! within `--metrics-relist-interval`; listings no namespace narrows are reused for a minute;
//! and all lookups together are bounded per second, so a stream of requests for made-up names
//! costs little.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use promql_parser::parser::Expr;

use super::{Catalog, CustomMetricKey, Registry, SeriesKey};
use crate::query::shared::Coalescer;
use crate::rules::quote::go_quote;
use crate::rules::{CompiledRule, RuleKind};

/// Names remembered for the per-name bound; beyond it (after forgetting expired ones) new
/// names are not remembered, and only the per-second bound limits their lookups.
const MAX_REMEMBERED: usize = 10_000;

/// Lookups started per second, whatever the names (burst of twice that).
const LOOKUPS_PER_SECOND: u32 = 10;

/// Least time between two lookups that list a rule's whole `seriesQuery` (cluster-scoped
/// resources, rules without a namespace label, selectors that cannot take a matcher).
const UNRESTRICTED_EVERY: Duration = Duration::from_secs(60);

/// `query` with the matcher `label="value"` added, when it is a plain vector selector that
/// stays one; `None` otherwise (the lookup then lists the whole `seriesQuery`).
pub fn restrict(query: &str, label: &str, value: &str) -> Option<String> {
    let q = query.trim();
    let matcher = format!("{label}={}", go_quote(value));
    let out = match q.strip_suffix('}') {
        Some(body) => {
            let open = body.find('{')?;
            let (head, inner) = (&body[..open], &body[open + 1..]);
            if inner.trim().is_empty() {
                format!("{head}{{{matcher}}}")
            } else {
                format!("{head}{{{inner},{matcher}}}")
            }
        }
        None => format!("{q}{{{matcher}}}"),
    };
    match promql_parser::parser::parse(&out) {
        Ok(Expr::VectorSelector(_)) => Some(out),
        _ => None,
    }
}

/// What a targeted lookup concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The metric is in the registry now.
    Found,
    /// Not found: no rule that could produce the name has it (as far as its listing, fresh or
    /// recent, shows), or it was looked for recently.
    NotFound,
    /// Not looked for: the per-second bound was reached. Nothing is known either way.
    Throttled,
    /// A rule that could produce the name has never been listed, and listing it now failed:
    /// whether the name is ours is not known until its backend answers.
    Failed(String),
}

/// When a listing was sent (what it found existed then).
type Sent = Instant;

/// Looks for metrics the registry does not know.
pub struct Lookups {
    catalog: Arc<Catalog>,
    /// Until when each miss is answered without a lookup.
    recent: Mutex<HashMap<String, Instant>>,
    /// Concurrent requests for the same miss share its lookup and its outcome.
    misses: Coalescer<Outcome>,
    /// Listings narrowed to a namespace: identical ones in flight at once are sent once.
    narrowed: Coalescer<Sent>,
    /// Listings no namespace narrows cost as much as a relist of their rule: one is reused by
    /// every lookup for [`UNRESTRICTED_EVERY`] (or the relist interval, if shorter).
    whole: Coalescer<Sent>,
    reuse_whole: Duration,
    limiter: DefaultDirectRateLimiter,
}

/// What one rule's listing told a lookup.
enum Listed {
    /// Sent at this time; its shapes are in the catalog.
    At(Sent),
    /// It failed, but the rule has a listing from before: what that shows stands.
    FailedAfterListing,
}

impl Lookups {
    /// Lookups that add what they find to `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Lookups {
        let per_second = NonZeroU32::new(LOOKUPS_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(LOOKUPS_PER_SECOND * 2).unwrap_or(NonZeroU32::MIN);
        let reuse_whole = UNRESTRICTED_EVERY.min(catalog.settings().relist_interval);
        Lookups {
            catalog,
            recent: Mutex::new(HashMap::new()),
            misses: Coalescer::new(Duration::ZERO, Duration::ZERO, 1_000),
            narrowed: Coalescer::new(Duration::ZERO, Duration::ZERO, 1_000),
            whole: Coalescer::new(reuse_whole, Duration::ZERO, 1_000),
            reuse_whole,
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
        }
    }

    /// Looks for the custom metric `key` (within `namespace` when given).
    pub async fn custom(
        self: &Arc<Self>,
        key: &CustomMetricKey,
        namespace: Option<&str>,
    ) -> Outcome {
        let rules: Vec<Arc<CompiledRule>> = self
            .catalog
            .config()
            .rules
            .iter()
            .filter(|r| r.could_produce(&key.metric))
            .cloned()
            .collect();
        let miss = format!(
            "custom\u{0}{}\u{0}{}\u{0}{}",
            key.resource,
            key.metric,
            namespace.unwrap_or_default()
        );
        let owned = key.clone();
        let known = move |r: &Registry| r.custom(&owned).is_some();
        self.shared(miss, rules, namespace, known).await
    }

    /// Looks for the external metric `metric` within `namespace`.
    pub async fn external(self: &Arc<Self>, metric: &str, namespace: &str) -> Outcome {
        let rules: Vec<Arc<CompiledRule>> = self
            .catalog
            .config()
            .external_rules
            .iter()
            .filter(|r| r.could_produce(metric))
            .cloned()
            .collect();
        let miss = format!("external\u{0}{metric}\u{0}{namespace}");
        let owned = metric.to_string();
        let known = move |r: &Registry| r.external(&owned).is_some();
        self.shared(miss, rules, Some(namespace), known).await
    }

    /// The lookup of `miss`, shared with concurrent requests for the same miss. It runs as its
    /// own task, so a request cut off by `--request-timeout` does not stop it halfway.
    async fn shared(
        self: &Arc<Self>,
        miss: String,
        rules: Vec<Arc<CompiledRule>>,
        namespace: Option<&str>,
        known: impl Fn(&Registry) -> bool + Send + 'static,
    ) -> Outcome {
        if rules.is_empty() {
            return Outcome::NotFound;
        }
        let this = self.clone();
        let namespace = namespace.map(str::to_string);
        let key = miss.clone();
        let look =
            move || async move { Ok(this.look(&miss, rules, namespace.as_deref(), known).await) };
        match self.misses.get(&key, look).await {
            Ok((outcome, _)) => outcome,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// Whether `miss` is to be answered without a lookup now.
    fn remembered(&self, miss: &str) -> bool {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .get(miss)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// Answers `miss` without a lookup until `until`; past [`MAX_REMEMBERED`] (after forgetting
    /// expired ones) it is not remembered.
    fn remember(&self, miss: &str, until: Instant) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if until <= now {
            return;
        }
        if recent.len() >= MAX_REMEMBERED && !recent.contains_key(miss) {
            recent.retain(|_, until| now < *until);
            if recent.len() >= MAX_REMEMBERED {
                return;
            }
        }
        recent.insert(miss.to_string(), until);
    }

    /// One rule's listing for a lookup within `namespace`. The flight itself adds what it finds
    /// to the catalog and publishes, so every request that joins it sees the result.
    async fn listing(
        &self,
        rule: &CompiledRule,
        namespace: Option<&str>,
    ) -> Result<(Listed, bool), String> {
        let narrowed = match (namespace, rule.namespace_label.as_deref()) {
            (Some(ns), Some(label))
                if rule.kind == RuleKind::Custom || rule.resources.namespaced() =>
            {
                restrict(&rule.series_query, label, ns)
            }
            _ => None,
        };
        let whole = narrowed.is_none();
        let selector = narrowed.unwrap_or_else(|| rule.series_query.clone());
        let flights = if whole { &self.whole } else { &self.narrowed };
        let series_key = SeriesKey::of(rule);
        let backend = self
            .catalog
            .queries()
            .backend(rule.backend.as_ref())
            .map_err(|e| e.to_string())?;
        let client = backend.client().clone();
        let lookback = self.catalog.settings().max_age;
        let flight = format!("{}\u{0}{selector}", rule.backend_name());
        let owned = selector.clone();
        let catalog = self.catalog.clone();
        let key = series_key.clone();
        let answer = flights
            .get(&flight, move || async move {
                let sent = Instant::now();
                let end = crate::api::unix_now();
                let start = end - lookback.as_secs_f64();
                let set = client.series(&owned, start, end).await?;
                if catalog.add_found(&key, &set, sent) {
                    catalog.publish_off_thread().await;
                }
                Ok(sent)
            })
            .await;
        match answer {
            Ok((sent, _)) => Ok((Listed::At(sent), whole)),
            Err(e) => {
                tracing::warn!(rule = %rule.label(), series_query = %selector, error = %e, "targeted lookup failed");
                if self.catalog.has_listing(&series_key) {
                    Ok((Listed::FailedAfterListing, whole))
                } else {
                    Err(e.to_string())
                }
            }
        }
    }

    async fn look(
        &self,
        miss: &str,
        rules: Vec<Arc<CompiledRule>>,
        namespace: Option<&str>,
        known: impl Fn(&Registry) -> bool,
    ) -> Outcome {
        let count = |result: &str| {
            let m = crate::telemetry::metrics();
            crate::telemetry::Metrics::outcome(&m.targeted_lookups, result);
        };
        if self.remembered(miss) {
            count("skipped");
            return Outcome::NotFound;
        }
        if self.limiter.check().is_err() {
            count("skipped");
            return Outcome::Throttled;
        }
        let asked = Instant::now();
        let answers = join_all(rules.iter().map(|rule| self.listing(rule, namespace))).await;
        let found = known(&self.catalog.registry.load());
        // How long what this lookup saw holds: a listing sent before the request came (joined
        // in flight, or reused) may predate the name's first sample.
        let mut holds_until = Some(Instant::now() + self.catalog.settings().relist_interval);
        let mut failure = None;
        for answer in answers {
            match answer {
                Ok((Listed::At(sent), _)) if sent >= asked => {}
                Ok((Listed::At(sent), true)) => {
                    // A reused whole listing: a fresh one can be had once its reuse ends.
                    holds_until = holds_until.map(|u| u.min(sent + self.reuse_whole));
                }
                Ok((Listed::At(_), false)) | Ok((Listed::FailedAfterListing, _)) => {
                    holds_until = None;
                }
                Err(e) => {
                    failure = failure.or(Some(e));
                    holds_until = None;
                }
            }
        }
        if let Some(until) = holds_until {
            self.remember(miss, until);
        }
        tracing::debug!(miss = %miss.replace('\u{0}', " "), found, failed = failure.is_some(), "targeted lookup");
        match (found, failure) {
            (true, _) => {
                count("found");
                Outcome::Found
            }
            (false, Some(e)) => {
                count("failed");
                Outcome::Failed(e)
            }
            (false, None) => {
                count("not_found");
                Outcome::NotFound
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_matcher_is_added_to_every_selector_form() {
        assert_eq!(
            restrict("http_requests_total", "namespace", "shop").as_deref(),
            Some(r#"http_requests_total{namespace="shop"}"#)
        );
        assert_eq!(
            restrict(
                r#"http_requests_total{namespace!="",pod!=""}"#,
                "namespace",
                "shop"
            )
            .as_deref(),
            Some(r#"http_requests_total{namespace!="",pod!="",namespace="shop"}"#)
        );
        assert_eq!(
            restrict(
                r#"{__name__=~"^container_.*",container!="POD"}"#,
                "kube_namespace",
                "a\"b"
            )
            .as_deref(),
            Some(r#"{__name__=~"^container_.*",container!="POD",kube_namespace="a\"b"}"#)
        );
        assert_eq!(
            restrict("up{}", "namespace", "x").as_deref(),
            Some(r#"up{namespace="x"}"#)
        );
        // Not a plain selector: no restriction rather than a broken query.
        assert_eq!(restrict("rate(x[5m])", "namespace", "x"), None);
        assert_eq!(restrict(r#"x{a="b",}"#, "namespace", "x"), None);
    }
}
