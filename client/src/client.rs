//! [`Client`]: one typed method per RPC of `sessiond.v1.SessionService`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;
use crate::proto;
use crate::proto::session_service_client::SessionServiceClient;

/// How long to wait for the TCP (and TLS) handshake with a server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call may take before it fails with `DEADLINE_EXCEEDED`:
/// far above a healthy call (well under a millisecond), below a page load
/// that users would abandon.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Adds `authorization: Bearer …` to every call when a token is set.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.0.is_some() { "set" } else { "none" };
        write!(f, "BearerToken({shown})")
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// The transport under [`Client`]: a (load-balanced) channel that adds the
/// bearer token.
pub type Transport = InterceptedService<Channel, BearerToken>;

/// Settings for [`Client`]; start with [`Client::builder`].
#[derive(Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    token: Option<String>,
    #[cfg(feature = "tls")]
    tls: Option<tonic::transport::ClientTlsConfig>,
}

/// Shows whether a token is set, never the token.
impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("ClientBuilder");
        debug
            .field("endpoints", &self.endpoints)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("token", &self.token.as_ref().map(|_| "<set>"));
        #[cfg(feature = "tls")]
        debug.field("tls", &self.tls);
        debug.finish()
    }
}

impl ClientBuilder {
    /// Adds a server address, such as `http://127.0.0.1:50051` (or
    /// `https://…` with TLS). Calls are spread over all added servers.
    pub fn endpoint(mut self, address: impl Into<String>) -> Self {
        self.endpoints.push(address.into());
        self
    }

    /// How long to wait for a connection (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one call may take (default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sends `authorization: Bearer TOKEN` with every call.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Connects with TLS (and a client certificate, if the config has an
    /// identity).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: tonic::transport::ClientTlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    fn endpoint_settings(&self, address: &str) -> Result<Endpoint, Error> {
        let endpoint = Endpoint::from_shared(address.to_owned())
            .map_err(Error::Connect)?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .tcp_nodelay(true);
        #[cfg(feature = "tls")]
        let endpoint = match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()).map_err(Error::Connect)?,
            None => endpoint,
        };
        Ok(endpoint)
    }

    /// Builds the client. With one endpoint it connects now, so a wrong
    /// address fails here; with several, connections are made as needed and
    /// calls go to the servers that answer.
    pub async fn connect(self) -> Result<Client, Error> {
        let token = match &self.token {
            Some(token) => Some({
                let mut value = format!("Bearer {token}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| Error::InvalidToken)?;
                // Kept out of HTTP/2's header compression table.
                value.set_sensitive(true);
                value
            }),
            None => None,
        };
        let channel = match self.endpoints.as_slice() {
            [] => return Err(Error::NoEndpoint),
            [one] => {
                let endpoint = self.endpoint_settings(one)?;
                endpoint.connect().await.map_err(Error::Connect)?
            }
            many => {
                let endpoints = many
                    .iter()
                    .map(|address| self.endpoint_settings(address))
                    .collect::<Result<Vec<_>, _>>()?;
                Channel::balance_list(endpoints.into_iter())
            }
        };
        // The server enforces the size of sessions; the client reads back
        // whatever it was allowed to store.
        let inner = SessionServiceClient::new(InterceptedService::new(channel, BearerToken(token)))
            .max_decoding_message_size(usize::MAX);
        Ok(Client { inner })
    }
}

/// A handle to sessiond: cheap to clone, and clones share connections.
///
/// Idempotent calls (`load`, `exists`, `delete`, `clear_expired`) are
/// retried once when the server answers `UNAVAILABLE`; writes are never
/// retried blindly, since the first attempt may have taken effect.
#[derive(Debug, Clone)]
pub struct Client {
    inner: SessionServiceClient<Transport>,
}

impl Client {
    /// Settings for a client with several endpoints, TLS or a token.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            endpoints: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            token: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Connects to one server, e.g. `http://127.0.0.1:50051`, with the
    /// default timeouts.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, Error> {
        Self::builder().endpoint(endpoint).connect().await
    }

    /// The generated gRPC client underneath, for raw requests.
    pub fn raw(&self) -> SessionServiceClient<Transport> {
        self.inner.clone()
    }

    /// Runs a call. A call whose connection was refused never reached a
    /// server and goes to another one (a few times at most); an idempotent
    /// call also gets one more try after any `UNAVAILABLE`.
    async fn call<T, F, Fut>(&self, idempotent: bool, call: F) -> Result<T, Error>
    where
        F: Fn(SessionServiceClient<Transport>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut refused_retries = MAX_REFUSED_RETRIES;
        let mut unavailable_retry = idempotent;
        loop {
            match call(self.inner.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if refused_retries > 0 && connection_refused(&status) => {
                    refused_retries -= 1;
                }
                Err(status) if unavailable_retry && status.code() == tonic::Code::Unavailable => {
                    unavailable_retry = false;
                }
                Err(status) => return Err(status.into()),
            }
        }
    }

    /// The live session under `session_key`; `None` if it is missing or
    /// expired.
    pub async fn load(&self, session_key: &str) -> Result<Option<Loaded>, Error> {
        let response = self
            .call(true, |mut raw| async move {
                raw.load(proto::LoadRequest {
                    session_key: session_key.to_owned(),
                })
                .await
            })
            .await?;
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
        let response = self
            .call(true, |mut raw| async move {
                raw.exists(proto::ExistsRequest {
                    session_key: session_key.to_owned(),
                })
                .await
            })
            .await?;
        Ok(response.exists)
    }

    /// Stores `data` under a fresh key drawn by the server. `expire_date`
    /// `None` means the server's default session age from now.
    pub async fn create(
        &self,
        data: &str,
        expire_date: Option<SystemTime>,
    ) -> Result<Created, Error> {
        let expire_date = expire_date.map(to_timestamp).transpose()?;
        let response = self
            .call(false, |mut raw| async move {
                raw.create(proto::CreateRequest {
                    data: data.to_owned(),
                    expire_date,
                })
                .await
            })
            .await?;
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
        let expire_date = expire_date.map(to_timestamp).transpose()?;
        let response = self
            .call(false, |mut raw| async move {
                raw.save(proto::SaveRequest {
                    session_key: session_key.to_owned(),
                    data: data.to_owned(),
                    expire_date,
                    must_create,
                })
                .await
            })
            .await?;
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
        let expire_date = expire_date.map(to_timestamp).transpose()?;
        let response = self
            .call(false, |mut raw| async move {
                raw.patch(proto::PatchRequest {
                    session_key: session_key.to_owned(),
                    set: set.to_owned(),
                    remove: remove.to_vec(),
                    replace,
                    expire_date,
                })
                .await
            })
            .await?;
        from_timestamp(response.expire_date)
    }

    /// Deletes a session; true if there was one.
    pub async fn delete(&self, session_key: &str) -> Result<bool, Error> {
        let response = self
            .call(true, |mut raw| async move {
                raw.delete(proto::DeleteRequest {
                    session_key: session_key.to_owned(),
                })
                .await
            })
            .await?;
        Ok(response.deleted)
    }

    /// Moves a session to a fresh key in one transaction. `data` `None` keeps
    /// the stored data (the session must then be live).
    pub async fn cycle_key(
        &self,
        session_key: &str,
        data: Option<&str>,
        expire_date: Option<SystemTime>,
    ) -> Result<Created, Error> {
        let expire_date = expire_date.map(to_timestamp).transpose()?;
        let response = self
            .call(false, |mut raw| async move {
                raw.cycle_key(proto::CycleKeyRequest {
                    session_key: session_key.to_owned(),
                    data: data.map(str::to_owned),
                    expire_date,
                })
                .await
            })
            .await?;
        Ok(Created {
            session_key: response.session_key,
            expire_date: from_timestamp(response.expire_date)?,
        })
    }

    /// Removes every expired session; returns how many.
    pub async fn clear_expired(&self) -> Result<u64, Error> {
        let response = self
            .call(true, |mut raw| async move {
                raw.clear_expired(proto::ClearExpiredRequest {}).await
            })
            .await?;
        Ok(response.removed)
    }
}

/// Tries after a refused connection: enough to get past a dead server or
/// two among several, bounded so a client with no live server fails fast.
const MAX_REFUSED_RETRIES: usize = 4;

/// Whether the call failed because its connection was refused, so that no
/// server saw it and it is safe to send again, write or not.
fn connection_refused(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = err.source();
    }
    false
}

pub(crate) fn to_timestamp(time: SystemTime) -> Result<prost_types::Timestamp, Error> {
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

pub(crate) fn from_timestamp(ts: Option<prost_types::Timestamp>) -> Result<SystemTime, Error> {
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
    fn debug_output_hides_the_token() {
        let builder = Client::builder().bearer_token("0123456789abcdef0123");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains("<set>"), "{shown}");
    }

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
