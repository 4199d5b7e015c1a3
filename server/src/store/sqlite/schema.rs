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

/// The migration whose triggers count the changes to `django_session`.
const CHANGES_MIGRATION: &str =
    include_str!("../../../../migrations/sqlite/0002_sessiond_changes.sql");

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
            version: 2,
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
    restore_change_count_triggers(&schema.tx).map_err(|err| classify(err, timeout))?;
    schema.tx.commit().map_err(|err| classify(err, timeout))?;
    Ok(done)
}

/// Puts back the triggers of `0002_sessiond_changes` where they are gone
/// although the migration is recorded: SQLite drops a table's triggers with
/// it, and a Django migration that rebuilds `django_session` does just that.
/// Without them the row cache stays off (see the engine's `row_cache`).
fn restore_change_count_triggers(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let counted_table = tx
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessiond_changes'")?
        .exists([])?;
    if !counted_table {
        return Ok(());
    }
    let mut restored = 0;
    for create in CHANGES_MIGRATION
        .lines()
        .filter(|line| line.starts_with("CREATE TRIGGER "))
    {
        let name = create.split('"').nth(1).unwrap_or_default();
        let exists = tx
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?1")?
            .exists([name])?;
        if !exists {
            tx.execute_batch(create)?;
            restored += 1;
        }
    }
    if restored > 0 {
        tracing::warn!(
            restored,
            "put back the triggers that count changes to django_session (migration \
             0002_sessiond_changes): the table was rebuilt or they were dropped"
        );
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

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
