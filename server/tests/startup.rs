//! Databases sessiond cannot or must not use are refused at start-up with a
//! message that names the store flag and says what to do; a database locked
//! by another writer at run time answers UNAVAILABLE and loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestServer, code, open_db, serve_config, stored_row};
use sessiond::Server;
use tonic::Code;

/// The start-up error of a server on `db_path`, as `main` prints it.
async fn start_error(db_path: &Path, args: &[&str]) -> String {
    let err = Server::open(serve_config(db_path, args)).await.unwrap_err();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(
        text.contains("--store"),
        "the message should name the flag: {text}"
    );
    text
}

#[tokio::test]
async fn a_missing_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = start_error(&dir.path().join("no/such/dir/db.sqlite3"), &[]).await;
    assert!(text.contains("does not exist"), "{text}");
}

#[tokio::test]
async fn a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = start_error(dir.path(), &[]).await;
    assert!(text.contains("is a directory"), "{text}");
}

#[tokio::test]
async fn a_read_only_database_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readonly.sqlite3");
    let conn = open_db(&path);
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    let before = std::fs::read(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();

    let text = start_error(&path, &[]).await;
    assert!(text.contains("read-only"), "{text}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &content).unwrap();
    let text = start_error(&path, &[]).await;
    assert!(text.contains("not an SQLite database"), "{text}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
}

#[tokio::test]
async fn a_database_locked_by_another_writer_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.sqlite3");
    let holder = open_db(&path);
    holder
        .execute_batch("CREATE TABLE t (x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
        .unwrap();

    let started = Instant::now();
    let text = start_error(&path, &["--store-timeout", "300ms"]).await;
    assert!(text.contains("locked by another process"), "{text}");
    assert!(text.contains("--store-timeout"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    holder.execute_batch("COMMIT").unwrap();
}

#[tokio::test]
async fn a_wal_database_whose_write_lock_is_held_is_refused_at_start_up() {
    let server = TestServer::start().await;
    let dir = server.stop().await;
    let path = dir.path().join("sessions.sqlite3");
    let holder = open_db(&path);
    holder
        .execute_batch("BEGIN IMMEDIATE; DELETE FROM sessiond_migrations;")
        .unwrap();

    let text = start_error(&path, &["--store-timeout", "300ms"]).await;
    assert!(text.contains("locked by another process"), "{text}");
    holder.execute_batch("ROLLBACK").unwrap();
}

#[tokio::test]
async fn writes_while_another_process_holds_the_lock_fail_with_unavailable_and_lose_nothing() {
    let server = TestServer::start_with(&["--store-timeout", "300ms"]).await;
    let key = "lockedkey0000000";
    server
        .client
        .save(key, r#"{"v":1}"#, None, true)
        .await
        .unwrap();

    let holder = open_db(&server.db_path);
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let err = server
        .client
        .save(key, r#"{"v":2}"#, None, false)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Reads go on while the lock is held.
    assert_eq!(
        server.client.load(key).await.unwrap().unwrap().data,
        r#"{"v":1}"#
    );
    holder.execute_batch("ROLLBACK").unwrap();

    assert_eq!(stored_row(&server.db(), key).unwrap().0, r#"{"v":1}"#);
    server
        .client
        .save(key, r#"{"v":3}"#, None, false)
        .await
        .unwrap();
    assert_eq!(
        server.client.load(key).await.unwrap().unwrap().data,
        r#"{"v":3}"#
    );
    server.stop().await;
}

/// Django's own `sessions.0001_initial` on SQLite, as `manage.py migrate` runs it.
const DJANGO_DDL: &str = r#"
CREATE TABLE "django_session" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" datetime NOT NULL);
CREATE INDEX "django_session_expire_date_a5c62663" ON "django_session" ("expire_date");
"#;

#[tokio::test]
async fn a_table_migrated_by_django_is_adopted_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.sqlite3");
    let conn = open_db(&path);
    conn.execute_batch(DJANGO_DDL).unwrap();
    conn.execute(
        "INSERT INTO django_session VALUES ('djangowrotethis0', '{\"from\":\"django\"}', '2999-01-01 00:00:00')",
        [],
    )
    .unwrap();
    let schema_before: Vec<String> = schema(&conn);

    let server = TestServer::start_in(dir, &[]).await;
    let loaded = server
        .client
        .load("djangowrotethis0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.data, r#"{"from":"django"}"#);
    let db = server.db();
    let adopted: bool = db
        .query_row(
            "SELECT adopted FROM sessiond_migrations WHERE version = 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(adopted);
    // sessiond's own tables, and the triggers on Django's table that count
    // its changes, aside: Django's table and index are as they were.
    let schema_after: Vec<String> = schema(&db)
        .into_iter()
        .filter(|sql| !sql.contains("sessiond_"))
        .collect();
    assert_eq!(schema_after, schema_before);
    server.stop().await;
}

#[tokio::test]
async fn a_django_session_table_of_another_shape_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.sqlite3");
    let conn = open_db(&path);
    conn.execute_batch(
        "CREATE TABLE django_session (session_key text PRIMARY KEY, payload blob, expires integer);
         INSERT INTO django_session VALUES ('somekey0', x'00', 1);",
    )
    .unwrap();
    let text = start_error(&path, &[]).await;
    assert!(text.contains("not in Django's shape"), "{text}");
    assert!(text.contains("payload"), "{text}");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM django_session", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_database_from_a_newer_sessiond_is_refused() {
    let server = TestServer::start().await;
    let dir = server.stop().await;
    let path = dir.path().join("sessions.sqlite3");
    open_db(&path)
        .execute(
            "INSERT INTO sessiond_migrations (version, name, applied_at, adopted) \
             VALUES (999, '0999_future', '2030-01-01', 0)",
            [],
        )
        .unwrap();
    let text = start_error(&path, &[]).await;
    assert!(text.contains("newer than this sessiond"), "{text}");
}

#[tokio::test]
async fn migrating_twice_changes_nothing() {
    let server = TestServer::start().await;
    server
        .client
        .save("keepme000", "{}", None, true)
        .await
        .unwrap();
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, &[]).await;
    let versions: i64 = server
        .db()
        .query_row("SELECT count(*) FROM sessiond_migrations", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(
        versions, 2,
        "0001_django_session and 0002_sessiond_changes, once each"
    );
    assert!(server.client.exists("keepme000").await.unwrap());
    server.stop().await;
}

fn schema(conn: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
