//! Cluster-mode serving: HTTPS with delegated authentication and authorization as layers in
//! front of the API router, with the request limits ([`super::limits`]) between the two.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::tls::TlsInfo;
use axum_server::tls_rustls::RustlsConfig;

use super::ServeError;
use super::audit::{Auditor, Notes, audit};
use super::authn::{Authenticator, UserInfo};
use super::authz::{Attributes, Authorizer};
use super::limits::{Limits, limit};
use super::tls::{TlsError, TlsSettings, mtimes, server_config};
use crate::api::error::ApiError;

/// `path`, cut to its first 256 bytes (at a character boundary) for a log line.
fn loggable(path: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 256;
    if path.len() <= MAX {
        return path.into();
    }
    let mut end = MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &path[..end], path.len()).into()
}

/// Request headers accepted, in bytes: Go's `http.DefaultMaxHeaderBytes`, which
/// kube-apiserver and k8s.io/apiserver keep.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// Request headers accepted, in number: Go sets no such limit; this one is far above what the
/// byte limit lets through in practice for the aggregator's headers.
pub const MAX_HEADERS: usize = 4096;

/// Authentication, authorization and auditing, shared by every request.
pub struct Security {
    /// Who is asking.
    pub authn: Arc<Authenticator>,
    /// Whether they may.
    pub authz: Arc<Authorizer>,
    /// What is recorded, when `--audit-policy-file` and `--audit-log-path` are set.
    pub audit: Option<Arc<Auditor>>,
}

/// First layer: who is asking. Always-allowed paths pass untouched; everything else is
/// authenticated (401 on bad credentials) and the [`UserInfo`] put in the request's
/// extensions for the layers after it.
pub async fn authenticate(
    State(sec): State<Arc<Security>>,
    mut req: Request,
    next: Next,
) -> Response {
    if sec.authz.always_allowed(req.uri().path()) {
        return next.run(req).await;
    }
    // The connection's, shared: not copied per request.
    let tls = req.extensions().get::<Arc<TlsInfo>>().cloned();
    let peer_certs = tls.as_deref().map_or(&[][..], |i| &i.peer_certificates[..]);
    match sec.authn.authenticate(peer_certs, req.headers()).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(e) => {
            crate::telemetry::Metrics::outcome(
                &crate::telemetry::metrics().authentications,
                "error",
            );
            tracing::info!(path = %loggable(req.uri().path()), error = %e, "authentication failed");
            if let Some(auditor) = &sec.audit {
                auditor.unauthenticated(&req).await;
            }
            // As k8s.io/apiserver: the why stays in our log; a caller learns nothing about
            // which CAs or tokens we trust.
            ApiError::Unauthorized("Unauthorized".into()).into_response()
        }
    }
}

/// Last layer before the handlers: may they? A SubjectAccessReview (cached) decides; 403
/// names who was denied what.
pub async fn authorize(State(sec): State<Arc<Security>>, req: Request, next: Next) -> Response {
    // The path is not copied: a waiting request should hold as little as it can.
    if sec.authz.always_allowed(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(user) = req.extensions().get::<UserInfo>().cloned() else {
        // Unreachable behind `authenticate`; refuse rather than serve unauthenticated.
        return ApiError::Unauthorized("Unauthorized".into()).into_response();
    };
    let metrics = crate::telemetry::metrics();
    let attrs = Attributes::from_path(req.uri().path());
    let path = loggable(req.uri().path());
    let decision = sec.authz.authorize(&user, &attrs).await;
    if let (Some(notes), Ok(d)) = (req.extensions().get::<Notes>(), &decision) {
        notes.annotate(
            "authorization.k8s.io/decision",
            if d.allowed { "allow" } else { "forbid" },
        );
        notes.annotate("authorization.k8s.io/reason", d.reason.clone());
    }
    match decision {
        Ok(d) if d.allowed => {
            crate::telemetry::Metrics::outcome(&metrics.authorizations, "allowed");
            tracing::debug!(user = %user.name, %path, "authorized");
            next.run(req).await
        }
        Ok(d) => {
            crate::telemetry::Metrics::outcome(&metrics.authorizations, "denied");
            let reason = if d.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", d.reason)
            };
            tracing::info!(user = %user.name, %path, "forbidden");
            ApiError::Forbidden(format!(
                "forbidden: User \"{}\" cannot {}{reason}",
                user.name,
                attrs.describe()
            ))
            .into_response()
        }
        Err(e) => {
            crate::telemetry::Metrics::outcome(&metrics.authorizations, "error");
            // The cause names our service account and the API server's answer: log only.
            tracing::warn!(user = %user.name, %path, error = %e, "authorization check failed");
            ApiError::Internal(
                "the authorization check (SubjectAccessReview) failed; see the adapter's log"
                    .into(),
            )
            .into_response()
        }
    }
}

/// A TLS server's moving parts: where its certificate lives and what it trusts.
pub struct TlsServer {
    settings: TlsSettings,
    cert: PathBuf,
    key: PathBuf,
    authn: Arc<Authenticator>,
    rustls: RustlsConfig,
    /// Held from reading the inputs to storing the result, so two reloads (a CA change and a
    /// certificate change) cannot store an older set over a newer one.
    reloading: Mutex<()>,
}

/// What the certificate watcher knows between two looks at the files.
#[derive(Debug, Default)]
pub struct FileWatch {
    /// File times of the pair being served.
    applied: Vec<Option<std::time::SystemTime>>,
    /// File times of a pair that failed to load, so the failure is logged once, not at every
    /// retry.
    failed: Option<Vec<Option<std::time::SystemTime>>>,
}

impl TlsServer {
    /// Loads (or generates) the serving certificate and builds the first configuration.
    pub fn new(
        settings: TlsSettings,
        authn: Arc<Authenticator>,
        extra_names: &[String],
    ) -> Result<Self, TlsError> {
        let (cert, key) = settings.serving_files(extra_names)?;
        let config = server_config(&settings, &cert, &key, &authn.config().all_cas())?;
        Ok(TlsServer {
            settings,
            cert,
            key,
            authn,
            rustls: RustlsConfig::from_config(config),
            reloading: Mutex::new(()),
        })
    }

    /// Rebuilds the configuration from the files and the authenticator's current CAs; new
    /// connections use it, existing ones keep theirs.
    pub fn reload(&self) -> Result<(), TlsError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let config = server_config(
            &self.settings,
            &self.cert,
            &self.key,
            &self.authn.config().all_cas(),
        )?;
        self.rustls.reload_from_config(config);
        Ok(())
    }

    /// The watcher's state for the files as they are now (served at start).
    pub fn file_watch(&self) -> FileWatch {
        FileWatch {
            applied: mtimes(&[self.cert.as_path(), self.key.as_path()]),
            failed: None,
        }
    }

    /// One look at the certificate files: reloads when they changed since the pair being
    /// served. A pair that does not load (a rotation caught half way: new certificate, old
    /// key) is retried at every look until it loads, even if the files' times do not change
    /// again (coarse timestamps, or both files written within one tick); returns whether a new
    /// pair is now served.
    pub fn check_files(&self, watch: &mut FileWatch) -> bool {
        let now = mtimes(&[self.cert.as_path(), self.key.as_path()]);
        if now == watch.applied {
            return false;
        }
        match self.reload() {
            Ok(()) => {
                tracing::info!(cert = %self.cert.display(), "reloaded the serving certificate");
                watch.applied = now;
                watch.failed = None;
                true
            }
            Err(e) => {
                if watch.failed.as_ref() != Some(&now) {
                    tracing::warn!(error = %e, "serving certificate changed but could not be loaded; keeping the previous one and retrying");
                    watch.failed = Some(now);
                }
                false
            }
        }
    }

    /// Watches the certificate files and reloads when they change (rotation by cert-manager or
    /// a Secret update). A reload that fails keeps the previous configuration.
    pub async fn watch_files(self: Arc<Self>, every: Duration) {
        let mut watch = self.file_watch();
        loop {
            tokio::time::sleep(every).await;
            self.check_files(&mut watch);
        }
    }

    /// Serves `router` behind `security` on `addr` until `shutdown`; `bound` receives the
    /// address actually bound (port 0 in tests).
    pub async fn serve(
        self: Arc<Self>,
        addr: SocketAddr,
        router: Router,
        security: Arc<Security>,
        limits: Arc<Limits>,
        (shutdown, drain_timeout): (
            impl std::future::Future<Output = ()> + Send + 'static,
            Duration,
        ),
        bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    ) -> Result<(), ServeError> {
        // Outermost first: log, refuse overlong paths, authenticate, audit, bound the work,
        // authorize, serve.
        let app = router
            .layer(axum::middleware::from_fn_with_state(
                security.clone(),
                authorize,
            ))
            .layer(axum::middleware::from_fn_with_state(limits, limit))
            .layer(axum::middleware::from_fn_with_state(
                security.audit.clone(),
                audit,
            ))
            .layer(axum::middleware::from_fn_with_state(security, authenticate))
            .layer(axum::middleware::from_fn(super::limits::refuse_long_paths))
            .layer(axum::middleware::from_fn(super::log_request));
        let handle = axum_server::Handle::<SocketAddr>::new();
        let h = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            h.graceful_shutdown(Some(drain_timeout));
        });
        if let Some(tx) = bound {
            let h = handle.clone();
            tokio::spawn(async move {
                if let Some(a) = h.listening().await {
                    let _ = tx.send(a);
                }
            });
        }
        let mut server = axum_server::bind_rustls(addr, self.rustls.clone()).handle(handle);
        super::configure_connections(server.http_builder(), self.settings.disable_http2);
        server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .map_err(|e| ServeError::Bind { addr, source: e })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::authn::AuthnConfig;

    /// (certificate PEM, key PEM) of a new self-signed pair.
    fn pair(name: &str) -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    #[test]
    fn a_half_rotated_pair_is_retried_until_it_loads_even_when_file_times_stay() {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (c1, k1) = pair("one");
        std::fs::write(&cert, c1).unwrap();
        std::fs::write(&key, k1).unwrap();
        let authn = Arc::new(Authenticator::new(AuthnConfig::default(), None).unwrap());
        let server = TlsServer::new(
            TlsSettings {
                cert_file: Some(cert.clone()),
                key_file: Some(key.clone()),
                ..Default::default()
            },
            authn,
            &[],
        )
        .unwrap();
        let mut watch = server.file_watch();
        assert!(!server.check_files(&mut watch), "nothing changed");
        // The new certificate lands before its key: it cannot load.
        let (c2, k2) = pair("two");
        std::fs::write(&cert, c2).unwrap();
        let key_time = std::fs::metadata(&key).unwrap().modified().unwrap();
        assert!(!server.check_files(&mut watch));
        assert!(!server.check_files(&mut watch), "still the old key");
        // The key lands, but its time reads as before (a coarse clock): retried anyway.
        std::fs::write(&key, k2).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&key)
            .unwrap()
            .set_modified(key_time)
            .unwrap();
        assert!(
            server.check_files(&mut watch),
            "the matching pair was never loaded"
        );
        assert!(!server.check_files(&mut watch), "and is not reloaded again");
    }
}
