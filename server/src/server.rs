//! [`Server`]: opens the engine and serves it over gRPC until told to stop.
//!
//! Starting and stopping are a series of named steps, so that [`Server::open`]
//! and [`Server::serve`] read as tables of contents: what is checked before
//! anything is bound or opened, what runs while serving, and the order of
//! shutdown.

mod admission;
mod background;
mod connections;
mod drain;
mod exposure;
mod grpc;
mod readiness;
mod threads;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::auth::{TokenStore, Tokens, TokensError};
use crate::calls::InFlight;
use crate::codec::{self, Codec};
use crate::config::{Limits, MetricsConfig, ServerConfig};
use crate::metrics::{self, Metrics, MetricsBindError};
use crate::service::{SessionRpc, Settings};
use crate::store::{OpenError, SessionStore, StoreConfig, StoreError, StoreUrl};
use crate::tls::{Tls, TlsError};
use admission::{Admission, ConnectionCap};
use background::Background;
use connections::Accepting;
pub use exposure::Unauthenticated;
use readiness::{ProbeSettings, Readiness};
use threads::ConnectionThreads;

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
    #[error(
        "refusing to serve metrics on {listen} to anyone who reaches it: give a bearer token \
         Prometheus must send (--metrics-token, SESSIOND_METRICS_TOKEN), serve them on loopback \
         (--metrics-listen 127.0.0.1:PORT), or, on a monitoring network nobody else can reach, \
         --metrics-public"
    )]
    MetricsExposed { listen: std::net::SocketAddr },
    #[error(
        "the token of --metrics-token (SESSIOND_METRICS_TOKEN) {0}; use a random token, e.g. `openssl rand -hex 32`"
    )]
    MetricsToken(String),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Codec(#[from] codec::django::CodecError),
    #[error("cannot migrate store {url} (--store, SESSIOND_STORE)")]
    Migrate {
        url: Box<StoreUrl>,
        #[source]
        source: StoreError,
    },
}

impl StartError {
    /// Whether the settings themselves are wrong, so that starting again
    /// with them fails again: a refused combination, a value out of range,
    /// a file that does not say what it must. A file that cannot be read,
    /// an address in use, a store that does not answer or refuses a
    /// migration may change by themselves, and are not.
    pub fn is_configuration_error(&self) -> bool {
        match self {
            Self::Unauthenticated(_)
            | Self::MessageLimit { .. }
            | Self::MetricsExposed { .. }
            | Self::MetricsToken(_)
            | Self::Codec(_) => true,
            Self::Tokens(err) => !matches!(err, TokensError::Read { .. }),
            Self::Tls(err) => !matches!(err, TlsError::Read { .. }),
            Self::Metrics(_) | Self::Open(_) | Self::Migrate { .. } => false,
        }
    }
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
    #[error("cannot start the threads that serve connections")]
    Threads(#[source] std::io::Error),
    #[error("a thread serving connections panicked")]
    ThreadPanicked,
}

/// A server with its engine open and migrated, ready to serve.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    codec: Codec,
    store: Arc<dyn SessionStore>,
    tokens: TokenStore,
    tls: Option<Tls>,
    metrics: Metrics,
    metrics_listener: Option<TcpListener>,
    metrics_token: Option<Tokens>,
}

impl Server {
    /// Checks the security and limit settings, reads the tokens and TLS
    /// files, binds the metrics address, opens the configured engine and
    /// applies pending migrations.
    pub async fn open(config: ServerConfig) -> Result<Self, StartError> {
        let tokens = TokenStore::open(config.auth.tokens_file.clone(), config.auth.token.clone())?;
        let tls = config.tls.load()?;
        exposure::check(
            config.listen,
            config.insecure_allow_unauthenticated,
            &tokens,
            tls.as_ref(),
        )?;
        check_limits(&config.limits)?;
        let codec = config.codec.build(&config.django)?;
        let metrics_token = metrics_token(&config.metrics)?;
        let metrics_listener = match config.metrics.listen {
            Some(addr) => Some(metrics::bind(addr).await?),
            None => None,
        };
        let store = open_and_migrate(&config.store).await?;
        let metrics = Metrics::for_store(store.clone());
        Ok(Self {
            config,
            codec,
            store,
            tokens,
            tls,
            metrics,
            metrics_listener,
            metrics_token,
        })
    }

    /// The tokens in force, to reload them (on SIGHUP).
    pub fn tokens(&self) -> TokenStore {
        self.tokens.clone()
    }

    /// Where metrics are served, with a metrics address.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Serves on `listener`, from threads of its own (`config.threads`,
    /// each with a runtime that keeps a connection and its calls on one
    /// thread), until `shutdown` completes, meanwhile reporting
    /// the session service's health as the store answers a ping; then shuts
    /// down in order: stop the readiness probe, health NOT_SERVING, wait
    /// the shutdown delay, stop accepting, drain in-flight calls, stop the
    /// purge and the metrics endpoint, close the engine.
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
            metrics_token,
        } = self;
        if let Ok(addr) = listener.local_addr() {
            exposure::check(
                addr,
                config.insecure_allow_unauthenticated,
                &tokens,
                tls.as_ref(),
            )?;
        }
        let (health, health_service) = grpc::health().await;
        let in_flight = InFlight::default();
        let sessions = SessionRpc::new(
            store.clone(),
            Settings::new(codec.clone(), &config),
            metrics.clone(),
        );
        let router = grpc::router(
            grpc::Services {
                sessions,
                tokens: &tokens,
                limits: config.limits,
                connections: config.connections,
                metrics: &metrics,
                in_flight: &in_flight,
            },
            health_service,
        )?;
        let cap = ConnectionCap::resolve(config.connections.max_connections);
        let thread_count = config.threads.unwrap_or_else(threads::default_count);
        let listening = listener.local_addr();
        let accepting = Accepting {
            settings: config.connections,
            tls: tls.as_ref().map(|tls| tls.acceptor.clone()),
            admission: Admission::new(
                cap.max,
                config.connections.max_connections_per_ip,
                metrics.clone(),
            ),
            metrics: metrics.clone(),
            failed_accepts: Arc::default(),
        };
        let stop_accepting = tokio_util::sync::CancellationToken::new();
        // Before the background tasks, so that a failed start leaves none.
        let mut threads =
            ConnectionThreads::start(thread_count, listener, &router, &accepting, &stop_accepting)?;
        let background = Background::start(
            store.clone(),
            config.purge,
            &metrics,
            metrics_listener,
            metrics_token,
        );
        let readiness = Readiness::start(
            store.clone(),
            health.clone(),
            ProbeSettings {
                interval: config.readiness_interval,
                store_timeout: config.store.options.timeout,
                store: config.store.url.to_string(),
            },
            &metrics,
        );
        log_serving(
            listening,
            &config,
            &codec,
            &tokens,
            tls.as_ref(),
            cap,
            thread_count,
        );

        let (closing_tx, closing) = tokio::sync::oneshot::channel();
        let close_listener = drain::close_listener(
            shutdown,
            health,
            readiness,
            config.shutdown.delay,
            closing_tx,
        );
        let drain_timeout = config.shutdown.drain_timeout;
        let stop = async {
            let close = async {
                close_listener.await;
                stop_accepting.cancel();
            };
            tokio::join!(close, drain::drained(closing, &in_flight, drain_timeout));
        };
        let served = tokio::select! {
            served = threads.finished() => served,
            _ = stop => Ok(()),
        };
        threads.stop_now();

        let closing_deadline = tokio::time::Instant::now() + drain_timeout;
        background.stop().await;
        close_store(store.as_ref(), closing_deadline).await;
        // Tasks the engines started from calls may live on the threads'
        // runtimes: those stay up until the store is closed.
        threads.release().await;
        tracing::info!("sessiond stopped");
        served
    }
}

/// Connections the kernel may hold completed for sessiond before it accepts
/// them (capped by `net.core.somaxconn`, 4096 by default on Linux). The
/// standard library's and tokio's 128 overflow when hundreds of clients
/// connect at once, as every app replica does after a restart: each
/// connect dropped then waits a second or more to be retried.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds the gRPC address for [`Server::serve`], with room for
/// [`LISTEN_BACKLOG`] connections waiting to be accepted.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restarted server can bind at once while
    // connections of the previous one linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The metrics token, checked; refuses metrics beyond loopback that anyone
/// could read, unless the operator says they may.
fn metrics_token(config: &MetricsConfig) -> Result<Option<Tokens>, StartError> {
    let token = match &config.token {
        Some(token) => {
            Some(Tokens::single(token.expose(), "metrics").map_err(StartError::MetricsToken)?)
        }
        None => None,
    };
    if let Some(listen) = config.listen
        && !listen.ip().is_loopback()
        && token.is_none()
    {
        if !config.public {
            return Err(StartError::MetricsExposed { listen });
        }
        tracing::warn!(listen = %listen, "serving metrics beyond loopback without a token (--metrics-public)");
    }
    Ok(token)
}

/// Refuses a message limit that leaves no room for the data limit.
fn check_limits(limits: &Limits) -> Result<(), StartError> {
    if limits.max_message_bytes() <= limits.max_data_bytes {
        return Err(StartError::MessageLimit {
            message: limits.max_message_bytes(),
            data: limits.max_data_bytes,
        });
    }
    Ok(())
}

/// Opens the engine and applies pending migrations, saying what was done.
async fn open_and_migrate(config: &StoreConfig) -> Result<Arc<dyn SessionStore>, StartError> {
    let store = config.open().await?;
    let migrations = store
        .migrate()
        .await
        .map_err(|source| StartError::Migrate {
            url: Box::new(config.url.clone()),
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
    Ok(store)
}

fn log_serving(
    listening: std::io::Result<std::net::SocketAddr>,
    config: &ServerConfig,
    codec: &Codec,
    tokens: &TokenStore,
    tls: Option<&Tls>,
    cap: ConnectionCap,
    threads: std::num::NonZeroUsize,
) {
    let local_addr = listening.map_or_else(|err| err.to_string(), |addr| addr.to_string());
    tracing::info!(
        listen = %local_addr,
        store = %config.store.url,
        cache = ?config.store.cache,
        codec = ?codec,
        tokens = tokens.enabled(),
        tls = tls.is_some(),
        client_certificates = tls.is_some_and(|tls| tls.client_certificates),
        max_connections = cap.max,
        max_connections_per_ip = config.connections.max_connections_per_ip,
        file_limit = cap.file_limit,
        threads,
        "sessiond serving"
    );
}

/// Closes the engine. Calls cut off by the drain timeout may still hold it
/// (a write waiting for a lock): closing waits for them only until
/// `deadline`.
async fn close_store(store: &dyn SessionStore, deadline: tokio::time::Instant) {
    if tokio::time::timeout_at(deadline, store.close())
        .await
        .is_err()
    {
        tracing::warn!(
            "the storage engine did not close within the drain timeout; stopping anyway"
        );
    }
}
