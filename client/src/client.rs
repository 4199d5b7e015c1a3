//! [`Client`]: one typed method per RPC of `sessiond.v1.SessionService`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::{ConnectError, Error};
use crate::proto;
use crate::proto::session_service_client::SessionServiceClient;

/// How long to wait for the TCP (and TLS) handshake with a server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An idle connection is pinged after this long, so that a server that
/// vanished without closing it (its host gone, a network cut) is noticed
/// between requests rather than by the next call's timeout. A third of
/// sessiond's own `--keepalive` default, and the Python and Node.js
/// clients' value.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// How long a keepalive ping may go unanswered before the connection is
/// given up.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

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
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sessiond_client::Error> {
    /// use sessiond_client::Client;
    ///
    /// let client = Client::builder()
    ///     .endpoint("http://sessiond-a:50051")
    ///     .endpoint("http://sessiond-b:50051")
    ///     .connect()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub fn endpoint(mut self, address: impl Into<String>) -> Self {
        self.endpoints.push(address.into());
        self
    }

    /// How long to wait for a connection (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sessiond_client::Client;
    ///
    /// let builder = Client::builder()
    ///     .endpoint("http://127.0.0.1:50051")
    ///     .connect_timeout(Duration::from_secs(1));
    /// # let _ = builder;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one call may take (default [`DEFAULT_REQUEST_TIMEOUT`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sessiond_client::Client;
    ///
    /// let builder = Client::builder()
    ///     .endpoint("http://127.0.0.1:50051")
    ///     .request_timeout(Duration::from_millis(500));
    /// # let _ = builder;
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sends `authorization: Bearer TOKEN` with every call (sessiond's
    /// `--token-file`). The token never shows in `Debug` output.
    ///
    /// ```
    /// use sessiond_client::Client;
    ///
    /// let token = std::env::var("SESSIOND_TOKEN").unwrap_or_default();
    /// let builder = Client::builder()
    ///     .endpoint("http://127.0.0.1:50051")
    ///     .bearer_token(token);
    /// # let _ = builder;
    /// ```
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Connects with TLS (and a client certificate, if the config has an
    /// identity).
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use sessiond_client::Client;
    /// use tonic::transport::{Certificate, ClientTlsConfig};
    ///
    /// let ca = Certificate::from_pem(std::fs::read("/etc/sessiond/ca.pem")?);
    /// let builder = Client::builder()
    ///     .endpoint("https://sessiond.internal:50051")
    ///     .tls(ClientTlsConfig::new().ca_certificate(ca));
    /// # let _ = builder;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: tonic::transport::ClientTlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    fn endpoint_settings(&self, address: &str) -> Result<Endpoint, Error> {
        let endpoint = Endpoint::from_shared(address.to_owned())
            .map_err(|err| connect_error(address, err))?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        #[cfg(feature = "tls")]
        let endpoint = match &self.tls {
            Some(tls) => endpoint
                .tls_config(tls.clone())
                .map_err(|err| connect_error(address, err))?,
            None => endpoint,
        };
        Ok(endpoint)
    }

    /// Builds the client. With one endpoint it connects now, so a wrong
    /// address fails here; with several, connections are made as needed and
    /// calls go to the servers that answer.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sessiond_client::Error> {
    /// use sessiond_client::Client;
    ///
    /// let client = Client::builder()
    ///     .endpoint("http://127.0.0.1:50051")
    ///     .bearer_token("s3cr3t-t0ken")
    ///     .connect()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub async fn connect(self) -> Result<Client, Error> {
        let token = self.token_header()?;
        let channel = match self.endpoints.as_slice() {
            [] => return Err(Error::NoEndpoint),
            [one] => {
                let endpoint = self.endpoint_settings(one)?;
                endpoint
                    .connect()
                    .await
                    .map_err(|err| connect_error(one, err))?
            }
            _ => return self.connect_lazy(),
        };
        Ok(Client::new(channel, token))
    }

    /// Builds the client without connecting: the first call connects, and
    /// a call while no server answers fails with `UNAVAILABLE`, the next
    /// one trying again. So an app can start while sessiond is still
    /// starting (one `docker compose up`, a Kubernetes sidecar). Only a
    /// malformed address or TLS setting fails here.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as tonic's channel starts a task there:
    /// call it from `async` code, or inside `Runtime::enter`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sessiond_client::Error> {
    /// use sessiond_client::Client;
    ///
    /// // Nothing listens on port 1: the client is made all the same.
    /// let client = Client::builder().endpoint("http://127.0.0.1:1").connect_lazy()?;
    /// let err = client.exists("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o").await.unwrap_err();
    /// // "sessiond Exists failed (UNAVAILABLE: transport error: tcp connect
    /// // error: Connection refused (os error 111))"
    /// assert!(err.to_string().starts_with("sessiond Exists failed (UNAVAILABLE: "));
    /// # Ok(()) }
    /// ```
    pub fn connect_lazy(self) -> Result<Client, Error> {
        let token = self.token_header()?;
        let channel = match self.endpoints.as_slice() {
            [] => return Err(Error::NoEndpoint),
            [one] => self.endpoint_settings(one)?.connect_lazy(),
            many => {
                let endpoints = many
                    .iter()
                    .map(|address| self.endpoint_settings(address))
                    .collect::<Result<Vec<_>, _>>()?;
                Channel::balance_list(endpoints.into_iter())
            }
        };
        Ok(Client::new(channel, token))
    }

    /// The `authorization` value, checked before any connection is made.
    fn token_header(&self) -> Result<BearerToken, Error> {
        let Some(token) = &self.token else {
            return Ok(BearerToken(None));
        };
        let mut value = format!("Bearer {token}")
            .parse::<MetadataValue<Ascii>>()
            .map_err(|_| Error::InvalidToken)?;
        // Kept out of HTTP/2's header compression table.
        value.set_sensitive(true);
        Ok(BearerToken(Some(value)))
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
    fn new(channel: Channel, token: BearerToken) -> Self {
        // The server enforces the size of sessions; the client reads back
        // whatever it was allowed to store.
        let inner = SessionServiceClient::new(InterceptedService::new(channel, token))
            .max_decoding_message_size(usize::MAX);
        Self { inner }
    }

    /// Settings for a client with several endpoints, TLS or a token.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sessiond_client::Error> {
    /// use std::time::Duration;
    /// use sessiond_client::Client;
    ///
    /// let client = Client::builder()
    ///     .endpoint("http://127.0.0.1:50051")
    ///     .request_timeout(Duration::from_secs(1))
    ///     .connect()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
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
    /// default timeouts; fails if it does not answer
    /// ([`connect_lazy`](Self::connect_lazy) does not wait for it).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sessiond_client::Error> {
    /// use sessiond_client::Client;
    ///
    /// let client = Client::connect("http://127.0.0.1:50051").await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, Error> {
        Self::builder().endpoint(endpoint).connect().await
    }

    /// A client of one server that connects on its first call, so that an
    /// app can start before sessiond does; calls made while the server is
    /// not up yet fail with `UNAVAILABLE`. See
    /// [`ClientBuilder::connect_lazy`], which also panics outside a Tokio
    /// runtime.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use sessiond_client::{Backend, Client, SessionCookies, Settings};
    ///
    /// // At start-up, whether or not sessiond is up yet.
    /// let client = Client::connect_lazy("http://sessiond:50051")?;
    /// let cookies = SessionCookies::new(Backend::Server(client), Settings::default());
    /// # let _ = cookies;
    /// # Ok(()) }
    /// ```
    pub fn connect_lazy(endpoint: impl Into<String>) -> Result<Self, Error> {
        Self::builder().endpoint(endpoint).connect_lazy()
    }

    /// The generated gRPC client underneath, for raw requests.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
    /// use sessiond_client::proto::LoadRequest;
    ///
    /// let request = LoadRequest { session_key: "k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o".into() };
    /// let response = client.raw().load(request).await?.into_inner();
    /// println!("found: {}", response.found);
    /// # Ok(()) }
    /// ```
    pub fn raw(&self) -> SessionServiceClient<Transport> {
        self.inner.clone()
    }

    /// Runs a call of `rpc` (its name in the proto, which failures carry).
    /// A call whose connection was refused never reached a server and goes
    /// to another one (a few times at most); an idempotent call also gets
    /// one more try after any `UNAVAILABLE`.
    async fn call<T, F, Fut>(
        &self,
        rpc: &'static str,
        idempotent: bool,
        call: F,
    ) -> Result<T, Error>
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
                Err(status) => return Err(Error::status(rpc, status)),
            }
        }
    }

    /// The live session under `session_key`; `None` if it is missing or
    /// expired.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
    /// if let Some(loaded) = client.load("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o").await? {
    ///     let data: serde_json::Value = serde_json::from_str(&loaded.data)?;
    ///     println!("{data} until {:?}", loaded.expire_date);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn load(&self, session_key: &str) -> Result<Option<Loaded>, Error> {
        let response = self
            .call("Load", true, |mut raw| async move {
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
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
    /// let exists = client.exists("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o").await?;
    /// # let _ = exists;
    /// # Ok(()) }
    /// ```
    pub async fn exists(&self, session_key: &str) -> Result<bool, Error> {
        let response = self
            .call("Exists", true, |mut raw| async move {
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
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
    /// use std::time::{Duration, SystemTime};
    ///
    /// let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    /// let created = client.create(r#"{"cart":["book"]}"#, Some(in_an_hour)).await?;
    /// println!("new session {}", created.session_key);
    /// # Ok(()) }
    /// ```
    pub async fn create(
        &self,
        data: &str,
        expire_date: Option<SystemTime>,
    ) -> Result<Created, Error> {
        let expire_date = expire_date.map(to_timestamp).transpose()?;
        let response = self
            .call("Create", false, |mut raw| async move {
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
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
    /// let key = "k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o";
    /// match client.save(key, r#"{"cart":[]}"#, None, false).await {
    ///     Ok(expires) => println!("saved until {expires:?}"),
    ///     Err(err) if err.code() == Some(tonic::Code::NotFound) => println!("logged out meanwhile"),
    ///     Err(err) => return Err(err.into()),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn save(
        &self,
        session_key: &str,
        data: &str,
        expire_date: Option<SystemTime>,
        must_create: bool,
    ) -> Result<SystemTime, Error> {
        let expire_date = expire_date.map(to_timestamp).transpose()?;
        let response = self
            .call("Save", false, |mut raw| async move {
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
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
    /// // Set "theme" and remove "cart", leaving every other key as stored.
    /// let key = "k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o";
    /// client.patch(key, r#"{"theme":"dark"}"#, &["cart".to_owned()], false, None).await?;
    /// # Ok(()) }
    /// ```
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
            .call("Patch", false, |mut raw| async move {
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
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
    /// // Log this session out everywhere.
    /// client.delete("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, session_key: &str) -> Result<bool, Error> {
        let response = self
            .call("Delete", true, |mut raw| async move {
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
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
    /// let moved = client.cycle_key("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o", None, None).await?;
    /// println!("now {}", moved.session_key);
    /// # Ok(()) }
    /// ```
    pub async fn cycle_key(
        &self,
        session_key: &str,
        data: Option<&str>,
        expire_date: Option<SystemTime>,
    ) -> Result<Created, Error> {
        let expire_date = expire_date.map(to_timestamp).transpose()?;
        let response = self
            .call("CycleKey", false, |mut raw| async move {
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
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
    /// let removed = client.clear_expired().await?;
    /// println!("{removed} expired sessions removed");
    /// # Ok(()) }
    /// ```
    pub async fn clear_expired(&self) -> Result<u64, Error> {
        let response = self
            .call("ClearExpired", true, |mut raw| async move {
                raw.clear_expired(proto::ClearExpiredRequest {}).await
            })
            .await?;
        Ok(response.removed)
    }
}

fn connect_error(address: &str, err: tonic::transport::Error) -> Error {
    Error::Connect(ConnectError::new(address, err))
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
