//! prom-metrics-adapter: serves the Kubernetes custom, external and resource metrics APIs from
//! Prometheus, driven by prometheus-adapter's rule files.
//!
//! The modules follow the data path: [`config`] (rule files) → [`rules`] (naming, resource
//! mapping, templates) → [`discovery`] (which series exist) → [`query`] (PromQL and Prometheus) →
//! [`api`] (HTTP handlers and JSON types) → [`server`] (listening, later TLS and authn/authz).
//! [`k8s`] holds all Kubernetes I/O (API discovery, object lists); [`hpa`] is the HPA
//! controller's algorithm, the consumer of the API (for `explain --hpa` and `simulate`);
//! [`cli`] parses flags and wires the rooms together.

pub mod api;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod duration;
pub mod hpa;
pub mod k8s;
pub mod query;
pub mod rules;
pub mod server;
pub mod telemetry;

/// Installs rustls' ring provider as the process default. Idempotent; must run before any TLS
/// client or server is built, because with no provider installed rustls panics.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
