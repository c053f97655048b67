//! Serving TLS: the certificate (given, or self-signed into `--cert-dir`), the client-certificate
//! verifier for the front proxy and client CAs, Go-named versions and cipher suites, and reloads
//! when any of them changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// PEM or certificate content is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// TLS settings from the command line.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// `--tls-cert-file`.
    pub cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`.
    pub key_file: Option<PathBuf>,
    /// `--cert-dir`: where a self-signed pair is written when no files are given.
    pub cert_dir: PathBuf,
    /// `--tls-min-version` (`VersionTLS12`, `VersionTLS13`).
    pub min_version: Option<String>,
    /// `--tls-cipher-suites`, Go/IANA names.
    pub cipher_suites: Vec<String>,
    /// `--disable-http2`.
    pub disable_http2: bool,
}

impl TlsSettings {
    /// The certificate and key files to serve: the given ones, or a self-signed pair in
    /// `cert_dir` (created when missing, as the Go apiserver does; valid for `localhost`,
    /// `127.0.0.1` and the names in `extra_names`).
    pub fn serving_files(&self, extra_names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => return Ok((c.clone(), k.clone())),
            (None, None) => {}
            _ => {
                return Err(TlsError::Invalid(
                    "--tls-cert-file and --tls-private-key-file must be given together".into(),
                ));
            }
        }
        let cert = self.cert_dir.join("apiserver.crt");
        let key = self.cert_dir.join("apiserver.key");
        if cert.is_file() && key.is_file() {
            return Ok((cert, key));
        }
        std::fs::create_dir_all(&self.cert_dir).map_err(|source| TlsError::Io {
            what: "creating the certificate directory",
            path: self.cert_dir.clone(),
            source,
        })?;
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        names.extend(extra_names.iter().cloned());
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Invalid(format!("generating a self-signed certificate: {e}")))?;
        std::fs::write(&cert, generated.cert.pem()).map_err(|source| TlsError::Io {
            what: "writing",
            path: cert.clone(),
            source,
        })?;
        write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
        tracing::info!(cert = %cert.display(), "generated a self-signed serving certificate");
        Ok((cert, key))
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|source| TlsError::Io {
            what: "writing",
            path: path.to_path_buf(),
            source,
        })
}

/// Reads every certificate of a PEM bundle.
pub fn read_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(format!("{what}: no certificate found")));
    }
    Ok(certs)
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// A root store from certificates; bad certificates are errors.
pub fn root_store(certs: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c.clone())
            .map_err(|e| TlsError::Invalid(format!("unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A provider restricted to the Go-named cipher suites asked for. TLS 1.3 suites are never
/// filtered (Go does not make them configurable either); names rustls lacks are ignored with a
/// warning; nothing usable left is an error.
pub fn provider_for(cipher_suites: &[String]) -> Result<CryptoProvider, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if cipher_suites.is_empty() {
        return Ok(provider);
    }
    let known: Vec<String> = provider
        .cipher_suites
        .iter()
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    // Go's TLS 1.3 names: those suites are always on (not configurable in Go either).
    const GO_TLS13: &[&str] = &[
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    ];
    let mut usable_tls12 = 0;
    for name in cipher_suites {
        if GO_TLS13.contains(&name.as_str()) {
            continue;
        }
        if known.iter().any(|k| k == name) {
            usable_tls12 += 1;
        } else {
            tracing::warn!(suite = %name, "--tls-cipher-suites: not supported here, ignored");
        }
    }
    if usable_tls12 == 0
        && cipher_suites
            .iter()
            .any(|n| !GO_TLS13.contains(&n.as_str()))
    {
        return Err(TlsError::Invalid(format!(
            "--tls-cipher-suites: none of {} is supported here (supported: {})",
            cipher_suites.join(","),
            known.join(",")
        )));
    }
    provider.cipher_suites.retain(|s| {
        s.version() == &rustls::version::TLS13
            || cipher_suites
                .iter()
                .any(|n| *n == format!("{:?}", s.suite()))
    });
    if !provider
        .cipher_suites
        .iter()
        .any(|s| s.version() == &rustls::version::TLS12)
    {
        tracing::warn!(
            "--tls-cipher-suites leaves no TLS 1.2 suite: only TLS 1.3 clients can connect"
        );
    }
    if provider.cipher_suites.is_empty() {
        return Err(TlsError::Invalid(
            "--tls-cipher-suites leaves no usable cipher suite".into(),
        ));
    }
    Ok(provider)
}

fn versions(
    min: Option<&str>,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsError> {
    static ALL: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match min {
        None | Some("") | Some("VersionTLS12") => Ok(ALL),
        Some("VersionTLS13") => Ok(TLS13),
        Some("VersionTLS10") | Some("VersionTLS11") => {
            tracing::warn!("--tls-min-version below TLS 1.2 is not supported; using VersionTLS12");
            Ok(ALL)
        }
        Some(other) => Err(TlsError::Invalid(format!(
            "--tls-min-version {other:?}: use VersionTLS12 or VersionTLS13"
        ))),
    }
}

/// Builds the serving configuration. Client certificates are optional but, when presented,
/// must chain to one of `client_roots` (the union of the client CA and the request-header CA);
/// which one is decided per request by the authenticator.
pub fn server_config(
    settings: &TlsSettings,
    cert_path: &Path,
    key_path: &Path,
    client_roots: &[CertificateDer<'static>],
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs(
        &read_file(cert_path, "reading the serving certificate")?,
        &format!("serving certificate {}", cert_path.display()),
    )?;
    let key = PrivateKeyDer::from_pem_slice(&read_file(key_path, "reading the serving key")?)
        .map_err(|e| TlsError::Invalid(format!("serving key {}: {e}", key_path.display())))?;
    let provider = Arc::new(provider_for(&settings.cipher_suites)?);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(settings.min_version.as_deref())?)
        .map_err(|e| TlsError::Invalid(format!("TLS versions: {e}")))?;
    let builder = if client_roots.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_verifier(Arc::new(RequestClientCert {
            hints: root_store(client_roots)?.subjects(),
            algorithms: provider.signature_verification_algorithms,
        }))
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Invalid(format!("serving certificate and key: {e}")))?;
    config.alpn_protocols = if settings.disable_http2 {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// Asks for a client certificate and proves the client holds its key, but leaves judging the
/// certificate to authentication, as Go's `tls.RequestClientCert` does for k8s.io/apiserver:
/// a certificate from an unknown CA then fails x509 authentication (a 401, or a bearer token
/// still authenticates) instead of aborting the handshake. rustls only ships verifiers that
/// judge the chain, hence this small one.
#[derive(Debug)]
struct RequestClientCert {
    /// Subjects of the client and front-proxy CAs, sent as hints so clients pick the right
    /// certificate.
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Judged per request by `authn`, against the CA each identity source trusts.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Modification times of files, to notice rotation (cert-manager, kubelet secret updates).
pub fn mtimes(paths: &[&Path]) -> Vec<Option<std::time::SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_pair_is_generated_once_and_reused() {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            cert_dir: dir.path().join("certs"),
            ..Default::default()
        };
        let (c1, k1) = settings.serving_files(&[]).unwrap();
        let first = std::fs::read(&c1).unwrap();
        let (c2, _) = settings.serving_files(&[]).unwrap();
        assert_eq!(first, std::fs::read(&c2).unwrap());
        server_config(&settings, &c1, &k1, &[]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&k1).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn cipher_suites_use_go_names_and_unknown_ones_are_ignored() {
        let p = provider_for(&[
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
            "TLS_RSA_WITH_RC4_128_SHA".into(),
        ])
        .unwrap();
        let tls12: Vec<String> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(tls12, ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]);
        assert!(
            p.cipher_suites
                .iter()
                .any(|s| s.version() == &rustls::version::TLS13)
        );
        assert!(versions(Some("VersionTLS13")).unwrap().len() == 1);
        assert!(provider_for(&["TLS_RSA_WITH_RC4_128_SHA".into()]).is_err());
        assert!(provider_for(&["TLS_AES_128_GCM_SHA256".into()]).is_ok());
        assert!(versions(Some("TLS1.3")).is_err());
    }

    #[test]
    fn half_given_files_are_an_error() {
        let s = TlsSettings {
            cert_file: Some("a".into()),
            ..Default::default()
        };
        assert!(s.serving_files(&[]).is_err());
    }
}
