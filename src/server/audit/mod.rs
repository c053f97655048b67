//! The audit log, as kube-apiserver writes it: `--audit-log-path` (`-` for standard output)
//! receives one `audit.k8s.io/v1` `Event` per line for every request the policy
//! (`--audit-policy-file`) asks for, at the stages it asks for, so a cluster's audit pipeline
//! can tell who read which namespace's metrics. Without a policy file nothing is recorded, as
//! in kube-apiserver.
//!
//! The middleware runs after authentication (it needs the user) and around authorization and
//! the handlers (it records their decision and answer); a request whose authentication failed
//! is recorded by [`Auditor::unauthenticated`]. Lines go through a bounded queue to a writer
//! thread: a request waits when the queue is full (kube-apiserver's default "blocking" mode)
//! rather than dropping an event.

pub mod file;
pub mod policy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

use self::file::{RotatingFile, Rotation};
use self::policy::{Level, Policy, RequestAttributes, Stage, Target};
use super::authn::UserInfo;
use super::authz::Attributes;
use crate::api::types::Status;

/// Largest response body recorded at level `RequestResponse`; a larger one is left out.
const MAX_RECORDED_BODY: usize = 4 << 20;

/// Why the audit log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The policy file.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The log file.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Records requests.
pub struct Auditor {
    policy: Policy,
    lines: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").finish_non_exhaustive()
    }
}

/// What the inner layers learned about a request, for its event.
#[derive(Clone, Debug, Default)]
pub struct Notes(Arc<Mutex<BTreeMap<String, String>>>);

impl Notes {
    /// Adds an annotation (`authorization.k8s.io/decision`, …).
    pub fn annotate(&self, key: &str, value: impl Into<String>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.to_string(), value.into());
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventUser {
    #[serde(skip_serializing_if = "String::is_empty")]
    username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_group: String,
    api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    subresource: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseStatus {
    metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "str::is_empty")]
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    code: u16,
}

/// `audit.k8s.io/v1` `Event`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    kind: &'static str,
    api_version: &'static str,
    level: Level,
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: Stage,
    #[serde(rename = "requestURI")]
    request_uri: String,
    verb: String,
    user: EventUser,
    #[serde(rename = "sourceIPs")]
    source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_status: Option<ResponseStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_object: Option<serde_json::Value>,
    request_received_timestamp: String,
    stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// `metav1.MicroTime` as JSON writes it.
fn micro_time(t: std::time::SystemTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(t)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The request's side of an event, captured before the request moves on.
struct Received {
    at: std::time::SystemTime,
    audit_id: String,
    request_uri: String,
    user_agent: String,
    source_ips: Vec<String>,
}

impl Received {
    fn of(req: &Request) -> Received {
        let headers = req.headers();
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Received {
            at: std::time::SystemTime::now(),
            audit_id: audit_id(headers),
            request_uri: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            user_agent: header(headers, "user-agent"),
            source_ips: source_ips(headers, peer),
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The `Audit-ID` the aggregator sent (it forwards its own, so both logs share the ID), or a
/// new UUID when there is none or it is not a short printable string.
fn audit_id(headers: &HeaderMap) -> String {
    let given = header(headers, "audit-id");
    if !given.is_empty() && given.len() <= 64 && given.bytes().all(|b| b.is_ascii_graphic()) {
        given
    } else {
        uuid::Uuid::new_v4().to_string()
    }
}

/// As Go's `utilnet.SourceIPs`: the `X-Forwarded-For` chain, `X-Real-Ip`, then the peer,
/// each once. The headers are whatever the client sent; only the peer is certain.
fn source_ips(headers: &HeaderMap, peer: Option<String>) -> Vec<String> {
    let mut ips: Vec<String> = Vec::new();
    let forwarded = header(headers, "x-forwarded-for");
    let real = header(headers, "x-real-ip");
    for ip in forwarded
        .split(',')
        .map(str::trim)
        .chain(std::iter::once(real.trim()))
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string)
        .chain(peer)
    {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

fn event_user(user: Option<&UserInfo>) -> EventUser {
    match user {
        Some(u) => EventUser {
            username: u.name.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            extra: u.extra.clone(),
        },
        None => EventUser {
            username: String::new(),
            uid: String::new(),
            groups: Vec::new(),
            extra: BTreeMap::new(),
        },
    }
}

fn object_ref(attrs: &Attributes) -> Option<ObjectRef> {
    match attrs {
        Attributes::Resource {
            group,
            version,
            resource,
            subresource,
            name,
            namespace,
            ..
        } => Some(ObjectRef {
            resource: resource.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            api_group: group.clone(),
            api_version: version.clone(),
            subresource: subresource.clone(),
        }),
        Attributes::NonResource { .. } => None,
    }
}

fn verb(attrs: &Attributes) -> &str {
    match attrs {
        Attributes::Resource { verb, .. } | Attributes::NonResource { verb, .. } => verb,
    }
}

fn policy_view<'a>(attrs: &'a Attributes, user: Option<&'a UserInfo>) -> RequestAttributes<'a> {
    let target = match attrs {
        Attributes::Resource {
            group,
            resource,
            subresource,
            name,
            namespace,
            ..
        } => Target::Resource {
            group,
            resource,
            subresource,
            name,
            namespace,
        },
        Attributes::NonResource { path, .. } => Target::NonResource { path },
    };
    RequestAttributes {
        user: user.map(|u| u.name.as_str()).unwrap_or_default(),
        groups: user.map(|u| u.groups.as_slice()).unwrap_or_default(),
        verb: verb(attrs),
        target,
    }
}

fn response_status(resp: &Response) -> ResponseStatus {
    let code = resp.status().as_u16();
    match resp.extensions().get::<Status>() {
        Some(s) => ResponseStatus {
            metadata: Default::default(),
            status: s.status,
            message: s.message.clone(),
            reason: s.reason,
            code,
        },
        None => ResponseStatus {
            metadata: Default::default(),
            status: "",
            message: String::new(),
            reason: "",
            code,
        },
    }
}

/// Where lines go.
enum Sink {
    Stdout(std::io::Stdout),
    File(RotatingFile),
}

impl Sink {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(out) => std::io::Write::write_all(out, line),
            Sink::File(file) => file.write_line(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(out) => std::io::Write::flush(out),
            Sink::File(file) => file.flush(),
        }
    }
}

impl Auditor {
    /// Reads the policy and opens the log (`-`: standard output), starting its writer.
    pub fn start(
        log_path: &str,
        policy_path: &Path,
        rotation: Rotation,
    ) -> Result<Arc<Auditor>, AuditError> {
        let text = std::fs::read_to_string(policy_path).map_err(|source| AuditError::Io {
            path: policy_path.display().to_string(),
            source,
        })?;
        let policy = Policy::parse(&text, &policy_path.display().to_string())?;
        let mut sink = if log_path == "-" {
            Sink::Stdout(std::io::stdout())
        } else {
            Sink::File(
                RotatingFile::open(Path::new(log_path), rotation).map_err(|source| {
                    AuditError::Io {
                        path: log_path.to_string(),
                        source,
                    }
                })?,
            )
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(10_000);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                while let Some(line) = rx.blocking_recv() {
                    let mut result = sink.write_line(&line);
                    // Flush when the queue is drained, so events are on disk promptly.
                    while result.is_ok()
                        && let Ok(more) = rx.try_recv()
                    {
                        result = sink.write_line(&more);
                    }
                    if let Err(e) = result.and_then(|()| sink.flush()) {
                        tracing::error!(error = %e, "unable to write the audit log");
                    }
                }
            })
            .map_err(|source| AuditError::Io {
                path: log_path.to_string(),
                source,
            })?;
        Ok(Arc::new(Auditor { policy, lines: tx }))
    }

    async fn write(&self, event: &Event) {
        match serde_json::to_vec(event) {
            Ok(mut line) => {
                line.push(b'\n');
                if self.lines.send(line).await.is_err() {
                    tracing::error!("the audit log writer stopped; an event was lost");
                }
            }
            Err(e) => tracing::error!(error = %e, "unable to encode an audit event"),
        }
    }

    /// Records a request whose authentication failed (it never reaches [`audit`]). The event
    /// is built before the returned future runs, so the request need not be kept.
    pub fn unauthenticated(
        &self,
        req: &Request,
    ) -> impl std::future::Future<Output = ()> + Send + use<'_> {
        let event = self.unauthenticated_event(req);
        async move {
            if let Some(event) = event {
                self.write(&event).await;
            }
        }
    }

    fn unauthenticated_event(&self, req: &Request) -> Option<Event> {
        let attrs = Attributes::from_path(req.uri().path());
        let (level, omit) = self.policy.evaluate(&policy_view(&attrs, None));
        if level == Level::None || omit.contains(&Stage::ResponseComplete) {
            return None;
        }
        let received = Received::of(req);
        Some(Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level,
            audit_id: received.audit_id,
            stage: Stage::ResponseComplete,
            request_uri: received.request_uri,
            verb: verb(&attrs).to_string(),
            user: event_user(None),
            source_ips: received.source_ips,
            user_agent: received.user_agent,
            object_ref: object_ref(&attrs),
            response_status: Some(ResponseStatus {
                metadata: Default::default(),
                status: "Failure",
                message: "Unauthorized".into(),
                reason: "Unauthorized",
                code: 401,
            }),
            response_object: None,
            request_received_timestamp: micro_time(received.at),
            stage_timestamp: micro_time(std::time::SystemTime::now()),
            annotations: BTreeMap::new(),
        })
    }
}

/// The middleware; a no-op without an auditor.
pub async fn audit(
    State(auditor): State<Option<Arc<Auditor>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(auditor) = auditor else {
        return next.run(req).await;
    };
    let user = req.extensions().get::<UserInfo>().cloned();
    let attrs = Attributes::from_path(req.uri().path());
    let (level, omit) = auditor.policy.evaluate(&policy_view(&attrs, user.as_ref()));
    if level == Level::None {
        return next.run(req).await;
    }
    let received = Received::of(&req);
    let notes = Notes::default();
    req.extensions_mut().insert(notes.clone());
    let event = |stage, response_status, response_object, annotations| Event {
        kind: "Event",
        api_version: "audit.k8s.io/v1",
        level,
        audit_id: received.audit_id.clone(),
        stage,
        request_uri: received.request_uri.clone(),
        verb: verb(&attrs).to_string(),
        user: event_user(user.as_ref()),
        source_ips: received.source_ips.clone(),
        user_agent: received.user_agent.clone(),
        object_ref: object_ref(&attrs),
        response_status,
        response_object,
        request_received_timestamp: micro_time(received.at),
        stage_timestamp: micro_time(std::time::SystemTime::now()),
        annotations,
    };
    if !omit.contains(&Stage::RequestReceived) {
        auditor
            .write(&event(Stage::RequestReceived, None, None, BTreeMap::new()))
            .await;
    }
    let mut resp = next.run(req).await;
    if let Ok(id) = axum::http::HeaderValue::from_str(&received.audit_id) {
        resp.headers_mut().insert("audit-id", id);
    }
    if omit.contains(&Stage::ResponseComplete) {
        return resp;
    }
    let status = response_status(&resp);
    let mut object = None;
    if level >= Level::RequestResponse {
        // Recorded only when the body's size is known and small: the answers here are whole
        // JSON documents, so a body of unknown length is not buffered just to be logged.
        let (parts, body) = resp.into_parts();
        let small = axum::body::HttpBody::size_hint(&body)
            .exact()
            .is_some_and(|n| n <= MAX_RECORDED_BODY as u64);
        resp = if small {
            match axum::body::to_bytes(body, MAX_RECORDED_BODY).await {
                Ok(bytes) => {
                    object = serde_json::from_slice(&bytes).ok();
                    Response::from_parts(parts, axum::body::Body::from(bytes))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unable to read a response body for the audit log");
                    Response::from_parts(parts, axum::body::Body::empty())
                }
            }
        } else {
            Response::from_parts(parts, body)
        };
    }
    let annotations = notes.0.lock().map(|m| m.clone()).unwrap_or_default();
    auditor
        .write(&event(
            Stage::ResponseComplete,
            Some(status),
            object,
            annotations,
        ))
        .await;
    resp
}
