//! What every engine shares, so that an engine is its storage logic and
//! little else: the [`Engine`] trait its URL type implements, the URL
//! option parser ([`UrlQuery`]), the migration runner of the SQL engines
//! ([`Migrations`], and the expand/contract rule every migration follows)
//! and the errors ([`StoreError`], [`OpenFailure`]).

mod engine;
mod error;
mod migrations;
mod options;

pub use engine::{DEFAULT_SESSION_AGE, DEFAULT_STORE_TIMEOUT, Engine, StoreOptions};
pub use error::{DriverError, OpenFailure, SchemaError, StoreError};
pub(crate) use migrations::SchemaTransaction;
pub use migrations::{Migration, MigrationFile, Migrations, PendingMigration, RecordedMigration};
pub use options::{UrlOption, UrlOptionError, UrlQuery};
