//! What only the file engine has to get right: files named and written as
//! Django's file engine writes them, expiry read from file times as Django
//! reads it, keys that never become paths outside the directory, no
//! temporary file left behind, directories refused at start-up, and inserts
//! that stay exclusive without a shared lock; and every RPC through a real
//! server on `--store file://...`. The shared semantics are in the contract
//! suite (`engine_contract.rs`, `file::*`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use sessiond::Server;
use sessiond::cli::ServeArgs;
use sessiond::session::{ExpireDate, InvalidInput, Record, SessionKey};
use sessiond::store::{self, SessionStore, StoreError, StoreOptions, StoreUrl};
use sessiond_client::Client;
use tonic::Code;

/// Django's `signing.dumps({'a': 1}, compress=True)` under the session salt
/// (reference/django-sessions-spec.md §3.8): what Django's file engine
/// writes into a session file.
const DJANGO_DATA: &str = "eyJhIjoxfQ:1vb66i:yKlbcqlZEw966dn0fIruQmeVMxnnx8mwkT7_wP7Aq5M";

/// Django's default SESSION_COOKIE_AGE, and sessiond's --session-age.
const COOKIE_AGE: TimeDelta = TimeDelta::seconds(1_209_600);

const KEY: &str = "abcdefgh12345678abcdefgh12345678";

async fn open(dir: &Path, options: &str) -> Arc<dyn SessionStore> {
    open_with_age(dir, options, COOKIE_AGE).await
}

/// The store with `--session-age` set to `age`: a file's time is its
/// session's expiry minus that age.
async fn open_with_age(dir: &Path, options: &str, age: TimeDelta) -> Arc<dyn SessionStore> {
    let url: StoreUrl = format!("file://{}{options}", dir.display())
        .parse()
        .unwrap();
    let options = StoreOptions {
        session_age: age.to_std().unwrap(),
        ..StoreOptions::default()
    };
    store::open(&url, &options).await.unwrap()
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn key(text: &str) -> SessionKey {
    SessionKey::parse(text).unwrap()
}

fn record(data: &str, expire: DateTime<Utc>) -> Record {
    Record {
        session_data: data.to_owned(),
        expire_date: ExpireDate::new(expire).unwrap(),
    }
}

fn system_time(instant: DateTime<Utc>) -> SystemTime {
    SystemTime::from(instant)
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Writes a session file as Django's file engine does: the encoded data,
/// with the modification time of the save.
fn write_as_django(path: &Path, data: &str, saved_at: DateTime<Utc>) {
    std::fs::write(path, data).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(system_time(saved_at)).unwrap();
}

#[tokio::test]
async fn session_files_are_named_and_written_as_django_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "").await;
    let expire = instant("2026-01-15T00:00:00.123456Z");
    store
        .insert(&key(KEY), record(DJANGO_DATA, expire))
        .await
        .unwrap();

    let path = dir.path().join(format!("sessionid{KEY}"));
    assert_eq!(names(dir.path()), [format!("sessionid{KEY}")]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), DJANGO_DATA);
    // Django reads mtime + SESSION_COOKIE_AGE: the expiry sessiond was given.
    assert_eq!(mtime(&path), system_time(expire - COOKIE_AGE));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "sessions are private, as Django's mkstemp leaves them"
    );

    let later = expire + TimeDelta::days(1);
    store
        .update(&key(KEY), record(r#"{"b":2}"#, later))
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), r#"{"b":2}"#);
    assert_eq!(mtime(&path), system_time(later - COOKIE_AGE));

    let other = tempfile::tempdir().unwrap();
    let store = open_with_age(other.path(), "?prefix=myapp_sid", TimeDelta::seconds(3600)).await;
    store
        .insert(&key(KEY), record(DJANGO_DATA, expire))
        .await
        .unwrap();
    let path = other.path().join(format!("myapp_sid{KEY}"));
    assert_eq!(names(other.path()), [format!("myapp_sid{KEY}")]);
    assert_eq!(mtime(&path), system_time(expire - TimeDelta::seconds(3600)));
}

#[tokio::test]
async fn files_django_wrote_load_with_the_expiry_django_gives_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "").await;
    let saved_at = instant("2026-01-01T12:00:00.654321Z");
    let django_expiry = saved_at + COOKIE_AGE;
    write_as_django(
        &dir.path().join(format!("sessionid{KEY}")),
        DJANGO_DATA,
        saved_at,
    );

    let just_before = django_expiry - TimeDelta::microseconds(1);
    let loaded = store.load(&key(KEY), just_before).await.unwrap().unwrap();
    assert_eq!(loaded, record(DJANGO_DATA, django_expiry));
    assert_eq!(store.load(&key(KEY), django_expiry).await.unwrap(), None);
    assert_eq!(
        store::clear_expired(store.as_ref(), django_expiry, 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store::clear_expired(store.as_ref(), just_before + TimeDelta::microseconds(2), 10)
            .await
            .unwrap(),
        1
    );
    assert!(names(dir.path()).is_empty());

    // Django's create() leaves an empty placeholder until its rename: it is a
    // session (the key is taken) with empty data, which the codec reads as
    // an empty session.
    std::fs::write(dir.path().join("sessionidplaceholder"), "").unwrap();
    assert!(store.exists(&key("placeholder")).await.unwrap());
    let now = Utc::now();
    let loaded = store.load(&key("placeholder"), now).await.unwrap().unwrap();
    assert_eq!(loaded.session_data, "");
    let err = store
        .insert(&key("placeholder"), record("{}", now + TimeDelta::hours(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
}

#[tokio::test]
async fn clear_expired_removes_expired_session_files_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "").await;
    let now = instant("2026-06-01T00:00:00Z");
    let long_ago = now - COOKIE_AGE - TimeDelta::days(30);
    let expired = [
        // Another app's sessions, under another cookie name.
        format!("othersid{KEY}"),
        // Django's temporary file during a save.
        format!("sessionid{KEY}_out_x7k2p9q"),
        // Not a key sessiond serves.
        "sessionidABCDEFGHIJ".to_owned(),
        "sessionidshort".to_owned(),
        "unrelated.txt".to_owned(),
    ];
    for name in &expired {
        write_as_django(&dir.path().join(name), "x", long_ago);
    }
    std::fs::create_dir(dir.path().join("sessionidadirectory")).unwrap();
    // A temporary file of a write under way (sessiond's own naming).
    write_as_django(
        &dir.path()
            .join(format!(".sessionid{KEY}.tmp-0123456789abcdef")),
        "x",
        long_ago,
    );
    write_as_django(&dir.path().join(format!("sessionid{KEY}")), "x", long_ago);
    let before = names(dir.path());

    assert_eq!(
        store::clear_expired(store.as_ref(), now, 2).await.unwrap(),
        1
    );
    let after = names(dir.path());
    let gone: Vec<_> = before.iter().filter(|name| !after.contains(name)).collect();
    assert_eq!(gone, [&format!("sessionid{KEY}")]);
}

#[tokio::test]
async fn failed_writes_leave_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "").await;
    let later = Utc::now() + TimeDelta::hours(1);
    store
        .insert(&key("taken0000"), record(r#"{"v":1}"#, later))
        .await
        .unwrap();
    store
        .insert(&key("taken1111"), record(r#"{"v":1}"#, later))
        .await
        .unwrap();
    std::fs::create_dir(dir.path().join("sessionidadirectory")).unwrap();
    std::fs::write(dir.path().join("sessionidadirectory/x"), "x").unwrap();
    let before = names(dir.path());

    let err = store
        .insert(&key("taken0000"), record(r#"{"v":2}"#, later))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");

    // A directory where the session file should be: the rename fails.
    let err = store
        .update(&key("adirectory"), record("{}", later))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");

    let err = store
        .cycle_key(
            &key("taken0000"),
            &key("taken1111"),
            None,
            ExpireDate::new(later).unwrap(),
            Utc::now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");

    // Linux clamps a file time outside the file system's range without an
    // error (ext4 ends in 2446); the engine refuses instead of storing
    // another expiry than the one it acknowledges.
    let far = instant("9999-12-31T23:59:59.999999Z");
    match store.insert(&key("farfuture"), record("{}", far)).await {
        Err(StoreError::Invalid(InvalidInput::ExpireDateNotStorable)) => {}
        Ok(()) => {
            eprintln!("this file system keeps file times up to 9999; checking it kept it exactly");
            let loaded = store
                .load(&key("farfuture"), Utc::now())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(loaded.expire_date.instant(), far);
            store.delete(&key("farfuture")).await.unwrap();
        }
        Err(err) => panic!("{err:?}"),
    }

    assert_eq!(names(dir.path()), before);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sessionidtaken0000")).unwrap(),
        r#"{"v":1}"#
    );
}

#[tokio::test]
async fn concurrent_inserts_of_one_key_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    // Two engines on one directory share no lock, as two processes would
    // not: exclusivity must come from the file system.
    let stores = [open(dir.path(), "").await, open(dir.path(), "").await];
    let later = Utc::now() + TimeDelta::hours(1);
    for round in 0..20 {
        let contested = key(&format!("contested{round:04}"));
        let mut inserts = Vec::new();
        for writer in 0..16 {
            let store = stores[writer % 2].clone();
            let contested = contested.clone();
            inserts.push(tokio::spawn(async move {
                let data = format!(r#"{{"writer":{writer}}}"#);
                store
                    .insert(&contested, record(&data, later))
                    .await
                    .map(|()| data)
            }));
        }
        let mut winners = Vec::new();
        for insert in inserts {
            match insert.await.unwrap() {
                Ok(data) => winners.push(data),
                Err(StoreError::AlreadyExists) => {}
                Err(err) => panic!("{err:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let stored =
            std::fs::read_to_string(dir.path().join(format!("sessionid{}", contested.as_str())))
                .unwrap();
        assert_eq!(stored, winners[0]);
    }
    assert!(
        names(dir.path()).iter().all(|name| !name.starts_with('.')),
        "{:?}",
        names(dir.path())
    );
}

/// The start-up error of a server on `store`, as `main` prints it.
async fn start_error(store: &str) -> String {
    let config = ServeArgs::try_parse_from(["serve", "--store", store, "--listen", "127.0.0.1:0"])
        .unwrap()
        .into_config();
    let err = Server::open(config).await.unwrap_err();
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
    assert!(
        text.contains(store),
        "the message should name the store: {text}"
    );
    text
}

#[tokio::test]
async fn a_missing_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir");
    let text = start_error(&format!("file://{}", missing.display())).await;
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("mkdir"), "{text}");
    assert!(!missing.exists(), "the directory must not be created");
}

#[tokio::test]
async fn a_file_in_place_of_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessions");
    std::fs::write(&file, "").unwrap();
    let text = start_error(&format!("file://{}", file.display())).await;
    assert!(text.contains("not a directory"), "{text}");
}

#[tokio::test]
async fn a_read_only_directory_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir(&sessions).unwrap();
    std::fs::set_permissions(&sessions, std::fs::Permissions::from_mode(0o555)).unwrap();
    let text = start_error(&format!("file://{}", sessions.display())).await;
    std::fs::set_permissions(&sessions, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(text.contains("read-only"), "{text}");
    assert!(text.contains("chmod"), "{text}");
    assert!(names(&sessions).is_empty());
}

#[tokio::test]
async fn bad_file_urls_are_refused_with_what_is_expected() {
    for (url, expected) in [
        (
            "file:///tmp?prefix=../x",
            "file://: prefix must be 1 to 100 characters",
        ),
        (
            "file:///tmp?age=1",
            "unknown option 'age'; file:// accepts only the option prefix",
        ),
        (
            "file:///tmp?cookie_age=3600",
            "--session-age (SESSIOND_SESSION_AGE)",
        ),
    ] {
        let err = ServeArgs::try_parse_from(["serve", "--store", url])
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{url}: {err}");
    }
}

/// The status code of a failed call.
fn code(err: sessiond_client::Error) -> Code {
    err.code()
        .unwrap_or_else(|| panic!("expected a status, got {err:?}"))
}

#[tokio::test]
async fn a_server_on_a_file_store_serves_every_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir(&sessions).unwrap();
    let store = format!("file://{}", sessions.display());
    let config = ServeArgs::try_parse_from([
        "serve",
        "--store",
        &store,
        "--listen",
        "127.0.0.1:0",
        "--purge-interval",
        "0",
    ])
    .unwrap()
    .into_config();
    let server = Server::open(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let client = Client::connect(format!("http://{addr}")).await.unwrap();
    let file = |key: &str| sessions.join(format!("sessionid{key}"));

    // Create: one file, the data as sent (json codec), the expiry in its time.
    let expire = system_time(instant("2100-01-01T00:00:00.123456Z"));
    let created = client
        .create(r#"{"user":"ada"}"#, Some(expire))
        .await
        .unwrap();
    let path = file(&created.session_key);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), r#"{"user":"ada"}"#);
    assert_eq!(
        mtime(&path),
        system_time(instant("2100-01-01T00:00:00.123456Z") - COOKIE_AGE)
    );
    let loaded = client.load(&created.session_key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"ada"}"#);
    assert_eq!(loaded.expire_date, expire);

    // Save: insert never overwrites, update never resurrects.
    client
        .save(KEY, r#"{"a":1}"#, Some(expire), true)
        .await
        .unwrap();
    let err = client
        .save(KEY, "{}", Some(expire), true)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::AlreadyExists);
    let err = client
        .save("missing00", "{}", Some(expire), false)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    assert!(!file("missing00").exists());

    // Patch on top of what is stored.
    client
        .patch(KEY, r#"{"b":2}"#, &[], false, Some(expire))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(file(KEY)).unwrap(),
        r#"{"a":1,"b":2}"#
    );

    // CycleKey moves the file to a fresh name.
    let cycled = client.cycle_key(KEY, None, Some(expire)).await.unwrap();
    assert!(!file(KEY).exists());
    assert!(!client.exists(KEY).await.unwrap());
    assert_eq!(
        std::fs::read_to_string(file(&cycled.session_key)).unwrap(),
        r#"{"a":1,"b":2}"#
    );

    // Delete is idempotent.
    assert!(client.delete(&cycled.session_key).await.unwrap());
    assert!(!client.delete(&cycled.session_key).await.unwrap());
    assert!(!file(&cycled.session_key).exists());

    // An expired session exists but does not load, until ClearExpired.
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    client
        .save("expired00", "{}", Some(an_hour_ago), true)
        .await
        .unwrap();
    assert_eq!(client.load("expired00").await.unwrap(), None);
    assert!(client.exists("expired00").await.unwrap());
    assert_eq!(client.clear_expired().await.unwrap(), 1);
    assert!(!file("expired00").exists());

    // Keys that look like paths are refused at the edge; nothing is touched
    // inside the directory or beside it.
    let outside = names(dir.path());
    let inside = names(&sessions);
    for bad in [
        "../../../etc/passwd",
        "../sessions2",
        "abcd/efgh",
        "..%2f..%2fetc",
        "abcdefgh/..",
        "ABCDEFGHIJ",
    ] {
        assert_eq!(
            code(client.load(bad).await.unwrap_err()),
            Code::InvalidArgument
        );
        assert_eq!(
            code(client.exists(bad).await.unwrap_err()),
            Code::InvalidArgument
        );
        let err = client
            .save(bad, "{}", Some(expire), true)
            .await
            .unwrap_err();
        assert_eq!(code(err), Code::InvalidArgument);
        assert_eq!(
            code(client.delete(bad).await.unwrap_err()),
            Code::InvalidArgument
        );
    }
    assert_eq!(names(dir.path()), outside);
    assert_eq!(names(&sessions), inside);
    assert!(
        inside.iter().all(|name| !name.starts_with('.')),
        "{inside:?}"
    );

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
