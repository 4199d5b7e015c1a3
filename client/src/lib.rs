//! `sessiond-client`: a typed Rust client for sessiond, the session-store
//! server.
//!
//! [`Client`] wraps the gRPC API (`sessiond.v1.SessionService`) one call per
//! RPC, with session data as the text of a JSON object and expiry as a
//! [`SystemTime`]. It is cheap to clone: clones share one HTTP/2 connection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sessiond_client::Error> {
//! let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
//! let created = client.create(r#"{"user":"ada"}"#, None).await?;
//! let loaded = client.load(&created.session_key).await?;
//! assert_eq!(loaded.map(|s| s.data), Some(r#"{"user":"ada"}"#.to_owned()));
//! # Ok(()) }
//! ```
//!
//! Out of scope here: the cookie and the dictionary-like session handle.

#![deny(missing_docs)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::transport::{Channel, Endpoint};

/// Code generated from `proto/sessiond/v1/sessiond.proto`, for calls the
/// typed [`Client`] does not cover.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    tonic::include_proto!("sessiond.v1");
}

use proto::session_service_client::SessionServiceClient;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint address is malformed, or the connection failed.
    #[error("cannot connect to sessiond")]
    Connect(#[source] tonic::transport::Error),
    /// The server answered with an error status.
    #[error("sessiond answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// A time cannot be expressed as a protobuf timestamp, or the server sent
    /// a malformed one.
    #[error("time out of range: {0}")]
    TimeOutOfRange(&'static str),
}

impl Error {
    /// The gRPC status code, if the server answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Status(status) => Some(status.code()),
            _ => None,
        }
    }
}

/// A live session as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The session data, the text of a JSON object.
    pub data: String,
    /// When the session expires.
    pub expire_date: SystemTime,
}

/// A session stored under a fresh key, by [`Client::create`] or
/// [`Client::cycle_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The new session key.
    pub session_key: String,
    /// When the session expires, as stored.
    pub expire_date: SystemTime,
}

/// A connection to one sessiond server.
#[derive(Debug, Clone)]
pub struct Client {
    inner: SessionServiceClient<Channel>,
}

/// How long to wait for the TCP and HTTP/2 handshake.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Client {
    /// Connects to a server, e.g. `http://127.0.0.1:50051`.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, Error> {
        let channel = Endpoint::from_shared(endpoint.into())
            .map_err(Error::Connect)?
            .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(Error::Connect)?;
        Ok(Self::from_channel(channel))
    }

    /// Wraps an existing channel.
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            inner: SessionServiceClient::new(channel),
        }
    }

    /// The generated gRPC client underneath, for raw requests.
    pub fn raw(&self) -> SessionServiceClient<Channel> {
        self.inner.clone()
    }

    /// The live session under `session_key`; `None` if it is missing or
    /// expired.
    pub async fn load(&self, session_key: &str) -> Result<Option<Loaded>, Error> {
        let request = proto::LoadRequest {
            session_key: session_key.to_owned(),
        };
        let response = self.inner.clone().load(request).await?.into_inner();
        if !response.found {
            return Ok(None);
        }
        Ok(Some(Loaded {
            data: response.data,
            expire_date: from_timestamp(response.expire_date)?,
        }))
    }

    /// Whether a row exists under `session_key`, expired or not.
    pub async fn exists(&self, session_key: &str) -> Result<bool, Error> {
        let request = proto::ExistsRequest {
            session_key: session_key.to_owned(),
        };
        Ok(self
            .inner
            .clone()
            .exists(request)
            .await?
            .into_inner()
            .exists)
    }

    /// Stores `data` under a fresh key drawn by the server. `expire_date`
    /// `None` means the server's default session age from now.
    pub async fn create(
        &self,
        data: &str,
        expire_date: Option<SystemTime>,
    ) -> Result<Created, Error> {
        let request = proto::CreateRequest {
            data: data.to_owned(),
            expire_date: expire_date.map(to_timestamp).transpose()?,
        };
        let response = self.inner.clone().create(request).await?.into_inner();
        Ok(Created {
            session_key: response.session_key,
            expire_date: from_timestamp(response.expire_date)?,
        })
    }

    /// Writes a session: with `must_create`, inserts (`ALREADY_EXISTS` if the
    /// key is taken); otherwise updates (`NOT_FOUND` if it was deleted).
    /// Returns the stored expiry.
    pub async fn save(
        &self,
        session_key: &str,
        data: &str,
        expire_date: Option<SystemTime>,
        must_create: bool,
    ) -> Result<SystemTime, Error> {
        let request = proto::SaveRequest {
            session_key: session_key.to_owned(),
            data: data.to_owned(),
            expire_date: expire_date.map(to_timestamp).transpose()?,
            must_create,
        };
        let response = self.inner.clone().save(request).await?.into_inner();
        from_timestamp(response.expire_date)
    }

    /// Changes some keys of a session in one transaction on the server:
    /// removes the keys in `remove`, then sets the members of `set` (the text
    /// of a JSON object, or empty), on top of the stored data or of an empty
    /// session when `replace` is true. `NOT_FOUND` if the session was
    /// deleted. Returns the stored expiry.
    pub async fn patch(
        &self,
        session_key: &str,
        set: &str,
        remove: &[String],
        replace: bool,
        expire_date: Option<SystemTime>,
    ) -> Result<SystemTime, Error> {
        let request = proto::PatchRequest {
            session_key: session_key.to_owned(),
            set: set.to_owned(),
            remove: remove.to_vec(),
            replace,
            expire_date: expire_date.map(to_timestamp).transpose()?,
        };
        let response = self.inner.clone().patch(request).await?.into_inner();
        from_timestamp(response.expire_date)
    }

    /// Deletes a session; true if there was one.
    pub async fn delete(&self, session_key: &str) -> Result<bool, Error> {
        let request = proto::DeleteRequest {
            session_key: session_key.to_owned(),
        };
        Ok(self
            .inner
            .clone()
            .delete(request)
            .await?
            .into_inner()
            .deleted)
    }

    /// Moves a session to a fresh key in one transaction. `data` `None` keeps
    /// the stored data (the session must then be live).
    pub async fn cycle_key(
        &self,
        session_key: &str,
        data: Option<&str>,
        expire_date: Option<SystemTime>,
    ) -> Result<Created, Error> {
        let request = proto::CycleKeyRequest {
            session_key: session_key.to_owned(),
            data: data.map(str::to_owned),
            expire_date: expire_date.map(to_timestamp).transpose()?,
        };
        let response = self.inner.clone().cycle_key(request).await?.into_inner();
        Ok(Created {
            session_key: response.session_key,
            expire_date: from_timestamp(response.expire_date)?,
        })
    }

    /// Removes every expired session; returns how many.
    pub async fn clear_expired(&self) -> Result<u64, Error> {
        let response = self
            .inner
            .clone()
            .clear_expired(proto::ClearExpiredRequest {})
            .await?
            .into_inner();
        Ok(response.removed)
    }
}

fn to_timestamp(time: SystemTime) -> Result<prost_types::Timestamp, Error> {
    let (seconds, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => (
            i64::try_from(after.as_secs()).ok(),
            after.subsec_nanos() as i32,
        ),
        Err(before) => {
            let before = before.duration();
            let mut seconds = i64::try_from(before.as_secs()).ok().map(|s| -s);
            let mut nanos = before.subsec_nanos() as i32;
            if nanos > 0 {
                seconds = seconds.and_then(|s| s.checked_sub(1));
                nanos = 1_000_000_000 - nanos;
            }
            (seconds, nanos)
        }
    };
    let seconds = seconds.ok_or(Error::TimeOutOfRange("expire_date"))?;
    Ok(prost_types::Timestamp { seconds, nanos })
}

fn from_timestamp(ts: Option<prost_types::Timestamp>) -> Result<SystemTime, Error> {
    let ts = ts.ok_or(Error::TimeOutOfRange("the server sent no expire_date"))?;
    let nanos = u32::try_from(ts.nanos).map_err(|_| Error::TimeOutOfRange("expire_date"))?;
    let time = if ts.seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(ts.seconds.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(ts.seconds.unsigned_abs()))
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
    };
    time.ok_or(Error::TimeOutOfRange("expire_date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_on_both_sides_of_the_epoch() {
        for time in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_767_225_600, 123_456_000),
            UNIX_EPOCH - Duration::new(5, 250_000_000),
            UNIX_EPOCH - Duration::from_secs(62_135_596_800),
        ] {
            let ts = to_timestamp(time).unwrap();
            assert!((0..1_000_000_000).contains(&ts.nanos));
            assert_eq!(from_timestamp(Some(ts)).unwrap(), time);
        }
    }
}
