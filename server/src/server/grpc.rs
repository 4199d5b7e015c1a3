//! The gRPC server itself: the session service behind its token check and
//! call tracking, health and reflection beside it, and the HTTP/2 settings.
//! (TLS is terminated in `connections`.)

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use crate::auth::{RequireToken, TokenStore};
use crate::calls::{InFlight, TrackCalls};
use crate::config::{ConnectionSettings, Limits};
use crate::metrics::Metrics;
use crate::proto::session_service_server::SessionServiceServer;
use crate::service::SessionRpc;

use super::ServeError;

/// How many streams one connection may make the server reset for its own
/// errors (malformed headers, flow-control violations) before it is sent
/// away: hyper's and h2's default. tonic's builder passes no limit at all
/// unless given one, which leaves a client free to make the server reset
/// stream after stream on one connection (RUSTSEC-2024-0003).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The longest a pinged connection gets to answer before it is closed
/// (less when `--keepalive` is shorter): gRPC's usual keepalive timeout.
const KEEPALIVE_ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// What the router is built from.
pub(super) struct Services<'a> {
    pub sessions: SessionRpc,
    pub tokens: &'a TokenStore,
    pub limits: Limits,
    pub connections: ConnectionSettings,
    pub metrics: &'a Metrics,
    pub in_flight: &'a InFlight,
}

/// The health service, reporting the session service as serving.
pub(super) async fn health() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<SessionServiceServer<SessionRpc>>()
        .await;
    (reporter, service)
}

/// The router: every service, with the transport's settings.
pub(super) fn router(
    services: Services<'_>,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> Result<Router, ServeError> {
    let require_token = RequireToken(services.tokens.clone());
    let max_message_bytes =
        usize::try_from(services.limits.max_message_bytes()).unwrap_or(usize::MAX);
    let sessions =
        SessionServiceServer::new(services.sessions).max_decoding_message_size(max_message_bytes);
    let sessions = InterceptedService::new(sessions, require_token.clone());
    // Only session calls are waited for and limited: health watches and
    // reflection streams stay open for as long as their clients like, and
    // health checks are answered however busy the server is.
    let track = TrackCalls {
        in_flight: services.in_flight.clone(),
        working: InFlight::default(),
        limit: usize::try_from(services.limits.max_in_flight).unwrap_or(usize::MAX),
        timeout: services.limits.request_timeout,
        metrics: services.metrics.clone(),
    };
    let sessions = tower::Layer::layer(&track, sessions);

    let keepalive = keepalive(services.connections);
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    Ok(tonic::transport::Server::builder()
        .max_concurrent_streams(services.limits.max_concurrent_streams)
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(keepalive.map(|every| every.min(KEEPALIVE_ANSWER_LIMIT)))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        // Per call, so debug: at the default level a span per call costs
        // more than a Load from memory.
        .trace_fn(|request| tracing::debug_span!("rpc", method = request.uri().path()))
        .add_service(health)
        .add_service(InterceptedService::new(
            reflection_v1,
            require_token.clone(),
        ))
        .add_service(InterceptedService::new(reflection_v1alpha, require_token))
        .add_service(sessions))
}

/// The ping interval, `None` when pings are off.
fn keepalive(connections: ConnectionSettings) -> Option<Duration> {
    (!connections.keepalive.is_zero()).then_some(connections.keepalive)
}

/// Server reflection, so that `grpcurl` and similar tools discover the API.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
