//! TLS for the control channel, with the handshakes paced. After a leader
//! change every speaker reconnects at once; tonic would spawn every
//! handshake as a task of its own, and a thousand of them queue ahead of
//! the connections already established, whose HTTP/2 keepalive answers
//! then come too late and drop them. Here handshakes run in one task, at
//! most [`HANDSHAKES`] at a time (the rest wait in the listen backlog),
//! each within [`HANDSHAKE_TIMEOUT`] so a client that stalls cannot hold
//! a place.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::log_once::LogOnce;
use crate::metrics::Metrics;
use crate::serving_cert::Rotating;
use crate::webhook::tls::handshake_failed;

/// Handshakes in progress at once.
pub const HANDSHAKES: usize = 32;
/// How long one handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS acceptor for the control channel's certificate (HTTP/2 only).
pub fn acceptor(certs: Arc<Rotating>) -> anyhow::Result<TlsAcceptor> {
    let config = crate::webhook::tls::server_config(certs, &[b"h2"])?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepted connections from `listener`, each once its TLS handshake is
/// done. Failed and timed-out handshakes are counted, logged (once a
/// minute per peer address, `peer_ip` telling it) and left out; the stream
/// ends when `listener` does or the server stops taking connections.
pub fn incoming<L, IO>(
    listener: L,
    acceptor: TlsAcceptor,
    metrics: Arc<Metrics>,
    peer_ip: fn(&IO) -> Option<IpAddr>,
) -> ReceiverStream<Result<TlsStream<IO>, io::Error>>
where
    L: Stream<Item = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let seen = LogOnce::new(Duration::from_secs(60));
    let (tx, rx) = mpsc::channel(HANDSHAKES);
    tokio::spawn(async move {
        let handshakes = listener
            .filter_map(|conn| async move {
                match conn {
                    Ok(c) => Some(c),
                    Err(e) => {
                        // EMFILE and the like: pause rather than spin.
                        tracing::warn!(error = %e, "control channel accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        None
                    }
                }
            })
            .map(|io| {
                let acceptor = acceptor.clone();
                let peer = peer_ip(&io);
                async move {
                    let done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await;
                    (peer, done)
                }
            })
            .buffer_unordered(HANDSHAKES);
        let mut handshakes = std::pin::pin!(handshakes);
        while let Some((peer, done)) = handshakes.next().await {
            let error = match done {
                Ok(Ok(tls)) => {
                    if tx.send(Ok(tls)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("timed out after {HANDSHAKE_TIMEOUT:?}"),
            };
            handshake_failed(&metrics, &seen, "control", peer, &error);
        }
    });
    ReceiverStream::new(rx)
}
