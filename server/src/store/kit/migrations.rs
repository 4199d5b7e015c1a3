//! The one migration runner of the SQL engines.
//!
//! Each engine's migrations are the SQL files under `migrations/<engine>/`,
//! embedded in the binary, and recorded in sessiond's own
//! `sessiond_migrations` table (created by that folder's
//! `sessiond_migrations.sql`). The engine opens a transaction (and takes
//! whatever lock keeps replicas from migrating at once) and hands it to
//! [`Migrations::apply`] as a [`SchemaTransaction`]; the runner decides what
//! to do and the engine commits. [`Migrations::pending`] says what `apply`
//! would do without changing anything (`sessiond migrate --dry-run`).
//!
//! A `django_session` table that a Django app already created is adopted as
//! it is, never altered, once its columns are checked to be Django's: Django
//! and sessiond then share it.
//!
//! # Expand, then contract
//!
//! Every migration follows one rule, so that rolling back the binary never
//! needs a schema rollback: a release only adds (tables, columns with a
//! default, indexes), so the previous release's binary still works on the
//! migrated schema; whatever it stops using is removed one release later,
//! by a migration of its own. Such a migration says so on a line of its
//! file, `-- backward-compatible: yes`, which is recorded with it. A
//! migration that cannot follow the rule says `-- backward-compatible: no`
//! (as must the release notes).
//!
//! An older binary therefore finds the database at a version newer than it
//! knows after a rollback, and serves it when every migration beyond its own
//! was recorded backward compatible: it reads and writes only what it
//! knows, and the newer columns take their defaults. When one of them is
//! not, it refuses to start, naming it, rather than serve from a schema it
//! does not understand. (Releases before this rule refuse any newer
//! version.)

use crate::store::kit::error::{SchemaError, StoreError};

/// One SQL file of `migrations/<engine>/`.
#[derive(Debug)]
pub struct MigrationFile {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The line by which a migration file declares whether it keeps the
/// previous release working (see the module's documentation).
const COMPATIBILITY_MARKER: &str = "-- backward-compatible:";

impl MigrationFile {
    /// What the file declares on its `-- backward-compatible:` line: `yes`
    /// or `no`; `None` when it declares nothing.
    pub fn declared_compatibility(&self) -> Option<bool> {
        self.sql.lines().find_map(
            |line| match line.strip_prefix(COMPATIBILITY_MARKER)?.trim() {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            },
        )
    }

    /// Whether the previous release's binary can serve the schema this
    /// migration leaves. A file that does not say is taken as not.
    pub fn backward_compatible(&self) -> bool {
        self.declared_compatibility() == Some(true)
    }
}

/// A migration that `migrate` applied or adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub name: &'static str,
    /// The table already existed in the expected shape (created by Django's
    /// own migration) and was taken over as it is.
    pub adopted: bool,
}

/// A migration that `migrate` would apply or adopt (`migrate --dry-run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMigration {
    pub version: i64,
    pub name: &'static str,
    /// What it would run; nothing runs when it adopts Django's table.
    pub sql: &'static str,
    /// `django_session` exists in Django's shape and would be taken over
    /// as it is.
    pub adopt: bool,
    pub backward_compatible: bool,
}

/// A migration recorded in `sessiond_migrations` (by this binary or a
/// newer one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedMigration {
    pub version: i64,
    pub name: String,
    pub backward_compatible: bool,
}

/// The table the first migration creates, and may adopt instead.
const DJANGO_TABLE: &str = "django_session";

/// sessiond's record of the migrations applied.
const BOOKKEEPING_TABLE: &str = "sessiond_migrations";

/// The column of `sessiond_migrations` that records the compatibility
/// marker; missing in tables created before the rule.
const COMPATIBLE_COLUMN: &str = "backward_compatible";

/// One engine's migrations.
#[derive(Debug)]
pub struct Migrations {
    /// Creates `sessiond_migrations` if it is missing.
    pub bookkeeping: &'static str,
    /// Adds the `backward_compatible` column to a `sessiond_migrations`
    /// created before it existed (with a default, so binaries from before
    /// keep recording migrations).
    pub bookkeeping_upgrade: &'static str,
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

    /// The migrations in `sessiond_migrations` after `version`, in version
    /// order. Only asked when the `backward_compatible` column exists.
    async fn recorded_after(&mut self, version: i64) -> Result<Vec<RecordedMigration>, StoreError>;

    /// Whether a table of this name exists where sessiond's tables live.
    async fn table_exists(&mut self, table: &str) -> Result<bool, StoreError>;

    /// The columns of `table` in order: name, and type as the catalog
    /// spells it (with ` PRIMARY KEY` where the engine reports keys).
    async fn columns(&mut self, table: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// Records that `file` was applied, or adopted, with whether it is
    /// backward compatible.
    async fn record(&mut self, file: &MigrationFile, adopted: bool) -> Result<(), StoreError>;
}

impl Migrations {
    /// The newest version this binary knows.
    pub fn newest(&self) -> i64 {
        self.files.last().map_or(0, |file| file.version)
    }

    /// Every migration, as pending on a database that does not exist yet.
    pub fn all_pending(&self) -> Vec<PendingMigration> {
        self.files.iter().map(|file| pending(file, false)).collect()
    }

    /// What [`apply`](Self::apply) would do, found without changing
    /// anything; fails as `apply` would on a foreign table or a newer
    /// schema this binary cannot serve.
    pub(crate) async fn pending(
        &self,
        tx: &mut impl SchemaTransaction,
    ) -> Result<Vec<PendingMigration>, StoreError> {
        if !tx.table_exists(BOOKKEEPING_TABLE).await? {
            return self.plan(tx, 0, false).await;
        }
        let current = tx.recorded_version().await?;
        let marked = self.has_compatible_column(tx).await?;
        self.plan(tx, current, marked).await
    }

    /// Applies, inside `tx`, every migration the database has not recorded;
    /// returns what was done (nothing when the schema is current, or newer
    /// and still compatible).
    pub(crate) async fn apply(
        &self,
        tx: &mut impl SchemaTransaction,
    ) -> Result<Vec<Migration>, StoreError> {
        tx.execute_batch(self.bookkeeping).await?;
        if !self.has_compatible_column(tx).await? {
            tx.execute_batch(self.bookkeeping_upgrade).await?;
        }
        let current = tx.recorded_version().await?;
        let steps = self.plan(tx, current, true).await?;
        let mut done = Vec::new();
        let files = self.files.iter().filter(|file| file.version > current);
        for (file, step) in files.zip(steps) {
            if !step.adopt {
                tx.execute_batch(file.sql).await?;
            }
            tx.record(file, step.adopt).await?;
            done.push(Migration {
                name: file.name,
                adopted: step.adopt,
            });
        }
        Ok(done)
    }

    async fn has_compatible_column(
        &self,
        tx: &mut impl SchemaTransaction,
    ) -> Result<bool, StoreError> {
        let columns = tx.columns(BOOKKEEPING_TABLE).await?;
        Ok(columns.iter().any(|(name, _)| name == COMPATIBLE_COLUMN))
    }

    /// The migrations after `current`, checking that a newer schema can be
    /// served and that an existing `django_session` is Django's. `marked`:
    /// whether `sessiond_migrations` records compatibility.
    async fn plan(
        &self,
        tx: &mut impl SchemaTransaction,
        current: i64,
        marked: bool,
    ) -> Result<Vec<PendingMigration>, StoreError> {
        if current > self.newest() {
            self.check_newer(tx, current, marked).await?;
            return Ok(Vec::new());
        }
        let mut steps = Vec::new();
        for file in self.files.iter().filter(|file| file.version > current) {
            let adopt = file.version == 1 && tx.table_exists(DJANGO_TABLE).await?;
            if adopt {
                self.check_django_shape(tx.columns(DJANGO_TABLE).await?)?;
            }
            steps.push(pending(file, adopt));
        }
        Ok(steps)
    }

    /// Serves a database a newer binary migrated (after a rollback) when
    /// every migration beyond this binary's was recorded backward
    /// compatible; refuses it otherwise, naming the first that is not.
    async fn check_newer(
        &self,
        tx: &mut impl SchemaTransaction,
        found: i64,
        marked: bool,
    ) -> Result<(), StoreError> {
        let known = self.newest();
        let newer = if marked {
            tx.recorded_after(known).await?
        } else {
            Vec::new()
        };
        let breaking = newer
            .iter()
            .find(|migration| !migration.backward_compatible);
        // Without the column, no newer migration says it is compatible.
        if !marked || newer.is_empty() || breaking.is_some() {
            return Err(SchemaError::Newer {
                found,
                known,
                breaking: breaking.map_or_else(
                    || format!("version {found}"),
                    |migration| format!("{} (version {})", migration.name, migration.version),
                ),
            }
            .into());
        }
        tracing::warn!(
            schema_version = found,
            known_version = known,
            "the database is at a newer schema version than this sessiond knows; \
             serving it, as every newer migration is backward compatible"
        );
        Ok(())
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

fn pending(file: &'static MigrationFile, adopt: bool) -> PendingMigration {
    PendingMigration {
        version: file.version,
        name: file.name,
        sql: file.sql,
        adopt,
        backward_compatible: file.backward_compatible(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATIONS: Migrations = Migrations {
        bookkeeping: "CREATE bookkeeping",
        bookkeeping_upgrade: "ADD backward_compatible",
        files: &[
            MigrationFile {
                version: 1,
                name: "0001_django_session",
                sql: "-- backward-compatible: no\nCREATE django_session",
            },
            MigrationFile {
                version: 2,
                name: "0002_meta",
                sql: "-- An index.\n-- backward-compatible: yes\nCREATE meta",
            },
        ],
        django_columns: &[("session_key", "varchar(40) PRIMARY KEY"), ("data", "text")],
        remedy: "use another database",
    };

    /// The same migrations as the previous release knew them: the newest
    /// one missing.
    const PREVIOUS: Migrations = Migrations {
        files: MIGRATIONS.files.split_at(1).0,
        ..MIGRATIONS
    };

    /// A database as the runner sees it, recording what it was told.
    #[derive(Default)]
    struct Database {
        recorded: Vec<RecordedMigration>,
        /// `sessiond_migrations` exists, with the `backward_compatible`
        /// column or without it.
        bookkeeping: Option<bool>,
        tables: Vec<&'static str>,
        columns: Vec<(String, String)>,
        executed: Vec<String>,
    }

    impl Database {
        fn at(versions: &[(i64, bool)]) -> Self {
            Self {
                recorded: versions
                    .iter()
                    .map(|&(version, backward_compatible)| RecordedMigration {
                        version,
                        name: format!("{version:04}_test"),
                        backward_compatible,
                    })
                    .collect(),
                bookkeeping: Some(true),
                tables: vec!["django_session"],
                ..Self::default()
            }
        }
    }

    impl SchemaTransaction for Database {
        async fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
            self.executed.push(sql.to_owned());
            match sql {
                "CREATE bookkeeping" => {
                    self.bookkeeping.get_or_insert(true);
                }
                "ADD backward_compatible" => self.bookkeeping = Some(true),
                _ => {}
            }
            Ok(())
        }

        async fn recorded_version(&mut self) -> Result<i64, StoreError> {
            Ok(self.recorded.last().map_or(0, |m| m.version))
        }

        async fn recorded_after(
            &mut self,
            version: i64,
        ) -> Result<Vec<RecordedMigration>, StoreError> {
            assert_eq!(self.bookkeeping, Some(true), "asked without the column");
            Ok(self
                .recorded
                .iter()
                .filter(|m| m.version > version)
                .cloned()
                .collect())
        }

        async fn table_exists(&mut self, table: &str) -> Result<bool, StoreError> {
            Ok(match table {
                BOOKKEEPING_TABLE => self.bookkeeping.is_some(),
                _ => self.tables.contains(&table),
            })
        }

        async fn columns(&mut self, table: &str) -> Result<Vec<(String, String)>, StoreError> {
            if table == BOOKKEEPING_TABLE {
                let mut columns = vec![("version".to_owned(), "integer".to_owned())];
                if self.bookkeeping == Some(true) {
                    columns.push((COMPATIBLE_COLUMN.to_owned(), "integer".to_owned()));
                }
                return Ok(columns);
            }
            Ok(self.columns.clone())
        }

        async fn record(&mut self, file: &MigrationFile, _adopted: bool) -> Result<(), StoreError> {
            self.recorded.push(RecordedMigration {
                version: file.version,
                name: file.name.to_owned(),
                backward_compatible: file.backward_compatible(),
            });
            Ok(())
        }
    }

    fn run(db: &mut Database) -> Result<Vec<Migration>, StoreError> {
        pollster::block_on(MIGRATIONS.apply(db))
    }

    #[test]
    fn a_new_database_gets_every_migration_then_none() {
        let mut db = Database::default();
        let planned = pollster::block_on(MIGRATIONS.pending(&mut db)).unwrap();
        assert_eq!(planned, MIGRATIONS.all_pending());
        assert!(
            db.executed.is_empty(),
            "a dry run changed {:?}",
            db.executed
        );
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
            [
                "CREATE bookkeeping",
                MIGRATIONS.files[0].sql,
                MIGRATIONS.files[1].sql
            ]
        );
        assert_eq!(run(&mut db).unwrap(), []);
        assert_eq!(pollster::block_on(MIGRATIONS.pending(&mut db)).unwrap(), []);
    }

    #[test]
    fn files_declare_their_compatibility() {
        let [first, second] = MIGRATIONS.files else {
            unreachable!()
        };
        assert_eq!(first.declared_compatibility(), Some(false));
        assert_eq!(second.declared_compatibility(), Some(true));
        let silent = MigrationFile {
            version: 3,
            name: "0003_silent",
            sql: "-- backward-compatible: maybe\nDROP meta",
        };
        assert_eq!(silent.declared_compatibility(), None);
        assert!(!silent.backward_compatible());
    }

    #[test]
    fn a_table_from_before_the_rule_gains_the_column() {
        let mut db = Database::at(&[(1, false)]);
        db.bookkeeping = Some(false);
        let pending = pollster::block_on(MIGRATIONS.pending(&mut db)).unwrap();
        assert_eq!(pending.len(), 1);
        assert!(pending[0].backward_compatible && !pending[0].adopt);
        assert!(db.executed.is_empty());
        run(&mut db).unwrap();
        assert_eq!(db.bookkeeping, Some(true));
        assert!(db.recorded[1].backward_compatible);
    }

    #[test]
    fn the_previous_release_serves_a_schema_newer_by_compatible_migrations() {
        let mut db = Database::default();
        run(&mut db).unwrap();
        assert_eq!(pollster::block_on(PREVIOUS.apply(&mut db)).unwrap(), []);
        assert_eq!(pollster::block_on(PREVIOUS.pending(&mut db)).unwrap(), []);

        // A migration the previous release's file did not mark compatible,
        // then one recorded by a release from before the rule (no column).
        for mut db in [Database::at(&[(1, false), (2, false)]), {
            let mut db = Database::at(&[(1, false), (2, true)]);
            db.bookkeeping = Some(false);
            db
        }] {
            let err = pollster::block_on(PREVIOUS.pending(&mut db))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("schema version 2, newer than this sessiond knows (1)"),
                "{err}"
            );
        }
        let err = pollster::block_on(PREVIOUS.apply(&mut Database::at(&[(1, false), (2, false)])))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("0002_test (version 2) is not backward compatible"),
            "{err}"
        );
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
        let planned = pollster::block_on(MIGRATIONS.pending(&mut db)).unwrap();
        assert!(planned[0].adopt && !planned[1].adopt, "{planned:?}");
        let done = run(&mut db).unwrap();
        assert!(done[0].adopted && !done[1].adopted, "{done:?}");
        assert_eq!(db.executed, ["CREATE bookkeeping", MIGRATIONS.files[1].sql]);
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

        let mut db = Database::at(&[(1, false), (2, true), (3, true), (4, false)]);
        let err = run(&mut db).unwrap_err().to_string();
        assert!(
            err.contains("schema version 4, newer than this sessiond knows (2)"),
            "{err}"
        );
        assert!(err.contains("0004_test (version 4)"), "{err}");
        let mut db = Database::at(&[(1, false), (2, true), (3, true)]);
        assert_eq!(run(&mut db).unwrap(), []);
    }
}
