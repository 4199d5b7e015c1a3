//! The errors of engines: what failed, with the driver's error kept as the
//! source, and an [`ErrorKind`] that tells the service what to answer.

use std::borrow::Cow;

use crate::error::{Classified, ErrorKind};
use crate::session::InvalidInput;

/// A boxed error from an engine's driver, kept as the source of a
/// [`StoreError`] or an [`OpenFailure`].
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An insert met an existing row with the same key.
    #[error("a session with this key already exists")]
    AlreadyExists,
    /// An update (or a cycle without data) found no live session.
    #[error("the session does not exist")]
    NotFound,
    /// The engine is down or locked; the call may succeed later.
    #[error("the storage engine is unavailable")]
    Unavailable(#[source] DriverError),
    /// The engine holds as much as it may (the memory engine's
    /// `max_sessions`, Redis's `maxmemory`); nothing new fits until sessions
    /// expire or are deleted.
    #[error("the storage engine is full")]
    Full(#[source] DriverError),
    /// A stored session that sessiond cannot read: an expiry that is not a
    /// date, a Redis hash without its fields. The messages of these causes
    /// never quote the stored data.
    #[error("the storage engine holds a malformed session")]
    Corrupt(#[source] DriverError),
    /// The engine's schema is missing or not one sessiond can use.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A patch refused the stored data it was given (the result is too
    /// large), or an expiry the engine cannot hold.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Anything else: a bug or an engine fault.
    #[error("the storage engine failed")]
    Internal(#[source] DriverError),
}

/// A schema that sessiond cannot serve from.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the django_session table does not exist; run `sessiond migrate` first")]
    Missing,
    /// A newer sessiond migrated the database, and not only by migrations
    /// that keep older binaries working (see the kit's `migrations`).
    #[error(
        "the database is at schema version {found}, newer than this sessiond knows ({known}), and migration {breaking} is not backward compatible; run the sessiond that migrated it (or a newer one), or restore a backup taken before that migration"
    )]
    Newer {
        found: i64,
        known: i64,
        /// The first newer migration that is not marked compatible.
        breaking: String,
    },
    #[error(
        "the existing django_session table is not in Django's shape (expected {expected}; found {found}); sessiond does not alter it: {remedy}"
    )]
    NotDjangos {
        expected: String,
        found: String,
        remedy: &'static str,
    },
}

impl Classified for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::AlreadyExists => ErrorKind::Conflict,
            Self::NotFound => ErrorKind::NotFound,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Full(_) => ErrorKind::Full,
            Self::Corrupt(_) => ErrorKind::Corrupt,
            Self::Invalid(_) => ErrorKind::InvalidInput,
            Self::Schema(_) | Self::Internal(_) => ErrorKind::Internal,
        }
    }

    fn causes_quote_input(&self) -> bool {
        match self {
            Self::Invalid(err) => err.causes_quote_input(),
            _ => false,
        }
    }
}

/// Why an engine cannot be opened: advice the operator can act on, with the
/// driver's error behind it, or only the driver's error when nothing more
/// useful can be said.
#[derive(Debug, thiserror::Error)]
pub enum OpenFailure {
    #[error("{advice}")]
    Unusable {
        advice: Cow<'static, str>,
        #[source]
        source: Option<DriverError>,
    },
    #[error(transparent)]
    Driver(DriverError),
}

impl OpenFailure {
    /// A problem the operator can fix, said in words.
    pub fn unusable(advice: impl Into<Cow<'static, str>>) -> Self {
        Self::Unusable {
            advice: advice.into(),
            source: None,
        }
    }

    /// A problem the operator can fix, with the error that showed it.
    pub fn unusable_because(
        advice: impl Into<Cow<'static, str>>,
        source: impl Into<DriverError>,
    ) -> Self {
        Self::Unusable {
            advice: advice.into(),
            source: Some(source.into()),
        }
    }

    /// An unexpected driver error.
    pub fn driver(source: impl Into<DriverError>) -> Self {
        Self::Driver(source.into())
    }
}

impl From<StoreError> for OpenFailure {
    fn from(err: StoreError) -> Self {
        Self::driver(err)
    }
}
