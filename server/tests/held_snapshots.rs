//! SQLite Loads on a connection thread share one read transaction until
//! the thread next reads from a socket (`store::sqlite::loads`). Through a
//! real server on a real file: a Load still sees every write committed
//! before it was sent, through sessiond or through another connection to
//! the file (as a Django app's), while other Loads keep the thread busy,
//! whether it answers from the file or from its copies of rows
//! (`store::sqlite::row_cache`); and a thread with nothing to do holds no
//! snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestServer;
use sessiond_client::Client;

/// Loads kept in flight on the same connection meanwhile, so that its
/// thread is busy and holds a transaction when each checked Load arrives.
const BUSY_LOADS: usize = 16;

/// Writes checked, each followed by a Load.
const ROUNDS: usize = 300;

/// Checkpoints tried, 100 ms apart, each waiting for readers up to the
/// connection's busy timeout.
const CHECKPOINT_TRIES: usize = 20;

/// A server whose connection is kept busy with Loads of one session, so
/// that its thread holds a transaction when each checked Load arrives,
/// and a second session whose data the test changes and checks.
struct BusyServer {
    server: TestServer,
    checked: String,
    stop: Arc<AtomicBool>,
    loaders: Vec<tokio::task::JoinHandle<()>>,
}

impl BusyServer {
    async fn start() -> Self {
        let server = TestServer::start().await;
        let busy = server
            .client
            .create(r#"{"busy":true}"#, None)
            .await
            .unwrap();
        let checked = server.client.create(r#"{"round":-1}"#, None).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let loaders = (0..BUSY_LOADS)
            .map(|_| {
                let (client, key) = (server.client.clone(), busy.session_key.clone());
                let stop = stop.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        client.load(&key).await.unwrap().unwrap();
                    }
                })
            })
            .collect();
        Self {
            server,
            checked: checked.session_key,
            stop,
            loaders,
        }
    }

    /// Loads the checked session on the busy connection: it must hold
    /// `data`, written before the Load was sent.
    async fn assert_loads(&self, data: &str, round: usize) {
        let loaded = self
            .server
            .client
            .load(&self.checked)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            loaded.data, data,
            "round {round}: an older snapshot answered"
        );
    }

    /// Writes `data` into the checked session through `db`, a connection
    /// of the test's own to the file, as another process would.
    fn write_elsewhere(&self, db: &rusqlite::Connection, data: &str) {
        let changed = db
            .execute(
                "UPDATE django_session SET session_data = ?1 WHERE session_key = ?2",
                (data, &self.checked),
            )
            .unwrap();
        assert_eq!(changed, 1);
    }

    /// A client of the server on a connection of its own, whose calls the
    /// busy connection's thread does not read.
    async fn second_client(&self) -> Client {
        Client::connect(format!("http://{}", self.server.addr))
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for loader in self.loaders {
            loader.await.unwrap();
        }
        self.server.stop().await;
    }
}

/// As a Django app on the same file commits a session itself (here through
/// a connection of the test's own, to SQLite the same as another
/// process's): the Load sent after the commit reads it, although the thread
/// answering it was answering other Loads from a transaction begun before
/// the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_sees_what_another_connection_committed_before_it_was_sent() {
    let busy = BusyServer::start().await;
    let db = busy.server.db();
    for round in 0..ROUNDS {
        let data = format!(r#"{{"round":{round}}}"#);
        busy.write_elsewhere(&db, &data);
        busy.assert_loads(&data, round).await;
    }
    busy.stop().await;
}

/// Another connection's commits among sessiond's own: its writer then
/// commits on top of a write it did not make, and the copies of rows that
/// Loads answer from must not outlive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_sees_another_connections_write_among_sessionds_own() {
    let busy = BusyServer::start().await;
    let db = busy.server.db();
    let writer = busy.second_client().await;
    let other = writer.create(r#"{"other":0}"#, None).await.unwrap();
    for round in 0..ROUNDS {
        // sessiond's Save of another session, and a Load that copies the
        // checked one, on either side of the other connection's write.
        let own = format!(r#"{{"other":{round}}}"#);
        writer
            .save(&other.session_key, &own, None, false)
            .await
            .unwrap();
        let data = format!(r#"{{"round":{round}}}"#);
        busy.write_elsewhere(&db, &data);
        writer
            .save(&other.session_key, &own, None, false)
            .await
            .unwrap();
        busy.assert_loads(&data, round).await;
    }
    busy.stop().await;
}

/// A table that lost the triggers counting its changes (a Django migration
/// that rebuilds it drops them): another connection's writes, no longer
/// counted, are still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_sees_another_connections_write_once_the_count_is_gone() {
    let busy = BusyServer::start().await;
    let db = busy.server.db();
    // A first Load keeps a copy of the checked session.
    busy.assert_loads(r#"{"round":-1}"#, 0).await;
    db.execute_batch("DROP TRIGGER sessiond_changes_update")
        .unwrap();
    for round in 0..ROUNDS / 10 {
        let data = format!(r#"{{"round":{round}}}"#);
        busy.write_elsewhere(&db, &data);
        busy.assert_loads(&data, round).await;
    }
    busy.stop().await;
}

/// Deletes, key cycles and a purge drop the copies they make stale: a
/// session copied by a Load is gone after it is deleted, answers under its
/// new key only after a cycle, and a purged one stays gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_cycled_or_purged_session_is_not_answered_from_a_copy() {
    let busy = BusyServer::start().await;
    let client = &busy.server.client;
    for round in 0..ROUNDS / 10 {
        let data = format!(r#"{{"round":{round}}}"#);
        let deleted = client.create(&data, None).await.unwrap();
        assert!(client.load(&deleted.session_key).await.unwrap().is_some());
        assert!(client.delete(&deleted.session_key).await.unwrap());
        assert!(client.load(&deleted.session_key).await.unwrap().is_none());

        let cycled = client.create(&data, None).await.unwrap();
        assert!(client.load(&cycled.session_key).await.unwrap().is_some());
        let moved = client
            .cycle_key(&cycled.session_key, None, None)
            .await
            .unwrap();
        assert!(client.load(&cycled.session_key).await.unwrap().is_none());
        let loaded = client.load(&moved.session_key).await.unwrap().unwrap();
        assert_eq!(loaded.data, data);
    }
    // A session that expires a second from now, copied while it is live.
    let soon = std::time::SystemTime::now() + Duration::from_secs(1);
    let purged = client.create("{}", Some(soon)).await.unwrap();
    assert!(client.load(&purged.session_key).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(client.clear_expired().await.unwrap() >= 1);
    assert!(client.load(&purged.session_key).await.unwrap().is_none());
    busy.stop().await;
}

/// The same through sessiond itself, on a second connection: a Save
/// acknowledged on one connection is read by the next Load on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_sees_a_save_acknowledged_before_it_was_sent() {
    let busy = BusyServer::start().await;
    let writer = busy.second_client().await;
    for round in 0..ROUNDS {
        let data = format!(r#"{{"round":{round}}}"#);
        writer
            .save(&busy.checked, &data, None, false)
            .await
            .unwrap();
        busy.assert_loads(&data, round).await;
    }
    busy.stop().await;
}

/// Once the Loads stop, no read transaction stays open: a checkpoint that
/// must wait for every reader (`TRUNCATE`) empties the write-ahead log.
/// (Whether the thread's sleep alone ends it is checked in
/// `store::sqlite::loads`' own tests: here the client's HTTP/2 frames may
/// reach the thread after the last Load and end it first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_with_nothing_to_do_holds_no_snapshot() {
    let server = TestServer::start().await;
    let created = server.client.create(r#"{"a":1}"#, None).await.unwrap();
    let loaders: Vec<_> = (0..BUSY_LOADS)
        .map(|_| {
            let (client, key) = (server.client.clone(), created.session_key.clone());
            tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    client.load(&key).await.unwrap().unwrap();
                }
            })
        })
        .collect();
    for loader in loaders {
        loader.await.unwrap();
    }

    // sessiond's own background checkpoint may hold the checkpoint lock
    // for a moment (it is not waited for, unlike readers): a few tries.
    let db = server.db();
    let mut outcome = (1, -1);
    for _ in 0..CHECKPOINT_TRIES {
        outcome = db
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            })
            .unwrap();
        if outcome == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcome, (0, 0), "a reader kept the log from starting over");
    server.stop().await;
}
