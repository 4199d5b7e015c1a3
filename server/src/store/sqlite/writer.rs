//! The single writer thread of the SQLite engine.
//!
//! Callers submit write operations over a channel. The thread takes every
//! operation waiting at that moment and runs them in one transaction (group
//! commit); each caller hears back only after the commit, so an acknowledged
//! write is on disk. An operation that fails (a taken key, a missing row)
//! fails alone; a transaction that fails to commit fails every operation in
//! it, and none of them is acknowledged. The row cache follows each commit
//! before its writes are acknowledged (see `row_cache`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::Synchronous;
use super::checkpoint::{CheckpointWatch, Checkpointer};
use super::errors::classify;
use super::row_cache::RowCache;
use super::write_ops::{WriteOp, WriteOutcome, apply};
use crate::store::kit::StoreError;

/// Most operations committed in one transaction. Bounds the time one commit
/// holds the write lock, and so the wait of a Django process on the same file.
const MAX_BATCH: usize = 256;

/// Operations queued for the writer before submitters wait for room.
const QUEUE_DEPTH: usize = 4096;

type Reply = oneshot::Sender<Result<WriteOutcome, StoreError>>;

enum Command {
    Write(WriteOp, Reply),
    Stop,
}

/// The handle to the writer thread.
#[derive(Debug)]
pub(super) struct Writer {
    commands: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    checkpoints: Option<CheckpointWatch>,
}

impl Writer {
    /// Starts the writer on `conn`, with background checkpoints on a
    /// connection of their own to `path`; `cache` follows its commits.
    pub(super) fn spawn(
        conn: Connection,
        path: &Path,
        timeout: Duration,
        synchronous: Synchronous,
        cache: Arc<RowCache>,
    ) -> Self {
        let (commands, receiver) = mpsc::channel(QUEUE_DEPTH);
        let checkpointer = Checkpointer::spawn(path, timeout, synchronous);
        let checkpoints = checkpointer.as_ref().map(Checkpointer::watch);
        if checkpointer.is_some()
            && let Err(err) = conn.pragma_update(None, "wal_autocheckpoint", 0)
        {
            tracing::warn!(error = %err, "cannot turn off automatic checkpoints on the sqlite writer");
        }
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, receiver, timeout, checkpointer, &cache));
        let thread = match thread {
            Ok(handle) => Some(handle),
            Err(err) => {
                // Without a writer every write fails with UNAVAILABLE; reads
                // still work, and the cause is in the log.
                tracing::error!(error = %err, "cannot start the sqlite writer thread");
                None
            }
        };
        Self {
            commands,
            thread: Mutex::new(thread),
            checkpoints,
        }
    }

    /// When a background checkpoint last copied the whole log into the
    /// database; `None` before the first, or without the checkpoint thread.
    pub(super) fn last_checkpoint(&self) -> Option<SystemTime> {
        self.checkpoints
            .as_ref()
            .and_then(CheckpointWatch::last_caught_up)
    }

    /// Runs `op` in the next group commit and waits until it is durable.
    pub(super) async fn submit(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.commands
            .send(Command::Write(op, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the sqlite writer has stopped".into()))?;
        outcome
            .await
            .map_err(|_| StoreError::Unavailable("the sqlite writer has stopped".into()))?
    }

    /// Whether the writer thread still takes writes: false once it has
    /// stopped, or if it never started.
    pub(super) fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Lets queued writes finish, then stops the thread and waits for it.
    pub(super) async fn stop(&self) {
        let _ = self.commands.send(Command::Stop).await;
        let handle = match self.thread.lock() {
            Ok(mut thread) => thread.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

fn run(
    mut conn: Connection,
    mut commands: mpsc::Receiver<Command>,
    timeout: Duration,
    checkpointer: Option<Checkpointer>,
    cache: &RowCache,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    while !stopping {
        match commands.blocking_recv() {
            Some(Command::Write(op, reply)) => batch.push((op, reply)),
            Some(Command::Stop) | None => break,
        }
        while batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(Command::Write(op, reply)) => batch.push((op, reply)),
                Ok(Command::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if let Some(checkpointer) = &checkpointer {
            checkpointer.make_room();
        }
        commit_batch(&mut conn, &mut batch, timeout, cache);
        if let Some(checkpointer) = &checkpointer {
            checkpointer.committed();
        }
    }
    if let Some(checkpointer) = checkpointer {
        checkpointer.stop();
    }
    fold_log_at_stop(&conn);
}

/// Folds the write-ahead log into the database and empties it, so that
/// after a clean stop the database file is complete on its own (a copy of
/// it alone holds every acknowledged write). If another connection keeps
/// that from finishing right now, leaves it to a later checkpoint rather
/// than wait, and says so.
fn fold_log_at_stop(conn: &Connection) {
    let _ = conn.busy_timeout(Duration::ZERO);
    // A connection that has not read since it opened a file created empty
    // has not opened the log yet. SQLite then opens it inside the
    // checkpoint, with a read of its own (`sqlite3PagerCheckpoint`) that
    // keeps the checkpoint from starting the log over: it copies the log
    // but answers busy. That is a server stopped before its first write,
    // whose log holds the schema. So the writer reads first.
    let busy = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .and_then(|()| {
            // The pragma's row is (busy, frames in the log, frames copied).
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            })
        });
    match busy {
        Ok(0) => {}
        Ok(_) => tracing::warn!(
            "the final sqlite checkpoint could not empty the write-ahead log (-wal): another \
             connection is using the database; the latest writes stay in the -wal file, so back \
             the database up with `sessiond backup`, not by copying the file alone"
        ),
        Err(err) => tracing::warn!(error = %err, "final sqlite checkpoint failed"),
    }
}

fn commit_batch(
    conn: &mut Connection,
    batch: &mut Vec<(WriteOp, Reply)>,
    timeout: Duration,
    cache: &RowCache,
) {
    let mut pending = std::mem::take(batch).into_iter();
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        fail_all(pending.map(|(_, reply)| reply), &err, timeout);
        return;
    }
    let before = cache.stamp(conn);
    let mut changes = Vec::new();
    let mut outcomes = Vec::with_capacity(pending.len());
    while let Some((op, reply)) = pending.next() {
        if reply.is_closed() {
            // The caller gave up (its deadline passed, its client went
            // away) before the write began: it was never acknowledged, and
            // under overload skipping it is what lets the queue drain.
            continue;
        }
        outcomes.push((reply, apply(conn, op, timeout, &mut changes)));
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (e.g. disk full): none
            // of this batch may be acknowledged.
            let err = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the transaction was rolled back".into()),
            );
            let replies = outcomes.into_iter().map(|(reply, _)| reply);
            fail_all(
                replies.chain(pending.map(|(_, reply)| reply)),
                &err,
                timeout,
            );
            return;
        }
    }
    let after = cache.stamp(conn);
    cache.begin_commit();
    if let Err(err) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        cache.commit_failed();
        fail_all(outcomes.into_iter().map(|(reply, _)| reply), &err, timeout);
        return;
    }
    cache.commit_done(before, after, changes, conn);
    for (reply, outcome) in outcomes {
        let _ = reply.send(outcome);
    }
}

fn fail_all(replies: impl Iterator<Item = Reply>, err: &rusqlite::Error, timeout: Duration) {
    tracing::warn!(error = %err, "sqlite transaction failed; none of its writes took effect");
    let code = err
        .sqlite_error()
        .copied()
        .unwrap_or_else(|| rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR));
    let message = err.to_string();
    for reply in replies {
        let copy = rusqlite::Error::SqliteFailure(code, Some(message.clone()));
        let _ = reply.send(Err(classify(copy, timeout)));
    }
}
