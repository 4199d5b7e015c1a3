//! `sessiond backup`, as an operator runs it: the built binary copies an
//! SQLite file that another sessiond process serves under a steady load of
//! Creates and Saves, and a new server started on the copy serves every
//! session whose write was acknowledged before the backup began, with data
//! that some acknowledged or later write sent. Around it: the copy is its
//! owner's alone under any umask, an existing destination is replaced only
//! with --force, and what the command cannot do (a missing directory, a
//! store that is not SQLite) is refused with a message that says why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::open_db;
use common::process::{Running, sessiond, sessiond_with_umask};
use sessiond_client::Client;

/// Rows written into the file before it is served, about 1 KiB each: the
/// copy then takes several steps of the backup while writes go on.
const SEEDED: usize = 12_000;

/// Padding of every payload.
const PAD_BYTES: usize = 1000;

/// Clients writing at once, each one call at a time.
const WRITERS: usize = 4;

/// Each writer creates a session every this many calls and saves one of
/// its sessions in the others.
const CREATE_EVERY: u64 = 4;

/// Acknowledged writes before the backup begins.
const ACKED_BEFORE_BACKUP: usize = 400;

/// Longest the writers may take to reach [`ACKED_BEFORE_BACKUP`] before the
/// test fails (a failure bound, not a measurement).
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Concurrent loads when checking the copy.
const LOADERS: usize = 8;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs `command backup ARGS` with `store` and waits for it.
fn backup(command: &mut Command, store: &str, args: &[&std::ffi::OsStr]) -> Output {
    command
        .env("SESSIOND_STORE", store)
        .arg("backup")
        .args(args)
        .output()
        .unwrap()
}

/// Creates the schema of a new database file through the binary.
fn migrate(db: &Path) {
    let output = sessiond()
        .env("SESSIOND_STORE", sqlite_url(db))
        .arg("migrate")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// The files in `dir`, by name.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The data of version `version` of the `session`th session of `writer`:
/// a check of the copy can tell which write it came from.
fn payload(writer: usize, session: u64, version: u64) -> String {
    let pad = "p".repeat(PAD_BYTES);
    format!(r#"{{"writer":{writer},"session":{session},"version":{version},"pad":"{pad}"}}"#)
}

fn seeded_payload(at: usize) -> String {
    let pad = "s".repeat(PAD_BYTES);
    format!(r#"{{"seeded":{at},"pad":"{pad}"}}"#)
}

fn seeded_key(at: usize) -> String {
    format!("seeded{at:010}")
}

/// Writes rows straight into the file, as a Django app sharing it would.
fn seed(db: &Path) {
    let mut conn = open_db(db);
    let tx = conn.transaction().unwrap();
    for at in 0..SEEDED {
        tx.execute(
            "INSERT INTO django_session VALUES (?1, ?2, '2999-01-01 00:00:00')",
            (seeded_key(at), seeded_payload(at)),
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// One session of a writer: which of its sessions it is, and its versions.
#[derive(Debug, Clone, Copy)]
struct Versions {
    session: u64,
    /// The last version the server acknowledged (0: the Create).
    acked: u64,
    /// The last version sent; a Save in flight has `sent > acked`.
    sent: u64,
}

/// What one writer knows about its sessions.
type Ledger = HashMap<String, Versions>;

/// Creates and saves sessions of its own until `stop`, one call at a
/// time, recording each acknowledgement in `ledger` as it arrives.
async fn write(
    client: Client,
    writer: usize,
    ledger: Arc<Mutex<Ledger>>,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut keys: Vec<String> = Vec::new();
    let mut sessions = 0;
    let mut call: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if call.is_multiple_of(CREATE_EVERY) || keys.is_empty() {
            sessions += 1;
            let created = client
                .create(&payload(writer, sessions, 0), None)
                .await
                .unwrap();
            let versions = Versions {
                session: sessions,
                acked: 0,
                sent: 0,
            };
            ledger
                .lock()
                .unwrap()
                .insert(created.session_key.clone(), versions);
            keys.push(created.session_key);
        } else {
            let key = &keys[usize::try_from(call).unwrap() % keys.len()];
            let (session, version) = {
                let mut ledger = ledger.lock().unwrap();
                let versions = ledger.get_mut(key).unwrap();
                versions.sent += 1;
                (versions.session, versions.sent)
            };
            client
                .save(key, &payload(writer, session, version), None, false)
                .await
                .unwrap();
            let mut ledger = ledger.lock().unwrap();
            let versions = ledger.get_mut(key).unwrap();
            versions.acked = versions.acked.max(version);
        }
        acked.fetch_add(1, Ordering::Relaxed);
        call += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_write_load_serves_every_session_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    let dest = dir.path().join("backup.sqlite3");
    migrate(&db);
    seed(&db);

    let server = Running::start(sessiond().env("SESSIOND_STORE", sqlite_url(&db)));
    let client = Client::connect(server.url()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let ledgers: Vec<Arc<Mutex<Ledger>>> = (0..WRITERS).map(|_| Arc::default()).collect();
    let writers: Vec<_> = ledgers
        .iter()
        .enumerate()
        .map(|(writer, ledger)| {
            tokio::spawn(write(
                client.clone(),
                writer,
                ledger.clone(),
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + LOAD_TIMEOUT;
    while acked.load(Ordering::Relaxed) < ACKED_BEFORE_BACKUP {
        assert!(Instant::now() < deadline, "the writers are stuck");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Everything acknowledged up to here must be in the copy.
    let before: Vec<Ledger> = ledgers
        .iter()
        .map(|ledger| ledger.lock().unwrap().clone())
        .collect();
    let acked_at_start = acked.load(Ordering::Relaxed);
    let store = sqlite_url(&db);
    let target = dest.clone();
    let output =
        tokio::task::spawn_blocking(move || backup(&mut sessiond(), &store, &[target.as_os_str()]))
            .await
            .unwrap();
    let during = acked.load(Ordering::Relaxed) - acked_at_start;
    eprintln!("{during} writes were acknowledged while the backup ran");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = text(&output.stdout);
    assert!(summary.contains("backed up to"), "{summary}");
    assert!(summary.contains("integrity check ok"), "{summary}");

    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let after: Vec<Ledger> = ledgers
        .iter()
        .map(|ledger| ledger.lock().unwrap().clone())
        .collect();
    server.signal("TERM");
    let (exit, log) = server.wait();
    assert_eq!(exit, Some(0), "{log}");
    assert_eq!(
        names(dir.path())
            .iter()
            .filter(|name| name.contains("partial"))
            .count(),
        0,
        "{:?}",
        names(dir.path())
    );
    assert_eq!(mode(&dest), 0o600);

    // The restore: a new server on the copy.
    let restored = Running::start(sessiond().env("SESSIOND_STORE", sqlite_url(&dest)));
    let client = Client::connect(restored.url()).await.unwrap();
    let mut expected: Vec<(String, Vec<String>)> = (0..SEEDED)
        .map(|at| (seeded_key(at), vec![seeded_payload(at)]))
        .collect();
    for (writer, ledger) in before.iter().enumerate() {
        for (key, versions) in ledger {
            // Saves acknowledged before the backup, or sent later.
            let last_sent = after[writer][key].sent;
            let allowed = (versions.acked..=last_sent)
                .map(|version| payload(writer, versions.session, version))
                .collect();
            expected.push((key.clone(), allowed));
        }
    }
    let checked = expected.len();
    let expected = Arc::new(Mutex::new(expected));
    let loaders: Vec<_> = (0..LOADERS)
        .map(|_| {
            let (client, expected) = (client.clone(), expected.clone());
            tokio::spawn(async move {
                loop {
                    let Some((key, allowed)) = expected.lock().unwrap().pop() else {
                        return;
                    };
                    let loaded = client.load(&key).await.unwrap();
                    let loaded = loaded.unwrap_or_else(|| panic!("{key} is not in the backup"));
                    assert!(
                        allowed.contains(&loaded.data),
                        "{key} holds data no acknowledged or later write sent: {}",
                        &loaded.data[..loaded.data.len().min(80)]
                    );
                }
            })
        })
        .collect();
    for loader in loaders {
        loader.await.unwrap();
    }
    assert!(
        checked > SEEDED,
        "no session was written through the server"
    );
    restored.signal("TERM");
    let (exit, log) = restored.wait();
    assert_eq!(exit, Some(0), "{log}");
}

#[test]
fn an_existing_destination_is_refused_by_name_and_force_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    let dest = dir.path().join("kept.sqlite3");
    migrate(&db);
    open_db(&db)
        .execute(
            "INSERT INTO django_session VALUES ('onesession0000', '{}', '2999-01-01 00:00:00')",
            [],
        )
        .unwrap();
    std::fs::write(&dest, "an older backup").unwrap();

    let refused = backup(&mut sessiond(), &sqlite_url(&db), &[dest.as_os_str()]);
    assert_eq!(refused.status.code(), Some(1));
    let message = text(&refused.stderr);
    assert!(message.contains(&dest.display().to_string()), "{message}");
    assert!(message.contains("--force"), "{message}");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "an older backup");

    let forced = backup(
        &mut sessiond(),
        &sqlite_url(&db),
        &["--force".as_ref(), dest.as_os_str()],
    );
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert!(text(&forced.stdout).contains("1 sessions"));
    let count: i64 = open_db(&dest)
        .query_row("SELECT count(*) FROM django_session", [], |row| row.get(0))
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!(
        names(dir.path()),
        ["kept.sqlite3", "sessions.sqlite3"],
        "the copy leaves nothing else behind"
    );
}

#[test]
fn the_copy_is_the_owners_alone_under_a_permissive_umask() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    migrate(&db);
    for (umask, force) in [("000", false), ("002", true)] {
        let dest = dir.path().join("private.sqlite3");
        let mut args = vec![dest.as_os_str()];
        if force {
            args.push("--force".as_ref());
        }
        let output = backup(&mut sessiond_with_umask(umask), &sqlite_url(&db), &args);
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert_eq!(mode(&dest), 0o600, "umask {umask}");
    }
}

#[test]
fn stores_it_does_not_copy_are_refused_naming_their_own_tools() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("backup.sqlite3");
    let files = format!("file://{}", dir.path().display());
    for (store, tools) in [
        (
            "postgres://app:hunter2secret@127.0.0.1:1/sessions",
            "pg_dump",
        ),
        ("redis://:hunter2secret@127.0.0.1:1/0", "BGSAVE"),
        ("rediss+cluster://127.0.0.1:1/", "append-only file"),
        ("memory://", "nothing to back up"),
        (files.as_str(), "copy the directory"),
    ] {
        let output = backup(&mut sessiond(), store, &[dest.as_os_str()]);
        let message = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{store}: {message}");
        assert!(message.contains("copies SQLite stores only"), "{message}");
        assert!(message.contains(tools), "{store}: {message}");
        assert!(message.contains("--store"), "{message}");
        assert!(!message.contains("hunter2secret"), "{message}");
        assert!(!dest.exists());
    }
}

#[test]
fn a_destination_in_a_missing_directory_is_refused_naming_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    migrate(&db);
    let missing = dir.path().join("backups").join("daily");
    let dest = missing.join("sessions.sqlite3");
    let output = backup(&mut sessiond(), &sqlite_url(&db), &[dest.as_os_str()]);
    let message = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!(
            "the directory {} does not exist",
            missing.display()
        )),
        "{message}"
    );
    assert!(!dir.path().join("backups").exists());
}

#[test]
fn a_missing_database_is_refused_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo.sqlite3");
    let dest = dir.path().join("backup.sqlite3");
    let output = backup(&mut sessiond(), &sqlite_url(&db), &[dest.as_os_str()]);
    let message = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains("--store"), "{message}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}
