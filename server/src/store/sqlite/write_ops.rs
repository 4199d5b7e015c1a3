//! The writes the SQLite engine performs, and how each one runs inside the
//! writer's transaction (see `writer`), telling the row cache what it
//! changed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension};

use super::dates::to_django_text;
use super::errors::classify;
use super::row_cache::{Change, Row};
use crate::session::{ExpireDate, Record, SessionKey};
use crate::store::Patcher;
use crate::store::kit::StoreError;

/// A write the engine performs.
pub(super) enum WriteOp {
    Insert {
        key: SessionKey,
        record: Record,
    },
    Update {
        key: SessionKey,
        record: Record,
    },
    Patch {
        key: SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    },
    Delete {
        key: SessionKey,
    },
    CycleKey {
        old_key: SessionKey,
        new_key: SessionKey,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    },
    ClearExpiredBatch {
        now: DateTime<Utc>,
        limit: u64,
    },
}

impl std::fmt::Debug for WriteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Self::Insert { .. } => "Insert",
            Self::Update { .. } => "Update",
            Self::Patch { .. } => "Patch",
            Self::Delete { .. } => "Delete",
            Self::CycleKey { .. } => "CycleKey",
            Self::ClearExpiredBatch { .. } => "ClearExpiredBatch",
        };
        f.write_str(name)
    }
}

/// What a successful write did.
#[derive(Debug)]
pub(super) enum WriteOutcome {
    Done,
    Removed(u64),
    /// What a patch wrote.
    Patched(Record),
}

/// Runs `op`, adding what it changed to `changes` for the row cache.
pub(super) fn apply(
    conn: &Connection,
    op: WriteOp,
    timeout: Duration,
    changes: &mut Vec<Change>,
) -> Result<WriteOutcome, StoreError> {
    let result = match op {
        WriteOp::Insert { key, record } => insert(conn, key, &record, changes),
        WriteOp::Update { key, record } => update(conn, key, &record, changes),
        WriteOp::Patch {
            key,
            patcher,
            expire_date,
            now,
        } => patch(conn, key, patcher, expire_date, now, changes),
        WriteOp::Delete { key } => delete(conn, key, changes).map(WriteOutcome::Removed),
        WriteOp::CycleKey {
            old_key,
            new_key,
            session_data,
            expire_date,
            now,
        } => cycle_key(
            conn,
            old_key,
            new_key,
            session_data.as_deref(),
            expire_date,
            now,
            changes,
        ),
        WriteOp::ClearExpiredBatch { now, limit } => clear_expired_batch(conn, now, limit, changes),
    };
    result.map_err(|failure| match failure {
        Failure::Store(err) => err,
        Failure::Sql(err) => classify(err, timeout),
    })
}

enum Failure {
    Store(StoreError),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(err: rusqlite::Error) -> Self {
        if err.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) {
            Self::Store(StoreError::AlreadyExists)
        } else {
            Self::Sql(err)
        }
    }
}

/// What the row cache keeps of a row written.
fn written(key: SessionKey, record: &Record, expire_date: String) -> Change {
    let row = Row {
        session_data: record.session_data.clone(),
        expire_date,
    };
    Change::Put(key.into_string(), row)
}

fn insert(
    conn: &Connection,
    key: SessionKey,
    record: &Record,
    changes: &mut Vec<Change>,
) -> Result<WriteOutcome, Failure> {
    let expire_date = to_django_text(record.expire_date.instant());
    conn.prepare_cached(
        "INSERT INTO django_session (session_key, session_data, expire_date) VALUES (?1, ?2, ?3)",
    )?
    .execute((key.as_str(), record.session_data.as_str(), &expire_date))?;
    changes.push(written(key, record, expire_date));
    Ok(WriteOutcome::Done)
}

fn update(
    conn: &Connection,
    key: SessionKey,
    record: &Record,
    changes: &mut Vec<Change>,
) -> Result<WriteOutcome, Failure> {
    let expire_date = to_django_text(record.expire_date.instant());
    let updated = conn
        .prepare_cached(
            "UPDATE django_session SET session_data = ?2, expire_date = ?3 WHERE session_key = ?1",
        )?
        .execute((key.as_str(), record.session_data.as_str(), &expire_date))?;
    if updated == 0 {
        return Err(Failure::Store(StoreError::NotFound));
    }
    changes.push(written(key, record, expire_date));
    Ok(WriteOutcome::Done)
}

/// Reads and rewrites one row inside the batch transaction, so no other
/// write to it can come between the read and the write.
fn patch(
    conn: &Connection,
    key: SessionKey,
    patcher: Patcher,
    expire_date: ExpireDate,
    now: DateTime<Utc>,
    changes: &mut Vec<Change>,
) -> Result<WriteOutcome, Failure> {
    let (stored, live) = conn
        .prepare_cached(
            "SELECT session_data, expire_date > ?2 FROM django_session WHERE session_key = ?1",
        )?
        .query_row((key.as_str(), to_django_text(now)), |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?))
        })
        .optional()?
        .ok_or(Failure::Store(StoreError::NotFound))?;
    let session_data =
        patcher(live.then_some(stored)).map_err(|err| Failure::Store(StoreError::Invalid(err)))?;
    let record = Record {
        session_data,
        expire_date,
    };
    update(conn, key, &record, changes)?;
    Ok(WriteOutcome::Patched(record))
}

fn delete(conn: &Connection, key: SessionKey, changes: &mut Vec<Change>) -> Result<u64, Failure> {
    let deleted = conn
        .prepare_cached("DELETE FROM django_session WHERE session_key = ?1")?
        .execute([key.as_str()])?;
    changes.push(Change::Remove(key.into_string()));
    Ok(deleted as u64)
}

/// Deletes up to `limit` rows expired at `now`. By rowid, which the
/// expire_date index holds: each row is found once, not again through the
/// session_key index. Django's table and ours are ordinary rowid tables.
fn clear_expired_batch(
    conn: &Connection,
    now: DateTime<Utc>,
    limit: u64,
    changes: &mut Vec<Change>,
) -> Result<WriteOutcome, Failure> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM django_session WHERE rowid IN \
         (SELECT rowid FROM django_session WHERE expire_date < ?1 LIMIT ?2) \
         RETURNING session_key",
    )?;
    let mut rows = stmt.query((to_django_text(now), limit as i64))?;
    let mut removed = 0;
    let mut keys = Vec::new();
    // The rows are deleted by the first step, whatever comes of the rest.
    let listed = (|| {
        while let Some(row) = rows.next()? {
            removed += 1;
            keys.push(Change::Remove(row.get(0)?));
        }
        Ok::<_, rusqlite::Error>(())
    })();
    match listed {
        Ok(()) => {
            changes.append(&mut keys);
            Ok(WriteOutcome::Removed(removed))
        }
        Err(err) => {
            changes.push(Change::Unknown);
            Err(err.into())
        }
    }
}

/// Runs inside a savepoint so that a failure leaves neither key changed while
/// the rest of the batch commits.
fn cycle_key(
    conn: &Connection,
    old_key: SessionKey,
    new_key: SessionKey,
    session_data: Option<&str>,
    expire_date: ExpireDate,
    now: DateTime<Utc>,
    changes: &mut Vec<Change>,
) -> Result<WriteOutcome, Failure> {
    conn.execute_batch("SAVEPOINT cycle_key")?;
    let (old, new) = (old_key.as_str().to_owned(), new_key.as_str().to_owned());
    let result = (|| {
        let data = match session_data {
            Some(data) => data.to_owned(),
            None => conn
                .prepare_cached(
                    "SELECT session_data FROM django_session \
                     WHERE session_key = ?1 AND expire_date > ?2",
                )?
                .query_row((old_key.as_str(), to_django_text(now)), |row| row.get(0))
                .optional()?
                .ok_or(Failure::Store(StoreError::NotFound))?,
        };
        let record = Record {
            session_data: data,
            expire_date,
        };
        // Both keys' copies are dropped below instead.
        let mut replaced_below = Vec::new();
        insert(conn, new_key, &record, &mut replaced_below)?;
        delete(conn, old_key, &mut replaced_below)?;
        Ok(WriteOutcome::Done)
    })();
    // However the savepoint ends, neither key keeps a copy: dropping one is
    // always safe, and the new key's next Load copies it.
    changes.extend([Change::Remove(old), Change::Remove(new)]);
    let end = if result.is_ok() {
        "RELEASE cycle_key"
    } else {
        "ROLLBACK TO cycle_key; RELEASE cycle_key"
    };
    conn.execute_batch(end)?;
    result
}
