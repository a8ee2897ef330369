//! HTTPS for the webhook: rustls over a TCP listener, each connection
//! served by hyper (HTTP/1.1 and HTTP/2, as the apiserver may use either).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Duration, Instant, sleep_until};
use tokio_rustls::TlsAcceptor;

use crate::log_once::LogOnce;
use crate::metrics::{ListenerLabels, Metrics};
use crate::serving_cert::Rotating;

/// A rustls server configuration offering `alpn`, serving what `certs`
/// holds at each handshake. The webhook and the control channel both
/// serve with it: TLS 1.2 and 1.3 only, and rustls has no weak suite to
/// offer (no RC4, 3DES, CBC, static RSA key exchange or export ciphers).
pub(crate) fn server_config(
    certs: Arc<Rotating>,
    alpn: &[&[u8]],
) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Counts a failed handshake on `listener` and logs it (once a minute per
/// peer address, all Unix-socket peers counting as one; the count has
/// every one).
pub(crate) fn handshake_failed(
    metrics: &Metrics,
    seen: &LogOnce<Option<IpAddr>>,
    listener: &'static str,
    peer: Option<IpAddr>,
    error: &str,
) {
    metrics
        .tls_handshake_failures
        .get_or_create(&ListenerLabels {
            listener: listener.into(),
        })
        .inc();
    if seen.first(peer, std::time::Instant::now()) {
        tracing::warn!(listener, peer = ?peer, error, "TLS handshake failed");
    } else {
        tracing::debug!(listener, peer = ?peer, error, "TLS handshake failed");
    }
}

/// Serves `app` over TLS on `addr`. Once `shutdown` turns true it drains
/// for `drain`: it still accepts and answers (the apiserver may not have
/// seen this Pod leave its endpoints yet), but every answer says
/// `Connection: close`, so the apiserver retires each pooled connection
/// after using it rather than finding it closed under its next request.
/// Connections idle when the drain starts are closed then: the apiserver
/// pools webhook connections by the Service's name, not the Pod's address,
/// so an idle one to this replica would otherwise stay pooled until the
/// process exits — at a moment nobody chose, perhaps under a request.
pub(crate) async fn serve(
    addr: SocketAddr,
    drain: Duration,
    certs: Arc<Rotating>,
    app: Router,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // The apiserver may speak either.
    let config = server_config(certs, &[b"h2", b"http/1.1"])?;
    let seen = Arc::new(LogOnce::new(Duration::from_secs(60)));
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
    let open = Arc::new(OpenConnections::default());
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
                tracing::info!(?drain, "webhook draining: idle connections closed, answers close theirs");
                draining.store(true, Ordering::Relaxed);
                tokio::spawn(open.close_all());
                until = Some(Instant::now() + drain);
                continue;
            }
            () = sleep_until(until.unwrap_or_else(Instant::now)), if until.is_some() => {
                // Those opened during the drain: their last answers go out first.
                if tokio::time::timeout(CLOSE_WAIT, open.close_all()).await.is_err() {
                    tracing::debug!("webhook connections still answering at the end of the drain");
                }
                return Ok(());
            }
        };
        // Answers are small and written in pieces (TLS records, HTTP/2
        // frames): without this, Nagle's algorithm holds the last piece back
        // until the apiserver's delayed ACK, adding up to 40–200 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
        }
        let conn = Incoming {
            acceptor: acceptor.clone(),
            app: app.clone(),
            metrics: metrics.clone(),
            seen: seen.clone(),
            open: open.clone(),
        };
        tokio::spawn(conn.serve(tcp, peer));
    }
}

/// The longest the end of a drain waits for answers still being written.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The connections being served, closable as one group: idle ones close at
/// once, busy ones after their answer (HTTP/2: GOAWAY).
#[derive(Default)]
struct OpenConnections(std::sync::Mutex<GracefulShutdown>);

impl OpenConnections {
    /// Enrols a connection whose TLS handshake is done. Taken then, not at
    /// accept: one still in its handshake when the drain starts joins the
    /// drain's group and answers its first request instead of being closed
    /// before it.
    fn watcher(&self) -> Watcher {
        self.group().watcher()
    }

    /// Closes every connection enrolled so far (later ones form a new
    /// group); resolves once they are closed.
    fn close_all(&self) -> impl Future<Output = ()> + Send + 'static {
        std::mem::take(&mut *self.group()).shutdown()
    }

    /// The current group. A panic elsewhere while it was held left nothing
    /// half-done in it (one call each), so a poisoned lock is used as is.
    fn group(&self) -> std::sync::MutexGuard<'_, GracefulShutdown> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What serving one accepted connection needs.
struct Incoming {
    acceptor: TlsAcceptor,
    app: Router,
    metrics: Arc<Metrics>,
    seen: Arc<LogOnce<Option<IpAddr>>>,
    open: Arc<OpenConnections>,
}

impl Incoming {
    async fn serve(self, tcp: TcpStream, peer: SocketAddr) {
        let tls = match self.acceptor.accept(tcp).await {
            Ok(t) => t,
            Err(e) => {
                let e = e.to_string();
                handshake_failed(&self.metrics, &self.seen, "webhook", Some(peer.ip()), &e);
                return;
            }
        };
        let service = TowerToHyperService::new(self.app);
        let builder = Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection(TokioIo::new(tls), service);
        if let Err(e) = self.open.watcher().watch(conn).await {
            tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
        }
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
