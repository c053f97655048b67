//! Delegated authentication, the way k8s.io/apiserver does it for aggregated API servers, in
//! this order: a front-proxy client certificate makes the `X-Remote-*` headers the identity; a
//! client certificate from the client CA makes its (last) CN the user and its O values the
//! groups; a bearer token is checked with a TokenReview (cached); a request with none of these
//! is anonymous, one whose credentials all failed is a 401. The TLS layer asks for a client
//! certificate but does not judge it ([`super::tls`]): that happens here, per identity source.
//! The `X-Remote-*` headers are never read on any other connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use super::cache::TtlCache;
use super::tls::{TlsError, root_store};

/// Who is asking.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// UID, when the identity source gave one.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The anonymous user.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }
}

/// The front proxy's settings (`--requestheader-*` or the ConfigMap).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    /// CA bundle the front proxy's client certificate chains to.
    pub ca: Vec<CertificateDer<'static>>,
    /// Allowed common names; empty allows any.
    pub allowed_names: Vec<String>,
    /// Headers holding the user name (the first non-empty wins).
    pub username_headers: Vec<String>,
    /// Headers holding groups (all values of all of them).
    pub group_headers: Vec<String>,
    /// Prefixes of headers holding extra attributes.
    pub extra_prefixes: Vec<String>,
    /// Headers holding the UID.
    pub uid_headers: Vec<String>,
}

/// Where client certificates may come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthnConfig {
    /// The client CA (`--client-ca-file` or the ConfigMap's `client-ca-file`).
    pub client_ca: Vec<CertificateDer<'static>>,
    /// The front proxy, when configured.
    pub requestheader: Option<RequestHeaderConfig>,
}

impl AuthnConfig {
    /// Every CA a client certificate may chain to: what the TLS layer accepts.
    pub fn all_cas(&self) -> Vec<CertificateDer<'static>> {
        let mut cas = self.client_ca.clone();
        if let Some(rh) = &self.requestheader {
            cas.extend(rh.ca.iter().cloned());
        }
        cas
    }
}

struct Verifiers {
    config: AuthnConfig,
    client: Option<Arc<dyn ClientCertVerifier>>,
    requestheader: Option<Arc<dyn ClientCertVerifier>>,
    /// Chains that verified, with their leaf's subject. The aggregator sends all its traffic
    /// over a few long-lived connections with one certificate, and checking its signatures
    /// again on every request was a third of the adapter's CPU (ECDSA P-256 in the profile).
    /// Held with the verifiers, so a CA rotation starts it afresh.
    verified: TtlCache<Arc<Option<Subject>>>,
}

/// The longest a verified chain is trusted without checking it again (never past the leaf's
/// `notAfter`).
const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Distinct verified chains remembered: a cluster has a handful of front proxies and clients.
const VERIFIED_CAPACITY: usize = 1024;

/// Which verifier a cached chain passed.
#[derive(Clone, Copy)]
enum Source {
    FrontProxy,
    Client,
}

impl Verifiers {
    /// The leaf's subject (`None` inside when it has no readable CN) if `chain` verifies against
    /// `source`'s CA; `None` when it does not or that source is not configured.
    fn verified(&self, source: Source, chain: &[Vec<u8>]) -> Option<Arc<Option<Subject>>> {
        let (verifier, tag): (&Arc<dyn ClientCertVerifier>, &[u8]) = match source {
            Source::FrontProxy => (self.requestheader.as_ref()?, b"front-proxy"),
            Source::Client => (self.client.as_ref()?, b"client"),
        };
        let key = super::cache::key(std::iter::once(tag).chain(chain.iter().map(Vec::as_slice)));
        if let Some(hit) = self.verified.get(&key) {
            return Some(hit);
        }
        if !verifies(verifier, chain) {
            return None;
        }
        let subject = Arc::new(subject(chain));
        let ttl = leaf_lifetime_left(chain).map_or(Duration::ZERO, |left| left.min(VERIFIED_FOR));
        self.verified.insert(key, subject.clone(), ttl);
        Some(subject)
    }
}

/// How long the leaf certificate stays valid from now; `None` when it does not parse.
fn leaf_lifetime_left(chain: &[Vec<u8>]) -> Option<Duration> {
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    let left = cert.validity().not_after.timestamp().saturating_sub(now);
    Some(Duration::from_secs(left.max(0) as u64))
}

fn verifier(
    cas: &[CertificateDer<'static>],
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    if cas.is_empty() {
        return Ok(None);
    }
    let v = WebPkiClientVerifier::builder(Arc::new(root_store(cas)?))
        .build()
        .map_err(|e| TlsError::Invalid(format!("client certificate verifier: {e}")))?;
    Ok(Some(v))
}

/// Why authentication failed (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// The credentials were presented but are not valid.
    #[error("{0}")]
    Invalid(String),
    /// The token could not be checked.
    #[error("unable to check the bearer token: {0}")]
    Unavailable(String),
}

/// Checks bearer tokens with TokenReviews, caching answers.
pub struct TokenReviewer {
    client: kube::Client,
    ttl: Duration,
    cache: TtlCache<Result<UserInfo, String>>,
}

impl TokenReviewer {
    /// A reviewer using `client`, caching answers for `ttl`.
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        TokenReviewer {
            client,
            ttl,
            cache: TtlCache::new(10_000),
        }
    }

    async fn review(&self, token: &str) -> Result<UserInfo, AuthnError> {
        // Keyed by a digest: the cache holds no tokens, and a long one costs no more memory.
        let key = super::cache::key([token.as_bytes()]);
        if let Some(cached) = self.cache.get(&key) {
            crate::telemetry::Metrics::outcome(
                &crate::telemetry::metrics().auth_cache_hits,
                "token_review",
            );
            return cached.map_err(AuthnError::Invalid);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthnError::Unavailable(crate::query::prometheus::error_chain(&e)))?;
        let status = answer.status.unwrap_or_default();
        let result = match (status.authenticated, status.user) {
            (Some(true), Some(user)) => Ok(UserInfo {
                name: user.username.unwrap_or_default(),
                uid: user.uid.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
            }),
            _ => Err(status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "the token was not accepted".into())),
        };
        self.cache.insert(key, result.clone(), self.ttl);
        result.map_err(AuthnError::Invalid)
    }
}

/// Authenticates requests.
pub struct Authenticator {
    verifiers: ArcSwap<Verifiers>,
    tokens: Option<TokenReviewer>,
}

fn header_values<'a>(
    headers: &'a HeaderMap,
    names: &'a [String],
) -> impl Iterator<Item = &'a str> + 'a {
    names
        .iter()
        .flat_map(move |n| headers.get_all(n.as_str()).iter())
        .filter_map(|v| v.to_str().ok())
}

/// The identity parts of a certificate's subject, read as Go's `pkix.Name` reads them.
#[derive(Clone, Debug)]
struct Subject {
    /// The **last** CN: Go keeps overwriting `CommonName`, so a subject
    /// `CN=front-proxy-client, CN=mallory` is `mallory` to the kube-apiserver, and must be here.
    common_name: String,
    /// Every O, in order.
    organizations: Vec<String>,
}

/// The leaf certificate's subject; `None` when it does not parse or has no CN.
fn subject(peer_certs: &[Vec<u8>]) -> Option<Subject> {
    let (_, cert) = x509_parser::parse_x509_certificate(peer_certs.first()?).ok()?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .last()?
        .to_string();
    let organizations = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Subject {
        common_name,
        organizations,
    })
}

/// `CN="…"` of the leaf, for messages.
fn describe(peer_certs: &[Vec<u8>]) -> String {
    match subject(peer_certs) {
        Some(s) => format!("CN={:?}", s.common_name),
        None => "(no readable subject)".into(),
    }
}

fn verifies(verifier: &Arc<dyn ClientCertVerifier>, chain: &[Vec<u8>]) -> bool {
    let Some((leaf, rest)) = chain.split_first() else {
        return false;
    };
    let leaf = CertificateDer::from(leaf.as_slice());
    let intermediates: Vec<CertificateDer<'_>> = rest
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    verifier
        .verify_client_cert(&leaf, &intermediates, UnixTime::now())
        .is_ok()
}

impl Authenticator {
    /// An authenticator with `config`; bearer tokens are checked when `tokens` is given.
    pub fn new(config: AuthnConfig, tokens: Option<TokenReviewer>) -> Result<Self, TlsError> {
        Ok(Authenticator {
            verifiers: ArcSwap::from_pointee(Self::verifiers(config)?),
            tokens,
        })
    }

    fn verifiers(config: AuthnConfig) -> Result<Verifiers, TlsError> {
        Ok(Verifiers {
            client: verifier(&config.client_ca)?,
            requestheader: match &config.requestheader {
                Some(rh) => verifier(&rh.ca)?,
                None => None,
            },
            config,
            verified: TtlCache::new(VERIFIED_CAPACITY),
        })
    }

    /// Replaces the configuration (CA rotation); returns whether it changed.
    pub fn update(&self, config: AuthnConfig) -> Result<bool, TlsError> {
        if self.verifiers.load().config == config {
            return Ok(false);
        }
        self.verifiers.store(Arc::new(Self::verifiers(config)?));
        Ok(true)
    }

    /// The current configuration.
    pub fn config(&self) -> AuthnConfig {
        self.verifiers.load().config.clone()
    }

    /// Who sent a request with these peer certificates (leaf first) and headers.
    ///
    /// As k8s.io/apiserver's union of authenticators: the front proxy, the client CA, then the
    /// bearer token; the first that authenticates wins. A source that finds bad credentials
    /// (a certificate no trusted CA signed, a front-proxy CN that is not allowed, a rejected
    /// token) does not stop the others, but when none authenticates the request is a 401
    /// naming every failure, not anonymous. Only a request with no credentials at all is
    /// anonymous.
    pub async fn authenticate(
        &self,
        peer_certs: &[Vec<u8>],
        headers: &HeaderMap,
    ) -> Result<UserInfo, AuthnError> {
        let v = self.verifiers.load_full();
        let mut failures: Vec<String> = Vec::new();
        if !peer_certs.is_empty() {
            if let Some(rh) = &v.config.requestheader
                && v.requestheader.is_some()
            {
                match front_proxy_user(
                    v.verified(Source::FrontProxy, peer_certs),
                    rh,
                    peer_certs,
                    headers,
                ) {
                    Ok(Some(user)) => {
                        count("front_proxy");
                        return Ok(authenticated(user));
                    }
                    Ok(None) => {}
                    Err(e) => failures.push(e),
                }
            }
            if v.client.is_some() {
                match v.verified(Source::Client, peer_certs).as_deref() {
                    Some(Some(name)) => {
                        count("client_cert");
                        return Ok(authenticated(UserInfo {
                            name: name.common_name.clone(),
                            groups: name.organizations.clone(),
                            ..Default::default()
                        }));
                    }
                    _ => failures.push(format!(
                        "the client certificate {} is not signed by the client CA",
                        describe(peer_certs)
                    )),
                }
            }
        }
        if let Some(token) = bearer_token(headers) {
            count("token");
            match &self.tokens {
                Some(reviewer) => match reviewer.review(token).await {
                    Ok(user) => return Ok(authenticated(user)),
                    Err(e @ AuthnError::Unavailable(_)) => return Err(e),
                    Err(e) => failures.push(e.to_string()),
                },
                None => failures
                    .push("bearer tokens are not accepted (no authentication kubeconfig)".into()),
            }
        }
        if failures.is_empty() {
            count("anonymous");
            Ok(UserInfo::anonymous())
        } else {
            Err(AuthnError::Invalid(failures.join("; ")))
        }
    }
}

fn count(outcome: &str) {
    crate::telemetry::Metrics::outcome(&crate::telemetry::metrics().authentications, outcome);
}

/// `Authorization: Bearer <token>`, when present and not empty.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The front proxy's view: `Ok(Some)` when the certificate is the front proxy's and a user
/// header names someone; `Ok(None)` when the certificate is the front proxy's but no user
/// header is set (this source does not authenticate; the others may); `Err` when the
/// certificate is not from the front-proxy CA or its CN is not allowed.
/// The identity in the headers of a front-proxy connection. `verified` is the leaf's subject
/// when the chain verified against the front-proxy CA.
fn front_proxy_user(
    verified: Option<Arc<Option<Subject>>>,
    rh: &RequestHeaderConfig,
    peer_certs: &[Vec<u8>],
    headers: &HeaderMap,
) -> Result<Option<UserInfo>, String> {
    let Some(verified) = verified else {
        return Err(format!(
            "the client certificate {} is not signed by the front-proxy CA",
            describe(peer_certs)
        ));
    };
    let cn = verified
        .as_ref()
        .as_ref()
        .map(|s| s.common_name.as_str())
        .unwrap_or_default();
    if !rh.allowed_names.is_empty() && !rh.allowed_names.iter().any(|n| n == cn) {
        return Err(format!(
            "front-proxy client certificate CN {cn:?} is not in --requestheader-allowed-names"
        ));
    }
    let Some(user) = header_values(headers, &rh.username_headers).find(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        for prefix in &rh.extra_prefixes {
            if let Some(key) = name.as_str().strip_prefix(&prefix.to_ascii_lowercase())
                && let Ok(value) = value.to_str()
            {
                let key = percent_encoding::percent_decode_str(key)
                    .decode_utf8_lossy()
                    .to_lowercase();
                extra.entry(key).or_default().push(value.to_string());
            }
        }
    }
    Ok(Some(UserInfo {
        name: user.to_string(),
        uid: header_values(headers, &rh.uid_headers)
            .find(|u| !u.is_empty())
            .unwrap_or_default()
            .to_string(),
        // Empty values are dropped, as k8s.io/apiserver does: an empty group matches nothing.
        groups: header_values(headers, &rh.group_headers)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        extra,
    }))
}

/// Adds `system:authenticated` to an authenticated user, as k8s.io/apiserver's
/// `AuthenticatedGroupAdder` does (unless the user already is in it or in
/// `system:unauthenticated`), so RBAC granted to that group, `system:discovery` among it,
/// applies to every identity source.
fn authenticated(mut user: UserInfo) -> UserInfo {
    if !user
        .groups
        .iter()
        .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        user.groups.push("system:authenticated".into());
    }
    user
}

/// Reads the `kube-system/extension-apiserver-authentication` ConfigMap's data into an
/// [`AuthnConfig`]. List values are JSON arrays of strings.
pub fn config_from_configmap(data: &BTreeMap<String, String>) -> Result<AuthnConfig, TlsError> {
    let list = |key: &str| -> Result<Vec<String>, TlsError> {
        match data.get(key) {
            None => Ok(Vec::new()),
            Some(v) if v.trim().is_empty() => Ok(Vec::new()),
            Some(v) => serde_json::from_str(v).map_err(|e| {
                TlsError::Invalid(format!("extension-apiserver-authentication {key}: {e}"))
            }),
        }
    };
    let client_ca = match data.get("client-ca-file") {
        Some(pem) if !pem.trim().is_empty() => {
            super::tls::read_certs(pem.as_bytes(), "client-ca-file")?
        }
        _ => Vec::new(),
    };
    let requestheader = match data.get("requestheader-client-ca-file") {
        Some(pem) if !pem.trim().is_empty() => Some(RequestHeaderConfig {
            ca: super::tls::read_certs(pem.as_bytes(), "requestheader-client-ca-file")?,
            allowed_names: list("requestheader-allowed-names")?,
            username_headers: lowercase(list("requestheader-username-headers")?),
            group_headers: lowercase(list("requestheader-group-headers")?),
            extra_prefixes: lowercase(list("requestheader-extra-headers-prefix")?),
            uid_headers: lowercase(list("requestheader-uid-headers")?),
        }),
        _ => None,
    };
    Ok(AuthnConfig {
        client_ca,
        requestheader,
    })
}

/// Header names compare case-insensitively; `HeaderMap` stores them lower-case.
pub fn lowercase(v: Vec<String>) -> Vec<String> {
    v.into_iter().map(|s| s.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(groups: &[&str]) -> UserInfo {
        UserInfo {
            name: "u".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn cert_valid_for(seconds: i64) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
        let now = std::time::SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = if seconds >= 0 {
            now + Duration::from_secs(seconds as u64)
        } else {
            now - Duration::from_secs(seconds.unsigned_abs())
        }
        .into();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_verified_chain_is_remembered_no_longer_than_its_leaf_is_valid() {
        let left = leaf_lifetime_left(&[cert_valid_for(30)]).unwrap();
        assert!(left <= Duration::from_secs(30) && left >= Duration::from_secs(28));
        assert_eq!(
            leaf_lifetime_left(&[cert_valid_for(-5)]),
            Some(Duration::ZERO)
        );
        assert_eq!(leaf_lifetime_left(&[b"not a certificate".to_vec()]), None);
        assert_eq!(leaf_lifetime_left(&[]), None);
    }

    #[test]
    fn system_authenticated_is_added_once_and_never_to_the_unauthenticated() {
        assert_eq!(
            authenticated(user(&["devs"])).groups,
            ["devs", "system:authenticated"]
        );
        assert_eq!(
            authenticated(user(&["system:authenticated", "devs"])).groups,
            ["system:authenticated", "devs"]
        );
        assert_eq!(
            authenticated(user(&["system:unauthenticated"])).groups,
            ["system:unauthenticated"]
        );
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively_and_never_empty() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert("authorization", "Bearer   ".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }
}
