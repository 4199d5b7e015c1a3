//! Readiness: the health of `sessiond.v1.SessionService` follows the store.
//! A background probe pings the store every `--readiness-interval` and
//! reports the service NOT_SERVING while the store does not answer, SERVING
//! again once it does. The overall status (`""`) is left alone: it says the
//! process is alive, and restarting it would not bring the store back.
//!
//! Client traffic plays no part, so an idle replica notices an outage as
//! soon as a busy one, and one client's failing calls (a bad key, its own
//! deadline) never take a replica out of service.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;

use crate::error::ErrorChain;
use crate::metrics::Metrics;
use crate::proto::session_service_server::SessionServiceServer;
use crate::service::SessionRpc;
use crate::store::SessionStore;

/// The shortest a ping may take before it counts as unanswered, whatever
/// the store timeout: a zero timeout would fail every ping at once.
const MIN_PING_TIMEOUT: Duration = Duration::from_millis(100);

/// What the probe needs to know.
pub(super) struct ProbeSettings {
    /// Zero: no probe; the service stays SERVING.
    pub interval: Duration,
    /// `--store-timeout`: no ping waits longer (nor longer than `interval`).
    pub store_timeout: Duration,
    /// The store URL as it is logged (its `Display`, without a password).
    pub store: String,
}

/// The running probe. Stopped (and waited for) before shutdown reports
/// NOT_SERVING, so that it cannot report SERVING after; dropped without
/// being stopped, as when the server fails, it still ends.
#[derive(Debug)]
pub(super) struct Readiness {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Readiness {
    /// Starts the probe, unless its interval is zero. The service is
    /// SERVING already: the store has just been opened and migrated.
    pub(super) fn start(
        store: Arc<dyn SessionStore>,
        health: HealthReporter,
        settings: ProbeSettings,
        metrics: &Metrics,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = if settings.interval.is_zero() {
            tracing::info!("readiness probe disabled; the session service stays SERVING");
            None
        } else {
            Some(tokio::spawn(probe(
                store,
                health,
                settings,
                metrics.clone(),
                stop.clone(),
            )))
        };
        Self { stop, task }
    }

    /// Stops the probe and waits for it; a ping under way is abandoned.
    pub(super) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::error!(error = %ErrorChain(&err), "the readiness probe panicked");
        }
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Pings the store every interval, and reports each change of its answer.
async fn probe(
    store: Arc<dyn SessionStore>,
    health: HealthReporter,
    settings: ProbeSettings,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let timeout = settings
        .store_timeout
        .min(settings.interval)
        .max(MIN_PING_TIMEOUT);
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut up = true;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let answer = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            answer = tokio::time::timeout(timeout, store.ping()) => answer,
        };
        let now_up = match &answer {
            Ok(Ok(())) => true,
            Ok(Err(_)) | Err(_) => false,
        };
        if now_up == up {
            continue;
        }
        up = now_up;
        match answer {
            Ok(Ok(())) => {
                tracing::info!(store = %settings.store, "the store answers again; the session service is SERVING");
                health
                    .set_serving::<SessionServiceServer<SessionRpc>>()
                    .await;
            }
            Ok(Err(err)) => {
                tracing::warn!(store = %settings.store, error = %ErrorChain(&err), "the store does not answer; the session service is NOT_SERVING until it does");
                health
                    .set_not_serving::<SessionServiceServer<SessionRpc>>()
                    .await;
            }
            Err(_) => {
                tracing::warn!(store = %settings.store, timeout = ?timeout, "the store did not answer in time; the session service is NOT_SERVING until it does");
                health
                    .set_not_serving::<SessionServiceServer<SessionRpc>>()
                    .await;
            }
        }
        metrics.store_up(up);
    }
}
