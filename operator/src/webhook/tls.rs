//! HTTPS for the webhook: rustls over a TCP listener, each connection
//! served by hyper (HTTP/1.1 and HTTP/2, as the apiserver may use either).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{Duration, Instant, sleep_until};
use tokio_rustls::TlsAcceptor;

use super::certs::ServingCert;

/// A rustls server configuration (TLS 1.2 and 1.3) for a certificate
/// chain and key in PEM, offering `alpn`. The webhook and the control
/// channel both serve with it.
pub(crate) fn server_config(
    cert_pem: &str,
    key_pem: &str,
    alpn: &[&[u8]],
) -> anyhow::Result<rustls::ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("serving certificate PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("serving key PEM")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("serving certificate and key do not match")?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Serves `app` over TLS on `addr`. Once `shutdown` turns true it drains
/// for `drain`: it still accepts and answers (the apiserver may not have
/// seen this Pod leave its endpoints yet), but every answer says
/// `Connection: close`, so the apiserver retires each pooled connection
/// after using it rather than finding it closed under its next request.
pub(crate) async fn serve(
    addr: SocketAddr,
    drain: Duration,
    cert: &ServingCert,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // The apiserver may speak either.
    let config = server_config(&cert.cert_pem, &cert.key_pem, &[b"h2", b"http/1.1"])?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("webhook cannot listen on {addr}"))?;
    tracing::info!(%addr, "serving the admission webhook (HTTPS)");
    let draining = Arc::new(AtomicBool::new(false));
    let app = app.layer(axum::middleware::map_response_with_state(
        draining.clone(),
        close_when_draining,
    ));
    let mut until: Option<Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    continue;
                }
            },
            _ = shutdown.changed(), if until.is_none() => {
                tracing::info!(?drain, "webhook draining: answers close their connections");
                draining.store(true, Ordering::Relaxed);
                until = Some(Instant::now() + drain);
                continue;
            }
            () = sleep_until(until.unwrap_or_else(Instant::now)), if until.is_some() => return Ok(()),
        };
        // Answers are small and written in pieces (TLS records, HTTP/2
        // frames): without this, Nagle's algorithm holds the last piece back
        // until the apiserver's delayed ACK, adding up to 40–200 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
}

/// `Connection: close` on every answer while draining (hyper then closes
/// the HTTP/1.1 connection once the answer is written).
async fn close_when_draining(
    axum::extract::State(draining): axum::extract::State<Arc<AtomicBool>>,
    mut response: axum::response::Response,
) -> axum::response::Response {
    if draining.load(Ordering::Relaxed) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}
