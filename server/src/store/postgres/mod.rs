//! The scale-out engine: Django's `django_session` table on PostgreSQL,
//! shared by any number of stateless sessiond replicas (and Django apps).
//!
//! Every operation is one statement or one short transaction on a pooled
//! connection, so replicas need no coordination of their own: inserts race
//! on the primary key, read-modify-writes lock the row (`SELECT … FOR
//! UPDATE`), and purges skip rows another replica is purging (`SKIP
//! LOCKED`). Migrations run under an advisory lock, so replicas starting
//! together migrate once.
//!
//! `expire_date` is `timestamp with time zone`, as Django declares it; the
//! comparisons use sessiond's clock, passed in as `now`, as Django uses the
//! app server's.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{Migration, OpenFailure, Patcher, SessionStore, StoreError, StoreOptions};
use crate::service::ErrorChain;
use crate::session::{ExpireDate, Record, SessionKey};

/// Connections per replica. PostgreSQL serves each connection with one
/// process, so a few busy connections per replica keep it fast; many
/// replicas times this must stay under the server's `max_connections`.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Arbitrary but fixed: with the schema's name, the advisory lock every
/// replica takes to migrate that schema.
const MIGRATION_LOCK_CLASS: i32 = 0x7365_7373; // "sess"

struct MigrationFile {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[MigrationFile] = &[MigrationFile {
    version: 1,
    name: "0001_django_session",
    sql: include_str!("../../../migrations/postgres/0001_django_session.sql"),
}];

/// The columns of Django's `django_session` on PostgreSQL: name, type,
/// maximum length.
const DJANGO_COLUMNS: &[(&str, &str, Option<i32>)] = &[
    ("session_key", "character varying", Some(40)),
    ("session_data", "text", None),
    ("expire_date", "timestamp with time zone", None),
];

/// A `postgres://` URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("not a PostgreSQL URL: {0}")]
    Invalid(#[source] tokio_postgres::Error),
    #[error("schema '{0}' is not a plain SQL identifier (letters, digits and _)")]
    Schema(String),
}

/// Where the sessions live: a connection URL and an optional schema.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The URL as given, without the `schema` parameter.
    url: String,
    schema: Option<String>,
}

impl PostgresUrl {
    /// Parses `postgres://user:password@host:port/database?schema=name`.
    /// `schema` is sessiond's own parameter (the tables live there instead of
    /// the user's `search_path`); the others are libpq's.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let mut schema = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some(("schema", value)) => schema = Some(value.to_owned()),
                _ => rest.push(pair),
            }
        }
        if let Some(name) = &schema
            && (name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                || name.as_bytes()[0].is_ascii_digit())
        {
            return Err(UrlError::Schema(name.clone()));
        }
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        url.parse::<tokio_postgres::Config>()
            .map_err(UrlError::Invalid)?;
        Ok(Self { url, schema })
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for PostgresUrl {
    /// The URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = match (self.url.find("://"), self.url.find('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &self.url[scheme_end + 3..at];
                match credentials.split_once(':') {
                    Some((user, _password)) => {
                        format!(
                            "{}{user}:***{}",
                            &self.url[..scheme_end + 3],
                            &self.url[at..]
                        )
                    }
                    None => self.url.clone(),
                }
            }
            _ => self.url.clone(),
        };
        f.write_str(&shown)?;
        if let Some(schema) = &self.schema {
            let separator = if self.url.contains('?') { '&' } else { '?' };
            write!(f, "{separator}schema={schema}")?;
        }
        Ok(())
    }
}

/// The PostgreSQL engine.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStore {
    /// Builds the pool and checks that the server answers.
    pub(super) async fn open(
        url: &PostgresUrl,
        options: &StoreOptions,
    ) -> Result<Self, OpenFailure> {
        let mut config: tokio_postgres::Config = url
            .url
            .parse()
            .map_err(|err: tokio_postgres::Error| OpenFailure::Driver(err.into()))?;
        config.connect_timeout(options.timeout);
        config.application_name("sessiond");
        // A statement that waits longer than the store timeout (for a lock,
        // or on an overloaded server) fails instead of holding the call.
        let mut session_options = format!(
            "-c statement_timeout={} -c lock_timeout={}",
            options.timeout.as_millis(),
            options.timeout.as_millis()
        );
        if let Some(schema) = &url.schema {
            session_options.push_str(&format!(" -c search_path={schema}"));
        }
        config.options(&session_options);

        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(DEFAULT_POOL_SIZE)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| OpenFailure::Driver(err.into()))?;
        let store = Self { pool };

        let client = store.pool.get().await.map_err(|err| {
            OpenFailure::Unusable(format!(
                "cannot connect to PostgreSQL ({}); check the URL, that the server runs and accepts this user",
                ErrorChain(&err)
            ))
        })?;
        if let Some(schema) = &url.schema {
            let created = client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await;
            // Replicas starting together race on the catalog even with IF NOT
            // EXISTS; losing that race means the schema is there.
            let lost_race = |err: &tokio_postgres::Error| {
                err.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || err.code() == Some(&SqlState::DUPLICATE_SCHEMA)
            };
            if let Err(err) = created
                && !lost_race(&err)
            {
                return Err(OpenFailure::Unusable(format!(
                    "cannot create schema {schema} ({}); create it or grant CREATE on the database",
                    ErrorChain(&err)
                )));
            }
        }
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|err| StoreError::Unavailable(err.into()))
    }
}

/// Sorts a driver error into what the caller can do about it.
fn classify(err: tokio_postgres::Error) -> StoreError {
    let Some(code) = err.code() else {
        // No SQLSTATE: the connection broke or could not be made.
        return StoreError::Unavailable(err.into());
    };
    if *code == SqlState::UNIQUE_VIOLATION {
        StoreError::AlreadyExists
    } else if *code == SqlState::UNDEFINED_TABLE {
        StoreError::Schema(
            "the django_session table does not exist; run `sessiond migrate` first".into(),
        )
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

#[async_trait]
impl SessionStore for PostgresStore {
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        match migrate_in(&tx).await {
            Ok(done) => {
                tx.commit().await.map_err(classify)?;
                Ok(done)
            }
            Err(err) => {
                // Roll back now, so the advisory lock is not held by an idle
                // connection while the pool closes.
                let _ = tx.rollback().await;
                Err(err)
            }
        }
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT session_data, expire_date FROM django_session \
                 WHERE session_key = $1 AND expire_date > $2",
            )
            .await
            .map_err(classify)?;
        let row = client
            .query_opt(&statement, &[&key.as_str(), &now])
            .await
            .map_err(classify)?;
        let Some(row) = row else { return Ok(None) };
        let expire: DateTime<Utc> = row.get(1);
        Ok(Some(Record {
            session_data: row.get(0),
            expire_date: ExpireDate::new(expire).map_err(|err| StoreError::Internal(err.into()))?,
        }))
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT 1 FROM django_session WHERE session_key = $1")
            .await
            .map_err(classify)?;
        Ok(client
            .query_opt(&statement, &[&key.as_str()])
            .await
            .map_err(classify)?
            .is_some())
    }

    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO django_session (session_key, session_data, expire_date) \
                 VALUES ($1, $2, $3)",
            )
            .await
            .map_err(classify)?;
        client
            .execute(
                &statement,
                &[
                    &key.as_str(),
                    &record.session_data,
                    &record.expire_date.instant(),
                ],
            )
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE django_session SET session_data = $2, expire_date = $3 \
                 WHERE session_key = $1",
            )
            .await
            .map_err(classify)?;
        let updated = client
            .execute(
                &statement,
                &[
                    &key.as_str(),
                    &record.session_data,
                    &record.expire_date.instant(),
                ],
            )
            .await
            .map_err(classify)?;
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let row = tx
            .query_opt(
                "SELECT session_data, expire_date > $2 FROM django_session \
                 WHERE session_key = $1 FOR UPDATE",
                &[&key.as_str(), &now],
            )
            .await
            .map_err(classify)?
            .ok_or(StoreError::NotFound)?;
        let (stored, live): (String, bool) = (row.get(0), row.get(1));
        let session_data = patcher(live.then_some(stored))?;
        tx.execute(
            "UPDATE django_session SET session_data = $2, expire_date = $3 WHERE session_key = $1",
            &[&key.as_str(), &session_data, &expire_date.instant()],
        )
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("DELETE FROM django_session WHERE session_key = $1")
            .await
            .map_err(classify)?;
        let deleted = client
            .execute(&statement, &[&key.as_str()])
            .await
            .map_err(classify)?;
        Ok(deleted > 0)
    }

    async fn cycle_key(
        &self,
        old_key: &SessionKey,
        new_key: &SessionKey,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let data = match session_data {
            Some(data) => data,
            None => tx
                .query_opt(
                    "SELECT session_data FROM django_session \
                     WHERE session_key = $1 AND expire_date > $2 FOR UPDATE",
                    &[&old_key.as_str(), &now],
                )
                .await
                .map_err(classify)?
                .ok_or(StoreError::NotFound)?
                .get(0),
        };
        tx.execute(
            "INSERT INTO django_session (session_key, session_data, expire_date) VALUES ($1, $2, $3)",
            &[&new_key.as_str(), &data, &expire_date.instant()],
        )
        .await
        .map_err(classify)?;
        tx.execute(
            "DELETE FROM django_session WHERE session_key = $1",
            &[&old_key.as_str()],
        )
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    async fn clear_expired_batch(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "DELETE FROM django_session WHERE session_key IN ( \
                 SELECT session_key FROM django_session WHERE expire_date < $1 \
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .await
            .map_err(classify)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        client
            .execute(&statement, &[&now, &limit])
            .await
            .map_err(classify)
    }

    async fn close(&self) {
        self.pool.close();
    }
}

/// Applies the migrations this schema has not seen, inside `tx`.
async fn migrate_in(tx: &deadpool_postgres::Transaction<'_>) -> Result<Vec<Migration>, StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&MIGRATION_LOCK_CLASS],
    )
    .await
    .map_err(classify)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS sessiond_migrations (
            version bigint PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamp with time zone NOT NULL DEFAULT now(),
            adopted boolean NOT NULL
        )",
    )
    .await
    .map_err(classify)?;
    let current: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM sessiond_migrations",
            &[],
        )
        .await
        .map_err(classify)?
        .get(0);
    let newest_known = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > newest_known {
        return Err(StoreError::Schema(format!(
            "the database is at schema version {current}, newer than this sessiond knows ({newest_known}); upgrade sessiond"
        )));
    }

    let mut done = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let existing = tx
            .query_opt(
                "SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'django_session'",
                &[],
            )
            .await
            .map_err(classify)?
            .is_some();
        let adopted = migration.version == 1 && existing;
        if adopted {
            check_django_shape(tx).await?;
        } else {
            tx.batch_execute(migration.sql).await.map_err(classify)?;
        }
        tx.execute(
            "INSERT INTO sessiond_migrations (version, name, adopted) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.name, &adopted],
        )
        .await
        .map_err(classify)?;
        done.push(Migration {
            name: migration.name,
            adopted,
        });
    }
    Ok(done)
}

async fn check_django_shape(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text, character_maximum_length::int \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'django_session' \
             ORDER BY ordinal_position",
            &[],
        )
        .await
        .map_err(classify)?;
    let columns: Vec<(String, String, Option<i32>)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let matches = columns.len() == DJANGO_COLUMNS.len()
        && columns.iter().zip(DJANGO_COLUMNS).all(
            |((name, kind, length), (want_name, want_kind, want_length))| {
                name == want_name && kind == want_kind && length == want_length
            },
        );
    if matches {
        return Ok(());
    }
    let found = columns
        .iter()
        .map(|(name, kind, length)| match length {
            Some(length) => format!("{name} {kind}({length})"),
            None => format!("{name} {kind}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(StoreError::Schema(format!(
        "the existing django_session table is not in Django's shape \
         (expected session_key varchar(40), session_data text, expire_date timestamptz; \
         found {found}); sessiond does not alter it: use another schema or database"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_a_schema() {
        let url =
            PostgresUrl::parse("postgres://app:secret@db:5432/sessions?schema=web_1").unwrap();
        assert_eq!(url.schema.as_deref(), Some("web_1"));
        assert_eq!(url.url, "postgres://app:secret@db:5432/sessions");
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db:5432/sessions?schema=web_1"
        );
        let url = PostgresUrl::parse("postgresql://localhost/test?connect_timeout=3").unwrap();
        assert_eq!(url.schema, None);
        assert_eq!(
            url.to_string(),
            "postgresql://localhost/test?connect_timeout=3"
        );
        assert!(matches!(
            PostgresUrl::parse("postgres://localhost/test?schema=bad;name"),
            Err(UrlError::Schema(_))
        ));
        assert!(matches!(
            PostgresUrl::parse("postgres://localhost/test?schema=1abc"),
            Err(UrlError::Schema(_))
        ));
        assert!(PostgresUrl::parse("postgres://localhost:notaport/test").is_err());
    }
}
