//! The certificate the webhook and the control channel serve, renewed while
//! they run: a TLS listener asks [`Rotating`] for the current certificate
//! at each handshake, and [`keep_fresh`] replaces it before it expires
//! (issued from the operator's CA) or when cert-manager rewrites its files.
//! Connections already open keep the certificate they started with; no
//! restart, no dropped speaker stream.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use crate::metrics::{ListenerLabels, Metrics};
use crate::webhook::certs::{Ca, ServingCert};

/// Where new certificates come from.
#[derive(Clone)]
pub enum Source {
    /// Issued by the operator's CA for `names`, each valid for `lifetime`.
    Ca {
        ca: Arc<Ca>,
        names: Vec<String>,
        lifetime: Duration,
    },
    /// Files cert-manager keeps current (`tls.crt`, `tls.key`).
    Dir(PathBuf),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Ca {
                names, lifetime, ..
            } => f
                .debug_struct("Ca")
                .field("names", names)
                .field("lifetime", lifetime)
                .finish_non_exhaustive(),
            Source::Dir(d) => f.debug_tuple("Dir").field(d).finish(),
        }
    }
}

impl Source {
    fn next(&self) -> anyhow::Result<ServingCert> {
        match self {
            Source::Ca {
                ca,
                names,
                lifetime,
            } => ca.issue_serving(names, *lifetime),
            Source::Dir(dir) => crate::webhook::certs::from_dir(dir),
        }
    }
}

/// How often files from cert-manager are read again.
const DIR_POLL: Duration = Duration::from_secs(30);
/// Retry delay when issuing or reading a certificate failed.
const RETRY: Duration = Duration::from_secs(10);

/// When to replace a certificate valid from `issued` to `not_after`: at
/// two thirds of its life, so a failed renewal has a third left to retry
/// in (cert-manager's default rule too).
pub fn renew_at(issued: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after.duration_since(issued).unwrap_or_default();
    issued + life.mul_f64(2.0 / 3.0)
}

/// A certificate and key in PEM, ready for rustls.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("serving certificate PEM")?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in the serving PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("serving key PEM")?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .context("serving certificate and key do not match")
}

/// The certificate handed to each new TLS handshake.
#[derive(Debug)]
pub struct Rotating {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Rotating {
    pub fn new(cert: &ServingCert) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Rotating {
            current: RwLock::new(Arc::new(certified_key(&cert.cert_pem, &cert.key_pem)?)),
        }))
    }

    fn replace(&self, key: CertifiedKey) {
        // A poisoned lock only means a reader panicked; the value is whole.
        let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
        *slot = Arc::new(key);
    }
}

impl ResolvesServerCert for Rotating {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let slot = self.current.read().unwrap_or_else(|p| p.into_inner());
        Some(slot.clone())
    }
}

/// Publishes `cert`'s end as `barelb_serving_certificate_expiry_timestamp_seconds`.
fn record_expiry(metrics: &Metrics, listener: &str, cert: &ServingCert) {
    if let Some(end) = cert.not_after {
        let secs = end
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        metrics
            .serving_cert_expiry
            .get_or_create(&ListenerLabels {
                listener: listener.into(),
            })
            .set(i64::try_from(secs).unwrap_or(i64::MAX));
    }
}

/// The first certificate from `source` for `listener`, and a task keeping
/// it fresh until `shutdown`; returns what to serve with and the first
/// certificate (its `ca_pem` is what clients must trust).
pub fn start(
    listener: &'static str,
    source: Source,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<Rotating>, ServingCert)> {
    let first = source
        .next()
        .with_context(|| format!("the {listener} serving certificate"))?;
    let rotating = Rotating::new(&first)?;
    tokio::spawn(keep_fresh(
        listener,
        source,
        first.clone(),
        rotating.clone(),
        metrics,
        shutdown,
    ));
    Ok((rotating, first))
}

/// Keeps `rotating` current from `source` until `shutdown` turns true.
/// `first` is the certificate `rotating` started with.
async fn keep_fresh(
    listener: &'static str,
    source: Source,
    first: ServingCert,
    rotating: Arc<Rotating>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    record_expiry(&metrics, listener, &first);
    let mut issued = SystemTime::now();
    let mut current = first;
    loop {
        let wait = match (&source, current.not_after) {
            (Source::Ca { .. }, Some(end)) => renew_at(issued, end)
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
            _ => DIR_POLL,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let next = source.next().and_then(|c| {
            let key = certified_key(&c.cert_pem, &c.key_pem)?;
            Ok((c, key))
        });
        match next {
            Ok((cert, _)) if cert.cert_pem == current.cert_pem => {}
            Ok((cert, key)) => {
                rotating.replace(key);
                record_expiry(&metrics, listener, &cert);
                tracing::info!(listener, not_after = ?cert.not_after, "serving certificate renewed");
                issued = SystemTime::now();
                current = cert;
            }
            Err(e) => {
                tracing::warn!(listener, error = %format!("{e:#}"), retry_in = ?RETRY, "could not renew the serving certificate");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_two_thirds_of_the_life() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            renew_at(t0, t0 + Duration::from_secs(90)),
            t0 + Duration::from_secs(60)
        );
        // An end before the start (a clock that jumped): renew at once.
        assert_eq!(renew_at(t0, t0 - Duration::from_secs(5)), t0);
    }

    #[test]
    fn a_renewed_certificate_is_served_to_the_next_handshake() {
        let ca = Ca::generate().unwrap();
        let names = ["127.0.0.1".to_string()];
        let a = ca.issue_serving(&names, Duration::from_secs(60)).unwrap();
        let b = ca.issue_serving(&names, Duration::from_secs(60)).unwrap();
        let r = Rotating::new(&a).unwrap();
        let leaf = |r: &Rotating| {
            r.current
                .read()
                .unwrap()
                .end_entity_cert()
                .unwrap()
                .to_vec()
        };
        let before = leaf(&r);
        r.replace(certified_key(&b.cert_pem, &b.key_pem).unwrap());
        assert_ne!(before, leaf(&r));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let ca = Ca::generate().unwrap();
        let names = ["127.0.0.1".to_string()];
        let a = ca.issue_serving(&names, Duration::from_secs(60)).unwrap();
        let b = ca.issue_serving(&names, Duration::from_secs(60)).unwrap();
        assert!(certified_key(&a.cert_pem, &b.key_pem).is_err());
    }
}
