//! The command line: flag parsing, logging set-up, and the server and demo entry points.

pub mod args;
pub mod check;
pub mod demo;
pub mod explain;
pub mod flags;
pub mod local_prometheus;
pub mod reload;
pub mod simulate;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use clap::Parser;

use crate::api::{self, AppState};
use crate::config;
use crate::discovery::{Discoverer, DiscoverySettings, Registry};
use crate::k8s;
use crate::query::PrometheusSettings;
use crate::query::objects::{ObjectLister, SeriesObjectLister};
use crate::query::shared::SharedQueries;
use crate::rules::{self, CompiledConfig, RestMapper};
use crate::server::authn::{self, Authenticator, AuthnConfig, RequestHeaderConfig, TokenReviewer};
use crate::server::authz::Authorizer;
use crate::server::secure::{Security, TlsServer};
use crate::server::tls::TlsSettings;
use flags::{LogFormat, ServerFlags};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Entry point for `main`: dispatches subcommands and returns the process exit code.
pub fn main_with_args(args: Vec<String>) -> i32 {
    crate::install_crypto_provider();
    match args.get(1).map(String::as_str) {
        Some("demo") => run_async(demo_main(args)),
        Some("check") => {
            let mut sub = vec![format!("{} check", args[0])];
            sub.extend(args.into_iter().skip(2));
            run_code(check::run(sub))
        }
        Some("explain") => {
            let mut sub = vec![format!("{} explain", args[0])];
            sub.extend(args.into_iter().skip(2));
            run_code(explain::run(sub))
        }
        Some("simulate") => {
            let mut sub = vec![format!("{} simulate", args[0])];
            sub.extend(args.into_iter().skip(2));
            run_code(simulate::run(sub))
        }
        _ => run_async(server_main(args)),
    }
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: unable to start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Prints "listing series…" when discovery takes more than a second, on a terminal only;
/// abort the handle when discovery ends.
pub(crate) fn progress_line(enabled: bool) -> Option<tokio::task::JoinHandle<()>> {
    (enabled && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            eprintln!("listing series…");
        })
    })
}

fn run_code(fut: impl std::future::Future<Output = anyhow::Result<i32>>) -> i32 {
    // Subcommands print their own report; only warnings and errors go to the log.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => match rt.block_on(fut) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        },
        Err(e) => {
            eprintln!("error: unable to start the async runtime: {e}");
            1
        }
    }
}

/// Sets up `tracing`; `RUST_LOG` overrides the level derived from `--v`.
pub fn init_logging(verbosity: u8, format: LogFormat) {
    let level = match verbosity {
        0 | 1 => "info",
        2..=4 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "warn,prom_metrics_adapter={level},prom-metrics-adapter={level}"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Client settings from the Prometheus flags.
pub fn prometheus_settings(flags: &flags::PrometheusArgs) -> PrometheusSettings {
    let mut s = PrometheusSettings {
        url: flags.prometheus_url.clone(),
        verb: flags.prometheus_verb,
        headers: flags.headers(),
        token_file: flags.prometheus_token_file.clone(),
        ca_file: flags.prometheus_ca_file.clone(),
        client_cert_file: flags.prometheus_client_tls_cert_file.clone(),
        client_key_file: flags.prometheus_client_tls_key_file.clone(),
        query_timeout: flags.prometheus_query_timeout,
        max_series_bytes: flags.prometheus_max_response_size,
        max_query_bytes: flags.prometheus_max_query_response_size,
        ..Default::default()
    };
    if flags.prometheus_auth_incluster {
        s.token_file
            .get_or_insert_with(|| PathBuf::from(SA_DIR).join("token"));
        s.ca_file
            .get_or_insert_with(|| PathBuf::from(SA_DIR).join("ca.crt"));
    }
    s
}

/// Compiles the config and reports problems the way the flags ask for.
fn compile_config(
    raw: &config::MetricsDiscoveryConfig,
    mapper: &RestMapper,
    strict: bool,
    fallback: Option<&rules::compiled::SharedNames>,
) -> anyhow::Result<CompiledConfig> {
    let mut compiled = rules::compile(raw, mapper).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("invalid config:\n{}", list.join("\n"))
    })?;
    compiled.external_fallback = fallback.cloned();
    for warning in compiled.warnings() {
        tracing::warn!(rule = %warning.location(), "{}", warning.message);
    }
    let problems = compiled.problems();
    for problem in &problems {
        tracing::error!(rule = %problem.location(), "{}; requests for this rule's metrics will fail", problem.message);
    }
    if strict && !problems.is_empty() {
        bail!(
            "--strict-config: {} rule problem(s), first: {}",
            problems.len(),
            problems[0]
        );
    }
    Ok(compiled)
}

/// How often the fallback's external metric names are listed again.
const FALLBACK_NAMES_EVERY: Duration = Duration::from_secs(30);

/// The `--external-metrics-fallback` server, its name list refreshed in the background from
/// now on; `None` without the flag.
fn external_fallback(
    flags: &ServerFlags,
) -> anyhow::Result<Option<Arc<api::fallback::ExternalFallback>>> {
    let f = &flags.fallback;
    let Some(url) = &f.external_metrics_fallback else {
        return Ok(None);
    };
    // The pod's service-account token, where there is one: KEDA's metrics apiserver
    // authenticates callers with a TokenReview and authorizes them with RBAC.
    let token_file = f.external_metrics_fallback_token_file.clone().or_else(|| {
        let sa = PathBuf::from(SA_DIR).join("token");
        (!flags.standalone && sa.exists()).then_some(sa)
    });
    let fallback = api::fallback::ExternalFallback::new(&api::fallback::FallbackSettings {
        url: url.clone(),
        ca_file: f.external_metrics_fallback_ca_file.clone(),
        client_cert_file: f.external_metrics_fallback_client_cert_file.clone(),
        client_key_file: f.external_metrics_fallback_client_key_file.clone(),
        token_file,
        timeout: f.external_metrics_fallback_timeout,
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    let fallback = Arc::new(fallback);
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(fallback.clone().run(FALLBACK_NAMES_EVERY));
    }
    tracing::info!(fallback = %fallback.url(), "forwarding external metric names no rule serves");
    Ok(Some(fallback))
}

/// Everything a server needs, ready to serve.
pub struct Adapter {
    /// The shared state.
    pub state: Arc<AppState>,
    /// Discovery, to be spawned.
    pub discoverer: Discoverer,
}

/// Builds an adapter from parsed flags, a raw config, the resources the cluster has and where
/// object lists come from.
pub fn build_adapter(
    flags: &ServerFlags,
    raw: &config::MetricsDiscoveryConfig,
    mapper: RestMapper,
    objects: impl FnOnce(&Arc<SharedQueries>) -> ObjectLister,
) -> anyhow::Result<Adapter> {
    let fallback = external_fallback(flags)?;
    let compiled = compile_config(
        raw,
        &mapper,
        flags.strict_config,
        fallback.as_ref().map(|f| f.names()).as_ref(),
    )?;
    if !compiled.rules.is_empty() && flags.max_age() < flags.metrics_relist_interval {
        bail!("--metrics-max-age must not be less than --metrics-relist-interval");
    }
    crate::telemetry::metrics()
        .query_timeout
        .set(flags.prometheus.prometheus_query_timeout.as_secs_f64());
    let queries = Arc::new(SharedQueries::new(
        &prometheus_settings(&flags.prometheus),
        flags.query_cache_ttl,
        flags.serve_stale_for,
    )?);
    // A named backend whose files cannot be read fails start-up, as the default one does.
    for spec in &compiled.backends {
        queries.backend(Some(spec))?;
    }
    let config = Arc::new(ArcSwap::from_pointee(compiled));
    let mapper = Arc::new(ArcSwap::from_pointee(mapper));
    let registry = Arc::new(ArcSwap::from_pointee(Registry::default()));
    let discoverer = Discoverer::new(
        queries.clone(),
        config.clone(),
        mapper.clone(),
        registry.clone(),
        DiscoverySettings {
            relist_interval: flags.metrics_relist_interval,
            max_age: flags.max_age(),
        },
    );
    let state = Arc::new(AppState {
        config,
        registry,
        mapper,
        objects: objects(&queries),
        lookups: Some(Arc::new(crate::discovery::lookup::Lookups::new(
            discoverer.catalog(),
        ))),
        fallback,
        queries,
        ready: Default::default(),
        draining: Default::default(),
        profiling: flags
            .profiling
            .then(|| api::profiling::longest_profile(flags.request_timeout))
            .flatten(),
    });
    Ok(Adapter { state, discoverer })
}

/// Builds a standalone adapter: built-in resource table, objects from the series.
pub fn build_standalone(
    flags: &ServerFlags,
    raw: &config::MetricsDiscoveryConfig,
) -> anyhow::Result<Adapter> {
    build_adapter(flags, raw, RestMapper::standalone(), |queries| {
        ObjectLister::Series(SeriesObjectLister::new(queries.clone(), flags.max_age()))
    })
}

/// Builds a cluster-mode adapter: resources from API discovery (refreshed every
/// `--discovery-interval`), objects listed from the API server.
pub async fn build_cluster(
    flags: &ServerFlags,
    raw: &config::MetricsDiscoveryConfig,
) -> anyhow::Result<Adapter> {
    let kube = k8s::build_client(flags.lister_kubeconfig.as_deref(), flags.client_rate()).await?;
    build_cluster_with(flags, raw, kube).await
}

async fn build_cluster_with(
    flags: &ServerFlags,
    raw: &config::MetricsDiscoveryConfig,
    kube: kube::Client,
) -> anyhow::Result<Adapter> {
    let mapper = k8s::discover(&kube)
        .await
        .context("discovering the cluster's API resources")?;
    tracing::info!(
        resources = mapper.resources().len(),
        "discovered the cluster's API resources"
    );
    let adapter = build_adapter(flags, raw, mapper, |_| {
        ObjectLister::Kube(Arc::new(k8s::KubeObjectLister::new(
            kube.clone(),
            flags.object_watch_idle_timeout,
        )))
    })?;
    tokio::spawn(k8s::refresh_mapper(
        kube,
        adapter.state.mapper.clone(),
        flags.discovery_interval(),
    ));
    Ok(adapter)
}

/// Serves a built adapter on plain HTTP until `shutdown` resolves.
pub async fn serve_adapter(
    flags: &ServerFlags,
    adapter: Adapter,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Adapter { state, discoverer } = adapter;
    let listener =
        crate::server::bind_standalone(flags.listen_address, flags.allow_insecure_remote).await?;
    let local = listener
        .local_addr()
        .context("reading the listening address")?;
    tracing::info!(address = %local, prometheus = %crate::query::prometheus::redacted_url(&flags.prometheus.prometheus_url), "serving plain HTTP (standalone mode)");
    let reloader = spawn_reloader(flags, &state, &discoverer);
    let discovery = spawn_discovery(&state, discoverer);
    let limits = flags.limits_draining(state.draining.clone());
    let shutdown = drain_after(
        shutdown,
        state.draining.clone(),
        flags.shutdown_delay_duration,
    );
    let result = crate::server::serve_plain(
        listener,
        api::router(state),
        limits,
        shutdown,
        flags.shutdown_timeout,
    )
    .await;
    discovery.abort();
    if let Some(r) = reloader {
        r.abort();
    }
    result.map_err(Into::into)
}

/// Watches `--config` for changes (and SIGHUP), swapping the running config.
fn spawn_reloader(
    flags: &ServerFlags,
    state: &Arc<AppState>,
    discoverer: &Discoverer,
) -> Option<tokio::task::JoinHandle<()>> {
    let path = flags.config.clone()?;
    let reloader = reload::Reloader::new(
        path,
        flags.strict_config,
        state.config.clone(),
        state.mapper.clone(),
        discoverer.relist_trigger(),
    )
    .with_external_fallback(state.fallback.as_ref().map(|f| f.names()));
    Some(tokio::spawn(reloader.run(Duration::from_millis(500))))
}

/// The shutdown sequence around `signal`: when it resolves, `/readyz` starts failing and
/// answers ask clients to reconnect elsewhere (`Connection: close`), for `delay`, so that
/// endpoints and the aggregator move to the other replicas while this one still answers;
/// then the server stops accepting and drains what is in flight.
async fn drain_after(
    signal: impl std::future::Future<Output = ()> + Send + 'static,
    draining: Arc<std::sync::atomic::AtomicBool>,
    delay: Duration,
) {
    signal.await;
    draining.store(true, Ordering::Release);
    tracing::info!(delay = ?delay, "shutting down: /readyz fails now; still serving for --shutdown-delay-duration");
    tokio::time::sleep(delay).await;
    tracing::info!("no longer accepting connections; finishing the requests in flight");
}

/// Starts discovery; the adapter turns ready once its first attempt finished, success or not,
/// or after 30 s (DECISIONS §5). TLS and the authentication config are loaded before serving
/// starts, so they need no gate of their own.
fn spawn_discovery(state: &Arc<AppState>, discoverer: Discoverer) -> tokio::task::JoinHandle<()> {
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let discovery = tokio::spawn(discoverer.run(done_tx));
    let ready_state = state.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(30), done_rx.wait_for(|d| *d)).await;
        ready_state.ready.store(true, Ordering::Release);
        // Housekeeping that lives as long as serving does: RSS that follows what is in use.
        // Its first trim runs now, so what start-up freed (rule parsing, the first relist's
        // answer) is handed back at readiness rather than up to 30 s later.
        crate::server::memory::spawn_trimmer();
    });
    discovery
}

fn read_pem_file(
    path: &std::path::Path,
    what: &str,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))?;
    Ok(crate::server::tls::read_certs(
        &pem,
        &format!("{what} {}", path.display()),
    )?)
}

/// The authentication config: the `kube-system/extension-apiserver-authentication` ConfigMap
/// (unless `--authentication-skip-lookup`), overridden by the CA flags where given.
pub async fn load_authn_config(
    flags: &ServerFlags,
    client: &kube::Client,
    at_start: bool,
) -> anyhow::Result<AuthnConfig> {
    let mut config = AuthnConfig::default();
    // As upstream: nothing to look up when both CAs come from flags.
    let both_from_flags =
        flags.client_ca_file.is_some() && flags.requestheader_client_ca_file.is_some();
    if !flags.authentication_skip_lookup && !both_from_flags {
        let api = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
            client.clone(),
            "kube-system",
        );
        match api.get("extension-apiserver-authentication").await {
            Ok(cm) => config = authn::config_from_configmap(&cm.data.unwrap_or_default())?,
            // Tolerating a failed lookup applies at start-up only: later, an API server that is
            // briefly away must not make the adapter forget the front-proxy CA.
            Err(e) if at_start && flags.authentication_tolerate_lookup_failure => tracing::warn!(
                error = %crate::query::prometheus::error_chain(&e),
                "unable to read kube-system/extension-apiserver-authentication; continuing without it"
            ),
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "unable to read kube-system/extension-apiserver-authentication (grant the \
                     extension-apiserver-authentication-reader Role, or pass \
                     --authentication-tolerate-lookup-failure): {}",
                    crate::query::prometheus::error_chain(&e)
                ));
            }
        }
    }
    if let Some(path) = &flags.client_ca_file {
        config.client_ca = read_pem_file(path, "--client-ca-file")?;
    }
    if let Some(path) = &flags.requestheader_client_ca_file {
        config.requestheader = Some(RequestHeaderConfig {
            ca: read_pem_file(path, "--requestheader-client-ca-file")?,
            allowed_names: flags.requestheader_allowed_names.clone(),
            username_headers: authn::lowercase(flags.requestheader_username_headers.clone()),
            group_headers: authn::lowercase(flags.requestheader_group_headers.clone()),
            extra_prefixes: authn::lowercase(flags.requestheader_extra_headers_prefix.clone()),
            uid_headers: authn::lowercase(flags.requestheader_uid_headers.clone()),
        });
    }
    Ok(config)
}

/// A client for TokenReviews or SubjectAccessReviews: from `path`, else the lister's
/// kubeconfig, with k8s.io/apiserver's own rate for these clients rather than `--client-qps`,
/// which would make every SubjectAccessReview queue behind object LISTs.
async fn delegated_client(
    path: Option<&std::path::Path>,
    flags: &ServerFlags,
) -> anyhow::Result<kube::Client> {
    let path = path.or(flags.lister_kubeconfig.as_deref());
    Ok(k8s::build_client(path, k8s::throttle::Rate::DELEGATED).await?)
}

/// The self-managed serving certificate (`--cert-secret-name`), synced once so the files
/// exist before the server loads them.
async fn managed_serving_cert(
    flags: &ServerFlags,
    client: &kube::Client,
) -> anyhow::Result<Option<k8s::serving_cert::ServingCert>> {
    let Some(secret) = &flags.cert_secret_name else {
        return Ok(None);
    };
    if flags.tls_cert_file.is_some() || flags.tls_private_key_file.is_some() {
        anyhow::bail!(
            "--cert-secret-name manages the serving certificate; it cannot be combined with \
             --tls-cert-file or --tls-private-key-file"
        );
    }
    let namespace = match &flags.cert_secret_namespace {
        Some(ns) => ns.clone(),
        None => std::fs::read_to_string(PathBuf::from(SA_DIR).join("namespace"))
            .map(|ns| ns.trim().to_string())
            .context(
                "--cert-secret-name needs --cert-secret-namespace outside a pod (no service \
                 account namespace to default to)",
            )?,
    };
    let manager = k8s::serving_cert::ServingCert::new(
        client.clone(),
        k8s::serving_cert::Settings {
            namespace,
            secret: secret.clone(),
            service: flags.cert_service_name.clone(),
            // `--cert-apiservices=` (none): while another adapter still owns them.
            api_services: flags
                .cert_apiservices
                .iter()
                .filter(|n| !n.trim().is_empty())
                .cloned()
                .collect(),
            cert_dir: flags.cert_dir.clone(),
            rotation_grace: flags.cert_ca_rotation_grace,
        },
    );
    manager
        .sync()
        .await
        .context("setting up the self-managed serving certificate")?;
    Ok(Some(manager))
}

/// The audit log, when both `--audit-log-path` and `--audit-policy-file` are given.
fn auditor(flags: &ServerFlags) -> anyhow::Result<Option<Arc<crate::server::audit::Auditor>>> {
    if flags.audit_log_format != "json" {
        anyhow::bail!(
            "--audit-log-format={} is not supported; only json is written",
            flags.audit_log_format
        );
    }
    match (&flags.audit_log_path, &flags.audit_policy_file) {
        (Some(path), Some(policy)) => {
            let rotation = crate::server::audit::file::Rotation::from_flags(
                flags.audit_log_maxsize,
                flags.audit_log_maxbackup,
                flags.audit_log_maxage,
            );
            let auditor = crate::server::audit::Auditor::start(path, policy, rotation)?;
            tracing::info!(log = %path, policy = %policy.display(), "writing the audit log");
            Ok(Some(auditor))
        }
        (Some(_), None) => {
            tracing::warn!("--audit-log-path without --audit-policy-file: nothing is audited");
            Ok(None)
        }
        (None, Some(_)) => {
            tracing::warn!("--audit-policy-file without --audit-log-path: nothing is audited");
            Ok(None)
        }
        (None, None) => Ok(None),
    }
}

/// Starts a cluster-mode server: API discovery and object lists from the cluster, HTTPS on
/// `--bind-address:--secure-port`, delegated authentication and authorization. Returns the
/// bound address and the serving task.
pub async fn start_cluster(
    flags: &ServerFlags,
    raw: &config::MetricsDiscoveryConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(
    std::net::SocketAddr,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let lister = k8s::build_client(flags.lister_kubeconfig.as_deref(), flags.client_rate()).await?;
    let authn_client = delegated_client(flags.authentication_kubeconfig.as_deref(), flags).await?;
    let authz_client = delegated_client(flags.authorization_kubeconfig.as_deref(), flags).await?;
    let serving_cert = managed_serving_cert(flags, &lister).await?;
    let Adapter { state, discoverer } = build_cluster_with(flags, raw, lister).await?;

    let authn_config = load_authn_config(flags, &authn_client, true).await?;
    let authn = Arc::new(Authenticator::new(
        authn_config,
        Some(TokenReviewer::new(
            authn_client.clone(),
            flags.authentication_token_webhook_cache_ttl,
        )),
    )?);
    let authz = Arc::new(Authorizer::new(
        Some(authz_client),
        flags.authorization_always_allow_paths.clone(),
        flags.authorization_webhook_cache_authorized_ttl,
        flags.authorization_webhook_cache_unauthorized_ttl,
    ));
    let (cert_file, key_file) = match &serving_cert {
        Some(manager) => {
            let (cert, key) = manager.files();
            (Some(cert), Some(key))
        }
        None => (
            flags.tls_cert_file.clone(),
            flags.tls_private_key_file.clone(),
        ),
    };
    if let Some(manager) = serving_cert {
        tokio::spawn(manager.run(flags.cert_resync_interval));
    }
    let tls = Arc::new(TlsServer::new(
        TlsSettings {
            cert_file,
            key_file,
            cert_dir: flags.cert_dir.clone(),
            min_version: flags.tls_min_version.clone(),
            cipher_suites: flags.tls_cipher_suites.clone(),
            disable_http2: flags.disable_http2,
        },
        authn.clone(),
        &[],
    )?);
    tokio::spawn(tls.clone().watch_files(flags.cert_reload_interval));
    {
        // CA rotation: re-read the ConfigMap and CA files, rebuild the verifiers and TLS.
        let (flags, authn, tls, client) = (
            flags.clone(),
            authn.clone(),
            tls.clone(),
            authn_client.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(flags.authentication_config_refresh_interval).await;
                match load_authn_config(&flags, &client, false).await {
                    Ok(config) => match authn.update(config) {
                        Ok(true) => match tls.reload() {
                            Ok(()) => tracing::info!("authentication CAs changed; reloaded"),
                            Err(e) => {
                                tracing::warn!(error = %e, "authentication CAs changed but TLS could not be rebuilt")
                            }
                        },
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "new authentication config is unusable; keeping the previous one")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "unable to refresh the authentication config")
                    }
                }
            }
        });
    }
    let reloader = spawn_reloader(flags, &state, &discoverer);
    let discovery = spawn_discovery(&state, discoverer);
    let addr = std::net::SocketAddr::new(flags.bind_address, flags.secure_port);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let security = Arc::new(Security {
        authn,
        authz,
        audit: auditor(flags)?,
    });
    let limits = flags.limits_draining(state.draining.clone());
    let shutdown = drain_after(
        shutdown,
        state.draining.clone(),
        flags.shutdown_delay_duration,
    );
    let drain_timeout = flags.shutdown_timeout;
    let server = tokio::spawn(async move {
        let result = tls
            .serve(
                addr,
                api::router(state),
                security,
                limits,
                (shutdown, drain_timeout),
                Some(bound_tx),
            )
            .await;
        discovery.abort();
        if let Some(r) = reloader {
            r.abort();
        }
        result.map_err(anyhow::Error::from)
    });
    let bound = match bound_rx.await {
        Ok(a) => a,
        Err(_) => {
            return match server.await {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow::anyhow!(
                    "the HTTPS server stopped before listening on {addr}"
                )),
            };
        }
    };
    tracing::info!(address = %bound, prometheus = %crate::query::prometheus::redacted_url(&flags.prometheus.prometheus_url), "serving HTTPS");
    Ok((bound, server))
}

async fn server_main(args: Vec<String>) -> anyhow::Result<()> {
    let (args, warnings) = args::normalize(args);
    let flags = match ServerFlags::try_parse_from(&args) {
        Ok(f) => f,
        Err(e) => {
            // --help and --version print and exit 0; real errors exit 2, as clap does.
            let _ = e.print();
            std::process::exit(e.exit_code());
        }
    };
    init_logging(flags.verbosity, flags.log_format);
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Some(path) = &flags.prometheus.prometheus_auth_config {
        bail!(
            "--prometheus-auth-config={} is not supported yet; use --prometheus-token-file, \
             --prometheus-ca-file and --prometheus-client-tls-cert-file/-key-file instead",
            path.display()
        );
    }
    let Some(config_path) = &flags.config else {
        bail!("no metrics discovery configuration file specified (make sure to use --config)");
    };
    let raw = config::load_file(config_path)?;
    if flags.standalone {
        let adapter = build_standalone(&flags, &raw)?;
        return serve_adapter(&flags, adapter, crate::server::shutdown_signal()).await;
    }
    let (_, server) = start_cluster(&flags, &raw, crate::server::shutdown_signal()).await?;
    server.await.context("the HTTPS server task failed")?
}

async fn demo_main(args: Vec<String>) -> anyhow::Result<()> {
    // `demo [server flags…]`: the flags after `demo` apply to the demo's server.
    let mut server_args = vec![args[0].clone()];
    server_args.extend(args.into_iter().skip(2));
    let mut flags = ServerFlags::try_parse_from(&server_args).unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(e.exit_code());
    });
    init_logging(flags.verbosity, flags.log_format);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("reading the clock")?
        .as_secs() as i64;
    // Samples from 15 minutes ago to an hour ahead keep the demo's values current for an hour.
    let samples = demo::demo_samples(now - 15 * 60, now + 60 * 60);
    let prometheus =
        tokio::task::spawn_blocking(move || local_prometheus::LocalPrometheus::start(&samples))
            .await
            .context("starting Prometheus")??;
    flags.prometheus.prometheus_url = prometheus.url().to_string();
    flags.standalone = true;
    flags.metrics_relist_interval = Duration::from_secs(60);
    flags.metrics_max_age = Some(Duration::from_secs(20 * 60));
    let raw = config::parse(demo::DEMO_CONFIG, "embedded demo config")?;
    let base = format!("http://{}", flags.listen_address);
    // The simulate example as a shell line; the one argument with quotes and brackets quoted.
    let simulate = demo::simulate_args(prometheus.url(), now - 15 * 60, "simulate.svg")
        .iter()
        .map(|a| {
            if a.contains('"') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "\nDemo Prometheus with generated samples: {url}\nAdapter (standalone, plain HTTP): {base}\n\nTry:\n  curl -s {base}/apis/custom.metrics.k8s.io/v1beta2\n  curl -s '{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second'\n  curl -s '{base}/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/web-2/http_requests_in_flight'\n  curl -s '{base}/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length?labelSelector=queue%3Dorders'\n\nReplay the jobs queue's spike through an HPA (config/hpa/demo-hpa.yaml), from the repository root:\n  prom-metrics-adapter {simulate}\n\nCtrl-C stops both.\n",
        url = prometheus.url(),
    );
    let result = serve_adapter(
        &flags,
        build_standalone(&flags, &raw)?,
        crate::server::shutdown_signal(),
    )
    .await;
    drop(prometheus);
    result
}
