//! Who may reach the server: a non-loopback address needs tokens or client
//! certificates, unless the operator insists otherwise.

use std::net::SocketAddr;

use crate::auth::TokenStore;
use crate::tls::Tls;

/// A non-loopback address with neither tokens nor client certificates (TLS
/// alone encrypts but lets any client in), and no
/// `--insecure-allow-unauthenticated`.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to listen on {listen} without authentication: anyone who can reach it could \
         create and delete sessions, and read any whose key they learn. Give bearer tokens \
         (--tokens-file or SESSIOND_TOKEN) or client certificates (--tls-cert, --tls-key and \
         --tls-client-ca), listen on loopback (--listen 127.0.0.1:PORT), \
         or, on a network nobody else can reach, --insecure-allow-unauthenticated"
)]
pub struct Unauthenticated {
    pub listen: SocketAddr,
}

/// Refuses to serve a non-loopback address to anyone without a token or
/// TLS, unless `insecure_allow_unauthenticated`; warns of weaker set-ups.
pub(super) fn check(
    listen: SocketAddr,
    insecure_allow_unauthenticated: bool,
    tokens: &TokenStore,
    tls: Option<&Tls>,
) -> Result<(), Unauthenticated> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    let client_certificates = tls.is_some_and(|tls| tls.client_certificates);
    match (tokens.enabled() || client_certificates, tls) {
        (false, _) if !insecure_allow_unauthenticated => Err(Unauthenticated { listen }),
        (false, _) => {
            tracing::warn!(listen = %listen, "serving without authentication on a non-loopback address (--insecure-allow-unauthenticated)");
            Ok(())
        }
        (true, None) => {
            tracing::warn!(listen = %listen, "bearer tokens and session data cross the network in clear text; add --tls-cert and --tls-key unless the network is private");
            Ok(())
        }
        _ => Ok(()),
    }
}
