//! A serving certificate the adapter manages itself (`--cert-secret-name`), so the aggregator
//! verifies it by default with nothing else installed, as KEDA's metrics server does.
//!
//! One Secret in the adapter's namespace holds a CA and a serving certificate for the
//! Service's DNS names; every replica serves the same pair. The CA goes into the `caBundle` of
//! the named APIServices, and is written back whenever something blanks it (a `helm upgrade`, a
//! `kubectl apply` of manifests without a bundle). The serving certificate is renewed in the
//! last third of its life; the CA too, in which case the old CA stays in the bundle for a grace
//! period, so replicas that still serve the old certificate stay trusted.
//!
//! Replicas cannot race into two CAs: the Secret is created only when absent (a replica that
//! loses the race reads the winner's) and updated only at the version it read (a conflict means
//! re-reading). Every write is planned by the pure [`plan`] from what was read.

pub mod pki;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, Patch, PatchParams, PostParams};

use self::pki::{Pair, PkiError};
use super::K8sError;

/// The trust bundle: the signing CA first, then a previous one during a CA rotation.
const BUNDLE: &str = "ca.crt";
/// The signing CA's key.
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
/// When a previous CA may leave the bundle (RFC 3339).
const DROP_PREVIOUS_AFTER: &str = "prom-metrics-adapter.io/drop-previous-ca-after";

/// What to manage.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the Secret and the Service.
    pub namespace: String,
    /// The Secret.
    pub secret: String,
    /// The Service the APIServices point at; its DNS names go into the certificate.
    pub service: String,
    /// APIServices whose `caBundle` is kept in sync (missing ones are skipped).
    pub api_services: Vec<String>,
    /// Where `tls.crt` and `tls.key` are written for the server to load.
    pub cert_dir: PathBuf,
    /// How long a previous CA stays in the bundle after a CA rotation.
    pub rotation_grace: Duration,
}

/// The Secret's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contents {
    /// Trusted CAs, PEM; the first signs.
    pub bundle: String,
    /// The signing CA's key.
    pub ca_key: String,
    /// The serving pair.
    pub serving: Pair,
    /// When the CAs after the first may be dropped.
    pub drop_previous_after: Option<SystemTime>,
}

/// Why the serving certificate could not be managed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Generating or reading certificates.
    #[error("serving certificate: {0}")]
    Pki(#[from] PkiError),
    /// Talking to the API server.
    #[error(transparent)]
    Api(#[from] K8sError),
    /// Writing the files.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What has to be written, given what was read.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing: the Secret is good as it is.
    Keep,
    /// Create the Secret (it does not exist).
    Create(Contents),
    /// Replace the Secret's contents.
    Update(Contents),
}

/// Decides what the Secret should hold at `now`: a new CA and certificate when there is none
/// or the CA is unusable or due; a new certificate when it does not serve `host` or is due; the
/// previous CA dropped once its grace period is over.
pub fn plan(
    current: Option<&Contents>,
    names: &[String],
    host: &str,
    now: SystemTime,
    grace: Duration,
) -> Result<Plan, PkiError> {
    let name = names.first().map(String::as_str).unwrap_or("adapter");
    let Some(current) = current else {
        let ca = pki::new_ca(name, now)?;
        let serving = pki::new_serving(&ca, names, now)?;
        return Ok(Plan::Create(Contents {
            bundle: ca.cert,
            ca_key: ca.key,
            serving,
            drop_previous_after: None,
        }));
    };
    let cas = pki::split_bundle(&current.bundle);
    let signer = cas.first().map(|cert| Pair {
        cert: cert.clone(),
        key: current.ca_key.clone(),
    });
    let signer_usable = signer
        .as_ref()
        .is_some_and(|ca| !pki::due(&ca.cert, now) && pki::new_serving(ca, names, now).is_ok());
    if !signer_usable {
        // A new CA: the old one (when it still verifies anything) stays trusted for a while.
        let ca = pki::new_ca(name, now)?;
        let serving = pki::new_serving(&ca, names, now)?;
        let mut bundle = ca.cert.clone();
        let mut drop_previous_after = None;
        if let Some(old) = cas
            .first()
            .filter(|c| pki::validity(c).is_ok_and(|(_, until)| until > now))
        {
            bundle.push_str(old);
            drop_previous_after = Some(now + grace);
        }
        return Ok(Plan::Update(Contents {
            bundle,
            ca_key: ca.key,
            serving,
            drop_previous_after,
        }));
    }
    let signer = signer.expect("usable signer");
    let mut next = current.clone();
    if !pki::serves(&signer.cert, &current.serving.cert, host, now)
        || pki::due(&current.serving.cert, now)
    {
        next.serving = pki::new_serving(&signer, names, now)?;
    }
    if cas.len() > 1 && next.drop_previous_after.is_none_or(|after| after <= now) {
        next.bundle = signer.cert.clone();
        next.drop_previous_after = None;
    }
    Ok(if next == *current {
        Plan::Keep
    } else {
        Plan::Update(next)
    })
}

fn time_string(t: SystemTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(t)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn parse_time(s: &str) -> Option<SystemTime> {
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(SystemTime::from)
}

fn contents_of(secret: &Secret) -> Option<Contents> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|s| !s.trim().is_empty())
    };
    Some(Contents {
        bundle: text(BUNDLE)?,
        ca_key: text(CA_KEY)?,
        serving: Pair {
            cert: text(TLS_CERT)?,
            key: text(TLS_KEY)?,
        },
        drop_previous_after: secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DROP_PREVIOUS_AFTER))
            .and_then(|s| parse_time(s)),
    })
}

fn secret_of(settings: &Settings, contents: &Contents, resource_version: Option<String>) -> Secret {
    let data = BTreeMap::from([
        (
            BUNDLE.to_string(),
            ByteString(contents.bundle.clone().into_bytes()),
        ),
        (
            CA_KEY.to_string(),
            ByteString(contents.ca_key.clone().into_bytes()),
        ),
        (
            TLS_CERT.to_string(),
            ByteString(contents.serving.cert.clone().into_bytes()),
        ),
        (
            TLS_KEY.to_string(),
            ByteString(contents.serving.key.clone().into_bytes()),
        ),
    ]);
    let annotations = contents
        .drop_previous_after
        .map(|t| BTreeMap::from([(DROP_PREVIOUS_AFTER.to_string(), time_string(t))]));
    Secret {
        metadata: ObjectMeta {
            name: Some(settings.secret.clone()),
            namespace: Some(settings.namespace.clone()),
            resource_version,
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "prom-metrics-adapter".to_string(),
            )])),
            annotations,
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn api_err(what: String) -> impl FnOnce(kube::Error) -> CertError {
    move |e| {
        CertError::Api(K8sError::Api {
            what,
            message: crate::query::prometheus::error_chain(&e),
        })
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Manages the serving certificate through a Kubernetes client.
pub struct ServingCert {
    client: kube::Client,
    settings: Settings,
}

impl ServingCert {
    /// A manager for `settings`.
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        ServingCert { client, settings }
    }

    /// The files the server loads.
    pub fn files(&self) -> (PathBuf, PathBuf) {
        (
            self.settings.cert_dir.join(TLS_CERT),
            self.settings.cert_dir.join(TLS_KEY),
        )
    }

    fn names(&self) -> Vec<String> {
        pki::service_names(&self.settings.service, &self.settings.namespace)
    }

    fn host(&self) -> String {
        format!("{}.{}.svc", self.settings.service, self.settings.namespace)
    }

    /// Brings the Secret, the APIServices' bundles and the files up to date: what a start does
    /// before serving, and what every resync does.
    pub async fn sync(&self) -> Result<Contents, CertError> {
        let contents = self.sync_secret().await?;
        // The bundle before the files: a new certificate is only served once it is trusted.
        self.sync_api_services(&contents.bundle).await?;
        self.write_files(&contents.serving)?;
        Ok(contents)
    }

    async fn sync_secret(&self) -> Result<Contents, CertError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let what = format!(
            "the serving certificate Secret {}/{}",
            self.settings.namespace, self.settings.secret
        );
        // A lost race (create or update) means another replica wrote first: read again.
        for _ in 0..5 {
            let existing = secrets
                .get_opt(&self.settings.secret)
                .await
                .map_err(api_err(format!("reading {what}")))?;
            let current = existing.as_ref().and_then(contents_of);
            let plan = plan(
                current.as_ref(),
                &self.names(),
                &self.host(),
                SystemTime::now(),
                self.settings.rotation_grace,
            )?;
            let (next, result) = match plan {
                Plan::Keep => return Ok(current.expect("kept contents exist")),
                Plan::Create(next) if existing.is_none() => {
                    let result = secrets
                        .create(
                            &PostParams::default(),
                            &secret_of(&self.settings, &next, None),
                        )
                        .await;
                    (next, result)
                }
                Plan::Create(next) | Plan::Update(next) => {
                    // Present but unreadable, or due: replace it at the version read.
                    let version = existing.and_then(|s| s.metadata.resource_version);
                    let result = secrets
                        .replace(
                            &self.settings.secret,
                            &PostParams::default(),
                            &secret_of(&self.settings, &next, version),
                        )
                        .await;
                    (next, result)
                }
            };
            match result {
                Ok(_) => {
                    tracing::info!(secret = %self.settings.secret, "wrote the serving certificate Secret");
                    return Ok(next);
                }
                Err(e) if is_status(&e, 409) => {
                    tracing::debug!(
                        "another replica wrote the serving certificate first; reading it"
                    );
                }
                Err(e) => return Err(api_err(format!("writing {what}"))(e)),
            }
        }
        Err(CertError::Api(K8sError::Api {
            what,
            message: "kept conflicting with other writers; will retry".into(),
        }))
    }

    async fn sync_api_services(&self, bundle: &str) -> Result<(), CertError> {
        let api: Api<APIService> = Api::all(self.client.clone());
        for name in &self.settings.api_services {
            let Some(current) = api
                .get_opt(name)
                .await
                .map_err(api_err(format!("reading APIService {name}")))?
            else {
                tracing::debug!(apiservice = %name, "not registered; no caBundle to keep");
                continue;
            };
            let spec = current.spec;
            let in_sync = spec.as_ref().is_some_and(|s| {
                s.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(bundle.as_bytes())
                    && s.insecure_skip_tls_verify != Some(true)
            });
            if in_sync {
                continue;
            }
            // A merge patch touches only these two fields; `null` removes the skip, which the
            // API server refuses next to a bundle.
            let patch = serde_json::json!({"spec": {
                "caBundle": ByteString(bundle.as_bytes().to_vec()),
                "insecureSkipTLSVerify": null,
            }});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err(format!(
                    "setting the caBundle of APIService {name}"
                )))?;
            tracing::info!(apiservice = %name, "set the caBundle to the serving CA");
        }
        Ok(())
    }

    fn write_files(&self, serving: &Pair) -> Result<(), CertError> {
        let (cert, key) = self.files();
        std::fs::create_dir_all(&self.settings.cert_dir).map_err(|source| CertError::Io {
            path: self.settings.cert_dir.clone(),
            source,
        })?;
        // The key first: the file watcher reloads when either changes, and retries a pair
        // that does not match until both are written.
        write_if_changed(&key, &serving.key)?;
        write_if_changed(&cert, &serving.cert)?;
        Ok(())
    }

    /// Resyncs every `every`, logging failures and retrying at the next tick.
    pub async fn run(self, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "unable to resync the serving certificate; retrying");
            }
        }
    }
}

/// Replaces `path` with `content` (through a temporary file and a rename, so a reader never
/// sees half a file), unless it already holds it.
fn write_if_changed(path: &Path, content: &str) -> Result<(), CertError> {
    if std::fs::read_to_string(path).is_ok_and(|c| c == content) {
        return Ok(());
    }
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).write(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp).map_err(io)?;
        std::io::Write::write_all(&mut f, content.as_bytes()).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "prom-metrics-adapter.monitoring.svc";

    fn names() -> Vec<String> {
        pki::service_names("prom-metrics-adapter", "monitoring")
    }

    fn created(now: SystemTime) -> Contents {
        match plan(None, &names(), HOST, now, Duration::from_secs(600)).unwrap() {
            Plan::Create(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_is_created_twice_and_a_good_secret_is_kept() {
        crate::install_crypto_provider();
        let now = SystemTime::now();
        let c = created(now);
        assert!(pki::serves(&c.bundle, &c.serving.cert, HOST, now));
        assert_eq!(
            plan(Some(&c), &names(), HOST, now, Duration::from_secs(600)).unwrap(),
            Plan::Keep
        );
    }

    #[test]
    fn a_due_serving_certificate_is_renewed_by_the_same_ca() {
        crate::install_crypto_provider();
        let then = SystemTime::now();
        let c = created(then);
        let later = then + pki::SERVING_VALIDITY * 3 / 4;
        let Plan::Update(next) = plan(Some(&c), &names(), HOST, later, Duration::ZERO).unwrap()
        else {
            panic!("not renewed")
        };
        assert_eq!(next.bundle, c.bundle, "same CA");
        assert_ne!(next.serving, c.serving);
        assert!(pki::serves(&next.bundle, &next.serving.cert, HOST, later));
        // A certificate for another Service is replaced too.
        let mut wrong = c.clone();
        wrong.serving = pki::new_serving(
            &Pair {
                cert: c.bundle.clone(),
                key: c.ca_key.clone(),
            },
            &pki::service_names("other", "monitoring"),
            then,
        )
        .unwrap();
        assert!(matches!(
            plan(Some(&wrong), &names(), HOST, then, Duration::ZERO).unwrap(),
            Plan::Update(_)
        ));
    }

    #[test]
    fn a_ca_rotation_keeps_the_old_ca_trusted_until_the_grace_ends() {
        crate::install_crypto_provider();
        let then = SystemTime::now();
        let c = created(then);
        let later = then + pki::CA_VALIDITY * 3 / 4;
        let grace = Duration::from_secs(600);
        let Plan::Update(rotated) = plan(Some(&c), &names(), HOST, later, grace).unwrap() else {
            panic!("CA not rotated")
        };
        let cas = pki::split_bundle(&rotated.bundle);
        assert_eq!(cas.len(), 2);
        assert_eq!(cas[1], pki::split_bundle(&c.bundle)[0], "the old CA stays");
        assert!(pki::serves(&cas[0], &rotated.serving.cert, HOST, later));
        assert_eq!(rotated.drop_previous_after, Some(later + grace));
        // Within the grace period nothing changes; after it, the old CA leaves.
        assert_eq!(
            plan(Some(&rotated), &names(), HOST, later + grace / 2, grace).unwrap(),
            Plan::Keep
        );
        let Plan::Update(settled) =
            plan(Some(&rotated), &names(), HOST, later + grace * 2, grace).unwrap()
        else {
            panic!("the old CA was kept")
        };
        assert_eq!(pki::split_bundle(&settled.bundle), [cas[0].clone()]);
        assert_eq!(settled.drop_previous_after, None);
        assert_eq!(settled.serving, rotated.serving);
    }

    #[test]
    fn the_secret_round_trips() {
        crate::install_crypto_provider();
        let now = SystemTime::now();
        let mut c = created(now);
        c.drop_previous_after = parse_time(&time_string(now));
        let settings = Settings {
            namespace: "monitoring".into(),
            secret: "s".into(),
            service: "prom-metrics-adapter".into(),
            api_services: vec![],
            cert_dir: PathBuf::from("/nonexistent"),
            rotation_grace: Duration::ZERO,
        };
        assert_eq!(contents_of(&secret_of(&settings, &c, None)), Some(c));
    }
}
