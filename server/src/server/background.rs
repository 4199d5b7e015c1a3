//! The tasks that run beside the gRPC server: the purge of expired
//! sessions, and the metrics endpoint. Both are owned here, stopped and
//! waited for before the engine closes.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Tokens;
use crate::config::PurgeSettings;
use crate::error::ErrorChain;
use crate::metrics::Metrics;
use crate::purge;
use crate::store::SessionStore;

/// The running background tasks.
#[derive(Debug)]
pub(super) struct Background {
    stop: CancellationToken,
    purge: Option<JoinHandle<()>>,
    metrics: Option<JoinHandle<std::io::Result<()>>>,
}

impl Background {
    /// Starts the purge (unless its interval is zero) and, given a
    /// listener, the metrics endpoint, behind `metrics_token` if any.
    pub(super) fn start(
        store: Arc<dyn SessionStore>,
        purge: PurgeSettings,
        metrics: &Metrics,
        metrics_listener: Option<TcpListener>,
        metrics_token: Option<Tokens>,
    ) -> Self {
        let stop = CancellationToken::new();
        let purge = purge::spawn(
            store,
            purge.interval,
            purge.batch_size,
            metrics.clone(),
            stop.clone(),
        );
        let metrics = metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(listen = %addr, "serving metrics at /metrics");
            }
            let stop = stop.clone();
            tokio::spawn(metrics.clone().serve(listener, metrics_token, async move {
                stop.cancelled().await
            }))
        });
        Self {
            stop,
            purge,
            metrics,
        }
    }

    /// Stops both tasks and waits for them; a purge batch under way
    /// completes first.
    pub(super) async fn stop(self) {
        self.stop.cancel();
        if let Some(task) = self.metrics
            && let Ok(Err(err)) = task.await
        {
            tracing::warn!(error = %err, "the metrics server failed");
        }
        if let Some(task) = self.purge
            && let Err(err) = task.await
        {
            tracing::error!(error = %ErrorChain(&err), "the purge task panicked");
        }
    }
}
