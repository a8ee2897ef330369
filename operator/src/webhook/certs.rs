//! Serving certificates (webhook and control channel): issued from a CA
//! the operator keeps in a Secret (created on first start; replicas racing
//! to create it all end up with the one that won), or read from a
//! directory that cert-manager fills. Issued certificates live for a set
//! time and are renewed before they expire (`crate::serving_cert`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate and key to serve with, and the CA that clients trust.
#[derive(Clone)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// PEM of the CA for `caBundle`; None when something else injects it.
    pub ca_pem: Option<String>,
    /// When the certificate stops being valid; None when read from files
    /// (whoever wrote them renews them).
    pub not_after: Option<SystemTime>,
}

impl std::fmt::Debug for ServingCert {
    // Never the key: a Debug print can end up in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// How long the CA is valid. The CA is not rotated by the operator (its
/// certificate is what every client trusts); replacing it is a documented
/// manual step (docs/install.md).
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Issued certificates start this long before now, for clocks that lag.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// `at` as an X.509 time (seconds).
fn x509_time(at: SystemTime) -> anyhow::Result<time::OffsetDateTime> {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    Ok(time::OffsetDateTime::from_unix_timestamp(i64::try_from(
        secs,
    )?)?)
}

/// Sets `p` valid from now (less [`CLOCK_SKEW`]) for `lifetime`; returns
/// the end.
fn set_validity(p: &mut CertificateParams, lifetime: Duration) -> anyhow::Result<SystemTime> {
    let now = SystemTime::now();
    let not_after = now + lifetime;
    p.not_before = x509_time(now.checked_sub(CLOCK_SKEW).unwrap_or(now))?;
    p.not_after = x509_time(not_after)?;
    Ok(not_after)
}

/// The operator's CA.
pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

const CA_CN: &str = "barelb-webhook-ca";

/// The CA's parameters. Fixed, so that an issuer rebuilt from the stored
/// key names the same subject as the stored certificate.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

impl Ca {
    /// A fresh CA.
    pub fn generate() -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = ca_params()?;
        set_validity(&mut params, CA_LIFETIME)?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key,
        })
    }

    fn from_pem(cert_pem: String, key_pem: &str) -> anyhow::Result<Self> {
        Ok(Ca {
            cert_pem,
            key: KeyPair::from_pem(key_pem).context("CA key")?,
        })
    }

    /// A serving certificate for `names` (DNS names or IP addresses),
    /// valid for `lifetime` from now.
    pub fn issue_serving(
        &self,
        names: &[String],
        lifetime: Duration,
    ) -> anyhow::Result<ServingCert> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let not_after = set_validity(&mut p, lifetime)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names
                .first()
                .map(String::as_str)
                .unwrap_or("barelb-webhook"),
        );
        p.distinguished_name = dn;
        for n in names {
            p.subject_alt_names.push(match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into()?),
            });
        }
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.insert_extended_key_usage(ExtendedKeyUsagePurpose::ServerAuth);
        let key = KeyPair::generate()?;
        let issuer = Issuer::new(ca_params()?, &self.key);
        let cert = p.signed_by(&key, &issuer)?;
        Ok(ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: Some(self.cert_pem.clone()),
            not_after: Some(not_after),
        })
    }
}

/// Reads the CA from Secret `name`, creating it if absent.
pub async fn load_or_create_ca(client: &Client, namespace: &str, name: &str) -> anyhow::Result<Ca> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        if let Some(s) = api.get_opt(name).await? {
            let field = |k: &str| -> anyhow::Result<String> {
                let v = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .with_context(|| format!("Secret {namespace}/{name} has no {k}; delete it and the operator makes a new CA"))?;
                Ok(String::from_utf8(v.0.clone())?)
            };
            return Ca::from_pem(field("ca.crt")?, &field("ca.key")?);
        }
        let ca = Ca::generate()?;
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "barelb-operator".to_string(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([
                (
                    "ca.crt".to_string(),
                    ByteString(ca.cert_pem.clone().into_bytes()),
                ),
                (
                    "ca.key".to_string(),
                    ByteString(ca.key.serialize_pem().into_bytes()),
                ),
            ])),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(s) => {
                tracing::info!(secret = %s.name_any(), namespace, "created the webhook CA");
                return Ok(ca);
            }
            // Another replica created it first: read theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("could not read or create the CA Secret {namespace}/{name}")
}

/// Reads `tls.crt`, `tls.key` and (optionally) `ca.crt` from `dir`.
pub fn from_dir(dir: &Path) -> anyhow::Result<ServingCert> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .with_context(|| format!("reading {}", dir.join(f).display()))
    };
    Ok(ServingCert {
        cert_pem: read("tls.crt")?,
        key_pem: read("tls.key")?,
        ca_pem: read("ca.crt").ok(),
        not_after: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_served_certificate_chains_to_the_ca_after_a_restart() {
        let ca = Ca::generate().unwrap();
        // As after a restart: the CA comes back from its PEMs.
        let again = Ca::from_pem(ca.cert_pem.clone(), &ca.key.serialize_pem()).unwrap();
        let serving = again
            .issue_serving(
                &["127.0.0.1".into(), "barelb-webhook.barelb.svc".into()],
                Duration::from_secs(3600),
            )
            .unwrap();
        // rustls accepts the pair...
        crate::serving_cert::certified_key(&serving.cert_pem, &serving.key_pem).unwrap();
        // ...and a client trusting only the CA verifies the chain.
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
        let leaf = CertificateDer::from_pem_slice(serving.cert_pem.as_bytes()).unwrap();
        for name in ["127.0.0.1", "barelb-webhook.barelb.svc"] {
            verifier
                .verify_server_cert(
                    &leaf,
                    &[],
                    &ServerName::try_from(name).unwrap(),
                    &[],
                    UnixTime::now(),
                )
                .unwrap();
        }
    }
}
