//! [`StoreUrl`]: which engine holds the sessions, parsed from `--store` or
//! `--cache`. The list of engines below is the only place that names them
//! all.

use std::fmt;
use std::str::FromStr;

use crate::store::file::FileUrl;
use crate::store::kit::{DriverError, Engine};
use crate::store::memory::MemoryUrl;
use crate::store::postgres::PostgresUrl;
use crate::store::redis::RedisUrl;
use crate::store::sqlite::SqliteUrl;

/// Declares the engines: for each, its `StoreUrl` variant, its URL type and
/// its schemes. The URL type parses the whole URL (`parse`), says how it is
/// written (`FORM`, for error messages) and is the [`Engine`].
macro_rules! engines {
    ($($(#[$doc:meta])* $variant:ident($url:ty) = $($scheme:literal)|+,)+) => {
        /// Where sessions are stored: one engine and its settings.
        #[derive(Clone, PartialEq, Eq)]
        pub enum StoreUrl {
            $($(#[$doc])* $variant($url),)+
        }

        impl StoreUrl {
            /// The engine this URL names.
            pub fn engine(&self) -> &dyn Engine {
                match self {
                    $(Self::$variant(url) => url,)+
                }
            }

            /// Parses `text` with the engine of `scheme`; `None` for a
            /// scheme no engine has.
            fn parse_with(scheme: &str, text: &str) -> Option<Result<Self, DriverError>> {
                match scheme {
                    $($($scheme)|+ => Some(
                        <$url>::parse(text).map(Self::$variant).map_err(DriverError::from),
                    ),)+
                    _ => None,
                }
            }
        }

        /// How each engine's URL is written, for error messages.
        const FORMS: &[&str] = &[$(<$url>::FORM),+];
    };
}

engines! {
    /// `sqlite://PATH[?synchronous=normal|full]`: an SQLite database file,
    /// the embedded default.
    Sqlite(SqliteUrl) = "sqlite",
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME]`: Django's
    /// table on PostgreSQL, shared by replicas.
    Postgres(PostgresUrl) = "postgres" | "postgresql",
    /// `redis://[USER:PASSWORD@]HOST[:PORT][/DB][?prefix=PREFIX]`: one hash
    /// per session on a Redis server; `rediss://` over TLS, and
    /// `redis[s]+sentinel://` and `redis[s]+cluster://` for Redis deployed
    /// for high availability.
    Redis(RedisUrl) = "redis" | "rediss" | "redis+sentinel" | "rediss+sentinel"
        | "redis+cluster" | "rediss+cluster",
    /// `file://DIR[?prefix=NAME]`: one file per session in a directory, as
    /// Django's file engine keeps them.
    File(FileUrl) = "file",
    /// `memory://[?max_sessions=N]`: a map inside the sessiond process.
    Memory(MemoryUrl) = "memory",
}

/// A `--store` or `--cache` value that is not a store URL sessiond
/// understands.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    /// Not repeated in the message: a URL without its scheme may still
    /// hold a password.
    #[error("the store URL has no scheme, such as sqlite://; {expected}", expected = Expected)]
    NoScheme,
    #[error("unsupported store '{0}://'; {expected}", expected = Expected)]
    UnsupportedScheme(String),
    /// The engine refused the URL; its message names the engine.
    #[error(transparent)]
    Engine(DriverError),
}

/// "expected A, B or C", over every engine's URL form.
struct Expected;

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected ")?;
        for (at, form) in FORMS.iter().enumerate() {
            match at {
                0 => {}
                _ if at + 1 == FORMS.len() => f.write_str(" or ")?,
                _ => f.write_str(", ")?,
            }
            f.write_str(form)?;
        }
        Ok(())
    }
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((scheme, _)) = text.split_once("://") else {
            return Err(StoreUrlError::NoScheme);
        };
        match Self::parse_with(scheme, text) {
            Some(parsed) => parsed.map_err(StoreUrlError::Engine),
            None => Err(StoreUrlError::UnsupportedScheme(scheme.to_owned())),
        }
    }
}

impl StoreUrl {
    /// Whether sessions live in the engine's own storage, which a cache may
    /// front; Redis and memory are caches themselves.
    pub fn is_database(&self) -> bool {
        self.engine().is_database()
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.engine(), f)
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.engine(), f)
    }
}
