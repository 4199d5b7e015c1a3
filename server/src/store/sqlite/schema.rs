//! Migrations of the SQLite engine: the SQL files in `migrations/sqlite/`,
//! embedded in the binary and recorded in sessiond's own
//! `sessiond_migrations` table.
//!
//! A `django_session` table that a Django app already created is adopted as
//! it is, never altered: Django and sessiond then share it.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::classify;
use crate::store::{Migration, StoreError};

struct MigrationFile {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[MigrationFile] = &[MigrationFile {
    version: 1,
    name: "0001_django_session",
    sql: include_str!("../../../../migrations/sqlite/0001_django_session.sql"),
}];

/// The columns of Django's `django_session` on SQLite: name, declared type,
/// primary key.
const DJANGO_COLUMNS: &[(&str, &str, bool)] = &[
    ("session_key", "varchar(40)", true),
    ("session_data", "text", false),
    ("expire_date", "datetime", false),
];

/// Applies every migration the database has not seen, in one transaction.
pub(super) fn migrate(
    conn: &mut Connection,
    timeout: Duration,
) -> Result<Vec<Migration>, StoreError> {
    let sql = |err| classify(err, timeout);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS sessiond_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL,
            adopted INTEGER NOT NULL
        )",
    )
    .map_err(sql)?;
    let current: i64 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM sessiond_migrations",
            [],
            |row| row.get(0),
        )
        .map_err(sql)?;
    let newest_known = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > newest_known {
        return Err(StoreError::Schema(format!(
            "the database is at schema version {current}, newer than this sessiond knows ({newest_known}); upgrade sessiond"
        )));
    }

    let mut done = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let adopted = migration.version == 1 && table_exists(&tx, "django_session").map_err(sql)?;
        if adopted {
            check_django_shape(&tx).map_err(|err| match err {
                ShapeError::Sql(err) => sql(err),
                ShapeError::Mismatch(found) => StoreError::Schema(format!(
                    "the existing django_session table is not in Django's shape \
                     (expected session_key varchar(40) PRIMARY KEY, session_data text, expire_date datetime; \
                     found {found}); sessiond does not alter it: use another database file"
                )),
            })?;
        } else {
            tx.execute_batch(migration.sql).map_err(sql)?;
        }
        tx.execute(
            "INSERT INTO sessiond_migrations (version, name, applied_at, adopted) \
             VALUES (?1, ?2, strftime('%Y-%m-%d %H:%M:%f', 'now'), ?3)",
            (migration.version, migration.name, adopted),
        )
        .map_err(sql)?;
        done.push(Migration {
            name: migration.name,
            adopted,
        });
    }
    tx.commit().map_err(sql)?;
    Ok(done)
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([name])
}

enum ShapeError {
    Sql(rusqlite::Error),
    Mismatch(String),
}

fn check_django_shape(conn: &Connection) -> Result<(), ShapeError> {
    let mut stmt = conn
        .prepare("SELECT name, type, pk FROM pragma_table_info('django_session') ORDER BY cid")
        .map_err(ShapeError::Sql)?;
    let columns = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)? > 0,
            ))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(ShapeError::Sql)?;
    let matches = columns.len() == DJANGO_COLUMNS.len()
        && columns.iter().zip(DJANGO_COLUMNS).all(
            |((name, kind, pk), (want_name, want_kind, want_pk))| {
                name == want_name && kind.eq_ignore_ascii_case(want_kind) && pk == want_pk
            },
        );
    if matches {
        Ok(())
    } else {
        let found = columns
            .iter()
            .map(|(name, kind, pk)| {
                format!("{name} {kind}{}", if *pk { " PRIMARY KEY" } else { "" })
            })
            .collect::<Vec<_>>()
            .join(", ");
        Err(ShapeError::Mismatch(found))
    }
}
