//! TLS for the control channel, with the handshakes paced. After a leader
//! change every speaker reconnects at once; tonic would spawn every
//! handshake as a task of its own, and a thousand of them queue ahead of
//! the connections already established, whose HTTP/2 keepalive answers
//! then come too late and drop them. Here handshakes run in one task, at
//! most [`HANDSHAKES`] at a time (the rest wait in the listen backlog),
//! each within [`HANDSHAKE_TIMEOUT`] so a client that stalls cannot hold
//! a place.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// Handshakes in progress at once.
pub const HANDSHAKES: usize = 32;
/// How long one handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS acceptor for the control channel's certificate (HTTP/2 only).
pub fn acceptor(cert_pem: &str, key_pem: &str) -> anyhow::Result<TlsAcceptor> {
    let config = crate::webhook::tls::server_config(cert_pem, key_pem, &[b"h2"])?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepted connections from `listener`, each once its TLS handshake is
/// done. Failed and timed-out handshakes are logged and left out; the
/// stream ends when `listener` does or the server stops taking connections.
pub fn incoming<L, IO>(
    listener: L,
    acceptor: TlsAcceptor,
) -> ReceiverStream<Result<TlsStream<IO>, io::Error>>
where
    L: Stream<Item = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
                async move { tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await }
            })
            .buffer_unordered(HANDSHAKES);
        let mut handshakes = std::pin::pin!(handshakes);
        while let Some(done) = handshakes.next().await {
            match done {
                Ok(Ok(tls)) => {
                    if tx.send(Ok(tls)).await.is_err() {
                        return;
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "control channel TLS handshake failed"),
                Err(_) => tracing::debug!(
                    timeout = ?HANDSHAKE_TIMEOUT,
                    "control channel TLS handshake timed out"
                ),
            }
        }
    });
    ReceiverStream::new(rx)
}
