//! Watch-backed, metadata-only caches of the objects `*` requests list.
//!
//! The Go adapter LISTs the matching objects from the API server on every `*` request; measured
//! here that costs it ~18 ms of CPU per request and caps it near 5 requests per second behind
//! its client rate limit (DECISIONS §6). Instead, one metadata watch per resource kind is started
//! on first use; requests then filter the cached labels in memory. Until a watch has delivered
//! its initial list, callers fall back to a LIST. A watch nobody asked for within the idle
//! timeout (30 minutes by default) is stopped; the next request starts it again. A failing watch
//! (most often: the adapter's RBAC does not allow listing that kind) is logged once, retried
//! with a capped exponential backoff, and logged again when it recovers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

// `query` declares the lister interface and so owns the type; re-exported at its old path.
pub use crate::query::objects::ObjectMeta;
use crate::rules::selector::Selector;
use crate::rules::{GroupResource, ResourceInfo};

type Meta = PartialObjectMeta<DynamicObject>;

struct ResourceCache {
    store: Store<Meta>,
    synced: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    last_used: Mutex<Instant>,
}

impl Drop for ResourceCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Per-resource metadata caches (one per resource and field selector), started on first use.
pub struct ObjectCache {
    client: kube::Client,
    caches: Mutex<HashMap<(GroupResource, String), Arc<ResourceCache>>>,
    idle: Duration,
}

impl std::fmt::Debug for ObjectCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCache").finish_non_exhaustive()
    }
}

/// The HTTP status of an API error behind a watch failure.
fn status_code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

/// The API resource descriptor kube needs for a dynamic type.
pub fn api_resource(info: &ResourceInfo) -> ApiResource {
    let api_version = if info.group.is_empty() {
        info.version.clone()
    } else {
        format!("{}/{}", info.group, info.version)
    };
    ApiResource {
        group: info.group.clone(),
        version: info.version.clone(),
        api_version,
        kind: info.kind.clone(),
        plural: info.plural.clone(),
    }
}

impl ObjectCache {
    /// Caches that watch through `client`, each stopped once unused for `idle`. Inside a
    /// Tokio runtime a sweeper checks a few times per `idle` (at least every minute) and ends
    /// with the caches.
    pub fn new(client: kube::Client, idle: Duration) -> Arc<Self> {
        let cache = Arc::new(ObjectCache {
            client,
            caches: Mutex::new(HashMap::new()),
            idle,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&cache);
            let every = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(60));
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match weak.upgrade() {
                        Some(cache) => cache.stop_idle(),
                        None => break,
                    }
                }
            });
        }
        cache
    }

    /// Stops the watches nobody used within the idle timeout.
    pub fn stop_idle(&self) {
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        caches.retain(|(resource, fields), cache| {
            let idle = cache
                .last_used
                .lock()
                .map(|t| t.elapsed() >= self.idle)
                .unwrap_or(false);
            if idle {
                tracing::info!(%resource, fields, idle_timeout = ?self.idle, "stopped an unused object watch");
            }
            !idle
        });
    }

    /// How many watches run, for tests and diagnostics.
    pub fn running(&self) -> usize {
        self.caches.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn cache_for(&self, info: &ResourceInfo, fields: &str) -> Arc<ResourceCache> {
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        let cache = caches
            .entry((info.group_resource(), fields.to_string()))
            .or_insert_with(|| Arc::new(self.start(info, fields)))
            .clone();
        if let Ok(mut t) = cache.last_used.lock() {
            *t = Instant::now();
        }
        cache
    }

    fn start(&self, info: &ResourceInfo, fields: &str) -> ResourceCache {
        let ar = api_resource(info);
        let api: Api<Meta> = Api::all_with(self.client.clone(), &ar);
        let writer = reflector::store::Writer::new(ar);
        let store = writer.as_reader();
        let synced = Arc::new(AtomicBool::new(false));
        let flag = synced.clone();
        let resource = info.group_resource().to_string();
        // The server ends each watch after 25 s, below the client's 30 s read timeout, so a
        // quiet watch is renewed instead of failing.
        let mut config = watcher::Config::default().timeout(25);
        if !fields.is_empty() {
            config = config.fields(fields);
        }
        let stream = watcher::watcher(api, config)
            .modify(|m: &mut Meta| {
                // Only names, namespaces and labels are needed; the rest is memory.
                m.metadata.managed_fields = None;
                m.metadata.annotations = None;
            })
            .default_backoff();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(reflector::reflector(writer, stream));
            // Failures are logged once until the watch recovers: the backoff retries a
            // forbidden or missing resource every 30 s at most, forever.
            let mut failing = false;
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if !flag.swap(true, Ordering::AcqRel) {
                            tracing::info!(%resource, "object cache synced");
                        }
                        if std::mem::take(&mut failing) {
                            tracing::info!(%resource, "object watch recovered");
                        }
                    }
                    Ok(_) => {}
                    Err(e) if !failing => {
                        failing = true;
                        if status_code(&e) == Some(403) {
                            tracing::warn!(%resource, error = %e, "the adapter may not list and watch {resource}: grant get, list and watch on it to its service account (the resource-reader ClusterRole); retrying with backoff");
                        } else {
                            tracing::warn!(%resource, error = %e, "object watch failed; retrying with backoff");
                        }
                    }
                    Err(e) => tracing::debug!(%resource, error = %e, "object watch still failing"),
                }
            }
        });
        tracing::debug!(resource = %info.group_resource(), "started an object cache");
        ResourceCache {
            store,
            synced,
            task,
            last_used: Mutex::new(Instant::now()),
        }
    }

    /// The cached objects in `namespace` (all for cluster-scoped resources) that match
    /// `selector` and have a name that can name an object, sorted by namespace and name; `None`
    /// while the cache has not synced. Starts the cache on first use.
    fn matching(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        selector: &Selector,
        fields: &str,
    ) -> Option<Vec<Arc<Meta>>> {
        let cache = self.cache_for(info, fields);
        if !cache.synced.load(Ordering::Acquire) {
            return None;
        }
        let empty = Default::default();
        let mut objects = cache.store.state();
        objects.retain(|o| {
            let in_namespace = match namespace {
                Some(ns) if info.namespaced => o.metadata.namespace.as_deref() == Some(ns),
                _ => true,
            };
            in_namespace
                && selector.matches(o.metadata.labels.as_ref().unwrap_or(&empty))
                && o.metadata
                    .name
                    .as_deref()
                    .is_some_and(crate::rules::selector::is_dns1123_subdomain)
        });
        objects.sort_unstable_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        Some(objects)
    }

    /// The names of [`ObjectCache::objects`] with no field selector, without copying labels: a
    /// `*` request needs names only.
    pub fn names(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Option<Vec<String>> {
        let objects = self.matching(info, namespace, selector, "")?;
        Some(
            objects
                .iter()
                .filter_map(|o| o.metadata.name.clone())
                .collect(),
        )
    }

    /// The matching objects sorted by namespace and name, or `None` while the cache has not
    /// synced (the caller then LISTs). `fields` is a server-side field selector
    /// (`status.phase=Running`), part of the cache's identity. Starts the cache on first use.
    pub fn objects(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        selector: &Selector,
        fields: &str,
    ) -> Option<Vec<ObjectMeta>> {
        let objects = self.matching(info, namespace, selector, fields)?;
        Some(
            objects
                .iter()
                .filter_map(|o| {
                    Some(ObjectMeta {
                        namespace: o.metadata.namespace.clone().unwrap_or_default(),
                        name: o.metadata.name.clone()?,
                        labels: o.metadata.labels.clone().unwrap_or_default(),
                    })
                })
                .collect(),
        )
    }
}
