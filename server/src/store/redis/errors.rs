//! What Redis's errors mean to callers: the one place they are sorted into
//! [`StoreError`]s, and the advice for a Redis that cannot be reached at
//! start-up.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{ErrorKind, RedisError, ServerErrorKind};
use rustls::{AlertDescription, CertificateError};

use super::MAX_WRITE_ATTEMPTS;
use super::url::{RedisUrl, Topology};
use crate::store::kit::{OpenFailure, StoreError};

/// Why a Redis operation failed, when Redis itself did not say.
#[derive(Debug, thiserror::Error)]
pub(super) enum Fault {
    #[error("the redis store is closed")]
    Closed,
    #[error("redis did not answer within {0:?} (--store-timeout)")]
    TimedOut(Duration),
    #[error(
        "the session changed under each of {MAX_WRITE_ATTEMPTS} attempts to write it; too many concurrent writes to one session"
    )]
    Contended,
}

/// Sorts a driver error into what the caller can do about it.
pub(super) fn classify(err: RedisError) -> StoreError {
    if err.code() == Some("OOM") {
        // Redis is at its maxmemory and evicts nothing (noeviction).
        return StoreError::Full(err.into());
    }
    let retryable = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.code() == Some("BUSY")
        || matches!(
            err.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::ClusterDown
                )
        );
    if retryable {
        StoreError::Unavailable(err.into())
    } else {
        StoreError::Internal(err.into())
    }
}

/// Turns a failure to connect at start-up into words the operator can act
/// on.
pub(super) fn explain_open_error(err: RedisError, url: &RedisUrl) -> OpenFailure {
    let address = url.address();
    let failed_check = match tls_error(&err) {
        Some(tls) => Some(FailedCheck::of(tls)),
        None if url.tls.is_some() => FailedCheck::from_text(&err.to_string()),
        None => None,
    };
    let reason = if let Some(check) = failed_check {
        explain_tls_error(check, url)
    } else if let (ErrorKind::MasterNameNotFoundBySentinel, Topology::Sentinel { master, .. }) =
        (err.kind(), &url.topology)
    {
        format!(
            "the sentinels at {address} report no master named '{master}' that is up; check the name against their `sentinel monitor` line and that the master runs"
        )
    } else if err.is_connection_refusal() {
        format!(
            "nothing accepts connections at {address}; start Redis or correct the host and port"
        )
    } else if err.is_timeout() {
        format!(
            "Redis at {address} did not answer in time (--store-timeout); check that it runs and is reachable"
        )
    } else if err.kind() == ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH"))
    {
        format!(
            "Redis at {address} refused the credentials; check the user and password in the URL"
        )
    } else if err.to_string().contains("DB index is out of range") {
        // Redis answers SELECT of a missing database with a generic error
        // whose text is all that tells it apart.
        format!(
            "Redis at {address} has no database {}; choose one below its `databases` setting",
            url.db
        )
    } else if err.is_io_error() {
        format!("cannot reach Redis at {address}; check the host name and the network")
    } else {
        return OpenFailure::driver(err);
    };
    OpenFailure::unusable_because(reason, err)
}

/// The TLS error behind a failure to connect, if that is what it was.
fn tls_error(err: &RedisError) -> Option<&rustls::Error> {
    let mut cause: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(error) = cause {
        // The driver keeps its cause as an `Arc<dyn Error>`, and an
        // `io::Error`'s `source` skips the error it wraps: look inside both.
        let error = match error.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
            Some(shared) => &**shared,
            None => error,
        };
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        cause = error.source();
    }
    None
}

/// A TLS check that failed.
enum FailedCheck {
    /// The certificate is not signed by a trusted CA.
    Issuer,
    /// It does not name the host (the name connected to, when known).
    Name(Option<String>),
    Expired,
    NotYetValid,
    /// Another certificate problem.
    Certificate,
    /// The server refused the handshake: it wants a client certificate.
    RefusedByServer,
    /// Anything else, such as a server that does not speak TLS.
    Handshake,
}

impl FailedCheck {
    fn of(err: &rustls::Error) -> Self {
        match err {
            // A bad signature: an issuer of the right name, but not the key
            // that signed this certificate.
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => Self::Issuer,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected,
                ..
            }) => Self::Name(Some(expected.to_str().into_owned())),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
                Self::Name(None)
            }
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => Self::Expired,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => Self::NotYetValid,
            rustls::Error::InvalidCertificate(_) => Self::Certificate,
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::HandshakeFailure,
            ) => Self::RefusedByServer,
            _ => Self::Handshake,
        }
    }

    /// The check from the text of an error that kept only the text of the
    /// TLS error: the cluster client's "failed to create initial
    /// connections" does.
    fn from_text(text: &str) -> Option<Self> {
        let check = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
            Self::Issuer
        } else if text.contains("not valid for name") || text.contains("NotValidForName") {
            Self::Name(None)
        } else if text.contains("invalid peer certificate") {
            Self::Certificate
        } else if text.contains("CertificateRequired") {
            Self::RefusedByServer
        } else {
            return None;
        };
        Some(check)
    }
}

/// Which TLS check failed, in words, and what to do about it.
fn explain_tls_error(check: FailedCheck, url: &RedisUrl) -> String {
    let address = url.address();
    let trusted = match url.tls.as_ref().and_then(|tls| tls.ca.as_deref()) {
        Some(ca) => format!("a CA that ca= trusts ({})", ca.display()),
        None => "a CA in the system trust store (give the CA's file with ?ca=)".to_owned(),
    };
    match check {
        FailedCheck::Issuer => format!(
            "TLS to Redis at {address} failed the certificate check: its certificate is not signed by {trusted}"
        ),
        FailedCheck::Name(name) => {
            let name = name.unwrap_or_else(|| url.first_host().to_owned());
            format!(
                "TLS to Redis at {address} failed the host name check: its certificate is not valid for the host name {name}; connect with a name the certificate lists"
            )
        }
        FailedCheck::Expired => {
            format!("TLS to Redis at {address} failed the date check: its certificate has expired")
        }
        FailedCheck::NotYetValid => format!(
            "TLS to Redis at {address} failed the date check: its certificate is not valid yet (check the clocks)"
        ),
        FailedCheck::Certificate => format!(
            "TLS to Redis at {address} failed the certificate check; check the certificate it presents"
        ),
        FailedCheck::RefusedByServer => format!(
            "Redis at {address} refused the TLS handshake; if it checks clients (tls-auth-clients), give a client certificate it trusts with ?cert=…&key=…"
        ),
        FailedCheck::Handshake => format!(
            "TLS to Redis at {address} failed; check that it speaks TLS on this port (rediss:// needs the tls-port, redis:// the plain one)"
        ),
    }
}
