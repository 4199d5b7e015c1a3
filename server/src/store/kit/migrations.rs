//! The one migration runner of the SQL engines.
//!
//! Each engine's migrations are the SQL files under `migrations/<engine>/`,
//! embedded in the binary, and recorded in sessiond's own
//! `sessiond_migrations` table (created by that folder's
//! `sessiond_migrations.sql`). The engine opens a transaction (and takes
//! whatever lock keeps replicas from migrating at once) and hands it to
//! [`Migrations::apply`] as a [`SchemaTransaction`]; the runner decides what
//! to do and the engine commits.
//!
//! A `django_session` table that a Django app already created is adopted as
//! it is, never altered, once its columns are checked to be Django's: Django
//! and sessiond then share it. A database whose recorded version is newer
//! than this binary knows is refused, so an old binary never serves from a
//! schema it does not understand.

use crate::store::kit::error::{SchemaError, StoreError};

/// One SQL file of `migrations/<engine>/`.
#[derive(Debug)]
pub struct MigrationFile {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// A migration that `migrate` applied or adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub name: &'static str,
    /// The table already existed in the expected shape (created by Django's
    /// own migration) and was taken over as it is.
    pub adopted: bool,
}

/// The table the first migration creates, and may adopt instead.
const DJANGO_TABLE: &str = "django_session";

/// One engine's migrations.
#[derive(Debug)]
pub struct Migrations {
    /// Creates `sessiond_migrations` if it is missing.
    pub bookkeeping: &'static str,
    /// In version order, from 1.
    pub files: &'static [MigrationFile],
    /// The columns of Django's `django_session` as this engine's catalog
    /// describes them (see `SchemaTransaction::columns`): name and type.
    pub django_columns: &'static [(&'static str, &'static str)],
    /// What to do when an existing table is not Django's, for the error.
    pub remedy: &'static str,
}

/// A transaction on the engine's database, in which the runner reads and
/// changes the schema. Methods are async for engines with async drivers;
/// a blocking driver answers at once.
pub(crate) trait SchemaTransaction {
    /// Runs one or more SQL statements.
    async fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError>;

    /// The newest version in `sessiond_migrations`, 0 when none.
    async fn recorded_version(&mut self) -> Result<i64, StoreError>;

    /// Whether a table of this name exists where sessiond's tables live.
    async fn table_exists(&mut self, table: &str) -> Result<bool, StoreError>;

    /// The columns of `table` in order: name, and type as the catalog
    /// spells it (with ` PRIMARY KEY` where the engine reports keys).
    async fn columns(&mut self, table: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// Records that `file` was applied, or adopted.
    async fn record(&mut self, file: &MigrationFile, adopted: bool) -> Result<(), StoreError>;
}

impl Migrations {
    /// The newest version this binary knows.
    pub fn newest(&self) -> i64 {
        self.files.last().map_or(0, |file| file.version)
    }

    /// Applies, inside `tx`, every migration the database has not recorded;
    /// returns what was done (nothing when the schema is current).
    pub(crate) async fn apply(
        &self,
        tx: &mut impl SchemaTransaction,
    ) -> Result<Vec<Migration>, StoreError> {
        tx.execute_batch(self.bookkeeping).await?;
        let current = tx.recorded_version().await?;
        if current > self.newest() {
            return Err(SchemaError::Newer {
                found: current,
                known: self.newest(),
            }
            .into());
        }
        let mut done = Vec::new();
        for file in self.files.iter().filter(|file| file.version > current) {
            let adopted = file.version == 1 && tx.table_exists(DJANGO_TABLE).await?;
            if adopted {
                self.check_django_shape(tx.columns(DJANGO_TABLE).await?)?;
            } else {
                tx.execute_batch(file.sql).await?;
            }
            tx.record(file, adopted).await?;
            done.push(Migration {
                name: file.name,
                adopted,
            });
        }
        Ok(done)
    }

    /// Refuses an existing `django_session` whose columns are not Django's.
    fn check_django_shape(&self, found: Vec<(String, String)>) -> Result<(), SchemaError> {
        let matches = found.len() == self.django_columns.len()
            && found.iter().zip(self.django_columns).all(
                |((name, kind), (want_name, want_kind))| {
                    name == want_name && kind.eq_ignore_ascii_case(want_kind)
                },
            );
        if matches {
            return Ok(());
        }
        let describe = |columns: &mut dyn Iterator<Item = (&str, &str)>| {
            columns
                .map(|(name, kind)| format!("{name} {kind}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(SchemaError::NotDjangos {
            expected: describe(&mut self.django_columns.iter().copied()),
            found: describe(
                &mut found
                    .iter()
                    .map(|(name, kind)| (name.as_str(), kind.as_str())),
            ),
            remedy: self.remedy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATIONS: Migrations = Migrations {
        bookkeeping: "CREATE bookkeeping",
        files: &[
            MigrationFile {
                version: 1,
                name: "0001_django_session",
                sql: "CREATE django_session",
            },
            MigrationFile {
                version: 2,
                name: "0002_meta",
                sql: "CREATE meta",
            },
        ],
        django_columns: &[("session_key", "varchar(40) PRIMARY KEY"), ("data", "text")],
        remedy: "use another database",
    };

    /// A database as the runner sees it, recording what it was told.
    #[derive(Default)]
    struct Database {
        version: i64,
        tables: Vec<&'static str>,
        columns: Vec<(String, String)>,
        executed: Vec<String>,
    }

    impl SchemaTransaction for Database {
        async fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
            self.executed.push(sql.to_owned());
            Ok(())
        }

        async fn recorded_version(&mut self) -> Result<i64, StoreError> {
            Ok(self.version)
        }

        async fn table_exists(&mut self, table: &str) -> Result<bool, StoreError> {
            Ok(self.tables.contains(&table))
        }

        async fn columns(&mut self, _table: &str) -> Result<Vec<(String, String)>, StoreError> {
            Ok(self.columns.clone())
        }

        async fn record(&mut self, file: &MigrationFile, _adopted: bool) -> Result<(), StoreError> {
            self.version = file.version;
            Ok(())
        }
    }

    fn run(db: &mut Database) -> Result<Vec<Migration>, StoreError> {
        pollster::block_on(MIGRATIONS.apply(db))
    }

    #[test]
    fn a_new_database_gets_every_migration_then_none() {
        let mut db = Database::default();
        let done = run(&mut db).unwrap();
        assert_eq!(
            done,
            [
                Migration {
                    name: "0001_django_session",
                    adopted: false
                },
                Migration {
                    name: "0002_meta",
                    adopted: false
                }
            ]
        );
        assert_eq!(
            db.executed,
            ["CREATE bookkeeping", "CREATE django_session", "CREATE meta"]
        );
        assert_eq!(run(&mut db).unwrap(), []);
    }

    #[test]
    fn djangos_table_is_adopted_when_its_columns_match() {
        let mut db = Database {
            tables: vec!["django_session"],
            columns: vec![
                ("session_key".into(), "VARCHAR(40) primary key".into()),
                ("data".into(), "TEXT".into()),
            ],
            ..Database::default()
        };
        let done = run(&mut db).unwrap();
        assert!(done[0].adopted && !done[1].adopted, "{done:?}");
        assert_eq!(db.executed, ["CREATE bookkeeping", "CREATE meta"]);
    }

    #[test]
    fn a_foreign_table_or_a_newer_schema_is_refused() {
        let mut db = Database {
            tables: vec!["django_session"],
            columns: vec![("session_key".into(), "integer".into())],
            ..Database::default()
        };
        let err = run(&mut db).unwrap_err().to_string();
        assert!(err.contains("not in Django's shape"), "{err}");
        assert!(err.contains("found session_key integer"), "{err}");
        assert!(err.contains("use another database"), "{err}");

        let mut db = Database {
            version: 3,
            ..Database::default()
        };
        let err = run(&mut db).unwrap_err().to_string();
        assert!(
            err.contains("schema version 3, newer than this sessiond knows (2)"),
            "{err}"
        );
    }
}
