//! Sharing `external.metrics.k8s.io` with another external metrics server, such as KEDA's
//! metrics apiserver.
//!
//! A cluster registers one APIService per group version, so installing KEDA for its scalers
//! used to mean giving up our external metrics, or the reverse. Here the external metric names
//! that nothing of ours serves (no rule, no schedule floor, nothing a targeted lookup finds) are
//! forwarded, with the same path and query, to the fallback; the caller has already passed our
//! own authentication and SubjectAccessReview, and we authenticate to the fallback with the
//! adapter's service-account token. Its answer is returned as it is. The fallback's discovery
//! list is refreshed in the background and merged into ours; a fallback that is down fails only
//! the requests forwarded to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;

use super::error::ApiError;
use crate::query::prometheus::{TokenSource, error_chain, redacted_url};
use crate::rules::compiled::SharedNames;

/// Largest answer taken from the fallback; an external metric list is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Why an answer's body could not be taken.
enum BodyError {
    /// The connection failed while reading.
    Transport(String),
    /// More than [`MAX_ANSWER_BYTES`].
    TooLarge,
}

/// The whole body of `resp`, refusing more than [`MAX_ANSWER_BYTES`] without reading past it.
async fn read_capped(resp: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| BodyError::Transport(error_chain(&e)))?;
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// How to reach the fallback.
#[derive(Clone, Debug)]
pub struct FallbackSettings {
    /// Base URL (scheme, host, port; a path prefix is kept).
    pub url: String,
    /// CA bundle for its serving certificate; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate.
    pub client_cert_file: Option<PathBuf>,
    /// Client key.
    pub client_key_file: Option<PathBuf>,
    /// Bearer token file.
    pub token_file: Option<PathBuf>,
    /// Timeout of one forwarded request.
    pub timeout: Duration,
}

/// The fallback external metrics server.
pub struct ExternalFallback {
    http: reqwest::Client,
    base: String,
    display: String,
    token: Option<TokenSource>,
    timeout: Duration,
    names: SharedNames,
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("unable to read the {what} {}: {e}", path.display()))
}

impl ExternalFallback {
    /// A client for the fallback; fails on a bad URL or unreadable files.
    pub fn new(s: &FallbackSettings) -> Result<ExternalFallback, String> {
        crate::install_crypto_provider();
        let url = url::Url::parse(&s.url).map_err(|e| {
            format!(
                "invalid --external-metrics-fallback {:?}: {e}",
                redacted_url(&s.url)
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("--external-metrics-fallback must be an http or https URL".into());
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &s.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read(ca, "fallback CA file")?)
                .map_err(|e| format!("invalid fallback CA file {}: {e}", ca.display()))?;
            builder = builder.tls_certs_only(certs);
        }
        match (&s.client_cert_file, &s.client_key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert, "fallback client certificate")?;
                pem.push(b'\n');
                pem.extend(read(key, "fallback client key")?);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| format!("invalid fallback client certificate or key: {e}"))?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err("--external-metrics-fallback-client-cert-file and \
                            --external-metrics-fallback-client-key-file must be given together"
                    .into());
            }
        }
        let http = builder.build().map_err(|e| error_chain(&e))?;
        let token = s.token_file.clone().map(TokenSource::new);
        Ok(ExternalFallback {
            http,
            base: url.as_str().trim_end_matches('/').to_string(),
            display: redacted_url(url.as_str().trim_end_matches('/')),
            token,
            timeout: s.timeout,
            names: Arc::new(ArcSwap::from_pointee(Vec::new())),
        })
    }

    /// The fallback's external metric names as last listed, shared with the config.
    pub fn names(&self) -> SharedNames {
        self.names.clone()
    }

    /// Whether the fallback listed `name` when last asked.
    pub fn serves(&self, name: &str) -> bool {
        self.names
            .load()
            .binary_search_by(|n| n.as_str().cmp(name))
            .is_ok()
    }

    /// Where the fallback is, for messages.
    pub fn url(&self) -> &str {
        &self.display
    }

    fn get(&self, path_and_query: &str) -> Result<reqwest::RequestBuilder, String> {
        let mut req = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .header(header::ACCEPT, "application/json")
            .timeout(self.timeout);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.token().map_err(|e| e.to_string())?);
        }
        Ok(req)
    }

    /// Forwards `path_and_query` (as the caller sent it) and returns the fallback's answer as is:
    /// status, content type and body. Only an unreachable fallback is our own 503.
    pub async fn forward(&self, path_and_query: &str) -> Result<Response, ApiError> {
        let unavailable = |e: String| {
            ApiError::Unavailable(format!(
                "the external metrics fallback at {} did not answer: {e}",
                self.display
            ))
        };
        let resp = self
            .get(path_and_query)
            .map_err(unavailable)?
            .send()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let body = read_capped(resp).await.map_err(|e| match e {
            BodyError::Transport(e) => unavailable(e),
            BodyError::TooLarge => ApiError::BadGateway(format!(
                "the external metrics fallback at {} answered more than {MAX_ANSWER_BYTES} bytes",
                self.display
            )),
        })?;
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = status;
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            content_type.unwrap_or(HeaderValue::from_static("application/json")),
        );
        Ok(out)
    }

    /// Lists the fallback's external metrics (its `APIResourceList`) and keeps the names.
    pub async fn refresh_names(&self) -> Result<usize, String> {
        let resp = self
            .get(&format!(
                "/apis/{}/{}",
                super::external::GROUP,
                super::external::VERSION
            ))?
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = read_capped(resp).await.map_err(|e| match e {
            BodyError::Transport(e) => e,
            BodyError::TooLarge => format!("the list is larger than {MAX_ANSWER_BYTES} bytes"),
        })?;
        let list: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("the list is not JSON: {e}"))?;
        let mut names: Vec<String> = list["resources"]
            .as_array()
            .ok_or("the answer is not an APIResourceList")?
            .iter()
            .filter_map(|r| r["name"].as_str())
            .filter(|n| crate::rules::naming::is_valid_api_metric_name(n))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        let n = names.len();
        self.names.store(Arc::new(names));
        Ok(n)
    }

    /// Refreshes the names every `every`, logging a failure once until the next success.
    pub async fn run(self: Arc<Self>, every: Duration) {
        let mut failing = false;
        loop {
            match self.refresh_names().await {
                Ok(n) => {
                    if failing {
                        tracing::info!(fallback = %self.display, names = n, "listed the external metrics fallback's metrics again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(fallback = %self.display, error = %e, "unable to list the external metrics fallback's metrics; keeping the last list");
                    }
                    failing = true;
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}
