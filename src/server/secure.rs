//! Cluster-mode serving: HTTPS with delegated authentication and authorization as a layer in
//! front of the API router.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::tls::TlsInfo;
use axum_server::tls_rustls::RustlsConfig;

use super::ServeError;
use super::authn::Authenticator;
use super::authz::{Attributes, Authorizer};
use super::tls::{TlsError, TlsSettings, mtimes, server_config};
use crate::api::error::ApiError;

/// Authentication and authorization, shared by every request.
pub struct Security {
    /// Who is asking.
    pub authn: Arc<Authenticator>,
    /// Whether they may.
    pub authz: Arc<Authorizer>,
}

/// The layer: always-allowed paths pass; everything else is authenticated (401 on bad
/// credentials), then authorized (403 when denied, naming who was denied what).
pub async fn auth_layer(State(sec): State<Arc<Security>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if sec.authz.always_allowed(&path) {
        return next.run(req).await;
    }
    let peer_certs: Vec<Vec<u8>> = req
        .extensions()
        .get::<Arc<TlsInfo>>()
        .map(|i| i.peer_certificates.clone())
        .unwrap_or_default();
    let metrics = crate::telemetry::metrics();
    let user = match sec.authn.authenticate(&peer_certs, req.headers()).await {
        Ok(user) => user,
        Err(e) => {
            crate::telemetry::Metrics::outcome(&metrics.authentications, "error");
            tracing::info!(%path, error = %e, "authentication failed");
            // As k8s.io/apiserver: the why stays in our log; a caller learns nothing about
            // which CAs or tokens we trust.
            return ApiError::Unauthorized("Unauthorized".into()).into_response();
        }
    };
    let attrs = Attributes::from_path(&path);
    match sec.authz.authorize(&user, &attrs).await {
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
        })
    }

    /// Rebuilds the configuration from the files and the authenticator's current CAs; new
    /// connections use it, existing ones keep theirs.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(
            &self.settings,
            &self.cert,
            &self.key,
            &self.authn.config().all_cas(),
        )?;
        self.rustls.reload_from_config(config);
        Ok(())
    }

    /// Watches the certificate files and reloads when they change (rotation by cert-manager or
    /// a Secret update). A reload that fails keeps the previous configuration.
    pub async fn watch_files(self: Arc<Self>, every: Duration) {
        let paths = [self.cert.as_path(), self.key.as_path()];
        let mut last = mtimes(&paths);
        loop {
            tokio::time::sleep(every).await;
            let now = mtimes(&paths);
            if now != last {
                last = now;
                match self.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %self.cert.display(), "reloaded the serving certificate")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "serving certificate changed but could not be loaded; keeping the previous one")
                    }
                }
            }
        }
    }

    /// Serves `router` behind `security` on `addr` until `shutdown`; `bound` receives the
    /// address actually bound (port 0 in tests).
    pub async fn serve(
        self: Arc<Self>,
        addr: SocketAddr,
        router: Router,
        security: Arc<Security>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    ) -> Result<(), ServeError> {
        let app = router
            .layer(axum::middleware::from_fn_with_state(security, auth_layer))
            .layer(axum::middleware::from_fn(super::log_request));
        let handle = axum_server::Handle::<SocketAddr>::new();
        let h = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            h.graceful_shutdown(Some(Duration::from_secs(10)));
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
        {
            // A client that trickles its headers, or an idle HTTP/2 connection, must not hold
            // a connection forever: 32 s for headers as the Go apiserver, keep-alive pings on h2.
            let builder = server.http_builder();
            builder.http1().header_read_timeout(Duration::from_secs(32));
            builder
                .http2()
                .keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(20));
            if self.settings.disable_http2 {
                *builder = builder.clone().http1_only();
            }
        }
        server
            .serve(app.into_make_service())
            .await
            .map_err(|e| ServeError::Bind { addr, source: e })
    }
}
