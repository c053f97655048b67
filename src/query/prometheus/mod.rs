//! A small client for the Prometheus HTTP API: `/api/v1/series`, `/api/v1/query` and
//! `/api/v1/query_range`.
//!
//! Hand-written rather than taken from a crate because the adapter needs full control over the
//! verb (GET or POST form, as `--prometheus-verb`), timeouts, error bodies and, above all, a
//! streaming decode of `/api/v1/series`: large clusters answer with hundreds of megabytes, of
//! which discovery needs only the series names and label names.
//!
//! This file is the HTTP side (settings, credentials, limits, redirects); `decode.rs` holds the
//! answers' types and their JSON decoding.

mod decode;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use decode::{Envelope, error_from_body};
pub use decode::{
    QueryResult, RangeSeries, Sample, SeriesInfo, SeriesSet, decode_query, decode_query_range,
    decode_series,
};

/// How requests are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Parameters in the URL.
    Get,
    /// Parameters as a form body (no URL length limit).
    Post,
}

impl std::str::FromStr for Verb {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "GET" | "get" => Ok(Verb::Get),
            "POST" | "post" => Ok(Verb::Post),
            other => Err(format!(
                "unsupported Prometheus HTTP verb {other:?}; use GET or POST"
            )),
        }
    }
}

/// Everything needed to build a [`PrometheusClient`].
#[derive(Clone, Debug)]
pub struct PrometheusSettings {
    /// How logs and `/metrics` name the backend: `default` for `--prometheus-url`.
    pub name: String,
    /// Base URL; a path prefix (Thanos, Mimir `/prometheus`) is kept.
    pub url: String,
    /// GET or POST.
    pub verb: Verb,
    /// Extra headers (`--prometheus-header Key=Value`), repeats kept.
    pub headers: Vec<(String, String)>,
    /// Bearer token file, re-read every minute so rotated tokens are picked up.
    pub token_file: Option<PathBuf>,
    /// CA bundle that replaces the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mTLS.
    pub client_cert_file: Option<PathBuf>,
    /// Key of the client certificate.
    pub client_key_file: Option<PathBuf>,
    /// Timeout of one instant query.
    pub query_timeout: Duration,
    /// Timeout of one series listing.
    pub series_timeout: Duration,
    /// Largest answer read for a query (and other small answers), in bytes.
    pub max_query_bytes: u64,
    /// Largest answer read for a series listing (discovery), in bytes.
    pub max_series_bytes: u64,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        PrometheusSettings {
            name: crate::rules::backends::DEFAULT_NAME.into(),
            url: "https://localhost".into(),
            verb: Verb::Get,
            headers: Vec::new(),
            token_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            query_timeout: Duration::from_secs(30),
            series_timeout: Duration::from_secs(120),
            max_query_bytes: 64 << 20,
            max_series_bytes: 512 << 20,
        }
    }
}

/// Whether a request's connection goes back to the pool afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pooled {
    /// Queries: small answers, often; the connection is kept for the next one.
    Yes,
    /// Series listings: large answers, rarely. The connection's read buffer grows to the
    /// answer's size and would stay that large while it idles in the pool, so it is closed
    /// (`Connection: close`) instead; a handshake per relist costs nothing next to the listing.
    No,
}

/// Why a Prometheus call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The client could not be built from its settings.
    #[error("invalid Prometheus client settings: {0}")]
    Settings(String),
    /// No answer: connection refused, DNS, TLS, reset.
    #[error("request to {url} failed: {message}")]
    Transport {
        /// The endpoint.
        url: String,
        /// The error and its causes.
        message: String,
    },
    /// No answer in time.
    #[error("request to {url} timed out after {timeout:?}")]
    Timeout {
        /// The endpoint.
        url: String,
        /// The limit that was hit.
        timeout: Duration,
    },
    /// Prometheus answered with an error.
    #[error("Prometheus answered {url} with {error_type}: {error}")]
    Api {
        /// The endpoint.
        url: String,
        /// `errorType` (`bad_data`, `timeout`, `execution`, …) or the HTTP status.
        error_type: String,
        /// `error`, or the start of the body when it is not Prometheus JSON.
        error: String,
    },
    /// The answer is larger than we read.
    #[error(
        "the answer of {url} is larger than {limit} bytes ({flag}); narrow the query or raise the limit"
    )]
    TooLarge {
        /// The endpoint.
        url: String,
        /// The limit, in bytes.
        limit: u64,
        /// The flag that sets it.
        flag: &'static str,
    },
    /// The answer was not the JSON the API documents.
    #[error("unable to decode the answer of {url}: {message}")]
    Decode {
        /// The endpoint.
        url: String,
        /// What was wrong.
        message: String,
    },
}

impl PrometheusError {
    /// Whether trying again soon may succeed: outages, timeouts and 5xx/429 answers are
    /// transient; a query Prometheus rejects (`bad_data`, 4xx) stays wrong until the config
    /// changes.
    pub fn is_transient(&self) -> bool {
        match self {
            PrometheusError::Transport { .. }
            | PrometheusError::Timeout { .. }
            | PrometheusError::Decode { .. } => true,
            PrometheusError::Settings(_) | PrometheusError::TooLarge { .. } => false,
            PrometheusError::Api { error_type, .. } => {
                matches!(
                    error_type.as_str(),
                    "timeout" | "canceled" | "unavailable" | "internal"
                ) || error_type.starts_with("HTTP 5")
                    || error_type == "HTTP 429"
            }
        }
    }
}

/// A bearer token read from a file, re-read once a minute.
#[derive(Debug)]
pub struct TokenSource {
    path: PathBuf,
    cached: Mutex<Option<(Instant, String)>>,
}

impl TokenSource {
    /// A token read from `path` at first use.
    pub fn new(path: PathBuf) -> TokenSource {
        TokenSource {
            path,
            cached: Mutex::new(None),
        }
    }

    /// Projected service-account tokens rotate; re-reading once a minute follows them without a
    /// file read per request.
    pub fn token(&self) -> Result<String, PrometheusError> {
        let previous = self
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((at, token)) = &previous
            && at.elapsed() < Duration::from_secs(60)
        {
            return Ok(token.clone());
        }
        // The file is read without holding the lock; concurrent readers may both read it.
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let token = text.trim().to_string();
                *self.cached.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), token.clone()));
                Ok(token)
            }
            Err(e) => match previous {
                // A token file mid-rotation can be briefly missing: keep using the old token.
                Some((_, token)) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "unable to re-read the token file; using the previous token");
                    Ok(token)
                }
                None => Err(PrometheusError::Settings(format!(
                    "unable to read token file {}: {e}",
                    self.path.display()
                ))),
            },
        }
    }
}

/// A cheap-to-clone Prometheus API client sharing one connection pool.
#[derive(Clone, Debug)]
pub struct PrometheusClient {
    /// The backend's name, for `/metrics`.
    name: Arc<str>,
    http: reqwest::Client,
    /// The base URL, credentials and query string included.
    base: Arc<url::Url>,
    /// The base URL without credentials, for messages.
    display_base: Arc<str>,
    verb: Verb,
    token: Option<Arc<TokenSource>>,
    query_timeout: Duration,
    series_timeout: Duration,
    max_query_bytes: u64,
    max_series_bytes: u64,
}

fn read_file(path: &PathBuf, what: &str) -> Result<Vec<u8>, PrometheusError> {
    std::fs::read(path).map_err(|e| {
        PrometheusError::Settings(format!("unable to read {what} {}: {e}", path.display()))
    })
}

/// `raw` with credentials and query string replaced by `REDACTED`, for logs and messages:
/// `--prometheus-url` may carry a password (`https://user:pass@…`) or an API key
/// (`…?api_key=…`). A string that does not parse as a URL is redacted the same way by hand.
pub fn redacted_url(raw: &str) -> String {
    if let Ok(mut url) = url::Url::parse(raw) {
        if !url.username().is_empty() || url.password().is_some() {
            let _ = url.set_username("REDACTED");
            let _ = url.set_password(None);
        }
        if url.query().is_some() {
            url.set_query(Some("REDACTED"));
        }
        return url.to_string();
    }
    let (before_query, query) = match raw.split_once('?') {
        Some((b, _)) => (b, "?REDACTED"),
        None => (raw, ""),
    };
    let without_userinfo = match before_query.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://REDACTED@{host}"),
            None => before_query.to_string(),
        },
        None => before_query.to_string(),
    };
    format!("{without_userinfo}{query}")
}

/// Follows redirects only within the origin of `base` (scheme, host and port), at most ten:
/// `--prometheus-header` values (`X-Scope-OrgID`, API keys) and the bearer token must never
/// be sent to a host the operator did not name.
fn same_origin_redirects(base: &url::Url) -> reqwest::redirect::Policy {
    let origin = base.origin();
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 10 {
            attempt.error("more than 10 redirects")
        } else if attempt.url().origin() == origin {
            attempt.follow()
        } else {
            let to = attempt.url().host_str().unwrap_or("?").to_string();
            attempt.error(format!(
                "refusing to follow a redirect to another host ({to}): the Prometheus headers and token are only sent to --prometheus-url's host"
            ))
        }
    })
}

/// An error and all its causes on one line: reqwest's own message alone ("error sending
/// request") does not say what went wrong.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            let _ = write!(s, ": {msg}");
        }
        cur = c.source();
    }
    s
}

impl PrometheusClient {
    /// Builds a client; fails on unreadable files, bad headers or a bad URL.
    pub fn new(settings: &PrometheusSettings) -> Result<Self, PrometheusError> {
        crate::install_crypto_provider();
        let url = url::Url::parse(&settings.url).map_err(|e| {
            PrometheusError::Settings(format!(
                "invalid Prometheus URL {:?}: {e}",
                redacted_url(&settings.url)
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PrometheusError::Settings(format!(
                "Prometheus URL {:?} must be http or https",
                redacted_url(&settings.url)
            )));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &settings.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
                PrometheusError::Settings(format!("invalid header name {k:?}: {e}"))
            })?;
            let value = HeaderValue::from_str(v).map_err(|e| {
                PrometheusError::Settings(format!("invalid value for header {k:?}: {e}"))
            })?;
            headers.append(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .redirect(same_origin_redirects(&url))
            .connect_timeout(Duration::from_secs(5))
            // Idle connections are reused newest first, so the ones opened for a burst of
            // concurrent queries sit unused; each keeps its buffers (about 0.1 MiB in the soak),
            // so they go after 30 s. The HPA asks every 15 s: steady connections stay.
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .default_headers(headers);
        if let Some(ca) = &settings.ca_file {
            let certs =
                reqwest::Certificate::from_pem_bundle(&read_file(ca, "CA file")?).map_err(|e| {
                    PrometheusError::Settings(format!("invalid CA file {}: {e}", ca.display()))
                })?;
            builder = builder.tls_certs_only(certs);
        } else if url.scheme() == "http" {
            // Plain HTTP never reaches TLS (redirects keep to the origin, scheme included), so
            // the system's CA bundle is not read: its parsed roots would hold 0.25 MiB for good.
            builder = builder.tls_certs_only(std::iter::empty());
        }
        match (&settings.client_cert_file, &settings.client_key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read_file(cert, "client certificate")?;
                pem.push(b'\n');
                pem.extend(read_file(key, "client key")?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    PrometheusError::Settings(format!("invalid client certificate or key: {e}"))
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(PrometheusError::Settings(
                    "--prometheus-client-tls-cert-file and --prometheus-client-tls-key-file \
                     must be given together"
                        .into(),
                ));
            }
        }
        let http = builder
            .build()
            .map_err(|e| PrometheusError::Settings(error_chain(&e)))?;
        let token = settings.token_file.as_ref().map(|path| {
            Arc::new(TokenSource {
                path: path.clone(),
                cached: Mutex::new(None),
            })
        });
        if let Some(t) = &token {
            t.token()?;
        }
        let mut display = url.clone();
        let _ = display.set_username("");
        let _ = display.set_password(None);
        display.set_query(None);
        Ok(PrometheusClient {
            name: settings.name.as_str().into(),
            http,
            display_base: display.as_str().trim_end_matches('/').into(),
            base: Arc::new(url),
            verb: settings.verb,
            token,
            query_timeout: settings.query_timeout,
            series_timeout: settings.series_timeout,
            max_query_bytes: settings.max_query_bytes,
            max_series_bytes: settings.max_series_bytes,
        })
    }

    /// The base URL, without credentials.
    pub fn base_url(&self) -> &str {
        &self.display_base
    }

    /// The backend's name: `default` for `--prometheus-url`.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn send(
        &self,
        endpoint: &str,
        params: &[(&str, &str)],
        timeout: Duration,
        pooled: Pooled,
    ) -> Result<(String, reqwest::Response), PrometheusError> {
        let (url, resp) = self
            .send_as(self.verb, endpoint, params, timeout, pooled)
            .await?;
        if self.verb == Verb::Get && resp.status() == reqwest::StatusCode::URI_TOO_LONG {
            // A query over thousands of objects outgrows what a proxy in front of Prometheus
            // takes in a URL: the same request once more as a form POST, which every
            // Prometheus-compatible API accepts.
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(%url, "the backend refused a GET as too long (414); sending such requests as POST (consider --prometheus-verb=POST)");
            }
            return self
                .send_as(Verb::Post, endpoint, params, timeout, pooled)
                .await;
        }
        Ok((url, resp))
    }

    async fn send_as(
        &self,
        verb: Verb,
        endpoint: &str,
        params: &[(&str, &str)],
        timeout: Duration,
        pooled: Pooled,
    ) -> Result<(String, reqwest::Response), PrometheusError> {
        // The endpoint goes after the base path (Thanos and Mimir prefixes); a query string on
        // the base URL is kept and the request's parameters are added to it.
        let mut target = (*self.base).clone();
        let path = format!("{}{endpoint}", target.path().trim_end_matches('/'));
        target.set_path(&path);
        let url = format!("{}{endpoint}", self.display_base);
        let req = match verb {
            Verb::Get => self.http.get(target).query(params),
            Verb::Post => self.http.post(target).form(params),
        };
        let mut req = req.timeout(timeout);
        if pooled == Pooled::No {
            req = req.header(reqwest::header::CONNECTION, "close");
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.token()?);
        }
        match req.send().await {
            Ok(resp) => Ok((url, resp)),
            Err(e) if e.is_timeout() => Err(PrometheusError::Timeout { url, timeout }),
            // reqwest's message carries the whole URL, credentials and query included: drop it,
            // ours (`url`) names the endpoint without them.
            Err(e) => Err(PrometheusError::Transport {
                url,
                message: error_chain(&e.without_url()),
            }),
        }
    }

    /// Reads a whole (small) answer, refusing more than `--prometheus-max-query-response-size`
    /// so a misbehaving backend cannot make us buffer without bound.
    async fn read_body(
        &self,
        url: &str,
        resp: reqwest::Response,
        timeout: Duration,
    ) -> Result<bytes::Bytes, PrometheusError> {
        let limit = self.max_query_bytes;
        let too_large = || PrometheusError::TooLarge {
            url: url.to_string(),
            limit,
            flag: "--prometheus-max-query-response-size",
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = bytes::BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if e.is_timeout() {
                    PrometheusError::Timeout {
                        url: url.to_string(),
                        timeout,
                    }
                } else {
                    PrometheusError::Transport {
                        url: url.to_string(),
                        message: error_chain(&e.without_url()),
                    }
                }
            })?;
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Runs an instant query at `time` (Unix seconds).
    pub async fn query(&self, query: &str, time: f64) -> Result<QueryResult, PrometheusError> {
        let started = Instant::now();
        let result = self.query_inner(query, time).await;
        crate::telemetry::metrics().backend_call(
            &self.name,
            "/api/v1/query",
            started.elapsed(),
            result.is_ok(),
        );
        result
    }

    async fn query_inner(&self, query: &str, time: f64) -> Result<QueryResult, PrometheusError> {
        let time = format!("{time:.3}");
        let timeout = format!("{}ms", self.query_timeout.as_millis());
        let (url, resp) = self
            .send(
                "/api/v1/query",
                &[("query", query), ("time", &time), ("timeout", &timeout)],
                self.query_timeout,
                Pooled::Yes,
            )
            .await?;
        let status = resp.status();
        let body = self.read_body(&url, resp, self.query_timeout).await?;
        decode_query(&url, status.as_u16(), &body)
    }

    /// Runs a range query: `query` evaluated at `start`, `start + step`, … up to `end` (Unix
    /// seconds), exactly as an instant query at each of those times would be.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, PrometheusError> {
        let started = Instant::now();
        let result = self.query_range_inner(query, start, end, step).await;
        crate::telemetry::metrics().backend_call(
            &self.name,
            "/api/v1/query_range",
            started.elapsed(),
            result.is_ok(),
        );
        result
    }

    async fn query_range_inner(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, PrometheusError> {
        let (start, end) = (format!("{start:.3}"), format!("{end:.3}"));
        let step = format!("{:.3}", step.as_secs_f64());
        let timeout = format!("{}ms", self.query_timeout.as_millis());
        let (url, resp) = self
            .send(
                "/api/v1/query_range",
                &[
                    ("query", query),
                    ("start", &start),
                    ("end", &end),
                    ("step", &step),
                    ("timeout", &timeout),
                ],
                self.query_timeout,
                // A simulation's answers are large and rare, as listings are.
                Pooled::No,
            )
            .await?;
        let status = resp.status();
        let body = self.read_body(&url, resp, self.query_timeout).await?;
        decode_query_range(&url, status.as_u16(), &body)
    }

    /// Lists the series matching `selector` with samples in `[start, end]`, keeping only names
    /// and label names. The body is decoded as it arrives, off the async threads.
    pub async fn series(
        &self,
        selector: &str,
        start: f64,
        end: f64,
    ) -> Result<SeriesSet, PrometheusError> {
        let started = Instant::now();
        let result = self.series_inner(selector, start, end).await;
        crate::telemetry::metrics().backend_call(
            &self.name,
            "/api/v1/series",
            started.elapsed(),
            result.is_ok(),
        );
        result
    }

    async fn series_inner(
        &self,
        selector: &str,
        start: f64,
        end: f64,
    ) -> Result<SeriesSet, PrometheusError> {
        let (start, end) = (format!("{start:.3}"), format!("{end:.3}"));
        let (url, resp) = self
            .send(
                "/api/v1/series",
                &[("match[]", selector), ("start", &start), ("end", &end)],
                self.series_timeout,
                Pooled::No,
            )
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = self.read_body(&url, resp, self.series_timeout).await?;
            return Err(error_from_body(&url, status.as_u16(), &body));
        }
        let too_large = PrometheusError::TooLarge {
            url: url.clone(),
            limit: self.max_series_bytes,
            flag: "--prometheus-max-response-size",
        };
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_series_bytes)
        {
            return Err(too_large);
        }
        let (limit, mut seen) = (self.max_series_bytes, 0u64);
        let too_large = too_large.to_string();
        let stream = resp.bytes_stream().map(move |chunk| {
            let chunk = chunk.map_err(|e| std::io::Error::other(error_chain(&e.without_url())))?;
            seen += chunk.len() as u64;
            if seen > limit {
                return Err(std::io::Error::other(too_large.clone()));
            }
            Ok(chunk)
        });
        let reader = tokio_util::io::StreamReader::new(stream);
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let decode_url = url.clone();
        tokio::task::spawn_blocking(move || decode_series(&decode_url, bridge))
            .await
            .map_err(|e| PrometheusError::Decode {
                url,
                message: format!("decoder task failed: {e}"),
            })?
    }

    /// Prometheus' running configuration (`/api/v1/status/config`), as YAML text.
    pub async fn config_yaml(&self) -> Result<String, PrometheusError> {
        #[derive(Deserialize)]
        struct ConfigData {
            yaml: String,
        }
        let data: ConfigData = self
            .get_data("/api/v1/status/config", &[], self.query_timeout)
            .await?;
        Ok(data.yaml)
    }

    /// Lists the full label sets of the series matching `selector` in `[start, end]`. For small
    /// answers only (per-request object listing in standalone mode).
    pub async fn series_labels(
        &self,
        selector: &str,
        start: f64,
        end: f64,
    ) -> Result<Vec<BTreeMap<String, String>>, PrometheusError> {
        let started = Instant::now();
        let (start, end) = (format!("{start:.3}"), format!("{end:.3}"));
        let result = self
            .get_data(
                "/api/v1/series",
                &[("match[]", selector), ("start", &start), ("end", &end)],
                self.query_timeout,
            )
            .await;
        crate::telemetry::metrics().backend_call(
            &self.name,
            "/api/v1/series",
            started.elapsed(),
            result.is_ok(),
        );
        result
    }

    /// Sends a request and decodes the `data` of a small JSON answer.
    async fn get_data<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        params: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<T, PrometheusError> {
        let (url, resp) = self.send(endpoint, params, timeout, Pooled::Yes).await?;
        let status = resp.status().as_u16();
        let body = self.read_body(&url, resp, timeout).await?;
        if !(200..300).contains(&status) {
            return Err(error_from_body(&url, status, &body));
        }
        let env: Envelope<T> =
            serde_json::from_slice(&body).map_err(|e| PrometheusError::Decode {
                url: url.clone(),
                message: e.to_string(),
            })?;
        env.into_data(&url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_query_strings_in_messages() {
        assert_eq!(
            redacted_url("https://user:s3cret@prom.example:9090/prefix?api_key=k3y"),
            "https://REDACTED@prom.example:9090/prefix?REDACTED"
        );
        assert_eq!(
            redacted_url("http://prometheus:9090"),
            "http://prometheus:9090/"
        );
        // Not a URL, still redacted.
        let odd = redacted_url("ht!tp://u:s3cret@[bad/x?api_key=k3y");
        assert!(!odd.contains("s3cret") && !odd.contains("k3y"), "{odd}");
    }

    /// Answers one HTTP request with a vector and returns the request head it received.
    #[tokio::test]
    async fn a_series_listing_does_not_keep_its_connection_and_a_query_does() {
        let body = r#"{"status":"success","data":[]}"#;
        let (addr, head) = raw_server(format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ))
        .await;
        client_of(&addr, 1 << 20, 1 << 20)
            .series("up", 0.0, 1.0)
            .await
            .unwrap();
        let head = head.await.unwrap().to_ascii_lowercase();
        assert!(head.contains("connection: close"), "{head}");
        let (addr, head) = one_shot_server().await;
        client_of(&addr, 1 << 20, 1 << 20)
            .query("up", 1.0)
            .await
            .unwrap();
        let head = head.await.unwrap().to_ascii_lowercase();
        assert!(!head.contains("connection: close"), "{head}");
    }

    async fn one_shot_server() -> (String, tokio::task::JoinHandle<String>) {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        raw_server(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await
    }

    /// Answers one HTTP request with `response`, verbatim, and returns the request head.
    async fn raw_server(response: String) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        (format!("{addr}"), h)
    }

    fn client_of(addr: &str, max_query_bytes: u64, max_series_bytes: u64) -> PrometheusClient {
        PrometheusClient::new(&PrometheusSettings {
            url: format!("http://{addr}"),
            headers: vec![("X-Scope-OrgID".into(), "tenant-1".into())],
            max_query_bytes,
            max_series_bytes,
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn answers_beyond_the_size_limits_are_errors_naming_the_flag() {
        let big = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[]}},"pad":"{}"}}"#,
            "x".repeat(4000)
        );
        // With a Content-Length.
        let (addr, _) = raw_server(format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{big}",
            big.len()
        ))
        .await;
        let err = client_of(&addr, 1000, 1 << 20)
            .query("up", 1.0)
            .await
            .unwrap_err();
        assert!(
            matches!(err, PrometheusError::TooLarge { limit: 1000, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("--prometheus-max-query-response-size")
        );
        // Chunked, with no length announced: counted as it arrives.
        let chunked = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        );
        let (addr, _) = raw_server(chunked.clone()).await;
        let err = client_of(&addr, 1000, 1 << 20)
            .query("up", 1.0)
            .await
            .unwrap_err();
        assert!(matches!(err, PrometheusError::TooLarge { .. }), "{err}");
        // A series listing has its own, larger limit.
        let (addr, _) = raw_server(chunked).await;
        let err = client_of(&addr, 1 << 20, 1000)
            .series("up", 0.0, 1.0)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("--prometheus-max-response-size"), "{err}");
        // Within the limit, the same answer decodes.
        let (addr, _) = raw_server(format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{big}",
            big.len()
        ))
        .await;
        client_of(&addr, 1 << 20, 1 << 20)
            .query("up", 1.0)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn redirects_to_another_host_are_refused_and_never_carry_our_headers() {
        let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = elsewhere.local_addr().unwrap().port();
        // Same IP, but "localhost" is another host as far as the origin goes.
        let (addr, _) = raw_server(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://localhost:{port}/api/v1/query\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ))
        .await;
        let err = client_of(&addr, 1 << 20, 1 << 20)
            .query("up", 1.0)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refusing to follow a redirect to another host (localhost)"),
            "{err}"
        );
        // The client returned without connecting there (a connection would be waiting).
        let pending = tokio::time::timeout(Duration::ZERO, elsewhere.accept()).await;
        assert!(pending.is_err(), "the redirect was followed");
    }

    #[tokio::test]
    async fn path_prefixes_query_strings_headers_and_credentials_are_honoured() {
        let (addr, server) = one_shot_server().await;
        let client = PrometheusClient::new(&PrometheusSettings {
            url: format!("http://user:secret@{addr}/prometheus/?tenant=a"),
            headers: vec![("X-Scope-OrgID".into(), "team-1".into())],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(client.base_url(), format!("http://{addr}/prometheus"));
        client.query("up", 1.0).await.unwrap();
        let head = server.await.unwrap();
        let first = head.lines().next().unwrap();
        assert!(
            first.starts_with("GET /prometheus/api/v1/query?tenant=a&query=up&time=1.000"),
            "{first}"
        );
        let lower = head.to_lowercase();
        assert!(lower.contains("x-scope-orgid: team-1"), "{head}");
        assert!(lower.contains("authorization: basic"), "{head}");
    }

    #[tokio::test]
    async fn range_queries_send_start_end_and_step_and_decode_matrices() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"q":"a"},"values":[[1,"2"],[16,"3"]]}]}}"#;
        let (addr, server) = raw_server(format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await;
        let series = client_of(&addr, 1 << 20, 1 << 20)
            .query_range("up", 1.0, 16.0, Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(series[0].samples, [(1.0, 2.0), (16.0, 3.0)]);
        let head = server.await.unwrap();
        let first = head.lines().next().unwrap();
        assert!(
            first
                .starts_with("GET /api/v1/query_range?query=up&start=1.000&end=16.000&step=15.000"),
            "{first}"
        );
    }

    #[tokio::test]
    async fn errors_never_show_url_credentials() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = PrometheusClient::new(&PrometheusSettings {
            url: format!("http://user:secret@127.0.0.1:{port}/?api_key=k3y"),
            ..Default::default()
        })
        .unwrap();
        let err = client.query("up", 1.0).await.unwrap_err().to_string();
        assert!(!err.contains("secret") && !err.contains("user@"), "{err}");
        assert!(!err.contains("k3y"), "{err}");
        assert!(err.contains("/api/v1/query"), "{err}");
        let bad = PrometheusClient::new(&PrometheusSettings {
            url: "ftp://user:secret@host/".into(),
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(!bad.contains("secret"), "{bad}");
    }

    #[test]
    fn verbs_parse_like_upstream() {
        assert_eq!("GET".parse::<Verb>().unwrap(), Verb::Get);
        assert_eq!("POST".parse::<Verb>().unwrap(), Verb::Post);
        assert!("PUT".parse::<Verb>().is_err());
    }
}
