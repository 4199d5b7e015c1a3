//! One connection to what is measured: sessiond over gRPC, or a plain Redis
//! as the reference. Requests go out as sent by an app, with nothing
//! retried, so that every failure is counted.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sessiond_client::proto::session_service_client::SessionServiceClient;
use sessiond_client::{Client, Transport, code_name, proto};

/// A failed request, by the name its errors are counted under: the gRPC
/// status code (`UNAVAILABLE`), `LOAD_MISSED` for a pre-created session that
/// Load did not find, or `REDIS_…` for the Redis reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Self(code_name(status.code()).to_owned())
    }
}

impl From<redis::RedisError> for Failure {
    fn from(err: redis::RedisError) -> Self {
        let kind = if err.is_timeout() {
            "TIMEOUT".to_owned()
        } else {
            match err.code() {
                Some(code) => code.to_owned(),
                None => format!("{:?}", err.kind()).to_uppercase(),
            }
        };
        Self(format!("REDIS_{kind}"))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a Load that found nothing where a session was created.
const LOAD_MISSED: &str = "LOAD_MISSED";

/// What the sessions of a run hold and until when.
#[derive(Debug, Clone)]
pub struct Written {
    /// The session data of every write.
    pub data: Arc<str>,
    /// The expiry of every write: for the sessions worked on, one hour
    /// after the run, so that sessions left in a shared store go away by
    /// themselves.
    pub expire_at: SystemTime,
}

impl Written {
    fn timestamp(&self) -> Option<prost_types::Timestamp> {
        let since = self.expire_at.duration_since(UNIX_EPOCH).ok()?;
        Some(prost_types::Timestamp {
            seconds: i64::try_from(since.as_secs()).ok()?,
            nanos: i32::try_from(since.subsec_nanos()).ok()?,
        })
    }

    /// Milliseconds from now until the expiry, for Redis `PX`.
    fn ttl_millis(&self) -> u64 {
        let left = self
            .expire_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::from_secs(1));
        u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)
    }
}

/// One HTTP/2 channel to sessiond, or one multiplexed Redis connection.
/// Clones share it.
#[derive(Debug, Clone)]
pub enum Connection {
    Sessiond(SessionServiceClient<Transport>),
    Redis {
        conn: redis::aio::MultiplexedConnection,
        prefix: Arc<str>,
    },
}

impl Connection {
    /// `count` channels to sessiond; each balances over all `targets`.
    pub async fn sessiond(
        targets: &[String],
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Self>> {
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count {
            let builder = targets
                .iter()
                .fold(Client::builder(), |builder, target| {
                    builder.endpoint(target)
                })
                .request_timeout(timeout);
            // The client's error names the endpoint and the cause.
            let client = builder.connect().await?;
            connections.push(Self::Sessiond(client.raw()));
        }
        Ok(connections)
    }

    /// `count` multiplexed connections to the Redis at `url`, whose keys
    /// all begin with `prefix`.
    pub async fn redis(
        url: &str,
        prefix: &str,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Self>> {
        let client = redis::Client::open(url).context("the Redis URL is not valid")?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let prefix: Arc<str> = prefix.into();
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count {
            let conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .context("cannot connect to Redis")?;
            connections.push(Self::Redis {
                conn,
                prefix: prefix.clone(),
            });
        }
        Ok(connections)
    }

    /// Load (Redis: GET) of a session that was created.
    pub async fn load(&mut self, key: &str) -> Result<(), Failure> {
        let found = match self {
            Self::Sessiond(raw) => {
                let request = proto::LoadRequest {
                    session_key: key.to_owned(),
                };
                raw.load(request).await?.into_inner().found
            }
            Self::Redis { conn, prefix } => redis::cmd("GET")
                .arg(format!("{prefix}{key}"))
                .query_async::<Option<Vec<u8>>>(conn)
                .await?
                .is_some(),
        };
        if found {
            Ok(())
        } else {
            Err(Failure(LOAD_MISSED.to_owned()))
        }
    }

    /// Save without must_create (Redis: SET) of a session that was created.
    pub async fn save(&mut self, key: &str, written: &Written) -> Result<(), Failure> {
        match self {
            Self::Sessiond(raw) => {
                let request = proto::SaveRequest {
                    session_key: key.to_owned(),
                    data: written.data.as_ref().to_owned(),
                    expire_date: written.timestamp(),
                    must_create: false,
                };
                raw.save(request).await?;
            }
            Self::Redis { conn, prefix } => {
                redis::cmd("SET")
                    .arg(format!("{prefix}{key}"))
                    .arg(written.data.as_bytes())
                    .arg("PX")
                    .arg(written.ttl_millis())
                    .query_async::<()>(conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Create (Redis: SET NX under a fresh key); returns the new key.
    pub async fn create(&mut self, written: &Written) -> Result<String, Failure> {
        match self {
            Self::Sessiond(raw) => {
                let request = proto::CreateRequest {
                    data: written.data.as_ref().to_owned(),
                    expire_date: written.timestamp(),
                };
                Ok(raw.create(request).await?.into_inner().session_key)
            }
            Self::Redis { conn, prefix } => {
                let key = fresh_key();
                let stored: Option<String> = redis::cmd("SET")
                    .arg(format!("{prefix}{key}"))
                    .arg(written.data.as_bytes())
                    .arg("PX")
                    .arg(written.ttl_millis())
                    .arg("NX")
                    .query_async(conn)
                    .await?;
                match stored {
                    Some(_) => Ok(key),
                    None => Err(Failure("REDIS_KEY_TAKEN".to_owned())),
                }
            }
        }
    }

    /// CycleKey with data (Redis: SET of a fresh key and DEL of the old one
    /// in MULTI/EXEC); returns the new key.
    pub async fn cycle(&mut self, key: &str, written: &Written) -> Result<String, Failure> {
        match self {
            Self::Sessiond(raw) => {
                let request = proto::CycleKeyRequest {
                    session_key: key.to_owned(),
                    data: Some(written.data.as_ref().to_owned()),
                    expire_date: written.timestamp(),
                };
                Ok(raw.cycle_key(request).await?.into_inner().session_key)
            }
            Self::Redis { conn, prefix } => {
                let fresh = fresh_key();
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(format!("{prefix}{fresh}"))
                    .arg(written.data.as_bytes())
                    .arg("PX")
                    .arg(written.ttl_millis())
                    .ignore()
                    .cmd("DEL")
                    .arg(format!("{prefix}{key}"))
                    .ignore()
                    .query_async::<()>(conn)
                    .await?;
                Ok(fresh)
            }
        }
    }
}

impl Connection {
    /// ClearExpired; returns how many rows it removed. Redis needs none:
    /// its keys expire by themselves.
    pub async fn clear_expired(&mut self) -> Result<u64, Failure> {
        match self {
            Self::Sessiond(raw) => Ok(raw
                .clear_expired(proto::ClearExpiredRequest {})
                .await?
                .into_inner()
                .removed),
            Self::Redis { .. } => Ok(0),
        }
    }
}

/// A key as sessiond draws them.
fn fresh_key() -> String {
    sessiond_signing::SessionKey::generate().into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_counted_under_their_canonical_names() {
        let failure = Failure::from(tonic::Status::unavailable("down"));
        assert_eq!(failure.0, "UNAVAILABLE");
        let failure = Failure::from(tonic::Status::deadline_exceeded("slow"));
        assert_eq!(failure.0, "DEADLINE_EXCEEDED");
    }

    #[test]
    fn expiry_is_sent_as_a_timestamp_and_a_ttl() {
        let written = Written {
            data: "{}".into(),
            expire_at: SystemTime::now() + Duration::from_secs(3600),
        };
        assert!(written.timestamp().unwrap().seconds > 1_700_000_000);
        let ttl = written.ttl_millis();
        assert!((3_590_000..=3_600_000).contains(&ttl), "{ttl}");
        assert_eq!(fresh_key().len(), 32);
    }
}
