//! What every error of sessiond tells its caller: an [`ErrorKind`], which
//! says what can be done about it, and the one mapping from errors to gRPC
//! statuses ([`to_status`]). Errors keep their causes as sources;
//! [`ErrorChain`] prints them all, for logs.
//!
//! Two refusals happen before a call reaches the service and are not errors
//! of it: a missing or unknown bearer token (`auth`, UNAUTHENTICATED) and a
//! call past the in-flight limit (`calls`, RESOURCE_EXHAUSTED). Each answers
//! with its own status, where it is decided.

use std::error::Error as StdError;
use std::fmt;

use tonic::Status;

use crate::method::Method;

/// What a caller can do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong and will stay wrong: a malformed key, data that
    /// is not a JSON object, a value over a limit.
    InvalidInput,
    /// An insert met a session already stored under its key.
    Conflict,
    /// No session to update: it was deleted or has expired.
    NotFound,
    /// The engine is down, locked or slow; the same call may succeed later.
    Unavailable,
    /// The engine holds as much as it may; nothing new fits until sessions
    /// expire or are deleted.
    Full,
    /// The engine holds something sessiond cannot read.
    Corrupt,
    /// Anything else: a bug, a schema sessiond cannot use, an engine fault.
    Internal,
}

/// An error that knows its [`ErrorKind`].
pub trait Classified: StdError {
    fn kind(&self) -> ErrorKind;

    /// Whether a cause may quote what the client sent (a JSON parser's
    /// message can quote a string of the data), so that only the outer
    /// message may be logged.
    fn causes_quote_input(&self) -> bool {
        false
    }
}

impl ErrorKind {
    /// The label engine failures are counted under in metrics; `None` for
    /// answers that are part of the contract (a taken key, a missing
    /// session, bad input).
    pub fn engine_failure_label(self) -> Option<&'static str> {
        match self {
            Self::Unavailable => Some("unavailable"),
            Self::Full => Some("full"),
            Self::Corrupt | Self::Internal => Some("internal"),
            Self::InvalidInput | Self::Conflict | Self::NotFound => None,
        }
    }
}

/// The one mapping from errors to gRPC statuses. Clients get a short, safe
/// message; causes go to the log, with the method (the per-call span that
/// would carry it is only there at debug level).
pub fn to_status(err: &dyn Classified, method: Method) -> Status {
    match err.kind() {
        ErrorKind::InvalidInput => {
            if err.causes_quote_input() {
                tracing::debug!(%method, error = %err, "invalid request");
            } else {
                tracing::debug!(%method, error = %ErrorChain(err), "invalid request");
            }
            Status::invalid_argument(err.to_string())
        }
        ErrorKind::Conflict => {
            Status::already_exists("session_key: a session with this key already exists")
        }
        ErrorKind::NotFound => {
            Status::not_found("session_key: the session does not exist (deleted or expired)")
        }
        ErrorKind::Unavailable => {
            tracing::warn!(%method, error = %ErrorChain(err), "storage engine unavailable");
            Status::unavailable("the storage engine is unavailable; retry later")
        }
        ErrorKind::Full => {
            tracing::warn!(%method, error = %ErrorChain(err), "storage engine full; refusing a new session");
            Status::resource_exhausted(
                "the session store is full; retry once sessions have expired or been deleted",
            )
        }
        ErrorKind::Corrupt | ErrorKind::Internal => {
            tracing::error!(%method, error = %ErrorChain(err), "request failed");
            Status::internal("internal error; the server log has the details")
        }
    }
}

/// Shows an error with all its causes, `outer: inner: root`.
///
/// Some drivers' errors repeat their cause's message in their own (a Redis
/// or connection-pool error that says "…: Connection refused") and still
/// return that cause as their source, or the other way round (SQLite's
/// "file is not a database" caused by "Error code 26: file is not a
/// database"); such a cause is not shown again.
#[derive(Debug)]
pub struct ErrorChain<'a>(pub &'a dyn StdError);

impl fmt::Display for ErrorChain<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer {
        kind: ErrorKind,
        #[source]
        source: std::io::Error,
    }

    impl Classified for Outer {
        fn kind(&self) -> ErrorKind {
            self.kind
        }
    }

    #[test]
    fn each_kind_has_its_status_and_hides_the_causes() {
        for (kind, code) in [
            (ErrorKind::InvalidInput, tonic::Code::InvalidArgument),
            (ErrorKind::Conflict, tonic::Code::AlreadyExists),
            (ErrorKind::NotFound, tonic::Code::NotFound),
            (ErrorKind::Unavailable, tonic::Code::Unavailable),
            (ErrorKind::Full, tonic::Code::ResourceExhausted),
            (ErrorKind::Corrupt, tonic::Code::Internal),
            (ErrorKind::Internal, tonic::Code::Internal),
        ] {
            let err = Outer {
                kind,
                source: std::io::Error::other("the cause"),
            };
            let status = to_status(&err, Method::Load);
            assert_eq!(status.code(), code, "{kind:?}");
            assert!(!status.message().contains("the cause"), "{status:?}");
        }
    }

    #[test]
    fn chains_show_every_cause_once() {
        let err = Outer {
            kind: ErrorKind::Internal,
            source: std::io::Error::other("the cause"),
        };
        assert_eq!(ErrorChain(&err).to_string(), "outer: the cause");

        /// Like a driver error that repeats its cause in its own message.
        #[derive(Debug, thiserror::Error)]
        #[error("cannot connect: {0}")]
        struct Repeating(#[source] std::io::Error);
        let err = Repeating(std::io::Error::other("refused"));
        assert_eq!(ErrorChain(&err).to_string(), "cannot connect: refused");

        /// Like a driver error whose cause repeats it with a prefix.
        #[derive(Debug, thiserror::Error)]
        #[error("refused")]
        struct Repeated(#[source] std::io::Error);
        let err = Repeated(std::io::Error::other("code 7: refused"));
        assert_eq!(ErrorChain(&err).to_string(), "refused");
    }
}
