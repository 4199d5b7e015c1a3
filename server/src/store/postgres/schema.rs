//! The PostgreSQL engine's migrations (`migrations/postgres/`), applied by
//! the kit's runner inside one transaction that first takes an advisory
//! lock, so replicas starting together migrate once.

use deadpool_postgres::Transaction;

use super::errors::classify;
use crate::store::kit::{
    Migration, MigrationFile, Migrations, PendingMigration, RecordedMigration, SchemaTransaction,
    StoreError,
};

/// Arbitrary but fixed: with the schema's name, the advisory lock every
/// replica takes to migrate that schema.
const MIGRATION_LOCK_CLASS: i32 = 0x7365_7373; // "sess"

pub(super) const MIGRATIONS: Migrations = Migrations {
    bookkeeping: include_str!("../../../../migrations/postgres/sessiond_migrations.sql"),
    bookkeeping_upgrade: include_str!(
        "../../../../migrations/postgres/sessiond_migrations_compatible.sql"
    ),
    files: &[MigrationFile {
        version: 1,
        name: "0001_django_session",
        sql: include_str!("../../../../migrations/postgres/0001_django_session.sql"),
    }],
    // As `information_schema.columns` describes Django's table.
    django_columns: &[
        ("session_key", "character varying(40)"),
        ("session_data", "text"),
        ("expire_date", "timestamp with time zone"),
    ],
    remedy: "use another schema or database",
};

/// Applies the migrations this schema has not seen, inside `tx`, which the
/// caller commits.
pub(super) async fn migrate(tx: &Transaction<'_>) -> Result<Vec<Migration>, StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&MIGRATION_LOCK_CLASS],
    )
    .await
    .map_err(classify)?;
    MIGRATIONS.apply(&mut Schema(tx)).await
}

/// What [`migrate`] would do, found without changing anything, inside
/// `tx`, which the caller rolls back.
pub(super) async fn pending(tx: &Transaction<'_>) -> Result<Vec<PendingMigration>, StoreError> {
    MIGRATIONS.pending(&mut Schema(tx)).await
}

struct Schema<'tx, 'conn>(&'tx Transaction<'conn>);

impl SchemaTransaction for Schema<'_, '_> {
    async fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.0.batch_execute(sql).await.map_err(classify)
    }

    async fn recorded_version(&mut self) -> Result<i64, StoreError> {
        let row = self
            .0
            .query_one(
                "SELECT coalesce(max(version), 0) FROM sessiond_migrations",
                &[],
            )
            .await
            .map_err(classify)?;
        Ok(row.get(0))
    }

    async fn recorded_after(&mut self, version: i64) -> Result<Vec<RecordedMigration>, StoreError> {
        let rows = self
            .0
            .query(
                "SELECT version, name, backward_compatible FROM sessiond_migrations \
                 WHERE version > $1 ORDER BY version",
                &[&version],
            )
            .await
            .map_err(classify)?;
        Ok(rows
            .iter()
            .map(|row| RecordedMigration {
                version: row.get(0),
                name: row.get(1),
                backward_compatible: row.get(2),
            })
            .collect())
    }

    async fn table_exists(&mut self, table: &str) -> Result<bool, StoreError> {
        let row = self
            .0
            .query_opt(
                "SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1",
                &[&table],
            )
            .await
            .map_err(classify)?;
        Ok(row.is_some())
    }

    async fn columns(&mut self, table: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .0
            .query(
                "SELECT column_name::text, data_type::text, character_maximum_length::int \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position",
                &[&table],
            )
            .await
            .map_err(classify)?;
        Ok(rows
            .iter()
            .map(|row| {
                let (name, kind): (String, String) = (row.get(0), row.get(1));
                match row.get::<_, Option<i32>>(2) {
                    Some(length) => (name, format!("{kind}({length})")),
                    None => (name, kind),
                }
            })
            .collect())
    }

    async fn record(&mut self, file: &MigrationFile, adopted: bool) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO sessiond_migrations (version, name, adopted, backward_compatible) \
                 VALUES ($1, $2, $3, $4)",
                &[
                    &file.version,
                    &file.name,
                    &adopted,
                    &file.backward_compatible(),
                ],
            )
            .await
            .map_err(classify)?;
        Ok(())
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
