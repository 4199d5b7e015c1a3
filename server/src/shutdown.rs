//! Turns SIGINT and SIGTERM into the end of a future, which the server takes
//! as its shutdown signal.

use tokio::signal::unix::{SignalKind, signal};

/// Completes on the first SIGINT or SIGTERM.
pub async fn signal_received() {
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        (Err(err), _) | (_, Err(err)) => {
            tracing::error!(error = %err, "cannot listen for signals; stop the server with SIGKILL");
            return std::future::pending().await;
        }
    };
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    tracing::info!(signal = name, "shutting down");
}
