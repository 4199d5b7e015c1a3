//! The built `sessiond` binary, as an operator runs it: configured through
//! the environment, migrate, serve, health and reflection, SIGTERM drains and
//! exits 0 leaving the SQLite file complete on its own, and no log line ever
//! carries a session key or session data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::process::{Running, sessiond};
use common::{code, hours_from_now, open_db};
use sessiond_client::Client;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

/// Waits up to 30 s for `condition` to hold; fails with `what` if not.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn store_env<'a>(command: &'a mut Command, db: &Path) -> &'a mut Command {
    command.env("SESSIOND_STORE", format!("sqlite://{}", db.display()))
}

async fn channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn health(url: &str, service: &str) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(channel(url).await);
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(response.into_inner().status())
}

async fn reflected_services(url: &str) -> Vec<String> {
    let mut client = ServerReflectionClient::new(channel(url).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    list.service.into_iter().map(|s| s.name).collect()
}

#[tokio::test]
async fn env_config_migrate_serve_and_sigterm_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("smoke.sqlite3");

    let first = run(store_env(&mut sessiond(), &db).arg("migrate"));
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("applied 0001_django_session"));
    let again = run(store_env(&mut sessiond(), &db).arg("migrate"));
    assert!(text(&again.stdout).contains("schema is up to date"));
    // A row a foreign writer corrupted: reading it logs a warning, which
    // must not quote the data.
    open_db(&db)
        .execute(
            "INSERT INTO django_session VALUES ('corruptedrow0000', '\"corruptsecret-4d2\"', '2999-01-01 00:00:00')",
            [],
        )
        .unwrap();

    let server = Running::start(store_env(&mut sessiond(), &db).env("RUST_LOG", "debug"));
    let client = Client::connect(server.url()).await.unwrap();

    let secret_data = r#"{"secret":"tellnoone-7f3a"}"#;
    let created = client.create(secret_data, None).await.unwrap();
    let loaded = client.load(&created.session_key).await.unwrap().unwrap();
    assert_eq!(loaded.data, secret_data);
    client
        .save(&created.session_key, secret_data, None, false)
        .await
        .unwrap();
    let cycled = client
        .cycle_key(&created.session_key, None, None)
        .await
        .unwrap();
    assert!(client.exists(&cycled.session_key).await.unwrap());
    // Failures are logged too; they must not carry the key either.
    let missing = "missingsecretkey0000";
    assert_eq!(
        code(
            client
                .save(missing, secret_data, None, false)
                .await
                .unwrap_err()
        ),
        tonic::Code::NotFound
    );
    client.load("BAD-KEY-SECRET").await.unwrap_err();
    let corrupted = client.load("corruptedrow0000").await.unwrap().unwrap();
    assert_eq!(corrupted.data, "{}");
    client.delete(&cycled.session_key).await.unwrap();

    assert_eq!(
        health(&server.url(), "").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health(&server.url(), "sessiond.v1.SessionService")
            .await
            .unwrap(),
        ServingStatus::Serving
    );
    let services = reflected_services(&server.url()).await;
    for expected in [
        "sessiond.v1.SessionService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} not in {services:?}"
        );
    }

    let log = stop_with_sigterm(server);
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("sessiond stopped"), "{log}");
    assert!(log.contains("cannot be decoded"), "{log}");
    for secret in [
        created.session_key.as_str(),
        cycled.session_key.as_str(),
        missing,
        "BAD-KEY-SECRET",
        "tellnoone",
        "corruptsecret",
        "corruptedrow0000",
    ] {
        assert!(
            !log.contains(secret),
            "a log line carries {secret:?}:\n{log}"
        );
    }
    assert!(
        log.lines().all(|line| line.starts_with('{')),
        "not JSON lines:\n{log}"
    );
}

/// Stops `server` with SIGTERM and checks it exits 0; its log.
fn stop_with_sigterm(server: Running) -> String {
    server.signal("TERM");
    let (exit, log) = server.wait();
    assert_eq!(exit, Some(0), "{log}");
    log
}

/// Creates a session and saves it once more, `{"n":2}`; its key.
async fn create_and_save_twice(client: &Client) -> String {
    let created = client.create(r#"{"n":1}"#, None).await.unwrap();
    client
        .save(&created.session_key, r#"{"n":2}"#, None, false)
        .await
        .unwrap();
    created.session_key
}

/// Copies `db` alone, without its `-wal`, into `into`, and opens the copy.
fn copy_without_log(db: &Path, into: &Path) -> rusqlite::Connection {
    let copy = into.join("copy.sqlite3");
    std::fs::copy(db, &copy).unwrap();
    open_db(&copy)
}

/// The size of `db`'s write-ahead log, 0 when there is none.
fn wal_bytes(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(Path::new(&wal)).map_or(0, |meta| meta.len())
}

#[tokio::test]
async fn a_clean_stop_leaves_the_database_file_complete_on_its_own() {
    let dir = tempfile::tempdir().unwrap();

    // Stopped before any write: the schema it created is in the file.
    let unwritten = dir.path().join("unwritten.sqlite3");
    let server = Running::start(store_env(&mut sessiond(), &unwritten));
    let log = stop_with_sigterm(server);
    assert_eq!(wal_bytes(&unwritten), 0, "{log}");
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_without_log(&unwritten, copy_dir.path());
    let tables: i64 = copy
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'django_session'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);

    // Stopped after writes: every acknowledged one is in the file.
    let written = dir.path().join("written.sqlite3");
    let server = Running::start(store_env(&mut sessiond(), &written));
    let client = Client::connect(server.url()).await.unwrap();
    let key = create_and_save_twice(&client).await;
    let log = stop_with_sigterm(server);
    assert_eq!(wal_bytes(&written), 0, "{log}");
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_without_log(&written, copy_dir.path());
    let row = common::stored_row(&copy, &key).expect("the saved session");
    assert_eq!(row.0, r#"{"n":2}"#);
}

/// Another process reading the database at the stop keeps the log from
/// being emptied: the server says so, stops anyway, and loses nothing.
#[tokio::test]
async fn a_reader_at_the_stop_keeps_the_log_and_the_server_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("read.sqlite3");
    let server = Running::start(store_env(&mut sessiond(), &db));
    // A snapshot older than the writes below.
    let reader = open_db(&db);
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM django_session", [], |row| row.get(0))
        .unwrap();
    let client = Client::connect(server.url()).await.unwrap();
    let key = create_and_save_twice(&client).await;
    let log = stop_with_sigterm(server);
    assert!(
        log.contains("the final sqlite checkpoint could not empty the write-ahead log"),
        "{log}"
    );
    reader.execute_batch("COMMIT").unwrap();
    let row = common::stored_row(&reader, &key).expect("the saved session");
    assert_eq!(row.0, r#"{"n":2}"#);
}

#[tokio::test]
async fn sigint_also_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(store_env(&mut sessiond(), &dir.path().join("int.sqlite3")));
    server.signal("INT");
    let (exit, log) = server.wait();
    assert_eq!(exit, Some(0), "{log}");
}

#[tokio::test]
async fn during_the_shutdown_delay_health_reports_not_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(
        store_env(&mut sessiond(), &dir.path().join("delay.sqlite3"))
            .env("SESSIOND_SHUTDOWN_DELAY", "3s"),
    );
    assert_eq!(
        health(&server.url(), "").await.unwrap(),
        ServingStatus::Serving
    );
    server.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = health(&server.url(), "sessiond.v1.SessionService")
            .await
            .ok();
        if seen == Some(ServingStatus::NotServing) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, Some(ServingStatus::NotServing));
    let (exit, log) = server.wait();
    assert_eq!(exit, Some(0), "{log}");
}

#[tokio::test]
async fn an_in_flight_call_finishes_before_the_server_exits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drain.sqlite3");
    let server =
        Running::start(store_env(&mut sessiond(), &db).env("SESSIOND_STORE_TIMEOUT", "20s"));
    let client = Client::connect(server.url()).await.unwrap();
    client
        .save("inflight0000", r#"{"v":1}"#, None, true)
        .await
        .unwrap();

    // Another process holds the write lock, so the next save waits in flight.
    let holder = open_db(&db);
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let save =
        tokio::spawn(async move { client.save("inflight0000", r#"{"v":2}"#, None, false).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!save.is_finished());
    holder.execute_batch("ROLLBACK").unwrap();

    save.await.unwrap().unwrap();
    let (exit, log) = server.wait();
    assert_eq!(exit, Some(0), "{log}");
    let stored: String = open_db(&db)
        .query_row(
            "SELECT session_data FROM django_session WHERE session_key = 'inflight0000'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, r#"{"v":2}"#);
}

#[tokio::test]
async fn a_call_stuck_past_the_drain_timeout_does_not_hold_up_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stuck.sqlite3");
    let server = Running::start(
        store_env(&mut sessiond(), &db)
            .env("SESSIOND_STORE_TIMEOUT", "20s")
            .env("SESSIOND_DRAIN_TIMEOUT", "500ms"),
    );
    let client = Client::connect(server.url()).await.unwrap();
    client
        .save("stuckcall000", r#"{"v":1}"#, None, true)
        .await
        .unwrap();

    let holder = open_db(&db);
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let save =
        tokio::spawn(async move { client.save("stuckcall000", r#"{"v":2}"#, None, false).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    let log = stop_with_sigterm(server);
    // Bounded by the drain timeout, not by the 20 s the write would wait.
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}\n{log}",
        signalled.elapsed()
    );
    assert!(log.contains("drain timeout passed"), "{log}");
    assert!(
        save.await.unwrap().is_err(),
        "an unfinished write was acknowledged"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    let stored: String = open_db(&db)
        .query_row(
            "SELECT session_data FROM django_session WHERE session_key = 'stuckcall000'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, r#"{"v":1}"#);
}

#[tokio::test]
async fn an_open_health_watch_does_not_hold_up_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(store_env(
        &mut sessiond(),
        &dir.path().join("watch.sqlite3"),
    ));
    let mut health = HealthClient::new(channel(&server.url()).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    let signalled = Instant::now();
    stop_with_sigterm(server);
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn clearsessions_prints_how_many_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clear.sqlite3");
    let server = Running::start(store_env(&mut sessiond(), &db));
    let client = Client::connect(server.url()).await.unwrap();
    for n in 0..5 {
        client
            .save(
                &format!("expired{n:03}"),
                "{}",
                Some(hours_from_now(-2)),
                true,
            )
            .await
            .unwrap();
    }
    client.save("stillalive", "{}", None, true).await.unwrap();
    server.signal("TERM");
    assert_eq!(server.wait().0, Some(0));

    let output = run(store_env(&mut sessiond(), &db).arg("clearsessions"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "5");
    let output = run(store_env(&mut sessiond(), &db).arg("clearsessions"));
    assert_eq!(text(&output.stdout).trim(), "0");

    let missing = dir.path().join("missing.sqlite3");
    let output = run(store_env(&mut sessiond(), &missing).arg("clearsessions"));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("does not exist"),
        "{}",
        text(&output.stderr)
    );
    assert!(!missing.exists(), "clearsessions created the database file");
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let output = run(sessiond().args(["serve", "--help"]));
    assert!(output.status.success());
    let help = text(&output.stdout);
    for flag in [
        "--store",
        "--store-timeout",
        "--listen",
        "--codec",
        "--session-age",
        "--max-data-bytes",
        "--purge-interval",
        "--purge-batch-size",
        "--shutdown-delay",
        "--drain-timeout",
        "--secret-key",
        "--secret-key-fallbacks",
        "--django-salt",
        "--cache",
        "--log-format",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
        let env = format!(
            "SESSIOND_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(help.contains(&env), "{env} missing from --help:\n{help}");
    }
    assert!(help.contains("1 MiB"));
    assert!(help.contains("127.0.0.1:50051"));
    let top = text(&run(sessiond().arg("--help")).stdout);
    for command in ["serve", "migrate", "clearsessions", "RUST_LOG"] {
        assert!(top.contains(command), "{command} missing:\n{top}");
    }
}

#[test]
fn bad_settings_fail_before_binding_and_name_the_flag() {
    for (var, value, flag) in [
        ("SESSIOND_LISTEN", "nonsense", "--listen"),
        ("SESSIOND_MAX_DATA_BYTES", "lots", "--max-data-bytes"),
        ("SESSIOND_STORE", "mysql://db", "--store"),
        ("SESSIOND_PURGE_INTERVAL", "sometimes", "--purge-interval"),
        ("SESSIOND_LOG_FORMAT", "xml", "--log-format"),
    ] {
        let output = run(sessiond().arg("serve").env(var, value));
        assert_eq!(output.status.code(), Some(2), "{var}={value}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(flag), "{var}={value}: {stderr}");
    }
}

#[test]
fn a_bad_sqlite_synchronous_names_the_flag_and_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sync.sqlite3");
    for (query, expected) in [
        ("?synchronous=off", ["normal", "or full", "got 'off'"]),
        (
            "?sync=full",
            ["unknown option 'sync'", "accepts", "synchronous"],
        ),
    ] {
        let store = format!("sqlite://{}{query}", db.display());
        let output = run(sessiond().arg("serve").env("SESSIOND_STORE", &store));
        assert_eq!(output.status.code(), Some(2), "{store}");
        let stderr = text(&output.stderr);
        for part in ["--store", "synchronous"].iter().chain(&expected) {
            assert!(stderr.contains(part), "{store}: {stderr}");
        }
    }
    assert!(!db.exists(), "a refused URL opened the database");
}

#[test]
fn a_start_up_failure_exits_1_with_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing/dir/db.sqlite3");
    let output = run(store_env(&mut sessiond(), &missing).arg("serve"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--store"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert_eq!(stderr.matches("does not exist").count(), 1, "{stderr}");
}

/// Two `sessiond` processes on one shared store: what one saves, the other
/// loads, cycles and deletes.
async fn two_processes_share(store: &str) {
    let one = Running::start(sessiond().env("SESSIOND_STORE", store));
    let two = Running::start(sessiond().env("SESSIOND_STORE", store));
    let first = Client::connect(one.url()).await.unwrap();
    let second = Client::connect(two.url()).await.unwrap();

    let created = first.create(r#"{"user":"ada"}"#, None).await.unwrap();
    let loaded = second.load(&created.session_key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"ada"}"#);
    let cycled = second
        .cycle_key(&created.session_key, None, None)
        .await
        .unwrap();
    assert!(first.load(&created.session_key).await.unwrap().is_none());
    first
        .patch(&cycled.session_key, r#"{"cart":[1]}"#, &[], false, None)
        .await
        .unwrap();
    assert_eq!(
        second
            .load(&cycled.session_key)
            .await
            .unwrap()
            .unwrap()
            .data,
        r#"{"user":"ada","cart":[1]}"#
    );
    assert!(second.delete(&cycled.session_key).await.unwrap());
    assert!(first.load(&cycled.session_key).await.unwrap().is_none());

    for server in [one, two] {
        server.signal("TERM");
        let (exit, log) = server.wait();
        assert_eq!(exit, Some(0), "{log}");
    }
}

#[tokio::test]
async fn two_processes_share_sessions_on_postgres() {
    if !common::service_available("PostgreSQL", common::POSTGRES_ADDR) {
        return;
    }
    let schema = common::PgSchema::new();
    two_processes_share(&schema.url()).await;
}

#[tokio::test]
async fn two_processes_share_sessions_on_redis() {
    if !common::redis_server::shared_available("binary::two_processes_share_sessions_on_redis")
        .await
    {
        return;
    }
    let prefix = common::redis_server::unique_prefix("two_processes");
    let _cleanup = common::redis_server::Cleanup {
        prefix: prefix.clone(),
    };
    two_processes_share(&format!(
        "redis://{}/0?prefix={prefix}",
        common::redis_server::SHARED_ADDR
    ))
    .await;
}

#[tokio::test]
async fn sighup_rereads_the_tokens_file_and_keeps_it_when_it_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let (old, new) = ("0ld70ken0ld70ken0ld7", "n3w70kenn3w70kenn3w7");
    std::fs::write(&tokens, format!("app {old}\n")).unwrap();
    let server = Running::start(
        store_env(&mut sessiond(), &dir.path().join("db.sqlite3"))
            .env("SESSIOND_TOKENS_FILE", &tokens),
    );
    let with = |token: &str| {
        Client::builder()
            .endpoint(server.url())
            .bearer_token(token)
            .connect()
    };
    with(old).await.unwrap().create("{}", None).await.unwrap();

    std::fs::write(&tokens, format!("app {new}\n")).unwrap();
    server.signal("HUP");
    // The reload is asynchronous: wait (bounded) until the new token works.
    let client = with(new).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.create("{}", None).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not load the new token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = with(old)
        .await
        .unwrap()
        .create("{}", None)
        .await
        .unwrap_err();
    assert_eq!(code(err), tonic::Code::Unauthenticated);

    // A broken file is refused and the tokens in force stay.
    std::fs::write(&tokens, "not-a-token-line with three fields\n").unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("cannot reload the bearer tokens") {
        assert!(
            Instant::now() < deadline,
            "the failed reload was not logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.create("{}", None).await.unwrap();

    server.signal("TERM");
    let (code, log) = server.wait();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains(old) && !log.contains(new),
        "a token was logged:\n{log}"
    );
}

/// A `create` call with `token` (or none): its status code if refused.
async fn create_with(url: &str, token: Option<&str>) -> Result<(), tonic::Code> {
    let mut builder = Client::builder().endpoint(url);
    if let Some(token) = token {
        builder = builder.bearer_token(token);
    }
    let client = builder.connect().await.unwrap();
    client.create("{}", None).await.map(drop).map_err(code)
}

/// Rotation as an operator does it: a new file renamed over the old one is
/// read by path, a file that disappears keeps the tokens in force, and one
/// whose tokens are all commented out refuses every call, loudly.
#[tokio::test]
async fn sighup_reads_a_renamed_tokens_file_and_an_emptied_one_refuses_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let (old, new) = ("0ld70ken0ld70ken0ld7", "r0t473dr0t473dr0t473");
    let replace = |text: String| {
        let next = dir.path().join("tokens.next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &tokens).unwrap();
    };
    std::fs::write(&tokens, format!("app {old}\n")).unwrap();
    let server = Running::start(
        store_env(&mut sessiond(), &dir.path().join("db.sqlite3"))
            .env("SESSIOND_TOKENS_FILE", &tokens),
    );
    let url = server.url();
    create_with(&url, Some(old)).await.unwrap();

    replace(format!("app {new}\n"));
    server.signal("HUP");
    eventually("SIGHUP did not read the renamed file", || async {
        create_with(&url, Some(new)).await.is_ok()
    })
    .await;
    assert_eq!(
        create_with(&url, Some(old)).await,
        Err(tonic::Code::Unauthenticated)
    );

    // Gone (a rotation halfway through): the tokens in force stay.
    std::fs::remove_file(&tokens).unwrap();
    server.signal("HUP");
    eventually("the failed reload was not logged", || async {
        server.log().contains("cannot reload the bearer tokens")
    })
    .await;
    create_with(&url, Some(new)).await.unwrap();

    replace(format!("# every token revoked\n# app {new}\n\n"));
    server.signal("HUP");
    eventually(
        "a tokens file without tokens left the old ones in force",
        || async { create_with(&url, Some(new)).await.is_err() },
    )
    .await;
    for token in [Some(new), Some(old), None] {
        assert_eq!(
            create_with(&url, token).await,
            Err(tonic::Code::Unauthenticated),
            "{token:?}"
        );
    }
    assert_eq!(health(&url, "").await.unwrap(), ServingStatus::Serving);
    let log = server.log();
    assert!(
        log.lines()
            .any(|line| line.contains("\"level\":\"ERROR\"")
                && line.contains("every call is refused")),
        "no error says that every call is refused:\n{log}"
    );

    server.signal("TERM");
    let (code, log) = server.wait();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains(old) && !log.contains(new),
        "a token was logged:\n{log}"
    );
}

#[tokio::test]
async fn healthcheck_exits_0_while_serving_and_1_when_nothing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(store_env(&mut sessiond(), &dir.path().join("db.sqlite3")));
    let listen = server.addr.clone();
    let checked = tokio::task::spawn_blocking(move || {
        run(sessiond().arg("healthcheck").env("SESSIOND_LISTEN", listen))
    })
    .await
    .unwrap();
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert_eq!(text(&checked.stdout).trim(), "SERVING");

    server.signal("TERM");
    let (code, log) = server.wait();
    assert_eq!(code, Some(0), "{log}");
    let addr = server_addr_after_exit(&log);
    let checked = run(sessiond().args(["healthcheck", "--listen", &addr, "--timeout", "2s"]));
    assert_eq!(checked.status.code(), Some(1));
    assert!(
        text(&checked.stderr).contains("cannot connect"),
        "{}",
        text(&checked.stderr)
    );
}

fn server_addr_after_exit(log: &str) -> String {
    log.split("\"listen\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

#[test]
fn serving_the_network_without_authentication_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(store_env(&mut sessiond(), &dir.path().join("db.sqlite3"))
        .arg("serve")
        .env("SESSIOND_LISTEN", "0.0.0.0:0"));
    // A configuration error, as clap's: a restart would not fix it
    // (RestartPreventExitStatus=2 in the systemd unit).
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--insecure-allow-unauthenticated"),
        "{stderr}"
    );
}

/// The next notice `socket` receives, within 30 s.
async fn next_notice(socket: &tokio::net::UnixDatagram, log: &Path) -> String {
    let mut buf = [0; 512];
    let received = tokio::time::timeout(Duration::from_secs(30), socket.recv(&mut buf)).await;
    let Ok(received) = received else {
        panic!(
            "no notice from sessiond:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    };
    String::from_utf8(buf[..received.unwrap()].to_vec()).unwrap()
}

/// systemd's Type=notify: READY=1 once the port takes connections, not
/// before; STOPPING=1 as soon as SIGTERM starts the drain.
#[tokio::test]
async fn tells_the_service_manager_when_it_is_ready_and_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let notices = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    // A port known before sessiond starts, to try it the moment READY=1
    // arrives.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let log = dir.path().join("sessiond.log");
    let mut command = sessiond();
    store_env(&mut command, &dir.path().join("notify.sqlite3"))
        .arg("serve")
        .env("SESSIOND_LISTEN", addr.to_string())
        .env("SESSIOND_SHUTDOWN_DELAY", "1s")
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    assert_eq!(next_notice(&notices, &log).await, "READY=1\n");
    let url = format!("http://{addr}");
    assert_eq!(health(&url, "").await.unwrap(), ServingStatus::Serving);

    let pid = child.id().unwrap().to_string();
    assert!(
        run(Command::new("kill").args(["-TERM", &pid]))
            .status
            .success()
    );
    assert_eq!(next_notice(&notices, &log).await, "STOPPING=1\n");
    // Still draining when it says so: the listener closes only after the
    // shutdown delay, and health turns NOT_SERVING within it (the notice
    // goes out as the signal arrives, health a moment later, once the
    // readiness probe has stopped).
    let answered_within_the_delay = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match health(&url, "").await.unwrap() {
                ServingStatus::NotServing => break,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(
        answered_within_the_delay.is_ok(),
        "health did not turn NOT_SERVING while the listener was open"
    );
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(exit.code(), Some(0), "{log}");
}

/// Without NOTIFY_SOCKET, outside systemd, nothing is sent and nothing is
/// said about it; with one that nobody listens on, serving goes on.
#[tokio::test]
async fn serves_with_no_service_manager_or_an_absent_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nonotify.sqlite3");
    let server = Running::start(store_env(&mut sessiond(), &db).env_remove("NOTIFY_SOCKET"));
    let log = stop_with_sigterm(server);
    assert!(!log.contains("NOTIFY_SOCKET"), "{log}");

    let absent = dir.path().join("nobody-listens.sock");
    let server = Running::start(store_env(&mut sessiond(), &db).env("NOTIFY_SOCKET", &absent));
    assert_eq!(
        health(&server.url(), "").await.unwrap(),
        ServingStatus::Serving
    );
    let log = stop_with_sigterm(server);
    assert!(log.contains("cannot notify the service manager"), "{log}");
}
