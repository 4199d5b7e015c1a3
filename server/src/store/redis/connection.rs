//! The engine's one multiplexed connection, to one server, to the master
//! Sentinel names or to a cluster, with TLS for the `rediss` schemes:
//! opened at start-up, so that a wrong address, password or certificate
//! stops the server before it listens, and re-established after a failure.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, RedisConnectionInfo, RedisError, TlsMode,
};

use super::errors::explain_open_error;
use super::link::Link;
use super::sentinel::SentinelLink;
use super::url::{RedisUrl, Topology};
use crate::store::kit::OpenFailure;

/// Reconnection attempts after the first one fails, before the calls waiting
/// on the reconnection fail with `UNAVAILABLE`. Kept low: a refused
/// connection fails at once, so a down Redis is reported quickly, and the
/// next call starts a fresh reconnection anyway.
const DEFAULT_RECONNECT_RETRIES: usize = 2;

/// The first pause between reconnection attempts (it doubles, with jitter):
/// short, because a restarted Redis is usually back within milliseconds.
const DEFAULT_RECONNECT_MIN_DELAY: Duration = Duration::from_millis(20);

/// The longest pause between reconnection attempts, so that a call waiting
/// on a reconnection is never held long past the point Redis answers again.
const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_millis(200);

/// Connects to the Redis `url` names within `timeout`.
pub(super) async fn connect(url: &RedisUrl, timeout: Duration) -> Result<Link, OpenFailure> {
    if timeout.is_zero() {
        // SQLite can fail at once on a lock; a network round trip cannot
        // be answered in no time, so every call would fail.
        return Err(OpenFailure::unusable(
            "a --store-timeout of 0 gives Redis no time to answer; set it to how long a call may wait, e.g. 5s",
        ));
    }
    // Read before connecting, so that a missing file is named as such.
    let certificates = url.tls.as_ref().map(|tls| tls.certificates()).transpose()?;
    let connecting = async {
        match &url.topology {
            Topology::Single(node) => {
                let info = url.connection_info(node)?;
                let client = match certificates {
                    Some(certificates) => Client::build_with_tls(info, certificates)?,
                    None => Client::open(info)?,
                };
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(DEFAULT_RECONNECT_RETRIES)
                    .set_min_delay(DEFAULT_RECONNECT_MIN_DELAY)
                    .set_max_delay(DEFAULT_RECONNECT_MAX_DELAY);
                Ok(Link::Single(
                    ConnectionManager::new_with_config(client, config).await?,
                ))
            }
            Topology::Sentinel {
                sentinels,
                master,
                password,
            } => {
                let addresses = sentinels.iter().map(|node| url.address_of(node));
                let mut builder =
                    SentinelClientBuilder::new(addresses, master, SentinelServerType::Master)?
                        .set_client_to_redis_db(url.db);
                let redis = url.redis_settings();
                if let Some(username) = redis.username() {
                    builder = builder.set_client_to_redis_username(username);
                }
                if let Some(password) = redis.password() {
                    builder = builder.set_client_to_redis_password(password);
                }
                if let Some(password) = password {
                    builder = builder.set_client_to_sentinel_password(password);
                }
                // Clients of the sentinels themselves, to hear of a new
                // master.
                let mut watch = Vec::new();
                for node in sentinels {
                    let mut redis = RedisConnectionInfo::default();
                    if let Some(password) = password {
                        redis = redis.set_password(password);
                    }
                    let info = url
                        .address_of(node)
                        .into_connection_info()?
                        .set_redis_settings(redis);
                    watch.push(match &certificates {
                        Some(certificates) => Client::build_with_tls(info, certificates.clone())?,
                        None => Client::open(info)?,
                    });
                }
                if let Some(certificates) = certificates {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_redis_certificates(certificates.clone())
                        .set_client_to_sentinel_certificates(certificates);
                }
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let link = SentinelLink::connect(
                    builder.build()?,
                    watch,
                    master.clone(),
                    config,
                    timeout,
                    url.db,
                )
                .await?;
                Ok(Link::Sentinel(link))
            }
            Topology::Cluster(nodes) => {
                let nodes = nodes
                    .iter()
                    .map(|node| url.connection_info(node))
                    .collect::<Result<Vec<_>, RedisError>>()?;
                let mut builder = ClusterClientBuilder::new(nodes)
                    .connection_timeout(timeout)
                    .response_timeout(timeout);
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                let connection = builder.build()?.get_async_connection().await?;
                Ok(Link::Cluster(connection))
            }
        }
    };
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(link)) => Ok(link),
        Ok(Err(err)) => Err(explain_open_error(err, url)),
        Err(_) => Err(OpenFailure::unusable(format!(
            "Redis at {} did not answer within {timeout:?} (--store-timeout); check that it runs and is reachable",
            url.address()
        ))),
    }
}
