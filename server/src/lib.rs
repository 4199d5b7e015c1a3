//! sessiond: a session-store server. It owns a Django-compatible
//! `django_session` table and serves it over gRPC
//! (`sessiond.v1.SessionService`), so that web apps in any language, Django
//! included, share one store of logged-in sessions.
//!
//! A request flows through three layers:
//!
//! - [`service`] turns a gRPC request into domain types ([`session`]):
//!   validated keys, JSON-object data within the size limit, expiry dates.
//!   It is the only place that validates input or builds a gRPC status.
//! - [`codec`] turns session data into the stored `session_data` text:
//!   plain JSON, or signed byte for byte as Django signs it.
//! - [`store`] holds the engines behind one trait, with Django's database
//!   semantics: SQLite (the embedded default), PostgreSQL (shared by
//!   stateless replicas), Redis, files, memory, and a cache in front of a
//!   database (Django's `cached_db`).
//!
//! Around them, [`Server`] wires the health and reflection services, the
//! background purge and an ordered shutdown: health NOT_SERVING, stop
//! accepting, drain in-flight calls, stop the purge, close the engine.
//! Before a call reaches [`service`], it is counted and limited (`calls`:
//! past `--max-in-flight` it is refused rather than queued), checked for a
//! bearer token ([`auth`]) and, on the wire, for TLS and client certificates
//! ([`tls`]); [`metrics`] counts what happened, for Prometheus. A server
//! refuses to listen beyond loopback without tokens or TLS unless told to.
//!
//! Out of scope here: the session cookie and the dictionary-like handle,
//! which live in the client (`sessiond-client`).

pub mod auth;
mod batched_writes;
mod calls;
pub mod codec;
pub mod config;
mod handshake;
pub mod healthcheck;
pub mod metrics;
mod purge;
pub mod service;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::auth::{RequireToken, TokenStore, TokensError};
use crate::batched_writes::BatchedWrites;
use crate::calls::{InFlight, TrackCalls};
use crate::config::ServeConfig;
use crate::handshake::OpeningDeadline;
use crate::metrics::{Metrics, MetricsBindError};
use crate::proto::session_service_server::SessionServiceServer;
use crate::service::{ErrorChain, SessionRpc, Settings};
use crate::store::{OpenError, SessionStore, StoreError, StoreUrl};
use crate::tls::{Tls, TlsError};

/// Code generated from `proto/sessiond/v1/sessiond.proto`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    tonic::include_proto!("sessiond.v1");

    /// The encoded descriptors of the proto files, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/sessiond_descriptor.bin"));
}

/// How many streams one connection may make the server reset for its own
/// errors (malformed headers, flow-control violations) before it is sent
/// away: hyper's and h2's default. tonic's builder passes no limit at all
/// unless given one, which leaves a client free to make the server reset
/// stream after stream on one connection (RUSTSEC-2024-0003).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The longest a pinged connection gets to answer before it is closed
/// (less when `--keepalive` is shorter): gRPC's usual keepalive timeout.
const KEEPALIVE_ANSWER_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// After the last in-flight call, how long connections get to close by
/// themselves: enough to flush the final responses to the socket.
const IDLE_CONNECTION_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// A non-loopback address with neither tokens nor client certificates (TLS
/// alone encrypts but lets any client in), and no
/// `--insecure-allow-unauthenticated`.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to listen on {listen} without authentication: anyone who can reach it could \
         create and delete sessions, and read any whose key they learn. Give bearer tokens \
         (--tokens-file or SESSIOND_TOKEN) or client certificates (--tls-cert, --tls-key and \
         --tls-client-ca), listen on loopback (--listen 127.0.0.1:PORT), \
         or, on a network nobody else can reach, --insecure-allow-unauthenticated"
)]
pub struct Unauthenticated {
    pub listen: std::net::SocketAddr,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Unauthenticated(#[from] Unauthenticated),
    #[error(
        "--max-message-bytes ({message}) must be above --max-data-bytes ({data}): a request \
         carries its data and a little more"
    )]
    MessageLimit { message: u64, data: u64 },
    #[error(transparent)]
    Tokens(#[from] TokensError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Metrics(#[from] MetricsBindError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Codec(#[from] codec::django::CodecError),
    #[error("cannot migrate store {url} (--store, SESSIOND_STORE)")]
    Migrate {
        url: StoreUrl,
        #[source]
        source: StoreError,
    },
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Insecure(#[from] Unauthenticated),
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// A server with its engine open and migrated, ready to serve.
#[derive(Debug)]
pub struct Server {
    config: ServeConfig,
    codec: codec::Codec,
    store: Arc<dyn SessionStore>,
    tokens: TokenStore,
    tls: Option<Tls>,
    metrics: Metrics,
    metrics_listener: Option<TcpListener>,
}

impl Server {
    /// Checks the security and limit settings, reads the tokens and TLS
    /// files, binds the metrics address, opens the configured engine and
    /// applies pending migrations.
    pub async fn open(config: ServeConfig) -> Result<Self, StartError> {
        let tokens = TokenStore::open(config.tokens_file.clone(), config.token.clone())?;
        let tls = config.tls_files().load()?;
        check_exposure(&config, config.listen, &tokens, tls.as_ref())?;
        if config.max_message_bytes() <= config.max_data_bytes {
            return Err(StartError::MessageLimit {
                message: config.max_message_bytes(),
                data: config.max_data_bytes,
            });
        }
        let codec = config.codec.build(&config.django())?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(metrics::bind(addr).await?),
            None => None,
        };
        let store = config.store.open().await?;
        let migrations = store
            .migrate()
            .await
            .map_err(|source| StartError::Migrate {
                url: config.store.store.clone(),
                source,
            })?;
        for migration in migrations {
            if migration.adopted {
                tracing::info!(
                    migration = migration.name,
                    "adopted the existing django_session table"
                );
            } else {
                tracing::info!(migration = migration.name, "applied migration");
            }
        }
        Ok(Self {
            config,
            codec,
            store,
            tokens,
            tls,
            metrics: Metrics::new(),
            metrics_listener,
        })
    }

    /// The tokens in force, to reload them (on SIGHUP).
    pub fn tokens(&self) -> TokenStore {
        self.tokens.clone()
    }

    /// Where metrics are served, with --metrics-listen.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Serves on `listener` until `shutdown` completes, then shuts down in
    /// order: health NOT_SERVING, wait `--shutdown-delay`, stop accepting,
    /// drain in-flight calls, stop the purge, close the engine.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let Self {
            config,
            codec,
            store,
            tokens,
            tls,
            metrics,
            metrics_listener,
        } = self;
        if let Ok(addr) = listener.local_addr() {
            check_exposure(&config, addr, &tokens, tls.as_ref())?;
        }
        let settings = Settings {
            codec: codec.clone(),
            session_age: chrono::TimeDelta::from_std(config.session_age)
                .unwrap_or(chrono::TimeDelta::MAX),
            max_data_bytes: usize::try_from(config.max_data_bytes).unwrap_or(usize::MAX),
            purge_batch_size: config.purge_batch_size,
        };
        let max_message_bytes = usize::try_from(config.max_message_bytes()).unwrap_or(usize::MAX);
        let sessions = SessionServiceServer::new(SessionRpc::new(
            store.clone(),
            settings.clone(),
            metrics.clone(),
        ))
        .max_decoding_message_size(max_message_bytes);
        let sessions = tonic::service::interceptor::InterceptedService::new(
            sessions,
            RequireToken(tokens.clone()),
        );

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<SessionServiceServer<SessionRpc>>()
            .await;
        let reflection = reflection()?;

        let stop_purge = CancellationToken::new();
        let purge = purge::spawn(
            store.clone(),
            config.purge_interval,
            config.purge_batch_size,
            metrics.clone(),
            stop_purge.clone(),
        );
        let stop_metrics = CancellationToken::new();
        let metrics_server = metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(listen = %addr, "serving metrics at /metrics");
            }
            let stop = stop_metrics.clone();
            tokio::spawn(
                metrics
                    .clone()
                    .serve(listener, async move { stop.cancelled().await }),
            )
        });

        let local_addr = listener
            .local_addr()
            .map_or_else(|err| err.to_string(), |addr| addr.to_string());
        tracing::info!(
            listen = %local_addr,
            store = %config.store.store,
            cache = ?config.store.cache,
            codec = ?codec,
            tokens = tokens.enabled(),
            tls = tls.is_some(),
            client_certificates = tls.as_ref().is_some_and(|tls| tls.client_certificates),
            "sessiond serving"
        );
        let shutdown_delay = config.shutdown_delay;
        let health_on_shutdown = health.clone();
        let (closing_tx, closing) = tokio::sync::oneshot::channel::<()>();
        let close_listener = async move {
            shutdown.await;
            report_not_serving(&health_on_shutdown).await;
            if !shutdown_delay.is_zero() {
                tracing::info!(delay = ?shutdown_delay, "reporting NOT_SERVING before closing the listener");
                tokio::time::sleep(shutdown_delay).await;
            }
            tracing::info!("closing the listener and draining in-flight calls");
            let _ = closing_tx.send(());
        };

        // Only session calls are waited for and limited: health watches
        // and reflection streams stay open for as long as their clients
        // like, and health checks are answered however busy the server is.
        let in_flight = InFlight::default();
        let track = TrackCalls {
            in_flight: in_flight.clone(),
            limit: usize::try_from(config.max_in_flight).unwrap_or(usize::MAX),
            metrics: metrics.clone(),
        };
        let sessions = tower::Layer::layer(&track, sessions);
        let require_token = RequireToken(tokens.clone());
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            // The opening-bytes deadline ends with the ClientHello; this one
            // covers the rest of the TLS handshake.
            builder = builder.tls_config(tls.config.clone().timeout(config.handshake_timeout))?;
        }
        let keepalive = (!config.keepalive.is_zero()).then_some(config.keepalive);
        let handshake_timeout = config.handshake_timeout;
        let serving = builder
            .max_concurrent_streams(config.max_concurrent_streams)
            .http2_keepalive_interval(keepalive)
            .http2_keepalive_timeout(keepalive.map(|every| every.min(KEEPALIVE_ANSWER_LIMIT)))
            .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            // Per call, so debug: at the default level a span per call costs
            // more than a Load from memory.
            .trace_fn(|request| tracing::debug_span!("rpc", method = request.uri().path()))
            .add_service(health_service)
            .add_service(tonic::service::interceptor::InterceptedService::new(
                reflection.v1,
                require_token.clone(),
            ))
            .add_service(tonic::service::interceptor::InterceptedService::new(
                reflection.v1alpha,
                require_token,
            ))
            .add_service(sessions)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .with_keepalive(keepalive)
                    .map(move |accepted| {
                        accepted.map(|stream| {
                            BatchedWrites::new(OpeningDeadline::new(stream, handshake_timeout))
                        })
                    }),
                close_listener,
            );
        let served = tokio::select! {
            served = serving => served,
            () = drained(closing, &in_flight, config.drain_timeout) => Ok(()),
        };
        let closing_deadline = tokio::time::Instant::now() + config.drain_timeout;

        stop_purge.cancel();
        stop_metrics.cancel();
        if let Some(Ok(Err(err))) = match metrics_server {
            Some(task) => Some(task.await),
            None => None,
        } {
            tracing::warn!(error = %err, "the metrics server failed");
        }
        if let Some(purge) = purge
            && let Err(err) = purge.await
        {
            tracing::error!(error = %ErrorChain(&err), "the purge task panicked");
        }
        // Calls cut off by the drain timeout may still hold the engine (a
        // write waiting for a lock): closing waits for them only as long.
        if tokio::time::timeout_at(closing_deadline, store.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "the storage engine did not close within the drain timeout; stopping anyway"
            );
        }
        tracing::info!("sessiond stopped");
        Ok(served?)
    }
}

/// Refuses to serve a non-loopback address to anyone without a token or
/// TLS, unless the operator insists; warns of weaker set-ups.
fn check_exposure(
    config: &ServeConfig,
    listen: std::net::SocketAddr,
    tokens: &TokenStore,
    tls: Option<&Tls>,
) -> Result<(), Unauthenticated> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    let client_certificates = tls.is_some_and(|tls| tls.client_certificates);
    match (tokens.enabled() || client_certificates, tls) {
        (false, _) if !config.insecure_allow_unauthenticated => Err(Unauthenticated { listen }),
        (false, _) => {
            tracing::warn!(listen = %listen, "serving without authentication on a non-loopback address (--insecure-allow-unauthenticated)");
            Ok(())
        }
        (true, None) => {
            tracing::warn!(listen = %listen, "bearer tokens and session data cross the network in clear text; add --tls-cert and --tls-key unless the network is private");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Completes once the listener is closed and the in-flight calls are done
/// (or `timeout` has passed), leaving idle connections a moment to close on
/// their own first.
async fn drained(
    closing: tokio::sync::oneshot::Receiver<()>,
    in_flight: &InFlight,
    timeout: std::time::Duration,
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

async fn report_not_serving(health: &tonic_health::server::HealthReporter) {
    health
        .set_not_serving::<SessionServiceServer<SessionRpc>>()
        .await;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
}

struct Reflection<V1, V1Alpha> {
    v1: V1,
    v1alpha: V1Alpha,
}

/// Server reflection, so that `grpcurl` and similar tools discover the API.
fn reflection() -> Result<
    Reflection<
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    >,
    tonic_reflection::server::Error,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok(Reflection {
        v1: builder().build_v1()?,
        v1alpha: builder().build_v1alpha()?,
    })
}
