//! Listening and serving.
//!
//! Standalone mode serves plain HTTP, on loopback unless the operator explicitly allows more.
//! Cluster mode serves HTTPS with delegated authentication and authorization as a layer around
//! the same router ([`secure`]).

pub mod audit;
pub mod authn;
pub mod authz;
pub mod cache;
pub mod limits;
pub mod memory;
pub mod secure;
pub mod tls;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Plain HTTP without authentication must stay on loopback unless allowed.
    #[error(
        "refusing to serve plain HTTP without authentication on non-loopback address {0}; \
         use a 127.0.0.0/8 or ::1 address, or pass --allow-insecure-remote"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("unable to listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds the standalone listener, enforcing the loopback rule.
pub async fn bind_standalone(
    addr: SocketAddr,
    allow_remote: bool,
) -> Result<TcpListener, ServeError> {
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(ServeError::NotLoopback(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// The connection settings both listeners share. A client that trickles its headers must not
/// hold a connection forever: 32 s for a request's headers, as the Go apiserver allows, counted
/// from the end of the previous answer too, so a keep-alive connection idle that long is
/// closed (an HPA asks every 15 s; connections opened for a burst go, and their buffers with
/// them). Idle HTTP/2 connections are pinged.
pub(crate) fn configure_connections(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    http1_only: bool,
) {
    builder
        .http1()
        .header_read_timeout(std::time::Duration::from_secs(32))
        // Go allows 1 MiB of headers and does not count them; hyper's default of 100 headers
        // would refuse a front-proxied user in 150 groups (one X-Remote-Group header each).
        .max_headers(secure::MAX_HEADERS)
        .max_buf_size(secure::MAX_HEADER_BYTES + 64 * 1024);
    builder
        .http2()
        .max_header_list_size(secure::MAX_HEADER_BYTES as u32)
        .keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_timeout(std::time::Duration::from_secs(20));
    if http1_only {
        *builder = builder.clone().http1_only();
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then gives the
/// requests in flight `drain_timeout` to finish.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    limits: std::sync::Arc<limits::Limits>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain_timeout: std::time::Duration,
) -> Result<(), ServeError> {
    let app = router
        .layer(axum::middleware::from_fn_with_state(limits, limits::limit))
        .layer(axum::middleware::from_fn(limits::refuse_long_paths))
        .layer(axum::middleware::from_fn(log_request));
    let handle = axum_server::Handle::<SocketAddr>::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(drain_timeout));
        // Past the drain timeout the server closes what is left; say so.
        tokio::time::sleep(drain_timeout).await;
        if h.connection_count() > 0 {
            tracing::warn!(timeout = ?drain_timeout, "requests still in flight after --shutdown-timeout; exiting anyway");
        }
    });
    let listener = listener.into_std().map_err(ServeError::Serve)?;
    let mut server = axum_server::from_tcp(listener)
        .map_err(ServeError::Serve)?
        .handle(handle);
    configure_connections(server.http_builder(), false);
    server
        .serve(app.into_make_service())
        .await
        .map_err(ServeError::Serve)
}

/// Logs each request at debug level with method, path, status and latency.
pub(crate) async fn log_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let started = std::time::Instant::now();
    let m = crate::telemetry::metrics();
    /// Counts the request out however it ends, a client hanging up included.
    struct InFlight(&'static prometheus_client::metrics::gauge::Gauge);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    m.requests_in_flight.inc();
    let in_flight = InFlight(&m.requests_in_flight);
    let resp = next.run(req).await;
    drop(in_flight);
    let labels = crate::telemetry::RequestLabels {
        handler: crate::telemetry::handler_class(uri.path()).to_string(),
        code: resp.status().as_u16().to_string(),
    };
    m.requests.get_or_create(&labels).inc();
    m.request_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(
        %method,
        path = uri.path(),
        query = uri.query().unwrap_or(""),
        code = resp.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
