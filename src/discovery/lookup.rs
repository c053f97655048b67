//! Targeted lookups: a metric the registry does not know yet is looked for at once, instead of
//! answering "not found" until the next relist (10 minutes upstream by default), which leaves a
//! fresh HPA reporting "no metrics returned".
//!
//! Only the rules whose `as` can produce the name are asked, each restricted to the request's
//! namespace; what they find joins the registry at once. Concurrent misses share one lookup per
//! (rule, namespace); a name is looked for at most once per `--metrics-relist-interval` (a miss
//! that found nothing answers 404 without a lookup until then), and all lookups together are
//! bounded per second, so a stream of requests for made-up names costs little.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use promql_parser::parser::Expr;

use super::{Catalog, CustomMetricKey, SeriesKey};
use crate::query::prometheus::SeriesSet;
use crate::query::shared::{Coalescer, Freshness};
use crate::rules::quote::go_quote;
use crate::rules::{CompiledRule, RuleKind};

/// Names remembered for the per-name bound; beyond it (after forgetting expired ones) new
/// names are not looked for until room frees up.
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
    /// The metric joined the registry.
    Found,
    /// No rule that could produce the name has it, or it was looked for recently.
    NotFound,
    /// Some rule that could produce the name could not be asked; whether it is ours is not
    /// known.
    Failed(String),
}

/// A listing and when it was sent (what it found existed then).
type Listing = (Instant, Arc<SeriesSet>);

/// Looks for metrics the registry does not know.
pub struct Lookups {
    catalog: Arc<Catalog>,
    /// When each miss last had a conclusive lookup (the per-name bound). Lookups that failed,
    /// or that only saw a reused listing, are not remembered: the next request looks again.
    recent: Mutex<HashMap<String, Instant>>,
    /// Concurrent requests for the same miss share its lookup and its outcome.
    misses: Coalescer<Outcome>,
    /// Listings narrowed to a namespace: identical ones in flight at once are sent once.
    narrowed: Coalescer<Listing>,
    /// Listings no namespace narrows cost as much as a relist of their rule: one answer is
    /// reused by every lookup for [`UNRESTRICTED_EVERY`] (or the relist interval, if shorter).
    whole: Coalescer<Listing>,
    limiter: DefaultDirectRateLimiter,
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
            .filter(|r| r.namer.could_produce(&key.metric))
            .cloned()
            .collect();
        let miss = format!(
            "custom\u{0}{}\u{0}{}\u{0}{}",
            key.resource,
            key.metric,
            namespace.unwrap_or_default()
        );
        match self.shared(miss, rules, namespace).await {
            Outcome::Found if self.catalog.registry.load().custom(key).is_none() => {
                Outcome::NotFound
            }
            other => other,
        }
    }

    /// Looks for the external metric `metric` within `namespace`.
    pub async fn external(self: &Arc<Self>, metric: &str, namespace: &str) -> Outcome {
        let rules: Vec<Arc<CompiledRule>> = self
            .catalog
            .config()
            .external_rules
            .iter()
            .filter(|r| r.namer.could_produce(metric))
            .cloned()
            .collect();
        let miss = format!("external\u{0}{metric}\u{0}{namespace}");
        match self.shared(miss, rules, Some(namespace)).await {
            Outcome::Found if self.catalog.registry.load().external(metric).is_none() => {
                Outcome::NotFound
            }
            other => other,
        }
    }

    /// The lookup of `miss`, shared with concurrent requests for the same miss. It runs as its
    /// own task, so a request cut off by `--request-timeout` does not stop it halfway.
    async fn shared(
        self: &Arc<Self>,
        miss: String,
        rules: Vec<Arc<CompiledRule>>,
        namespace: Option<&str>,
    ) -> Outcome {
        if rules.is_empty() {
            return Outcome::NotFound;
        }
        let this = self.clone();
        let namespace = namespace.map(str::to_string);
        let key = miss.clone();
        let look = move || async move { Ok(this.look(&miss, rules, namespace.as_deref()).await) };
        match self.misses.get(&key, look).await {
            Ok((outcome, _)) => outcome,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// Whether `miss` had a conclusive lookup within the relist interval.
    fn looked_recently(&self, miss: &str) -> bool {
        let every = self.catalog.settings().relist_interval;
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.get(miss).is_some_and(|at| at.elapsed() < every)
    }

    /// Remembers a conclusive lookup of `miss`; past [`MAX_REMEMBERED`] (after forgetting
    /// expired ones) it is not remembered and the rate bound alone limits its lookups.
    fn remember(&self, miss: &str) {
        let every = self.catalog.settings().relist_interval;
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= MAX_REMEMBERED {
            recent.retain(|_, at| at.elapsed() < every);
            if recent.len() >= MAX_REMEMBERED {
                return;
            }
        }
        recent.insert(miss.to_string(), Instant::now());
    }

    /// One rule's listing for a lookup within `namespace`, and whether it was a reused answer.
    async fn listing(
        &self,
        rule: &CompiledRule,
        namespace: Option<&str>,
    ) -> Result<(Listing, bool), String> {
        let narrowed = match (namespace, rule.namespace_label.as_deref()) {
            (Some(ns), Some(label))
                if rule.kind == RuleKind::Custom || rule.resources.namespaced() =>
            {
                restrict(&rule.series_query, label, ns)
            }
            _ => None,
        };
        let (selector, flights) = match narrowed {
            Some(selector) => (selector, &self.narrowed),
            None => (rule.series_query.clone(), &self.whole),
        };
        let backend = self
            .catalog
            .queries()
            .backend(rule.backend.as_ref())
            .map_err(|e| e.to_string())?;
        let client = backend.client().clone();
        let lookback = self.catalog.settings().max_age;
        let flight = format!("{}\u{0}{selector}", rule.backend_name());
        let owned = selector.clone();
        let answer = flights
            .get(&flight, move || async move {
                let sent = Instant::now();
                let end = crate::api::unix_now();
                let start = end - lookback.as_secs_f64();
                let set = client.series(&owned, start, end).await?;
                Ok((sent, Arc::new(set)))
            })
            .await;
        match answer {
            Ok((listing, freshness)) => Ok((listing, freshness == Freshness::Reused)),
            Err(e) => {
                tracing::warn!(rule = %rule.label(), series_query = %selector, error = %e, "targeted lookup failed");
                Err(e.to_string())
            }
        }
    }

    async fn look(
        &self,
        miss: &str,
        rules: Vec<Arc<CompiledRule>>,
        namespace: Option<&str>,
    ) -> Outcome {
        let count = |result: &str| {
            let m = crate::telemetry::metrics();
            crate::telemetry::Metrics::outcome(&m.targeted_lookups, result);
        };
        if self.looked_recently(miss) {
            count("skipped");
            return Outcome::NotFound;
        }
        if self.limiter.check().is_err() {
            count("skipped");
            return Outcome::Failed(format!(
                "more than {LOOKUPS_PER_SECOND} lookups a second for metrics not listed yet; try again"
            ));
        }
        let answers = join_all(rules.iter().map(|rule| self.listing(rule, namespace))).await;
        let (mut changed, mut reused, mut failure) = (false, false, None);
        for (rule, answer) in rules.iter().zip(answers) {
            match answer {
                Ok(((sent, set), was_reused)) => {
                    reused |= was_reused;
                    changed |= self.catalog.add_found(&SeriesKey::of(rule), &set, sent);
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if changed {
            self.catalog.publish_off_thread().await;
        }
        if failure.is_none() && !reused {
            self.remember(miss);
        }
        tracing::debug!(miss = %miss.replace('\u{0}', " "), changed, reused, failed = failure.is_some(), "targeted lookup");
        count(match (changed, &failure) {
            (true, _) => "found",
            (false, Some(_)) => "failed",
            (false, None) => "not_found",
        });
        match (changed, failure) {
            // A rule that failed may be the one that serves the name: not known to be absent.
            (_, Some(e)) => Outcome::Failed(e),
            (true, None) => Outcome::Found,
            (false, None) => Outcome::NotFound,
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
