//! The writes the SQLite engine performs, and how each one runs inside the
//! writer's transaction (see `writer`), telling the row cache what it
//! changed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::config::DbConfig;
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
        WriteOp::ClearExpiredBatch { now, limit } => clear_expired_batch(conn, now, limit),
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
///
/// With triggers off: the count of changes need not see a purge (see
/// `row_cache`), and its trigger took a third of a purge's time. A copy
/// of a purged row, here or in another sessiond on the file, is of a
/// session expired before the purge began, so it answers no Load sent
/// after the purge (each Load checks a copy's `expire_date`).
fn clear_expired_batch(
    conn: &Connection,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<WriteOutcome, Failure> {
    let _uncounted = TriggersOff::on(conn);
    // Prepared here, with triggers off: SQLite builds a statement's
    // triggers in when it prepares it, and prepares again whenever the
    // setting changes.
    let removed = conn
        .prepare_cached(
            "DELETE FROM django_session WHERE rowid IN \
             (SELECT rowid FROM django_session WHERE expire_date < ?1 LIMIT ?2)",
        )?
        .execute((to_django_text(now), limit as i64))?;
    Ok(WriteOutcome::Removed(removed as u64))
}

/// Triggers turned off on a connection until this is dropped. Where SQLite
/// refuses, they stay on: the count then sees more than it needs to.
struct TriggersOff<'conn>(&'conn Connection);

impl<'conn> TriggersOff<'conn> {
    fn on(conn: &'conn Connection) -> Self {
        if let Err(err) = conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false) {
            tracing::debug!(error = %err, "cannot turn sqlite triggers off for a purge");
        }
        Self(conn)
    }
}

impl Drop for TriggersOff<'_> {
    fn drop(&mut self) {
        if let Err(err) = self
            .0
            .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true)
        {
            tracing::error!(error = %err, "cannot turn sqlite triggers back on after a purge");
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeDelta, Utc};
    use rusqlite::Connection;

    use super::{WriteOp, WriteOutcome, apply};
    use crate::session::{ExpireDate, Record, SessionKey};
    use crate::store::sqlite::schema::migrated_database;

    fn changes_counted(conn: &Connection) -> i64 {
        conn.query_row("SELECT changes FROM sessiond_changes", [], |row| row.get(0))
            .unwrap()
    }

    fn insert(conn: &Connection, hours: i64) {
        let op = WriteOp::Insert {
            key: SessionKey::generate(),
            record: Record {
                session_data: "{}".into(),
                expire_date: ExpireDate::after(Utc::now(), TimeDelta::hours(hours)).unwrap(),
            },
        };
        apply(conn, op, Duration::from_secs(1), &mut Vec::new()).unwrap();
    }

    /// A purge deletes only what expired before it began, which no copy
    /// of a row answers: it is not counted. Every other write still is.
    #[test]
    fn a_purge_is_not_counted_and_the_writes_after_it_are() {
        let conn = migrated_database();
        for _ in 0..3 {
            insert(&conn, -1);
        }
        for left in [1, 0] {
            let before = changes_counted(&conn);
            let purge = WriteOp::ClearExpiredBatch {
                now: Utc::now(),
                limit: 2,
            };
            let removed = apply(&conn, purge, Duration::from_secs(1), &mut Vec::new()).unwrap();
            assert!(
                matches!(removed, WriteOutcome::Removed(count) if count == left + 1),
                "{removed:?}"
            );
            assert_eq!(changes_counted(&conn), before, "a purge was counted");
            insert(&conn, 1);
            assert_eq!(
                changes_counted(&conn),
                before + 1,
                "an insert after a purge was not counted"
            );
        }
    }
}
