//! The real `helm` binary (installed by `scripts/install-deps.sh`), run on the chart with its
//! state directories kept out of the user's home.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The chart, relative to the repository root.
pub const CHART: &str = "deploy/helm/prom-metrics-adapter";

/// `helm` on PATH; panics with how to install it when it is missing.
pub fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("helm"))
                .find(|p| p.is_file())
        });
        found.unwrap_or_else(|| {
            panic!(
                "`helm` is not on PATH, so the Helm chart cannot be tested. Run \
                 scripts/install-deps.sh (or scripts/install-helm.sh), which installs it."
            )
        })
    })
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
pub fn template(release: &str, namespace: &str, extra: &[&str]) -> String {
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
