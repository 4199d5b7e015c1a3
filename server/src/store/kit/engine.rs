//! [`Engine`]: what each engine's URL type provides, so that the store
//! layer can parse, show and open any engine the same way.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::store::SessionStore;
use crate::store::kit::error::OpenFailure;
use crate::store::kit::migrations::Migrations;

/// A storage engine, as its parsed store URL: `Display` shows the URL as it
/// would be written, never with a password.
#[async_trait]
pub trait Engine: fmt::Display + Send + Sync {
    /// Whether sessions live in the engine's own storage, which a cache may
    /// front (SQLite, PostgreSQL, files), rather than in a cache itself
    /// (Redis, memory).
    fn is_database(&self) -> bool;

    /// Whether the storage already exists, for commands that have no reason
    /// to create it (`clearsessions`); engines that create nothing on open
    /// keep the default.
    fn storage_exists(&self) -> bool {
        true
    }

    /// The migrations of an engine with a schema (the SQL engines), to list
    /// when its storage does not exist yet.
    fn migrations(&self) -> Option<&'static Migrations> {
        None
    }

    /// Opens the engine (connecting, creating a file) without migrating.
    async fn open(&self, options: &StoreOptions) -> Result<Arc<dyn SessionStore>, OpenFailure>;
}

/// Engine settings that do not belong in the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long one operation may wait for a lock held elsewhere (SQLite) or
    /// for the engine to answer (PostgreSQL, Redis: connecting included)
    /// before it fails with `Unavailable`.
    pub timeout: Duration,
    /// The lifetime of a session saved without an expiry of its own
    /// (Django's `SESSION_COOKIE_AGE`); the file engine also reads a
    /// session file's expiry as its modification time plus this age, as
    /// Django's file engine does.
    pub session_age: Duration,
}

/// How long one engine operation may wait for a lock held by another process
/// (SQLite's busy timeout) or for PostgreSQL or Redis to answer before it
/// fails with UNAVAILABLE: long enough for a busy disk or a Redis failover,
/// short enough that callers get an answer while the user is still waiting.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Django's `SESSION_COOKIE_AGE`: two weeks.
pub const DEFAULT_SESSION_AGE: Duration = Duration::from_secs(14 * 24 * 3600);

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_STORE_TIMEOUT,
            session_age: DEFAULT_SESSION_AGE,
        }
    }
}
