//! Files that hold sessions are their owner's alone, whatever the umask
//! sessiond runs under: the SQLite database with its `-wal` and `-shm`
//! files, and the file engine's session files; existing files that every
//! user can read are reported at start-up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::process::{Running, sessiond_with_umask};
use sessiond_client::Client;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Starts the binary under `umask` on `store`, saves one session through
/// it (so that SQLite has written its log), and returns it still running.
async fn serve_and_save(umask: &str, store: &str) -> Running {
    let server = Running::start(sessiond_with_umask(umask).env("SESSIOND_STORE", store));
    let client = Client::connect(server.url()).await.unwrap();
    client.create(r#"{"user":"ada"}"#, None).await.unwrap();
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_the_owners_alone_under_any_umask() {
    for umask in ["022", "000", "002"] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sessions.sqlite3");
        let server = serve_and_save(umask, &format!("sqlite://{}", db.display())).await;
        for suffix in ["", "-wal", "-shm"] {
            let path = dir.path().join(format!("sessions.sqlite3{suffix}"));
            assert_eq!(mode(&path), 0o600, "umask {umask}: {}", path.display());
        }
        server.signal("TERM");
        let (code, _) = server.wait();
        assert_eq!(code, Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_files_are_the_owners_alone_under_any_umask() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let server = serve_and_save("000", &format!("file://{}", dir.path().display())).await;
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_others_can_read_are_reported_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    std::fs::write(&db, "").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = serve_and_save("022", &format!("sqlite://{}", db.display())).await;
    let log = server.log();
    assert!(
        log.contains("the SQLite database file is readable by every user"),
        "{log}"
    );
    assert!(log.contains("chmod o-rwx"), "{log}");

    let sessions = tempfile::tempdir().unwrap();
    std::fs::set_permissions(sessions.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = serve_and_save("022", &format!("file://{}", sessions.path().display())).await;
    let log = server.log();
    assert!(
        log.contains("the session directory (its file names are session keys) is readable"),
        "{log}"
    );
}
