//! The certificates of a self-managed serving identity: a CA, and a serving certificate it
//! signs for the Service's DNS names. Pure: generating, parsing and judging PEM, no I/O.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;

/// How long a CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a serving certificate is valid.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(pub String);

fn pki_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError(format!("{what}: {e}"))
}

/// A certificate and its key, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// An hour of slack for clocks that run behind ours.
const CLOCK_SLACK: Duration = Duration::from_secs(3600);

/// A new CA, valid for [`CA_VALIDITY`] from `now`.
pub fn new_ca(name: &str, now: SystemTime) -> Result<Pair, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err("CA"))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let stamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name}-ca@{stamp}"));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - CLOCK_SLACK).into();
    params.not_after = (now + CA_VALIDITY).into();
    let key = KeyPair::generate().map_err(pki_err("CA key"))?;
    let cert = params.self_signed(&key).map_err(pki_err("CA"))?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The DNS names the aggregator may use for `service` in `namespace`; it verifies
/// `<service>.<namespace>.svc`.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A serving certificate for `names`, signed by `ca`, valid for [`SERVING_VALIDITY`].
pub fn new_serving(ca: &Pair, names: &[String], now: SystemTime) -> Result<Pair, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(pki_err("CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(pki_err("CA certificate"))?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(pki_err("serving names"))?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.last().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = (now - CLOCK_SLACK).into();
    params.not_after = (now + SERVING_VALIDITY).into();
    let key = KeyPair::generate().map_err(pki_err("serving key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(pki_err("serving certificate"))?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The validity window of the first certificate in `pem`.
pub fn validity(pem: &str) -> Result<(SystemTime, SystemTime), PkiError> {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError(format!("not a PEM certificate: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError(format!("unreadable certificate: {e}")))?;
    let at = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    };
    Ok((
        at(cert.validity().not_before),
        at(cert.validity().not_after),
    ))
}

/// Whether a certificate is within the last third of its life at `now` (or past it): time
/// to replace it, with months to spare for a serving certificate.
pub fn due(pem: &str, now: SystemTime) -> bool {
    match validity(pem) {
        Ok((from, until)) => {
            let life = until.duration_since(from).unwrap_or_default();
            until
                .duration_since(now)
                .map(|left| left < life / 3)
                .unwrap_or(true)
        }
        Err(_) => true,
    }
}

/// Whether `serving` is a certificate for `name` that `ca` signed, valid at `now`.
pub fn serves(ca: &str, serving: &str, name: &str, now: SystemTime) -> bool {
    use rustls::client::danger::ServerCertVerifier;
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()).flatten() {
            let _ = roots.add(c);
        }
        roots
    };
    let Ok(verifier) = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build() else {
        return false;
    };
    let Ok(leaf) = rustls::pki_types::CertificateDer::from_pem_slice(serving.as_bytes()) else {
        return false;
    };
    let Ok(server_name) = rustls::pki_types::ServerName::try_from(name.to_string()) else {
        return false;
    };
    let now = rustls::pki_types::UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    verifier
        .verify_server_cert(&leaf, &[], &server_name, &[], now)
        .is_ok()
}

/// The certificates of a PEM bundle, each as its own PEM block, in order.
pub fn split_bundle(bundle: &str) -> Vec<String> {
    rustls::pki_types::CertificateDer::pem_slice_iter(bundle.as_bytes())
        .flatten()
        .map(|der| {
            pem::encode_config(
                &pem::Pem::new("CERTIFICATE", der.to_vec()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_certificate_chains_to_its_ca_for_the_service_names() {
        crate::install_crypto_provider();
        let now = SystemTime::now();
        let ca = new_ca("adapter", now).unwrap();
        let names = service_names("prom-metrics-adapter", "monitoring");
        let serving = new_serving(&ca, &names, now).unwrap();
        assert!(serves(
            &ca.cert,
            &serving.cert,
            "prom-metrics-adapter.monitoring.svc",
            now
        ));
        assert!(!serves(
            &ca.cert,
            &serving.cert,
            "other.monitoring.svc",
            now
        ));
        let other_ca = new_ca("adapter", now).unwrap();
        assert!(!serves(
            &other_ca.cert,
            &serving.cert,
            "prom-metrics-adapter.monitoring.svc",
            now
        ));
        // A bundle with both CAs trusts it.
        let bundle = format!("{}{}", other_ca.cert, ca.cert);
        assert!(serves(
            &bundle,
            &serving.cert,
            "prom-metrics-adapter.monitoring.svc",
            now
        ));
        assert_eq!(
            split_bundle(&bundle),
            [other_ca.cert.clone(), ca.cert.clone()]
        );
    }

    #[test]
    fn certificates_are_due_in_the_last_third_of_their_life() {
        let now = SystemTime::now();
        let ca = new_ca("adapter", now).unwrap();
        assert!(!due(&ca.cert, now));
        assert!(!due(&ca.cert, now + CA_VALIDITY / 2));
        assert!(due(&ca.cert, now + CA_VALIDITY * 3 / 4));
        assert!(due(&ca.cert, now + CA_VALIDITY * 2));
        assert!(due("not a certificate", now));
    }
}
