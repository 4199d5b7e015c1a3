//! The signals the binary answers: SIGINT and SIGTERM end a future, which
//! the server takes as its shutdown signal; SIGHUP rereads the bearer
//! tokens.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::auth::{Reloaded, TokenStore};
use crate::error::ErrorChain;

/// SIGINT and SIGTERM, caught from the moment this is made: a signal that
/// arrives while the server is still starting is not lost (nor does it kill
/// the process without a clean stop).
#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Starts catching the signals.
    pub fn catch() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Completes on the first SIGINT or SIGTERM.
    pub async fn received(mut self) {
        let name = tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down");
    }
}

/// SIGHUP, caught from the moment this is made.
#[derive(Debug)]
pub struct Hangups(Signal);

impl Hangups {
    /// Starts catching SIGHUP.
    pub fn catch() -> std::io::Result<Self> {
        Ok(Self(signal(SignalKind::hangup())?))
    }

    /// Rereads `tokens` on each SIGHUP, for as long as it runs; a file that
    /// has become unreadable or malformed keeps the tokens in force, and
    /// says why. A file without tokens revokes them all, loudly: it may be
    /// an emergency revocation, or a mistake that locks every app out.
    pub async fn reload(mut self, tokens: TokenStore) {
        while self.0.recv().await.is_some() {
            match tokens.reload() {
                Ok(Reloaded::Tokens(count)) => {
                    tracing::info!(tokens = count, "reloaded the bearer tokens");
                }
                Ok(Reloaded::EmptyFile {
                    file,
                    single_token: false,
                }) => tracing::error!(
                    file = %file.display(),
                    "the reloaded tokens file holds no token: every call is refused \
                     until tokens are added to it and the server gets SIGHUP"
                ),
                Ok(Reloaded::EmptyFile {
                    file,
                    single_token: true,
                }) => tracing::error!(
                    file = %file.display(),
                    "the reloaded tokens file holds no token: every call without the token \
                     of --token (SESSIOND_TOKEN) is refused"
                ),
                Err(err) => tracing::error!(
                    error = %ErrorChain(&err),
                    "cannot reload the bearer tokens; keeping those in force"
                ),
            }
        }
    }
}
