//! What PostgreSQL's errors mean to callers: the one place they are sorted
//! into [`StoreError`]s, by SQLSTATE, and where a failed first connection
//! is turned into advice that names the TLS check and the option behind it.

use std::error::Error;

use rustls::CertificateError;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use super::tls::{SslMode, TlsSettings};

use crate::store::kit::{SchemaError, StoreError};

/// Sorts a driver error into what the caller can do about it.
pub(super) fn classify(err: tokio_postgres::Error) -> StoreError {
    let Some(code) = err.code() else {
        // No SQLSTATE: the connection broke or could not be made.
        return StoreError::Unavailable(err.into());
    };
    if *code == SqlState::UNIQUE_VIOLATION {
        StoreError::AlreadyExists
    } else if *code == SqlState::UNDEFINED_TABLE {
        StoreError::Schema(SchemaError::Missing)
    } else if code.code().starts_with("08") // connection exception
        || code.code().starts_with("53") // insufficient resources
        || code.code().starts_with("57") // operator intervention, query canceled
        || code.code().starts_with("40") // serialization failure, deadlock
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        StoreError::Unavailable(err.into())
    } else {
        StoreError::Internal(err.into())
    }
}

/// What to do about a first connection that failed for a reason of TLS:
/// which check failed and which option asked for it. `None` when TLS is not
/// what went wrong.
pub(super) fn connect_advice(
    err: &(dyn Error + 'static),
    settings: &TlsSettings,
    hosts: &[Host],
) -> Option<String> {
    let mode = &settings.mode;
    let roots = match &settings.root_cert {
        Some(root) => root.to_string(),
        None => "the CAs given".to_owned(),
    };
    if let Some(tls) = rustls_error(err) {
        let rustls::Error::InvalidCertificate(certificate) = tls else {
            return Some(format!(
                "the TLS handshake with PostgreSQL failed ({tls}; {mode}); if the server asks \
                 for a client certificate, check sslcert and sslkey"
            ));
        };
        return Some(match certificate {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "the PostgreSQL server's certificate is not signed by a CA of {roots} \
                 (checked under {mode}); give the CA bundle of the server's provider"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the PostgreSQL server's certificate does not name the host {} \
                     (checked under {mode}); connect by a name the certificate holds, \
                     or use sslmode=verify-ca to check only the CA",
                    host_names(hosts)
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
                "the PostgreSQL server's certificate has expired (checked under {mode}); \
                 renew it on the server"
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!(
                    "the PostgreSQL server's certificate is not valid yet (checked under \
                     {mode}); check the clocks of both machines"
                )
            }
            other => format!(
                "the PostgreSQL server's certificate was refused ({other:?}; checked under \
                 {mode} against {roots})"
            ),
        });
    }
    // tokio-postgres says this in words only; it has no error kind for it.
    if chain_mentions(err, "server does not support TLS") {
        return Some(format!(
            "the PostgreSQL server does not accept TLS, which {mode} demands; turn on \
             ssl on the server, or set sslmode=prefer to allow plaintext"
        ));
    }
    // pg_hba.conf refusals have one SQLSTATE; only the words tell why.
    let refusal = chain_errors(err)
        .filter_map(|err| err.downcast_ref::<tokio_postgres::Error>())
        .filter_map(tokio_postgres::Error::as_db_error)
        .find(|db| *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION)?;
    if refusal.message().contains("no encryption") && mode.value == SslMode::Disable {
        return Some(format!(
            "the PostgreSQL server refused a connection without TLS ({mode}); set \
             sslmode=require, or verify-full with sslrootcert"
        ));
    }
    if refusal.message().contains("client certificate") {
        return Some(
            "the PostgreSQL server requires a client certificate for this user; give sslcert \
             and sslkey (a certificate whose common name is the user name)"
                .to_owned(),
        );
    }
    None
}

/// `err` and its causes. An `io::Error` hides the error it wraps from
/// `source()` (it returns the wrapped error's own source), so it is looked
/// into: that is where tokio-rustls puts rustls's error.
fn chain_errors<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&err: &&'a (dyn Error + 'static)| {
        match err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => err.source(),
        }
    })
}

fn rustls_error<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    chain_errors(err).find_map(|err| err.downcast_ref::<rustls::Error>())
}

fn chain_mentions(err: &(dyn Error + 'static), words: &str) -> bool {
    chain_errors(err).any(|err| err.to_string().contains(words))
}

fn host_names(hosts: &[Host]) -> String {
    let names: Vec<String> = hosts
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    names.join(", ")
}
