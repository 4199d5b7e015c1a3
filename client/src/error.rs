//! The crate's errors: [`Error`] for a failed call to sessiond, and
//! [`SessionError`] for a failed operation on a [`Session`](crate::Session),
//! which wraps the former.

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An endpoint address, the token or the TLS settings are malformed, or
    /// the connection failed.
    #[error("cannot connect to sessiond")]
    Connect(#[source] tonic::transport::Error),
    /// No server address was given to the builder.
    #[error("no sessiond endpoint given; add one with ClientBuilder::endpoint")]
    NoEndpoint,
    /// The bearer token contains characters not allowed in a header.
    #[error("the bearer token is not a valid header value")]
    InvalidToken,
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

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// `remove`, `pop` or `delete_test_cookie` of a key that is not in the
    /// session (Django's `KeyError`).
    #[error("the session has no key {0:?}")]
    KeyNotFound(String),
    /// A value could not be turned into JSON; nothing was stored.
    #[error("the value for session key {key:?} cannot be stored as JSON")]
    Serialize {
        /// The session dictionary key.
        key: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value does not have the type asked for.
    #[error("the value under session key {key:?} does not have the requested type")]
    Deserialize {
        /// The session dictionary key.
        key: String,
        /// What serde said.
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
    /// The session store failed or could not be reached.
    #[error("the session store failed")]
    Backend(#[source] Error),
}

impl From<Error> for SessionError {
    fn from(err: Error) -> Self {
        Self::Backend(err)
    }
}
