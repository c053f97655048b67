//! The real `helm` and `kubectl` binaries (installed by `scripts/install-deps.sh` when
//! missing): helm renders the chart with its state directories kept out of the user's home;
//! kubectl is a real client-go client of the adapter.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The chart, relative to the repository root.
pub const CHART: &str = "deploy/helm/prom-metrics-adapter";

/// `name` on PATH; panics with how to install it when it is missing.
fn on_path(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not on PATH, so this test cannot run. Run scripts/install-deps.sh (or \
             scripts/install-helm.sh), which installs helm and kubectl."
        )
    })
}

/// `helm` on PATH.
pub fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| on_path("helm"))
}

/// `kubectl` on PATH.
pub fn kubectl() -> &'static Path {
    static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
    KUBECTL.get_or_init(|| on_path("kubectl"))
}

/// Runs helm in the repository root with its state directories in a temporary directory.
pub fn run_helm(args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(helm())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("running helm")
}

/// `helm template <release> <chart> --namespace <namespace> <extra…>`: the rendered YAML;
/// panics with helm's output on failure.
pub fn helm_template(release: &str, namespace: &str, extra: &[&str]) -> String {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    args.extend_from_slice(extra);
    let out = run_helm(&args);
    assert!(
        out.status.success(),
        "helm {}:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
