//! The speaker's command-line modes. Each runs until SIGTERM or Ctrl-C.

pub mod bgp;
pub mod l2;
pub mod run;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
