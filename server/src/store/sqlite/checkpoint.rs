//! Checkpoints of the SQLite write-ahead log, on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold: the writer copies a few megabytes into the database file and
//! fsyncs it while every waiting write stalls behind it. Here the writer
//! turns that off, and this thread copies committed pages into the database
//! in the background (`PRAGMA wal_checkpoint(PASSIVE)`, which never blocks
//! the writer or readers) each time the writer has committed.
//!
//! A background checkpoint alone cannot keep the log short under steady
//! writes: SQLite starts the log over from its beginning only when a write
//! transaction begins with every frame already copied, and new commits keep
//! arriving while a pass runs. So once the log is past [`RESTART_FRAMES`],
//! the writer waits before its next transaction until this thread has
//! caught up; as most of the log is copied by then, that pause is short,
//! and the next write starts the log over.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;

use super::Synchronous;

/// Log length, in pages, past which the writer lets the checkpoint catch up
/// so that the log starts over: 64 MiB of 4 KiB pages. Each catch-up stalls
/// writes for the last pass's two fsyncs (the log's, then the database's),
/// 10–30 ms on a virtual disk; at 16 MiB, creates at full speed met one
/// every 150 ms or so, and their p99 was that stall. The log stays four
/// hash segments long for readers to search (4096 frames each).
const RESTART_FRAMES: i64 = 16384;

/// Log length past which passes run back to back: the last quarter before
/// [`RESTART_FRAMES`].
const EAGER_FRAMES: i64 = RESTART_FRAMES / 4 * 3;

/// How long the writer waits at a time for a catch-up pass to finish.
/// Another process reading one old snapshot for long (a Django
/// shell in a transaction) keeps any checkpoint from finishing; writes then
/// carry on and the log grows until it lets go, as with SQLite's own
/// checkpoints.
const MAX_CATCH_UP_WAIT: Duration = Duration::from_millis(250);

/// Longest a catch-up may take in all, even while it progresses: past it,
/// writes go on and the log grows rather than stall longer.
const MAX_CATCH_UP: Duration = Duration::from_secs(5);

/// Pause between passes while readers hold back the rest of the log and
/// nothing new was committed: they finish within microseconds, another
/// process's long read might not.
const RETRY_PAUSE: Duration = Duration::from_millis(1);

/// Least time between two passes while writes keep coming. Each pass ends
/// with an fsync of the database file, and a page written many times in
/// between is copied once.
const PASS_INTERVAL: Duration = Duration::from_millis(50);

/// The handle the writer keeps: it reports commits and asks for catch-ups.
#[derive(Debug)]
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Transactions the writer has committed.
    commits: u64,
    /// `commits` as of the last pass that left nothing in the log to copy.
    caught_up_at: Option<u64>,
    /// Pages in the log at the last pass.
    log_frames: i64,
    /// Pages of the log copied into the database as of the last pass.
    copied_frames: i64,
    /// Passes finished.
    passes: u64,
    /// When a pass last left nothing in the log to copy, for the metrics.
    caught_up_time: Option<SystemTime>,
    /// Log length at which the writer next waits for a catch-up:
    /// [`RESTART_FRAMES`], or further out after a wait that timed out, so
    /// that a log held back by another process costs one wait per
    /// [`RESTART_FRAMES`] of growth rather than one per transaction.
    wait_at_frames: i64,
    /// The writer is waiting for a catch-up: passes run at once.
    writer_waiting: bool,
    /// The thread waits for a commit with nothing else to do; only then
    /// does a commit need to wake it (it times its passes otherwise).
    idle: bool,
    stopping: bool,
}

impl Checkpointer {
    /// Opens a connection of its own to `path` and starts the thread; `None`
    /// (with the reason logged) if either fails, and the writer then keeps
    /// SQLite's automatic checkpoints.
    pub(super) fn spawn(path: &Path, timeout: Duration, synchronous: Synchronous) -> Option<Self> {
        let conn = match super::open_read_write(path, timeout, synchronous) {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open a connection for background checkpoints; the writer checkpoints instead");
                return None;
            }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                wait_at_frames: RESTART_FRAMES,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                move || run(&conn, &shared)
            });
        match thread {
            Ok(thread) => Some(Self {
                shared,
                thread: Some(thread),
            }),
            Err(err) => {
                tracing::warn!(error = %err, "cannot start the checkpoint thread; the writer checkpoints instead");
                None
            }
        }
    }

    /// A handle that reads when the log was last fully copied.
    pub(super) fn watch(&self) -> CheckpointWatch {
        CheckpointWatch {
            shared: self.shared.clone(),
        }
    }

    /// Tells the thread that a transaction was committed.
    pub(super) fn committed(&self) {
        let mut state = self.shared.lock();
        state.commits += 1;
        if state.idle {
            state.idle = false;
            self.shared.changed.notify_all();
        }
    }

    /// Before a transaction: if the log is long, waits (a bounded time)
    /// until everything committed is copied, so this transaction starts the
    /// log over.
    pub(super) fn make_room(&self) {
        let mut state = self.shared.lock();
        if state.log_frames < state.wait_at_frames {
            return;
        }
        state.writer_waiting = true;
        self.shared.changed.notify_all();
        // Wait as long as passes keep copying pages, however slow a busy
        // machine makes them; give up once a finished pass copied nothing
        // more, or at the latest after MAX_CATCH_UP.
        let started = Instant::now();
        loop {
            let (copied_before, passes_before) = (state.copied_frames, state.passes);
            state = self
                .shared
                .changed
                .wait_timeout_while(state, MAX_CATCH_UP_WAIT, |state| {
                    state.caught_up_at != Some(state.commits)
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            let stuck = state.passes != passes_before && state.copied_frames == copied_before;
            if state.caught_up_at == Some(state.commits)
                || stuck
                || started.elapsed() > MAX_CATCH_UP
            {
                break;
            }
        }
        state.writer_waiting = false;
        if state.caught_up_at == Some(state.commits) {
            // This transaction starts the log over; the next pass measures it.
            state.log_frames = 0;
            state.wait_at_frames = RESTART_FRAMES;
        } else {
            tracing::warn!(
                log_pages = state.log_frames,
                "the sqlite write-ahead log cannot be checkpointed; is another process holding a long read transaction?"
            );
            state.wait_at_frames = state.log_frames + RESTART_FRAMES;
        }
    }

    /// Stops the thread and waits for it.
    pub(super) fn stop(mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the checkpoint thread's progress, for the metrics; it stays
/// readable after the thread has stopped.
#[derive(Debug, Clone)]
pub(super) struct CheckpointWatch {
    shared: Arc<Shared>,
}

impl CheckpointWatch {
    /// When a pass last copied every committed page into the database.
    pub(super) fn last_caught_up(&self) -> Option<SystemTime> {
        self.shared.lock().caught_up_time
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn run(conn: &Connection, shared: &Shared) {
    // Commits covered by the last pass, and whether it left pages behind
    // (held back by readers of an older snapshot).
    let mut seen = 0;
    let mut behind = false;
    let mut last_pass = Instant::now();
    let mut state = shared.lock();
    loop {
        if state.stopping {
            return;
        }
        let new_commits = state.commits != seen;
        let due_after = match (new_commits, behind) {
            // Close to a restart, passes follow each other so that the
            // writer's wait for the last one is short.
            (true, _) if state.writer_waiting || state.log_frames >= EAGER_FRAMES => Duration::ZERO,
            (true, _) => PASS_INTERVAL,
            (false, true) => RETRY_PAUSE,
            (false, false) => {
                state.idle = true;
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
        };
        let since = last_pass.elapsed();
        if since < due_after {
            state = match shared.changed.wait_timeout(state, due_after - since) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            continue;
        }
        seen = state.commits;
        drop(state);
        let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        last_pass = Instant::now();
        state = shared.lock();
        match pass {
            Ok((log, copied)) => {
                // -1: the database is not in WAL mode right now (another
                // process switched it); there is nothing to copy.
                behind = log > copied && log > 0;
                state.log_frames = log.max(0);
                state.copied_frames = copied.max(0);
                state.passes += 1;
                if !behind {
                    state.caught_up_at = Some(seen);
                    state.caught_up_time = Some(SystemTime::now());
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "background sqlite checkpoint failed; retrying after the next commit");
                behind = false;
            }
        }
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeDelta, Utc};

    use crate::session::{ExpireDate, Record, SessionKey};
    use crate::store::sqlite::{DEFAULT_ROW_CACHE_MIB, SqliteStore, SqliteUrl, Synchronous};
    use crate::store::{SessionStore, StoreOptions};

    /// Sessions that fill the log several times over when no restart comes.
    const MANY_SESSIONS: usize = 10 * super::RESTART_FRAMES as usize;

    /// Writes `count` 1 KiB sessions, 64 at a time as concurrent callers
    /// would.
    async fn write_sessions(store: &Arc<SqliteStore>, count: usize) -> Vec<SessionKey> {
        let expire_date = ExpireDate::after(Utc::now(), TimeDelta::hours(1)).unwrap();
        let data = format!("{{\"pad\": \"{}\"}}", "x".repeat(1000));
        let mut keys = Vec::with_capacity(count);
        for _ in 0..count / 64 {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let (store, key) = (store.clone(), SessionKey::generate());
                let record = Record {
                    session_data: data.clone(),
                    expire_date,
                };
                keys.push(key.clone());
                tasks.spawn(async move { store.insert(&key, record).await });
            }
            for result in tasks.join_all().await {
                result.unwrap();
            }
        }
        keys
    }

    fn open(dir: &tempfile::TempDir) -> (Arc<SqliteStore>, std::path::PathBuf) {
        let path = dir.path().join("sessions.sqlite3");
        let options = StoreOptions::default();
        let url = SqliteUrl {
            path: path.clone(),
            synchronous: Synchronous::Normal,
            row_cache_mib: DEFAULT_ROW_CACHE_MIB,
        };
        (Arc::new(SqliteStore::open(&url, &options).unwrap()), path)
    }

    fn wal_bytes(path: &std::path::Path) -> u64 {
        let wal = path.with_extension("sqlite3-wal");
        std::fs::metadata(wal).map_or(0, |meta| meta.len())
    }

    /// Past this, the log was not started over. The restart length is not
    /// a hard cap: the writer sees the log's length as of the last pass, so
    /// on a busy machine it may grow by what was committed since; without
    /// restarts [`MANY_SESSIONS`] would make it about three times as long.
    const WAL_BOUND_BYTES: u64 = 4 * super::RESTART_FRAMES as u64 * 4096;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_stays_bounded_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = open(&dir);
        store.migrate().await.unwrap();
        let keys = write_sessions(&store, MANY_SESSIONS).await;
        let wal = wal_bytes(&path);
        assert!(wal < WAL_BOUND_BYTES, "the log grew to {wal} bytes");
        for key in keys.iter().step_by(97) {
            assert!(store.exists(key).await.unwrap());
        }
        store.close().await;
        assert_eq!(wal_bytes(&path), 0, "a clean stop folds the log in");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_go_on_while_a_reader_elsewhere_pins_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = open(&dir);
        store.migrate().await.unwrap();
        // Another process's open read transaction pins the log: no
        // checkpoint can finish while it lasts.
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM django_session;")
            .unwrap();
        let keys = write_sessions(&store, MANY_SESSIONS).await;
        let pinned = wal_bytes(&path);
        assert!(pinned > WAL_BOUND_BYTES, "the reader did not pin the log");
        reader.execute_batch("COMMIT").unwrap();
        // Once it lets go, the log is folded in and starts over.
        write_sessions(&store, 2 * super::RESTART_FRAMES as usize).await;
        let (log, _): (i64, i64) = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get(1)?, row.get(2)?))
            })
            .unwrap();
        assert!(
            log < 2 * super::RESTART_FRAMES,
            "the log did not start over: {log} pages"
        );
        store.close().await;
        assert_eq!(wal_bytes(&path), 0);
        let count: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM django_session", [], |row| row.get(0))
            .unwrap();
        assert_eq!(
            count,
            i64::try_from(keys.len() + 2 * super::RESTART_FRAMES as usize).unwrap()
        );
    }
}
