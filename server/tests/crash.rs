//! kill -9 under write load: the built binary on an SQLite file, killed with
//! SIGKILL while concurrent Creates and Saves are in flight, restarted on the
//! same file, loaded and killed again. After each restart, through the
//! client and through a plain read of the file: every acknowledged write is
//! there, no key holds data older than its last acknowledged save, no row is
//! torn, and the database passes `PRAGMA integrity_check`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::open_db;
use common::process::{Running, sessiond};
use sessiond_client::Client;
use tokio::sync::Notify;

/// Workers creating sessions, each one call at a time.
const CREATE_WORKERS: usize = 6;

/// Workers saving sessions of their own, each one call at a time.
const SAVE_WORKERS: usize = 6;

/// Sessions each save worker cycles through.
const KEYS_PER_SAVER: usize = 4;

/// Acknowledged writes per round before the kill: enough for many group
/// commits and a few checkpoint passes.
const KILL_AFTER: usize = 2000;

/// Kill, restart and check this many times, so that a restart also recovers
/// a database that an earlier restart recovered.
const ROUNDS: usize = 3;

/// Padding of each payload, so that a row spans a fair part of a page.
const PAD_BYTES: usize = 300;

/// Concurrent loads when checking the created sessions.
const LOADERS: usize = 8;

/// Longest a round may take to reach [`KILL_AFTER`], or its workers to stop
/// after the kill, before the test fails.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// What the test knows about the database between rounds.
#[derive(Debug, Default)]
struct Ledger {
    /// Sessions known to be stored, with their data: acknowledged Creates,
    /// and unanswered ones found in the file after a restart.
    created: HashMap<String, String>,
    /// Create payloads sent without an answer in the last round: each may
    /// or may not be stored, under a key the test never learnt.
    unanswered_creates: HashSet<String>,
    /// The save workers' sessions, by worker.
    savers: Vec<Vec<SavedKey>>,
}

/// One session a save worker rewrites with increasing versions.
#[derive(Debug, Clone)]
struct SavedKey {
    key: String,
    /// The data stored: the last acknowledged save, or after a restart
    /// what was found. `None` until the session is stored.
    stored: Option<String>,
    /// A save sent without an answer: it may or may not have committed.
    in_flight: Option<String>,
    next_version: u64,
}

/// The count of acknowledged writes in a round, and the kill switch.
struct Round {
    number: usize,
    acknowledged: AtomicUsize,
    reached: Notify,
    killed: AtomicBool,
}

impl Round {
    fn acknowledge(&self) {
        if self.acknowledged.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
            self.reached.notify_one();
        }
    }

    /// A failed write is expected after the kill; before it, it fails the
    /// test, and this is the reason.
    fn failed(&self, err: &sessiond_client::Error) -> Option<String> {
        (!self.killed.load(Ordering::SeqCst)).then(|| format!("{err:#}"))
    }
}

/// The self-describing payload of one write.
fn payload(fields: serde_json::Value, seed: u64) -> String {
    let mut object = fields;
    let letter = char::from(b'a' + u8::try_from(seed % 26).unwrap());
    object["pad"] = letter.to_string().repeat(PAD_BYTES).into();
    object.to_string()
}

/// Creates sessions until a Create fails; returns the acknowledged ones and
/// the payload left unanswered.
async fn create_worker(
    client: Client,
    worker: usize,
    round: Arc<Round>,
) -> (Vec<(String, String)>, String, Option<String>) {
    let mut acknowledged = Vec::new();
    let mut n: u64 = 0;
    loop {
        n += 1;
        let data = payload(
            serde_json::json!({"kind": "create", "round": round.number, "worker": worker, "n": n}),
            n,
        );
        match client.create(&data, None).await {
            Ok(created) => {
                acknowledged.push((created.session_key, data));
                round.acknowledge();
            }
            Err(err) => {
                let early = round.failed(&err);
                return (acknowledged, data, early);
            }
        }
    }
}

/// Saves its own sessions in turn, each with the next version, until a Save
/// fails; the failed one stays in flight.
async fn save_worker(
    client: Client,
    mut keys: Vec<SavedKey>,
    round: Arc<Round>,
) -> (Vec<SavedKey>, Option<String>) {
    let mut turn = 0;
    loop {
        turn += 1;
        let saved = &mut keys[turn % KEYS_PER_SAVER];
        let version = saved.next_version;
        saved.next_version += 1;
        let data = payload(
            serde_json::json!({"kind": "save", "key": saved.key, "v": version}),
            version,
        );
        // The first save of a session creates it; a later one must find it.
        let must_create = saved.stored.is_none();
        saved.in_flight = Some(data.clone());
        match client.save(&saved.key, &data, None, must_create).await {
            Ok(_) => {
                saved.stored = saved.in_flight.take();
                round.acknowledge();
            }
            Err(err) => {
                let early = round.failed(&err);
                return (keys, early);
            }
        }
    }
}

/// Runs the workers against `server` until [`KILL_AFTER`] writes are
/// acknowledged, kills it with SIGKILL while they carry on, and records what
/// was acknowledged and what was in flight.
async fn load_and_kill(server: Running, ledger: &mut Ledger, number: usize) {
    let client = Client::connect(server.url()).await.unwrap();
    let round = Arc::new(Round {
        number,
        acknowledged: AtomicUsize::new(0),
        reached: Notify::new(),
        killed: AtomicBool::new(false),
    });
    let creators: Vec<_> = (0..CREATE_WORKERS)
        .map(|worker| tokio::spawn(create_worker(client.clone(), worker, round.clone())))
        .collect();
    let savers: Vec<_> = std::mem::take(&mut ledger.savers)
        .into_iter()
        .map(|keys| tokio::spawn(save_worker(client.clone(), keys, round.clone())))
        .collect();

    let reached = tokio::time::timeout(ROUND_TIMEOUT, round.reached.notified()).await;
    round.killed.store(true, Ordering::SeqCst);
    let log = server.kill();
    assert!(
        reached.is_ok(),
        "round {number}: only {} writes were acknowledged in {ROUND_TIMEOUT:?}:\n{log}",
        round.acknowledged.load(Ordering::SeqCst)
    );

    let mut early = Vec::new();
    let mut in_flight = 0;
    for creator in creators {
        let (acknowledged, unanswered, failure) = tokio::time::timeout(ROUND_TIMEOUT, creator)
            .await
            .expect("a create worker did not stop after the kill")
            .unwrap();
        ledger.created.extend(acknowledged);
        ledger.unanswered_creates.insert(unanswered);
        in_flight += 1;
        early.extend(failure);
    }
    for saver in savers {
        let (keys, failure) = tokio::time::timeout(ROUND_TIMEOUT, saver)
            .await
            .expect("a save worker did not stop after the kill")
            .unwrap();
        in_flight += keys.iter().filter(|key| key.in_flight.is_some()).count();
        ledger.savers.push(keys);
        early.extend(failure);
    }
    assert!(
        early.is_empty(),
        "round {number}: writes failed before the kill: {early:?}\n{log}"
    );
    eprintln!(
        "round {number}: killed after {} acknowledged writes, {in_flight} in flight",
        round.acknowledged.load(Ordering::SeqCst)
    );
}

/// Checks through the client what the restarted server serves, and settles
/// what the in-flight saves left behind.
async fn check_through_the_client(ledger: &mut Ledger, client: &Client, number: usize) {
    let created: Vec<_> = ledger.created.clone().into_iter().collect();
    let mut loaders = tokio::task::JoinSet::new();
    for chunk in created.chunks(created.len().div_ceil(LOADERS).max(1)) {
        let (client, chunk) = (client.clone(), chunk.to_vec());
        loaders.spawn(async move {
            for (key, data) in chunk {
                let loaded = client.load(&key).await.unwrap().map(|loaded| loaded.data);
                assert_eq!(
                    loaded,
                    Some(data),
                    "round {number}: a created session lost or changed its data"
                );
            }
        });
    }
    loaders.join_all().await;
    let mut settled = 0;
    for saved in ledger.savers.iter_mut().flatten() {
        let loaded = client.load(&saved.key).await.unwrap().map(|l| l.data);
        let allowed = [&saved.stored, &saved.in_flight];
        assert!(
            loaded == saved.stored || (saved.in_flight.is_some() && loaded == saved.in_flight),
            "round {number}: session {} holds {loaded:?}; expected one of {allowed:?}",
            saved.key
        );
        if saved.in_flight.is_some() && loaded == saved.in_flight {
            settled += 1;
        }
        saved.stored = loaded;
        saved.in_flight = None;
    }
    eprintln!("round {number}: {settled} saves in flight at the kill were committed");
}

/// Reads the file as any SQLite program would: intact, and every row one
/// whole payload that was sent for its key.
fn check_the_file(ledger: &mut Ledger, db: &Path, number: usize) {
    let conn = open_db(db);
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(integrity, ["ok"], "round {number}: integrity_check");

    let saved: HashMap<&str, &SavedKey> = ledger
        .savers
        .iter()
        .flatten()
        .map(|saved| (saved.key.as_str(), saved))
        .collect();
    let mut found_creates = Vec::new();
    let mut rows = 0;
    let mut stmt = conn
        .prepare("SELECT session_key, session_data FROM django_session")
        .unwrap();
    let mut query = stmt.query([]).unwrap();
    while let Some(row) = query.next().unwrap() {
        rows += 1;
        let key: String = row.get(0).unwrap();
        let data: String = row.get(1).unwrap();
        assert!(
            serde_json::from_str::<serde_json::Map<_, _>>(&data).is_ok(),
            "round {number}: a torn row: {data:?}"
        );
        if let Some(expected) = ledger.created.get(&key) {
            assert_eq!(&data, expected, "round {number}: a created row changed");
        } else if let Some(saved) = saved.get(key.as_str()) {
            assert_eq!(
                Some(&data),
                saved.stored.as_ref(),
                "round {number}: the file and the server disagree on {key}"
            );
        } else {
            // An unanswered Create that committed: it must be one sent, and
            // each only once.
            assert!(
                ledger.unanswered_creates.remove(&data),
                "round {number}: a row nobody wrote, or stored twice: {data:?}"
            );
            found_creates.push((key, data));
        }
    }
    let saved_rows = saved
        .values()
        .filter(|saved| saved.stored.is_some())
        .count();
    assert_eq!(
        rows,
        ledger.created.len() + found_creates.len() + saved_rows
    );
    eprintln!(
        "round {number}: {rows} rows intact, {} unanswered creates were stored",
        found_creates.len()
    );
    // Stored now, so every later round must find them; the others are gone
    // for good.
    ledger.created.extend(found_creates);
    ledger.unanswered_creates.clear();
}

/// Starts sessiond on `store` and checks the durability its SQLite writer
/// connection runs with.
fn start(store: &str, synchronous: &str) -> Running {
    let server = Running::start(
        sessiond()
            .env("SESSIOND_STORE", store)
            .env("RUST_LOG", "info,sessiond::store::sqlite=debug"),
    );
    let log = server.log();
    let opened = log
        .lines()
        .find(|line| line.contains("sqlite writer connection open"))
        .unwrap_or_else(|| panic!("no line on the sqlite writer connection:\n{log}"));
    assert!(
        opened.contains(&format!("\"synchronous\":\"{synchronous}\"")),
        "{opened}"
    );
    server
}

async fn acknowledged_writes_survive_kill_9(query: &str, synchronous: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.sqlite3");
    let store = format!("sqlite://{}{query}", db.display());
    let mut ledger = Ledger {
        savers: (0..SAVE_WORKERS)
            .map(|worker| {
                (0..KEYS_PER_SAVER)
                    .map(|k| SavedKey {
                        key: format!("crashsaver{worker}key{k}"),
                        stored: None,
                        in_flight: None,
                        next_version: 0,
                    })
                    .collect()
            })
            .collect(),
        ..Ledger::default()
    };

    let mut server = start(&store, synchronous);
    for number in 1..=ROUNDS {
        load_and_kill(server, &mut ledger, number).await;
        server = start(&store, synchronous);
        let client = Client::connect(server.url()).await.unwrap();
        check_through_the_client(&mut ledger, &client, number).await;
        check_the_file(&mut ledger, &db, number);
    }
    server.signal("TERM");
    let (exit, log) = server.wait();
    assert_eq!(exit, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_with_synchronous_normal() {
    acknowledged_writes_survive_kill_9("", "normal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_with_synchronous_full() {
    acknowledged_writes_survive_kill_9("?synchronous=full", "full").await;
}
