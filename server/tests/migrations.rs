//! Upgrades and rollbacks as an operator runs them, with the built binary:
//! `migrate --dry-run` shows what a deploy would change and changes
//! nothing, and the rule every migration follows (expand, then contract)
//! holds: a binary serves a schema that a newer release migrated when every
//! newer migration is recorded backward compatible, and refuses, naming the
//! migration, when one is not.
//!
//! There is no older binary to download, so the test plays the other side:
//! this binary stands for the previous release, and the next release's
//! migration is applied to the store by hand (its SQL, and its row in
//! `sessiond_migrations`, as the next release's runner would record it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::process::{Running, sessiond};
use common::{PgSchema, open_db};
use sessiond_client::Client;

/// The newest migration this binary knows on SQLite, and on PostgreSQL.
const SQLITE_VERSION: i64 = 2;
const POSTGRES_VERSION: i64 = 1;

fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn with_store<'a>(command: &'a mut Command, store: &str) -> &'a mut Command {
    command.env("SESSIOND_STORE", store)
}

fn sqlite_store(db: &Path) -> String {
    format!("sqlite://{}", db.display())
}

/// `sessiond migrate` (with `args`) on `store`, which must exit 0.
fn migrate(store: &str, args: &[&str]) -> String {
    let output = run(with_store(&mut sessiond(), store).arg("migrate").args(args));
    assert!(
        output.status.success(),
        "migrate {args:?} failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// `sessiond migrate` (with `args`) on `store`, which must exit 1; its
/// stderr.
fn migrate_refused(store: &str, args: &[&str]) -> String {
    let output = run(with_store(&mut sessiond(), store).arg("migrate").args(args));
    assert_eq!(
        output.status.code(),
        Some(1),
        "migrate {args:?} should fail: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

/// Serves `store` with the built binary and checks that sessions go
/// through it both ways, then stops it with SIGTERM.
async fn serves(store: &str) {
    let server = Running::start(with_store(&mut sessiond(), store));
    let client = Client::connect(server.url()).await.unwrap();
    let created = client.create(r#"{"user":"ada"}"#, None).await.unwrap();
    let loaded = client.load(&created.session_key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"ada"}"#);
    let cycled = client
        .cycle_key(&created.session_key, None, None)
        .await
        .unwrap();
    assert!(client.delete(&cycled.session_key).await.unwrap());
    server.signal("TERM");
    let (code, log) = server.wait();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("newer schema version than this sessiond knows"),
        "serving a newer schema should be logged: {log}"
    );
}

/// Starts the built binary on `store`, which must refuse to serve; its
/// stderr.
fn serve_refused(store: &str) -> String {
    let output = run(with_store(&mut sessiond(), store)
        .arg("serve")
        .env("SESSIOND_LISTEN", "127.0.0.1:0"));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    text(&output.stderr)
}

/// Refused: the database holds migration `name`, one version past `known`,
/// which it records as not backward compatible.
fn assert_names_the_breaking_migration(stderr: &str, name: &str, known: i64) {
    let next = known + 1;
    for expected in [
        &format!("schema version {next}, newer than this sessiond knows ({known})"),
        &format!("migration {name} (version {next}) is not backward compatible"),
        "--store",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
}

#[test]
fn a_dry_run_lists_pending_migrations_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    let store = sqlite_store(&db);

    let planned = migrate(&store, &["--dry-run"]);
    for expected in [
        "2 pending migration(s); nothing applied (--dry-run)",
        "0001 0001_django_session (NOT backward compatible",
        "    CREATE TABLE \"django_session\"",
    ] {
        assert!(planned.contains(expected), "{expected:?} in {planned}");
    }
    assert!(!db.exists(), "a dry run created the database");

    // An existing database that is behind: the dry run reads it only.
    open_db(&db)
        .execute_batch("CREATE TABLE other (x)")
        .unwrap();
    let tables = || -> Vec<String> {
        let conn = open_db(&db);
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master ORDER BY name")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(tables(), ["other"]);
    assert!(migrate(&store, &["--dry-run"]).contains("0001 0001_django_session"));
    assert_eq!(tables(), ["other"], "a dry run changed the schema");

    assert!(migrate(&store, &[]).contains("applied 0001_django_session"));
    assert!(migrate(&store, &["--dry-run"]).contains("schema is up to date; nothing to apply"));
}

#[test]
fn a_dry_run_on_djangos_table_says_it_adopts_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("django.sqlite3");
    open_db(&db)
        .execute_batch(
            "CREATE TABLE \"django_session\" (\"session_key\" varchar(40) NOT NULL PRIMARY KEY, \
             \"session_data\" text NOT NULL, \"expire_date\" datetime NOT NULL);",
        )
        .unwrap();
    let planned = migrate(&sqlite_store(&db), &["--dry-run"]);
    assert!(
        planned.contains("adopts the existing django_session table"),
        "{planned}"
    );
}

/// The next release's migration on an SQLite store: an expand (a column
/// with a default, an index) or a contract (a column dropped).
fn next_release_migrates_sqlite(db: &Path, name: &str, backward_compatible: bool) {
    let sql = if backward_compatible {
        "ALTER TABLE django_session ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
         CREATE INDEX django_session_user_id ON django_session (user_id);"
    } else {
        "ALTER TABLE django_session DROP COLUMN session_data;"
    };
    let conn = open_db(db);
    conn.execute_batch(sql).unwrap();
    conn.execute(
        "INSERT INTO sessiond_migrations \
         (version, name, applied_at, adopted, backward_compatible) \
         VALUES (?1, ?2, '2030-01-01 00:00:00', 0, ?3)",
        (SQLITE_VERSION + 1, name, backward_compatible),
    )
    .unwrap();
}

#[tokio::test]
async fn the_previous_release_serves_sqlite_after_a_compatible_migration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    let store = sqlite_store(&db);
    migrate(&store, &[]);
    next_release_migrates_sqlite(&db, "0003_user_id", true);

    // A pre-deploy job of the rolled-back release does nothing, and says
    // nothing is pending.
    assert!(migrate(&store, &[]).contains("schema is up to date"));
    assert!(migrate(&store, &["--dry-run"]).contains("nothing to apply"));
    serves(&store).await;
}

#[test]
fn the_previous_release_refuses_sqlite_after_an_incompatible_migration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    let store = sqlite_store(&db);
    migrate(&store, &[]);
    const BREAKING: &str = "0003_drop_data";
    const KNOWN: i64 = SQLITE_VERSION;
    next_release_migrates_sqlite(&db, BREAKING, false);

    for stderr in [
        migrate_refused(&store, &[]),
        migrate_refused(&store, &["--dry-run"]),
        serve_refused(&store),
    ] {
        assert_names_the_breaking_migration(&stderr, BREAKING, KNOWN);
    }
}

/// A Django migration that rebuilds `django_session` (as Django's schema
/// editor does on SQLite: a new table, the rows copied, the old one
/// dropped) drops the triggers that count its changes; the next `migrate`
/// (which every start runs) puts them back and says so.
#[test]
fn a_rebuilt_table_gets_its_change_count_triggers_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    let store = sqlite_store(&db);
    migrate(&store, &[]);
    let triggers = || -> i64 {
        open_db(&db)
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' \
                 AND tbl_name = 'django_session'",
                [],
                |row| row.get(0),
            )
            .unwrap()
    };
    assert_eq!(triggers(), 3);
    open_db(&db)
        .execute_batch(
            "CREATE TABLE \"new__django_session\" (\"session_key\" varchar(40) NOT NULL \
             PRIMARY KEY, \"session_data\" text NOT NULL, \"expire_date\" datetime NOT NULL);
             INSERT INTO new__django_session SELECT * FROM django_session;
             DROP TABLE django_session;
             ALTER TABLE new__django_session RENAME TO django_session;",
        )
        .unwrap();
    assert_eq!(triggers(), 0);

    let output = run(with_store(&mut sessiond(), &store).arg("migrate"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("put back the count of changes"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(triggers(), 3);
    let counted = open_db(&db);
    let changes = || -> i64 {
        counted
            .query_row("SELECT changes FROM sessiond_changes", [], |row| row.get(0))
            .unwrap()
    };
    let before = changes();
    counted
        .execute(
            "INSERT INTO django_session VALUES ('k', '{}', '9999-12-31 00:00:00')",
            [],
        )
        .unwrap();
    assert_eq!(changes(), before + 1, "the restored triggers count");

    let output = run(with_store(&mut sessiond(), &store).arg("migrate"));
    assert!(
        !text(&output.stderr).contains("put back"),
        "nothing to put back: {}",
        text(&output.stderr)
    );
}

/// A database migrated by a release from before the compatibility column
/// (its `sessiond_migrations` has four columns) is upgraded in place; that
/// release can still record migrations in it.
#[tokio::test]
async fn a_database_from_before_the_rule_gains_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    open_db(&db)
        .execute_batch(
            "CREATE TABLE sessiond_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TEXT NOT NULL, adopted INTEGER NOT NULL);
             CREATE TABLE \"django_session\" (\"session_key\" varchar(40) NOT NULL PRIMARY KEY, \
             \"session_data\" text NOT NULL, \"expire_date\" datetime NOT NULL);
             INSERT INTO sessiond_migrations VALUES (1, '0001_django_session', '2026-01-01', 0);",
        )
        .unwrap();
    let store = sqlite_store(&db);
    assert!(migrate(&store, &["--dry-run"]).contains("0002 0002_sessiond_changes"));
    assert!(migrate(&store, &[]).contains("applied 0002_sessiond_changes"));
    assert!(migrate(&store, &[]).contains("up to date"));
    let conn = open_db(&db);
    // As that release's runner writes a row.
    conn.execute(
        "INSERT INTO sessiond_migrations (version, name, applied_at, adopted) \
         VALUES (3, '0003_old_style', '2026-01-02', 0)",
        [],
    )
    .unwrap();
    let compatible: bool = conn
        .query_row(
            "SELECT backward_compatible FROM sessiond_migrations WHERE version = 3",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        !compatible,
        "what the old release recorded promised nothing"
    );
    assert_names_the_breaking_migration(
        &migrate_refused(&store, &[]),
        "0003_old_style",
        SQLITE_VERSION,
    );
}

macro_rules! require_postgres {
    () => {
        if !common::service_available("PostgreSQL", common::POSTGRES_ADDR) {
            return;
        }
    };
}

async fn next_release_migrates_postgres(schema: &PgSchema, name: &str, backward_compatible: bool) {
    let sql = if backward_compatible {
        "ALTER TABLE django_session ADD COLUMN user_id text NOT NULL DEFAULT '';
         CREATE INDEX django_session_user_id ON django_session (user_id);"
    } else {
        "ALTER TABLE django_session DROP COLUMN session_data;"
    };
    schema
        .execute(&format!(
            "{sql} INSERT INTO sessiond_migrations (version, name, adopted, backward_compatible) \
             VALUES ({next}, '{name}', false, {backward_compatible});",
            next = POSTGRES_VERSION + 1
        ))
        .await;
}

#[tokio::test]
async fn the_previous_release_serves_postgres_after_a_compatible_migration() {
    require_postgres!();
    let schema = PgSchema::new();
    let store = schema.url();
    migrate(&store, &[]);
    next_release_migrates_postgres(&schema, "0002_user_id", true).await;
    assert!(migrate(&store, &["--dry-run"]).contains("nothing to apply"));
    assert!(migrate(&store, &[]).contains("schema is up to date"));
    serves(&store).await;
}

#[tokio::test]
async fn the_previous_release_refuses_postgres_after_an_incompatible_migration() {
    require_postgres!();
    let schema = PgSchema::new();
    let store = schema.url();
    let planned = migrate(&store, &["--dry-run"]);
    assert!(planned.contains("0001 0001_django_session"), "{planned}");
    assert!(
        planned.contains("varchar_pattern_ops"),
        "the SQL is shown: {planned}"
    );
    migrate(&store, &[]);
    const BREAKING: &str = "0002_drop_data";
    const KNOWN: i64 = POSTGRES_VERSION;
    next_release_migrates_postgres(&schema, BREAKING, false).await;
    for stderr in [
        migrate_refused(&store, &[]),
        migrate_refused(&store, &["--dry-run"]),
        serve_refused(&store),
    ] {
        assert_names_the_breaking_migration(&stderr, BREAKING, KNOWN);
    }
}
