//! Named backends (`backends:`): checked when the config loads, and resolved for each rule that
//! names one, so that a request never meets an unknown name.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::RuleError;
use crate::config::{Backend as RawBackend, Text};
use crate::duration::parse_go_duration_positive;
use crate::query::prometheus::Verb;

/// The config section backends come from.
pub const SECTION: &str = "backends";

/// The name `--prometheus-url` goes by in logs and `/metrics`; no entry may take it.
pub const DEFAULT_NAME: &str = "default";

/// A checked `backends` entry. Two specs are equal when every setting is, which is how a reload
/// that changes a backend's URL or credentials gets a new client while an unchanged one keeps
/// its connections and shared answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    /// The name rules use.
    pub name: String,
    /// Base URL.
    pub url: String,
    /// Headers sent with every call.
    pub headers: Vec<(String, String)>,
    /// Bearer token file.
    pub token_file: Option<PathBuf>,
    /// CA bundle.
    pub ca_file: Option<PathBuf>,
    /// Client certificate.
    pub client_cert_file: Option<PathBuf>,
    /// Client key.
    pub client_key_file: Option<PathBuf>,
    /// Query timeout; `None` takes `--prometheus-query-timeout`.
    pub timeout: Option<Duration>,
    /// Verb; `None` takes `--prometheus-verb`.
    pub verb: Option<Verb>,
}

fn path(text: &Option<Text>) -> Option<PathBuf> {
    text.as_ref()
        .filter(|t| !t.as_str().trim().is_empty())
        .map(|t| PathBuf::from(t.as_str().trim()))
}

fn compile_one(raw: &RawBackend) -> Result<BackendSpec, Vec<RuleError>> {
    let mut errors = Vec::new();
    let name = raw.name.as_str().trim().to_string();
    if name.is_empty() {
        errors.push(RuleError::at("name", &raw.name, "name is required"));
    } else if name == DEFAULT_NAME {
        errors.push(RuleError::at(
            "name",
            &raw.name,
            "\"default\" is the backend of --prometheus-url; rules without `backend:` use it",
        ));
    }
    match url::Url::parse(raw.url.as_str().trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        Ok(u) => errors.push(RuleError::at(
            "url",
            &raw.url,
            format!("the URL must be http or https, not {}", u.scheme()),
        )),
        Err(e) => errors.push(RuleError::at(
            "url",
            &raw.url,
            format!(
                "invalid URL {:?}: {e}",
                crate::query::prometheus::redacted_url(raw.url.as_str())
            ),
        )),
    }
    for (key, value) in &raw.headers {
        if reqwest::header::HeaderName::from_bytes(key.as_bytes()).is_err() {
            errors.push(RuleError::new(
                &format!("headers.{key}"),
                "not a valid HTTP header name",
            ));
        } else if reqwest::header::HeaderValue::from_str(value).is_err() {
            errors.push(RuleError::new(
                &format!("headers.{key}"),
                "the value holds characters a header cannot carry",
            ));
        }
    }
    let timeout = match &raw.timeout {
        Some(t) => match parse_go_duration_positive(t.as_str().trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(RuleError::at("timeout", t, e.to_string()));
                None
            }
        },
        None => None,
    };
    let verb = match &raw.verb {
        Some(v) => match v.as_str().trim().parse::<Verb>() {
            Ok(verb) => Some(verb),
            Err(e) => {
                errors.push(RuleError::at("verb", v, e));
                None
            }
        },
        None => None,
    };
    let (cert, key) = (path(&raw.client_cert_file), path(&raw.client_key_file));
    if cert.is_some() != key.is_some() {
        errors.push(RuleError::new(
            "clientCertFile",
            "clientCertFile and clientKeyFile must be given together",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(BackendSpec {
        name,
        url: raw.url.as_str().trim().to_string(),
        headers: raw
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        token_file: path(&raw.bearer_token_file),
        ca_file: path(&raw.ca_file),
        client_cert_file: cert,
        client_key_file: key,
        timeout,
        verb,
    })
}

/// Checks every `backends` entry; returns the good ones and every error found.
pub fn compile(raw: &[RawBackend]) -> (Vec<Arc<BackendSpec>>, Vec<RuleError>) {
    let mut specs: Vec<Arc<BackendSpec>> = Vec::new();
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, b) in raw.iter().enumerate() {
        match compile_one(b) {
            Ok(spec) if !seen.insert(spec.name.clone()) => errors.push(
                RuleError::at(
                    "name",
                    &b.name,
                    format!("backend {:?} is defined twice", spec.name),
                )
                .in_rule(SECTION, index),
            ),
            Ok(spec) => specs.push(Arc::new(spec)),
            Err(e) => errors.extend(e.into_iter().map(|e| e.in_rule(SECTION, index))),
        }
    }
    (specs, errors)
}

/// The spec a rule's `backend:` names, or an error at that field listing what exists.
pub fn resolve(
    name: &Text,
    specs: &[Arc<BackendSpec>],
) -> Result<Option<Arc<BackendSpec>>, RuleError> {
    let wanted = name.as_str().trim();
    if wanted.is_empty() || wanted == DEFAULT_NAME {
        return Ok(None);
    }
    if let Some(spec) = specs.iter().find(|s| s.name == wanted) {
        return Ok(Some(spec.clone()));
    }
    let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    Err(RuleError::at(
        "backend",
        name,
        if known.is_empty() {
            format!("unknown backend {wanted:?}: the config defines no `backends`")
        } else {
            format!(
                "unknown backend {wanted:?}: the config defines {}",
                known.join(", ")
            )
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> crate::config::MetricsDiscoveryConfig {
        crate::config::parse(yaml, "test").unwrap()
    }

    #[test]
    fn backends_are_checked_field_by_field_with_their_lines() {
        let raw = load(
            r#"backends:
- name: longterm
  url: http://thanos-query.monitoring.svc:9090
  headers: {X-Scope-OrgID: team-a}
  timeout: 45s
  verb: POST
- name: default
  url: ftp://x
- name: longterm
  url: http://other:9090
- name: broken
  url: "not a url"
  timeout: 5 minutes
  verb: PUT
  clientCertFile: /tls/tls.crt
"#,
        );
        let (specs, errors) = compile(&raw.backends);
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].timeout, Some(Duration::from_secs(45)));
        assert_eq!(specs[0].verb, Some(Verb::Post));
        assert_eq!(
            specs[0].headers,
            [("X-Scope-OrgID".to_string(), "team-a".to_string())]
        );
        let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let all = all.join("\n");
        for expected in [
            "backends[1].name (line 7)",
            "backends[1].url (line 8): the URL must be http or https",
            "backends[2].name (line 9): backend \"longterm\" is defined twice",
            "backends[3].url (line 12): invalid URL",
            "backends[3].timeout (line 13)",
            "backends[3].verb (line 14)",
            "backends[3].clientCertFile: clientCertFile and clientKeyFile must be given together",
        ] {
            assert!(all.contains(expected), "{expected} missing from:\n{all}");
        }
    }

    #[test]
    fn a_rule_naming_an_unknown_backend_is_told_what_exists() {
        let raw = load("backends:\n- name: vm\n  url: http://vm:8428\n");
        let (specs, _) = compile(&raw.backends);
        let name = Text {
            value: "thanos".into(),
            line: 9,
            column: 12,
        };
        let e = resolve(&name, &specs).unwrap_err();
        assert_eq!(e.field, "backend");
        assert_eq!(e.line, 9);
        assert!(e.message.contains("the config defines vm"), "{}", e.message);
        assert_eq!(
            resolve(&Text::new("vm"), &specs).unwrap().unwrap().name,
            "vm"
        );
        assert!(resolve(&Text::new("default"), &specs).unwrap().is_none());
    }
}
