//! The SQLite engine's migrations (`migrations/sqlite/`), applied by the
//! kit's runner inside one `BEGIN IMMEDIATE` transaction, which also keeps
//! two processes from migrating one file at once. A dry run reads in a
//! deferred transaction that is rolled back.

use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::errors::classify;
use crate::store::kit::{
    Migration, MigrationFile, Migrations, PendingMigration, RecordedMigration, SchemaTransaction,
    StoreError,
};

/// The migration whose triggers count the changes to `django_session`,
/// its version, and the triggers it creates.
const CHANGES_MIGRATION: &str =
    include_str!("../../../../migrations/sqlite/0002_sessiond_changes.sql");
const CHANGE_COUNT_VERSION: i64 = 2;
const CHANGE_COUNT_TRIGGERS: [&str; 5] = [
    "sessiond_changes_insert",
    "sessiond_changes_update",
    "sessiond_changes_delete",
    "sessiond_changes_only_up",
    "sessiond_changes_kept",
];

pub(super) const MIGRATIONS: Migrations = Migrations {
    bookkeeping: include_str!("../../../../migrations/sqlite/sessiond_migrations.sql"),
    bookkeeping_upgrade: include_str!(
        "../../../../migrations/sqlite/sessiond_migrations_compatible.sql"
    ),
    files: &[
        MigrationFile {
            version: 1,
            name: "0001_django_session",
            sql: include_str!("../../../../migrations/sqlite/0001_django_session.sql"),
        },
        MigrationFile {
            version: CHANGE_COUNT_VERSION,
            name: "0002_sessiond_changes",
            sql: CHANGES_MIGRATION,
        },
    ],
    // As `pragma_table_info` reports Django's table.
    django_columns: &[
        ("session_key", "varchar(40) PRIMARY KEY"),
        ("session_data", "text"),
        ("expire_date", "datetime"),
    ],
    remedy: "use another database file",
};

/// Applies every migration the database has not seen, in one transaction.
/// Blocking.
pub(super) fn migrate(
    conn: &mut Connection,
    timeout: Duration,
) -> Result<Vec<Migration>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|err| classify(err, timeout))?;
    let mut schema = Schema { tx, timeout };
    // The runner is async for PostgreSQL's sake; here every step is a
    // blocking SQLite call that is ready at once.
    let done = pollster::block_on(MIGRATIONS.apply(&mut schema))?;
    restore_change_count(&schema.tx).map_err(|err| classify(err, timeout))?;
    schema.tx.commit().map_err(|err| classify(err, timeout))?;
    Ok(done)
}

/// Puts back the count of `0002_sessiond_changes` where part of it is
/// gone although the migration is recorded: SQLite drops a table's
/// triggers with it, and a Django migration that rebuilds `django_session`
/// does just that. Without them the row cache stays off (see `row_cache`).
/// Every statement of that migration may run again.
fn restore_change_count(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let recorded = tx
        .prepare("SELECT 1 FROM sessiond_migrations WHERE version = ?1")?
        .exists([CHANGE_COUNT_VERSION])?;
    let (_, in_place) = change_count_in_place(tx)?;
    if !recorded || in_place {
        return Ok(());
    }
    tx.execute_batch(CHANGES_MIGRATION)?;
    tracing::warn!(
        "put back the count of changes to django_session (migration 0002_sessiond_changes): the \
         table was rebuilt, or its triggers were dropped"
    );
    Ok(())
}

/// The schema version `conn` sees, and whether every trigger of
/// `0002_sessiond_changes` is in it.
pub(super) fn change_count_in_place(conn: &Connection) -> rusqlite::Result<(i64, bool)> {
    let names = CHANGE_COUNT_TRIGGERS
        .map(|name| format!("'{name}'"))
        .join(", ");
    conn.query_row(
        &format!(
            "SELECT (SELECT schema_version FROM pragma_schema_version), count(*) \
             FROM sqlite_master WHERE type = 'trigger' AND name IN ({names})"
        ),
        [],
        |row| {
            let found: i64 = row.get(1)?;
            Ok((row.get(0)?, found == CHANGE_COUNT_TRIGGERS.len() as i64))
        },
    )
}

/// What [`migrate`] would do, found without changing anything. Blocking.
pub(super) fn pending(
    conn: &mut Connection,
    timeout: Duration,
) -> Result<Vec<PendingMigration>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(|err| classify(err, timeout))?;
    let mut schema = Schema { tx, timeout };
    // Dropping the transaction rolls it back; it has changed nothing.
    pollster::block_on(MIGRATIONS.pending(&mut schema))
}

struct Schema<'conn> {
    tx: Transaction<'conn>,
    timeout: Duration,
}

impl Schema<'_> {
    fn sql(&self, err: rusqlite::Error) -> StoreError {
        classify(err, self.timeout)
    }
}

impl SchemaTransaction for Schema<'_> {
    async fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.tx.execute_batch(sql).map_err(|err| self.sql(err))
    }

    async fn recorded_version(&mut self) -> Result<i64, StoreError> {
        self.tx
            .query_row(
                "SELECT coalesce(max(version), 0) FROM sessiond_migrations",
                [],
                |row| row.get(0),
            )
            .map_err(|err| self.sql(err))
    }

    async fn recorded_after(&mut self, version: i64) -> Result<Vec<RecordedMigration>, StoreError> {
        self.tx
            .prepare(
                "SELECT version, name, backward_compatible FROM sessiond_migrations \
                 WHERE version > ?1 ORDER BY version",
            )
            .and_then(|mut stmt| {
                stmt.query_map([version], |row| {
                    Ok(RecordedMigration {
                        version: row.get(0)?,
                        name: row.get(1)?,
                        backward_compatible: row.get(2)?,
                    })
                })?
                .collect()
            })
            .map_err(|err| self.sql(err))
    }

    async fn table_exists(&mut self, table: &str) -> Result<bool, StoreError> {
        self.tx
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .and_then(|mut stmt| stmt.exists([table]))
            .map_err(|err| self.sql(err))
    }

    async fn columns(&mut self, table: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.tx
            .prepare("SELECT name, type, pk FROM pragma_table_info(?1) ORDER BY cid")
            .and_then(|mut stmt| {
                stmt.query_map([table], |row| {
                    let (name, kind): (String, String) = (row.get(0)?, row.get(1)?);
                    let key = if row.get::<_, i64>(2)? > 0 {
                        " PRIMARY KEY"
                    } else {
                        ""
                    };
                    Ok((name, format!("{kind}{key}")))
                })?
                .collect()
            })
            .map_err(|err| self.sql(err))
    }

    async fn record(&mut self, file: &MigrationFile, adopted: bool) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO sessiond_migrations \
                 (version, name, applied_at, adopted, backward_compatible) \
                 VALUES (?1, ?2, strftime('%Y-%m-%d %H:%M:%f', 'now'), ?3, ?4)",
                (file.version, file.name, adopted, file.backward_compatible()),
            )
            .map(|_| ())
            .map_err(|err| self.sql(err))
    }
}

/// A database in memory as sessiond's migrations leave a file, for tests.
#[cfg(test)]
pub(super) fn migrated_database() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    for file in MIGRATIONS.files {
        conn.execute_batch(file.sql).unwrap();
    }
    conn
}

#[cfg(test)]
mod tests {
    use super::{CHANGE_COUNT_TRIGGERS, MIGRATIONS, change_count_in_place, migrated_database};

    #[test]
    fn the_change_count_migration_creates_the_triggers_looked_for_and_can_run_again() {
        let conn = migrated_database();
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut expected = CHANGE_COUNT_TRIGGERS.map(str::to_owned).to_vec();
        expected.sort();
        assert_eq!(names, expected);
        assert!(change_count_in_place(&conn).unwrap().1);

        conn.execute(
            "INSERT INTO django_session VALUES ('k', '{}', '9999-12-31 00:00:00')",
            [],
        )
        .unwrap();
        let count = || -> i64 {
            conn.query_row("SELECT changes FROM sessiond_changes", [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(count(), 1);
        conn.execute_batch(MIGRATIONS.files[1].sql).unwrap();
        assert_eq!(count(), 1, "running the migration again keeps the count");
    }

    #[test]
    fn the_change_count_can_be_neither_lowered_nor_deleted() {
        let conn = migrated_database();
        conn.execute(
            "INSERT INTO django_session VALUES ('k', '{}', '9999-12-31 00:00:00')",
            [],
        )
        .unwrap();
        for sql in [
            "UPDATE sessiond_changes SET changes = 0",
            "DELETE FROM sessiond_changes",
            "INSERT INTO sessiond_changes VALUES (2, 0)",
        ] {
            assert!(conn.execute(sql, []).is_err(), "{sql} was allowed");
        }
        conn.execute("UPDATE sessiond_changes SET changes = changes + 5", [])
            .unwrap();
    }

    #[test]
    fn every_migration_declares_whether_it_is_backward_compatible() {
        for file in MIGRATIONS.files {
            assert!(
                file.declared_compatibility().is_some(),
                "{} has no `-- backward-compatible: yes|no` line",
                file.name
            );
        }
    }
}
