//! The crate's errors: [`Error`] for a failed call to sessiond, and
//! [`SessionError`] for a failed operation on a [`Session`](crate::Session),
//! which wraps the former.
//!
//! Each error either shows its cause in its own message or returns it from
//! [`source()`](std::error::Error::source), never both (the Rust API
//! guidelines' rule), so that a chain printer (anyhow's `{:#}`, tracing's
//! error fields, a `source()` loop) shows every cause exactly once:
//!
//! - A failed connection or call shows its cause in its message ("cannot
//!   connect to sessiond at http://…: tcp connect error: Connection refused",
//!   "sessiond Load failed (UNAVAILABLE: transport error: tcp connect error:
//!   Connection refused (os error 111))"), because the cause is what the
//!   reader needs, and `{err}` alone, the form most logs and `to_string()`
//!   use, must carry it. The typed cause stays reachable:
//!   [`ConnectError::transport_error`], the `status` of [`Error::Status`].
//! - A value that serde cannot convert returns serde's error as its source
//!   and keeps it out of its message, because serde's messages quote the
//!   offending value (`invalid type: string "…"`), which is session data and
//!   must not reach logs that print only `{err}`.

use std::error::Error as StdError;
use std::fmt;

/// A failed call.
///
/// New variants may be added, so a `match` needs a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An endpoint address or the TLS settings are malformed, or the
    /// connection failed; the message names the endpoint and the cause.
    #[error(transparent)]
    Connect(ConnectError),
    /// No server address was given to the builder.
    #[error("no sessiond endpoint given; add one with ClientBuilder::endpoint")]
    NoEndpoint,
    /// The bearer token contains characters not allowed in a header.
    #[error("the bearer token is not a valid header value")]
    InvalidToken,
    /// The call failed with a gRPC status: the server's answer, or one the
    /// client made up when the call never got an answer (a refused
    /// connection, a timeout). The message names the RPC, as the Python
    /// client does, and carries the code, the status message and, for the
    /// latter, the transport error underneath: "sessiond Load failed
    /// (INVALID_ARGUMENT: session_key: must be 8 to 40 characters long, got 5
    /// characters)".
    #[error("{}", StatusMessage { rpc, status })]
    Status {
        /// The RPC of `sessiond.v1.SessionService` that failed, as the proto
        /// names it: `Load`, `Exists`, `Create`, `Save`, `Patch`, `Delete`,
        /// `CycleKey` or `ClearExpired`.
        rpc: &'static str,
        /// The status, with the transport error as its source when the
        /// client made it up.
        status: tonic::Status,
    },
    /// A time cannot be expressed as a protobuf timestamp, or the server sent
    /// a malformed one.
    #[error("time out of range: {0}")]
    TimeOutOfRange(&'static str),
}

impl Error {
    /// The gRPC status code, if the call got as far as a status.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sessiond_client::Error> {
    /// # let client = sessiond_client::Client::connect("http://127.0.0.1:50051").await?;
    /// let key = "k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o";
    /// match client.save(key, "{}", None, false).await {
    ///     Err(err) if err.code() == Some(tonic::Code::NotFound) => {
    ///         // Deleted meanwhile: the user logged out.
    ///     }
    ///     other => {
    ///         other?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Status { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// The RPC that failed (`Load`, `Save`, …), if the call got as far as a
    /// status.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sessiond_client::Error> {
    /// use sessiond_client::Client;
    ///
    /// // Nothing listens on port 1.
    /// let client = Client::connect_lazy("http://127.0.0.1:1")?;
    /// let err = client.load("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o").await.unwrap_err();
    /// assert_eq!(err.rpc(), Some("Load"));
    /// assert_eq!(err.code(), Some(tonic::Code::Unavailable));
    /// // "sessiond Load failed (UNAVAILABLE: transport error: tcp connect
    /// // error: Connection refused (os error 111))"
    /// assert!(err.to_string().starts_with("sessiond Load failed (UNAVAILABLE: "));
    /// # Ok(()) }
    /// ```
    pub fn rpc(&self) -> Option<&'static str> {
        match self {
            Self::Status { rpc, .. } => Some(rpc),
            _ => None,
        }
    }

    /// The error of a call to `rpc` that ended with `status`.
    pub(crate) fn status(rpc: &'static str, status: tonic::Status) -> Self {
        Self::Status { rpc, status }
    }
}

/// A connection to sessiond that could not be set up: which endpoint, and
/// why.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use sessiond_client::{Client, Error};
///
/// // Nothing listens on port 1.
/// let Err(Error::Connect(err)) = Client::connect("http://127.0.0.1:1").await else {
///     panic!("connected to port 1");
/// };
/// assert_eq!(err.endpoint(), "http://127.0.0.1:1");
/// // "cannot connect to sessiond at http://127.0.0.1:1: transport error:
/// // tcp connect error: Connection refused (os error 111)"
/// assert!(err.to_string().starts_with("cannot connect to sessiond at http://127.0.0.1:1: "));
/// # }
/// ```
#[derive(Debug)]
pub struct ConnectError {
    endpoint: String,
    transport: tonic::transport::Error,
}

impl ConnectError {
    pub(crate) fn new(endpoint: &str, transport: tonic::transport::Error) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            transport,
        }
    }

    /// The endpoint address as it was given.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use sessiond_client::{Client, Error};
    ///
    /// if let Err(Error::Connect(err)) = Client::connect("http://127.0.0.1:1").await {
    ///     assert_eq!(err.endpoint(), "http://127.0.0.1:1");
    /// }
    /// # }
    /// ```
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The error of tonic's transport, whose sources hold the root cause
    /// (an `std::io::Error` for a refused connection).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::error::Error as _;
    /// use sessiond_client::{Client, Error};
    ///
    /// if let Err(Error::Connect(err)) = Client::connect("http://127.0.0.1:1").await {
    ///     let mut cause = err.transport_error().source();
    ///     while let Some(inner) = cause {
    ///         if let Some(io) = inner.downcast_ref::<std::io::Error>() {
    ///             println!("{:?}", io.kind());
    ///         }
    ///         cause = inner.source();
    ///     }
    /// }
    /// # }
    /// ```
    pub fn transport_error(&self) -> &tonic::transport::Error {
        &self.transport
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot connect to sessiond at {}: {}",
            self.endpoint,
            Causes(&self.transport)
        )
    }
}

/// The cause is in the message (see the module documentation).
impl StdError for ConnectError {}

/// A status as the Python client words it, "sessiond Load failed
/// (UNAVAILABLE: message)", with, for one the client made up, the transport
/// error underneath in the parentheses (tonic's own `Display` shows its
/// source with `Debug`, and its codes as sentences).
struct StatusMessage<'a> {
    rpc: &'a str,
    status: &'a tonic::Status,
}

impl fmt::Display for StatusMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { rpc, status } = self;
        let code = code_name(status.code());
        let message = status.message();
        write!(f, "sessiond {rpc} failed ({code}")?;
        match status.source() {
            None if message.is_empty() => {}
            None => write!(f, ": {message}")?,
            Some(cause) => {
                // tonic makes the message of such a status from one of its
                // causes, which are shown anyway.
                let mut causes = std::iter::successors(Some(cause), |&cause| cause.source());
                if !message.is_empty() && !causes.any(|cause| cause.to_string() == message) {
                    write!(f, ": {message}")?;
                }
                write!(f, ": {}", Causes(cause))?;
            }
        }
        f.write_str(")")
    }
}

/// The name gRPC gives a status code (`UNAVAILABLE`), as servers log it and
/// grpcurl shows it (tonic's own `Display` is a description instead).
///
/// ```
/// assert_eq!(sessiond_client::code_name(tonic::Code::NotFound), "NOT_FOUND");
/// ```
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// An error and all its sources, `outer: inner: root`. A cause whose text
/// repeats the end of the one before (or the other way round), as hyper's
/// and tonic's errors sometimes do, is shown once.
struct Causes<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !shown.ends_with(&text) && !text.ends_with(&shown) {
                write!(f, ": {text}")?;
            }
            shown = text;
            source = cause.source();
        }
        Ok(())
    }
}

/// Why a session operation failed.
///
/// New variants may be added, so a `match` needs a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// `pop` or `delete_test_cookie` of a key that is not in the session
    /// (Django's `KeyError`; `remove` answers `None` instead).
    #[error("the session has no key {0:?}")]
    KeyNotFound(String),
    /// A value could not be turned into JSON; nothing was stored.
    #[error("the value for session key {key:?} cannot be stored as JSON")]
    Serialize {
        /// The session dictionary key.
        key: String,
        /// What serde said. Its message may quote the value, so it is the
        /// error's source rather than part of its message.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value does not have the type asked for.
    #[error("the value under session key {key:?} does not have the requested type")]
    Deserialize {
        /// The session dictionary key.
        key: String,
        /// What serde said. Its message may quote the stored value, so it
        /// is the error's source rather than part of its message.
        #[source]
        source: serde_json::Error,
    },
    /// `update` was given something that is not a JSON object.
    #[error("update needs a map or a struct, which becomes a JSON object")]
    NotAnObject,
    /// The session was deleted while this request was using it, e.g. the
    /// user logged out in a concurrent request (Django's
    /// `SessionInterrupted`; the session layer answers 400).
    #[error(
        "the request's session was deleted before the request completed; the user may have logged out in a concurrent request"
    )]
    Interrupted,
    /// The session store failed or could not be reached; the message
    /// carries the cause.
    #[error("the session store failed: {0}")]
    Backend(Error),
}

impl SessionError {
    /// The HTTP status of a response that fails with this error, as
    /// Django's `SessionMiddleware` answers: 400 Bad Request for
    /// [`Interrupted`](Self::Interrupted) (the user logged out meanwhile;
    /// reloading the page works), 500 Internal Server Error for anything
    /// else.
    ///
    /// ```
    /// use sessiond_client::SessionError;
    ///
    /// assert_eq!(SessionError::Interrupted.http_status(), 400);
    /// assert_eq!(SessionError::NotAnObject.http_status(), 500);
    /// ```
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Interrupted => 400,
            _ => 500,
        }
    }
}

impl From<Error> for SessionError {
    fn from(err: Error) -> Self {
        Self::Backend(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How anyhow's `{:#}` and tracing's error fields show an error.
    fn chain(err: &(dyn StdError + 'static)) -> String {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    #[test]
    fn an_answered_status_shows_its_rpc_code_and_message_once() {
        let err = SessionError::from(Error::status(
            "Load",
            tonic::Status::unavailable("the storage engine is unavailable"),
        ));
        assert_eq!(
            err.to_string(),
            "the session store failed: sessiond Load failed (UNAVAILABLE: the storage engine is unavailable)"
        );
        assert_eq!(chain(&err), err.to_string());
        assert_eq!(
            Error::status("Save", tonic::Status::not_found("")).to_string(),
            "sessiond Save failed (NOT_FOUND)"
        );
    }

    #[test]
    fn a_status_made_by_the_client_shows_the_transport_error_underneath() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let root = refused.to_string();
        let status = tonic::Status::from_error(Box::new(refused));
        let err = SessionError::from(Error::status("CycleKey", status));
        let text = err.to_string();
        assert!(
            text.starts_with("the session store failed: sessiond CycleKey failed ("),
            "{text}"
        );
        assert!(text.ends_with(&format!("{root})")), "{text}");
        assert_eq!(text.matches(&root).count(), 1, "{text}");
        assert_eq!(text.matches("CycleKey").count(), 1, "{text}");
        assert_eq!(chain(&err), text);
    }

    #[test]
    fn serde_messages_stay_out_of_the_message() {
        let source = serde_json::from_str::<i64>("\"secret\"").unwrap_err();
        let err = SessionError::Deserialize {
            key: "count".into(),
            source,
        };
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.source().is_some());
    }
}
