//! The end of serving, in order: the readiness probe stopped, health
//! NOT_SERVING (the overall status and the session service), an optional
//! delay for load balancers to notice, the listener closed, in-flight calls
//! drained (bounded by the drain timeout), then a moment for idle
//! connections to close by themselves.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::calls::InFlight;
use crate::proto::session_service_server::SessionServiceServer;
use crate::service::SessionRpc;

use super::readiness::Readiness;

/// After the last in-flight call, how long connections get to close by
/// themselves: enough to flush the final responses to the socket.
const IDLE_CONNECTION_GRACE: Duration = Duration::from_millis(500);

/// Completes once `shutdown` has, health reports NOT_SERVING and `delay`
/// has passed: the moment to close the listener. `closing` hears of it.
/// The readiness probe is stopped first, so that it cannot report the
/// service SERVING again.
pub(super) async fn close_listener(
    shutdown: impl Future<Output = ()>,
    health: HealthReporter,
    readiness: Readiness,
    delay: Duration,
    closing: oneshot::Sender<()>,
) {
    shutdown.await;
    readiness.stop().await;
    report_not_serving(&health).await;
    if !delay.is_zero() {
        tracing::info!(delay = ?delay, "reporting NOT_SERVING before closing the listener");
        tokio::time::sleep(delay).await;
    }
    tracing::info!("closing the listener and draining in-flight calls");
    let _ = closing.send(());
}

/// Completes once the listener is closed and the in-flight calls are done
/// (or `timeout` has passed), leaving idle connections a moment to close on
/// their own first.
pub(super) async fn drained(
    closing: oneshot::Receiver<()>,
    in_flight: &InFlight,
    timeout: Duration,
) {
    if closing.await.is_err() {
        // The server stopped by itself; its own result ends the select.
        return std::future::pending().await;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    if tokio::time::timeout_at(deadline, in_flight.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            calls = in_flight.count(),
            "drain timeout passed with calls in flight; stopping without waiting for them"
        );
        return;
    }
    let grace = deadline.min(tokio::time::Instant::now() + IDLE_CONNECTION_GRACE);
    tokio::time::sleep_until(grace).await;
}

async fn report_not_serving(health: &HealthReporter) {
    health
        .set_not_serving::<SessionServiceServer<SessionRpc>>()
        .await;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
}
