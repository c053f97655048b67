//! Hot reload of the rules file (`--config`), without a restart.
//!
//! The file is read every half second and on SIGHUP; a content digest tells whether it changed.
//! Reading the content rather than watching file events covers every way it gets replaced: an
//! edit in place, an editor's rename over it, and kubelet's ConfigMap update, which swaps the
//! `..data` symlink to a new directory (inotify on the file itself misses that). A new config is
//! parsed, compiled and linted completely before it replaces the running one; one that fails is
//! logged with its rule, field and line, counted, and the running config keeps serving. After a
//! good reload discovery relists at once. Requests in flight finish on the config they started
//! with: they hold their own snapshot. Flags are not reloaded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use sha2::Digest as _;
use tokio::sync::Notify;

use crate::config;
use crate::rules::{CompiledConfig, RestMapper};

/// Watches one rules file and swaps the running config.
pub struct Reloader {
    path: PathBuf,
    strict: bool,
    config: Arc<ArcSwap<CompiledConfig>>,
    mapper: Arc<ArcSwap<RestMapper>>,
    relist: Arc<Notify>,
    /// Digest of the content last read, applied or not.
    last: Option<[u8; 32]>,
    /// The fallback's names, carried into every reloaded config.
    fallback: Option<crate::rules::compiled::SharedNames>,
}

/// What one look at the file did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The content has not changed since the last look.
    Unchanged,
    /// A new config replaced the running one.
    Applied,
    /// The new content was refused; the running config stays.
    Refused(String),
    /// The file could not be read; the running config stays.
    Unreadable(String),
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Reloader {
    /// A reloader of `path` into `config` (compiled against `mapper`, refused on rule problems
    /// when `strict`), waking discovery through `relist` after a change. The file as it is now
    /// counts as applied.
    pub fn new(
        path: PathBuf,
        strict: bool,
        config: Arc<ArcSwap<CompiledConfig>>,
        mapper: Arc<ArcSwap<RestMapper>>,
        relist: Arc<Notify>,
    ) -> Reloader {
        let last = std::fs::read(&path)
            .ok()
            .map(|b| sha2::Sha256::digest(&b).into());
        let metrics = crate::telemetry::metrics();
        metrics.config_last_reload_success.set(unix_now());
        metrics.config_last_reload_successful.set(1);
        Reloader {
            path,
            strict,
            config,
            mapper,
            relist,
            last,
            fallback: None,
        }
    }

    /// Carries the external metrics fallback's names into every config it applies.
    pub fn with_external_fallback(
        mut self,
        names: Option<crate::rules::compiled::SharedNames>,
    ) -> Reloader {
        self.fallback = names;
        self
    }

    /// Reads the file and, when its content changed (or `forced`), applies it if it is good.
    pub fn check(&mut self, forced: bool) -> Outcome {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            // Between kubelet's symlink swap and the new file being there, or a rename in
            // progress: try again at the next look.
            Err(e) => return Outcome::Unreadable(format!("{}: {e}", self.path.display())),
        };
        let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        if !forced && self.last == Some(digest) {
            return Outcome::Unchanged;
        }
        self.last = Some(digest);
        let metrics = crate::telemetry::metrics();
        let outcome = match self.load(&bytes) {
            Ok(compiled) => {
                self.config.store(Arc::new(compiled));
                self.relist.notify_one();
                metrics.config_last_reload_success.set(unix_now());
                tracing::info!(config = %self.path.display(), "reloaded the rules file");
                Outcome::Applied
            }
            Err(e) => {
                tracing::error!(config = %self.path.display(), error = %e, "the changed rules file is not valid; still serving the previous one");
                Outcome::Refused(e)
            }
        };
        let applied = outcome == Outcome::Applied;
        metrics
            .config_last_reload_successful
            .set(i64::from(applied));
        crate::telemetry::Metrics::outcome(
            &metrics.config_reloads,
            if applied { "success" } else { "failure" },
        );
        outcome
    }

    fn load(&self, bytes: &[u8]) -> Result<CompiledConfig, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        let raw =
            config::parse(text, &self.path.display().to_string()).map_err(|e| e.to_string())?;
        super::compile_config(
            &raw,
            &self.mapper.load(),
            self.strict,
            self.fallback.as_ref(),
        )
        .map_err(|e| format!("{e:#}"))
    }

    /// Looks at the file every `every` and at every SIGHUP (which reloads even an unchanged
    /// file), forever.
    pub async fn run(mut self, every: Duration) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let forced = tokio::select! {
                _ = tokio::time::sleep(every) => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            #[cfg(not(unix))]
            let forced = {
                tokio::time::sleep(every).await;
                false
            };
            if let Outcome::Unreadable(e) = self.check(forced) {
                tracing::debug!(error = %e, "rules file not readable right now; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "rules:\n- seriesQuery: 'x_total{namespace!=\"\",pod!=\"\"}'\n  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n  name: {matches: \"^(.*)_total$\", as: \"${1}_per_second\"}\n  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'\n";

    fn reloader(path: &std::path::Path) -> (Reloader, Arc<ArcSwap<CompiledConfig>>, Arc<Notify>) {
        let mapper = RestMapper::standalone();
        let raw = config::parse(&std::fs::read_to_string(path).unwrap(), "t").unwrap();
        let config = Arc::new(ArcSwap::from_pointee(
            crate::rules::compile(&raw, &mapper).unwrap(),
        ));
        let relist = Arc::new(Notify::new());
        let r = Reloader::new(
            path.to_path_buf(),
            false,
            config.clone(),
            Arc::new(ArcSwap::from_pointee(mapper)),
            relist.clone(),
        );
        (r, config, relist)
    }

    #[test]
    fn a_bad_edit_is_refused_and_the_next_good_one_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, GOOD).unwrap();
        let (mut r, config, _) = reloader(&path);
        assert_eq!(r.check(false), Outcome::Unchanged);
        let before = config.load_full();
        std::fs::write(&path, "rules:\n- seriesQuery: x\n  nmae: {}\n").unwrap();
        let Outcome::Refused(why) = r.check(false) else {
            panic!("applied an invalid config")
        };
        assert!(why.contains("rules[0]") && why.contains("nmae"), "{why}");
        assert!(
            Arc::ptr_eq(&before, &config.load_full()),
            "the running config changed"
        );
        assert_eq!(
            r.check(false),
            Outcome::Unchanged,
            "refused once, not at every look"
        );
        std::fs::write(&path, GOOD.replace("_per_second", "_rate")).unwrap();
        assert_eq!(r.check(false), Outcome::Applied);
        assert!(!Arc::ptr_eq(&before, &config.load_full()));
    }

    #[cfg(unix)]
    #[test]
    fn a_configmap_style_symlink_swap_is_seen() {
        // kubelet: config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>/
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("..2026_11_30_10_00_00.000000001");
        let second = dir.path().join("..2026_11_30_10_05_00.000000002");
        std::fs::create_dir(&first).unwrap();
        std::fs::create_dir(&second).unwrap();
        std::fs::write(first.join("config.yaml"), GOOD).unwrap();
        std::fs::write(
            second.join("config.yaml"),
            GOOD.replace("_per_second", "_rate"),
        )
        .unwrap();
        std::os::unix::fs::symlink(&first, dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/config.yaml", dir.path().join("config.yaml")).unwrap();
        let (mut r, _, relist) = reloader(&dir.path().join("config.yaml"));
        assert_eq!(r.check(false), Outcome::Unchanged);
        // The atomic swap: a new link renamed over `..data`.
        std::os::unix::fs::symlink(&second, dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        assert_eq!(r.check(false), Outcome::Applied);
        // Discovery was told to relist.
        let woken = relist.notified();
        futures_util::pin_mut!(woken);
        assert!(futures_util::FutureExt::now_or_never(woken).is_some());
        // SIGHUP reloads even an unchanged file.
        assert_eq!(r.check(true), Outcome::Applied);
    }
}
