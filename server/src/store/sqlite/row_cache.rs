//! Rows kept in memory, so that a Load that finds its row here reads no
//! page of the file.
//!
//! A lookup in SQLite costs the thread that serves a connection a few
//! microseconds, more after each commit, which empties every read
//! connection's page cache; a copy in memory costs what `memory://` costs.
//! The writer puts every row it writes and drops every row it deletes, after
//! its commit and before it acknowledges, so a store written all the time
//! keeps its copies; a Load that reads a row from the file keeps a copy too.
//!
//! # When a copy may answer
//!
//! A copy is exact only while no other process (a Django app on the same
//! file) has written the table since. Migration `0002_sessiond_changes` has
//! SQLite count every row changed in `django_session`, by triggers, whoever
//! changes it. Each read transaction a connection thread holds and each
//! write transaction reads that count with the schema version: its
//! [`Stamp`]. The cache knows the stamp of the state its copies are of:
//!
//! - A Load answers from a copy when its transaction's stamp is not newer
//!   than the cache's. Every write acknowledged before the Load was sent is
//!   in its transaction (see `loads`), so it is in the cache's state too.
//! - A Load fills the cache only when its transaction's stamp is the
//!   cache's: the row it read is then that state's row.
//! - The writer applies its writes when its transaction began at the
//!   cache's stamp: nothing else was committed in between, since it held
//!   the write lock from there to its commit. Otherwise another process has
//!   written: the writer empties the cache (unless it is empty already), and
//!   then applies its writes. Either way the cache takes the commit's stamp.
//! - A Load whose stamp is newer than the cache's, while the writer is not
//!   between its commit and its update of the cache, has seen another
//!   process's write: the cache is emptied and takes the Load's stamp.
//! - A changed schema version (the triggers dropped, the table rebuilt by a
//!   Django migration) empties the cache, which takes no stamp until the
//!   triggers are found in place again (`schema` puts them back at each
//!   start). Without the count (a database not
//!   migrated, or the count's row gone), nothing is cached.
//!
//! Purged rows are dropped too, though an expired copy answers no Load:
//! each Load checks the copy's `expire_date` against its own `now`, as its
//! SQL does.

use std::sync::{Mutex, MutexGuard, PoisonError};

use hashlink::LruCache;
use rusqlite::Connection;

use crate::session::SessionKey;
use crate::store::RowCacheGauges;

/// A stored row as read: `session_data` and `expire_date` as text.
pub(super) type Row = (String, String);

/// Memory a copy takes beyond its text: the map's entry, its links and the
/// strings' headers, roughly. Counted so that many small sessions cannot
/// take far more than the budget.
const ENTRY_OVERHEAD: usize = 128;

/// The triggers of migration `0002_sessiond_changes`.
const TRIGGERS: [&str; 3] = [
    "sessiond_changes_insert",
    "sessiond_changes_update",
    "sessiond_changes_delete",
];

/// What a transaction saw of the table: the count of rows changed in it,
/// and the schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    changes: i64,
    schema: i64,
}

impl Stamp {
    /// The stamp of what `conn`'s transaction sees (beginning its snapshot,
    /// if this is its first read). `None` without the count.
    pub(super) fn read(conn: &Connection) -> Option<Self> {
        conn.prepare_cached(
            "SELECT changes, (SELECT schema_version FROM pragma_schema_version) \
             FROM sessiond_changes WHERE id = 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([], |row| {
                Ok(Self {
                    changes: row.get(0)?,
                    schema: row.get(1)?,
                })
            })
        })
        .ok()
    }

    /// Whether a cache of this state may answer a Load that saw `seen`.
    fn covers(self, seen: Self) -> bool {
        self.schema == seen.schema && self.changes >= seen.changes
    }
}

/// A write the writer committed, as the cache follows it.
#[derive(Debug)]
pub(super) enum Change {
    /// A session's key and its row as written.
    Put(String, Row),
    /// A deleted session's key.
    Remove(String),
}

/// Copies of rows, at most `budget` bytes of them, least recently used
/// dropped first.
#[derive(Debug)]
pub(super) struct RowCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    rows: LruCache<String, Row>,
    bytes: usize,
    /// The state the copies are of; `None` while none may answer.
    stamp: Option<Stamp>,
    /// The schema version the triggers were last looked for at, and whether
    /// all of them were there.
    triggers: Option<(i64, bool)>,
    /// The writer has begun its commit and not yet updated the cache.
    committing: bool,
    /// Loads answered from a copy, and Loads that asked and were not.
    hits: u64,
    misses: u64,
}

impl RowCache {
    /// A cache of at most `budget` bytes; 0 keeps nothing.
    pub(super) fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner {
                rows: LruCache::new_unbounded(),
                bytes: 0,
                stamp: None,
                triggers: None,
                committing: false,
                hits: 0,
                misses: 0,
            }),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// The copy of `key`'s row, for a Load whose transaction saw `seen`;
    /// expired or not.
    pub(super) fn get(&self, key: &SessionKey, seen: Stamp) -> Option<Row> {
        let mut inner = self.lock();
        let copy = if inner.stamp.is_some_and(|stamp| stamp.covers(seen)) {
            inner.rows.get(key.as_str()).cloned()
        } else {
            None
        };
        match copy {
            Some(_) => inner.hits += 1,
            None => inner.misses += 1,
        }
        copy
    }

    pub(super) fn gauges(&self) -> RowCacheGauges {
        let inner = self.lock();
        RowCacheGauges {
            sessions: inner.rows.len() as u64,
            bytes: inner.bytes as u64,
            hits: inner.hits,
            misses: inner.misses,
        }
    }

    /// Keeps a copy of a row a Load read in a transaction that saw `seen`.
    pub(super) fn fill(&self, key: &SessionKey, row: &Row, seen: Stamp) {
        let mut inner = self.lock();
        if inner.stamp == Some(seen) {
            inner.put(key.as_str().to_owned(), row.clone(), self.budget);
        }
    }

    /// Brings the cache to the state of a read transaction that saw `seen`
    /// on `conn`, if that state is newer and no commit of the writer
    /// explains it: another process wrote, and the copies are dropped.
    pub(super) fn catch_up(&self, seen: Stamp, conn: &Connection) {
        {
            let inner = self.lock();
            if inner.committing || inner.stamp.is_some_and(|stamp| stamp.covers(seen)) {
                return;
            }
        }
        let counted = self.triggers_in_place(seen.schema, conn);
        let mut inner = self.lock();
        if inner.committing || inner.stamp.is_some_and(|stamp| stamp.covers(seen)) {
            return;
        }
        inner.clear();
        inner.stamp = counted.then_some(seen);
    }

    /// The writer is about to commit: until [`Self::committed`], a Load
    /// that sees the commit must not take it for another process's.
    pub(super) fn committing(&self) {
        self.lock().committing = true;
    }

    /// The writer committed `changes` in a transaction that began at
    /// `before` and ended at `after`, on `conn`.
    pub(super) fn committed(
        &self,
        before: Option<Stamp>,
        after: Option<Stamp>,
        changes: Vec<Change>,
        conn: &Connection,
    ) {
        let counted = after.is_some_and(|after| self.triggers_in_place(after.schema, conn));
        let mut inner = self.lock();
        inner.committing = false;
        // An empty cache holds nothing another process could have changed.
        let follows = (inner.stamp == before || inner.rows.is_empty())
            && after
                .is_some_and(|after| before.is_some_and(|before| before.schema == after.schema));
        if !follows {
            inner.clear();
        }
        inner.stamp = if counted { after } else { None };
        if inner.stamp.is_none() {
            return;
        }
        for change in changes {
            match change {
                Change::Put(key, row) => inner.put(key, row, self.budget),
                Change::Remove(key) => inner.remove(&key),
            }
        }
    }

    /// The writer's commit failed: what the file holds now is not known.
    pub(super) fn commit_failed(&self) {
        let mut inner = self.lock();
        inner.committing = false;
        inner.clear();
        inner.stamp = None;
    }

    /// Whether the triggers that keep the count are in the schema of
    /// version `schema`, looked up on `conn` once per version.
    fn triggers_in_place(&self, schema: i64, conn: &Connection) -> bool {
        if let Some((known, found)) = self.lock().triggers
            && known == schema
        {
            return found;
        }
        let found = conn
            .prepare_cached(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' \
                 AND tbl_name = 'django_session' AND name IN (?1, ?2, ?3)",
            )
            .and_then(|mut stmt| stmt.query_row(TRIGGERS, |row| row.get::<_, i64>(0)))
            .is_ok_and(|count| count == TRIGGERS.len() as i64);
        if !found {
            tracing::warn!(
                "the sqlite row cache is off: the triggers that count changes to django_session \
                 (migration 0002_sessiond_changes) are gone, so Loads read the file; restarting \
                 sessiond, or `sessiond migrate`, puts them back"
            );
        }
        self.lock().triggers = Some((schema, found));
        found
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change to `Inner` leaves it whole before it can panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn put(&mut self, key: String, row: Row, budget: usize) {
        let size = size_of_copy(&key, &row);
        if size > budget {
            self.remove(&key);
            return;
        }
        self.bytes += size;
        if let Some(old) = self.rows.insert(key.clone(), row) {
            self.bytes -= size_of_copy(&key, &old);
        }
        while self.bytes > budget {
            match self.rows.remove_lru() {
                Some((key, row)) => self.bytes -= size_of_copy(&key, &row),
                None => break,
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(row) = self.rows.remove(key) {
            self.bytes -= size_of_copy(key, &row);
        }
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
    }
}

fn size_of_copy(key: &str, (session_data, expire_date): &Row) -> usize {
    key.len() + session_data.len() + expire_date.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{Change, Row, RowCache, Stamp};
    use crate::session::SessionKey;

    /// A database with Django's table and the triggers that count its
    /// changes, as the migrations leave it.
    fn counted_database() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!(
            "../../../../migrations/sqlite/0001_django_session.sql"
        ))
        .unwrap();
        conn.execute_batch(include_str!(
            "../../../../migrations/sqlite/0002_sessiond_changes.sql"
        ))
        .unwrap();
        conn
    }

    fn row(data: &str) -> Row {
        (data.to_owned(), "9999-12-31 00:00:00".to_owned())
    }

    fn put(key: &SessionKey, data: &str) -> Change {
        Change::Put(key.as_str().to_owned(), row(data))
    }

    /// A cache that followed one commit of the writer's, putting `key`.
    fn cache_after_a_commit(conn: &Connection, key: &SessionKey) -> (RowCache, Stamp) {
        let cache = RowCache::new(1 << 20);
        let before = Stamp::read(conn).unwrap();
        conn.execute(
            "INSERT INTO django_session VALUES (?1, 'v1', '9999-12-31 00:00:00')",
            [key.as_str()],
        )
        .unwrap();
        let after = Stamp::read(conn).unwrap();
        assert_eq!(after.changes, before.changes + 1, "the trigger counted");
        cache.committing();
        cache.committed(Some(before), Some(after), vec![put(key, "v1")], conn);
        (cache, after)
    }

    #[test]
    fn a_copy_answers_loads_that_saw_its_state_or_an_older_one() {
        let conn = counted_database();
        let key = SessionKey::generate();
        let (cache, stamp) = cache_after_a_commit(&conn, &key);
        assert_eq!(cache.get(&key, stamp), Some(row("v1")));
        let older = Stamp {
            changes: stamp.changes - 1,
            ..stamp
        };
        assert_eq!(cache.get(&key, older), Some(row("v1")));
        let newer = Stamp {
            changes: stamp.changes + 1,
            ..stamp
        };
        assert_eq!(cache.get(&key, newer), None, "another process wrote since");
        let other_schema = Stamp {
            schema: stamp.schema + 1,
            ..stamp
        };
        assert_eq!(cache.get(&key, other_schema), None);
        let gauges = cache.gauges();
        assert_eq!((gauges.hits, gauges.misses, gauges.sessions), (2, 2, 1));
    }

    #[test]
    fn a_write_of_another_process_drops_the_copies() {
        let conn = counted_database();
        let (key, other) = (SessionKey::generate(), SessionKey::generate());
        let (cache, _) = cache_after_a_commit(&conn, &key);
        // Another process's update, then a commit of the writer's.
        conn.execute(
            "UPDATE django_session SET session_data = 'v2' WHERE session_key = ?1",
            [key.as_str()],
        )
        .unwrap();
        let before = Stamp::read(&conn).unwrap();
        conn.execute(
            "INSERT INTO django_session VALUES (?1, 'o1', '9999-12-31 00:00:00')",
            [other.as_str()],
        )
        .unwrap();
        let after = Stamp::read(&conn).unwrap();
        cache.committing();
        cache.committed(Some(before), Some(after), vec![put(&other, "o1")], &conn);
        assert_eq!(
            cache.get(&key, after),
            None,
            "the old copy outlived a write"
        );
        assert_eq!(cache.get(&other, after), Some(row("o1")));
    }

    #[test]
    fn a_load_that_sees_another_process_write_drops_the_copies() {
        let conn = counted_database();
        let key = SessionKey::generate();
        let (cache, stamp) = cache_after_a_commit(&conn, &key);
        conn.execute(
            "UPDATE django_session SET session_data = 'v2' WHERE session_key = ?1",
            [key.as_str()],
        )
        .unwrap();
        let seen = Stamp::read(&conn).unwrap();
        // Not while the writer is between its commit and its update of the
        // cache: that commit may be what the Load saw.
        cache.committing();
        cache.catch_up(seen, &conn);
        assert_eq!(cache.get(&key, stamp), Some(row("v1")));
        cache.committed(Some(stamp), Some(stamp), Vec::new(), &conn);
        cache.catch_up(seen, &conn);
        assert_eq!(cache.get(&key, seen), None);
        // The emptied cache takes the Load's state, and its fills.
        cache.fill(&key, &row("v2"), seen);
        assert_eq!(cache.get(&key, seen), Some(row("v2")));
    }

    #[test]
    fn a_fill_from_an_older_snapshot_is_refused() {
        let conn = counted_database();
        let key = SessionKey::generate();
        let (cache, stamp) = cache_after_a_commit(&conn, &key);
        let other = SessionKey::generate();
        let older = Stamp {
            changes: stamp.changes - 1,
            ..stamp
        };
        cache.fill(&other, &row("old"), older);
        assert_eq!(cache.get(&other, stamp), None);
        cache.fill(&other, &row("now"), stamp);
        assert_eq!(cache.get(&other, stamp), Some(row("now")));
    }

    #[test]
    fn without_the_triggers_nothing_is_kept() {
        let conn = counted_database();
        conn.execute_batch("DROP TRIGGER sessiond_changes_update")
            .unwrap();
        let cache = RowCache::new(1 << 20);
        let key = SessionKey::generate();
        let seen = Stamp::read(&conn).unwrap();
        cache.catch_up(seen, &conn);
        cache.fill(&key, &row("v1"), seen);
        assert_eq!(cache.get(&key, seen), None);
        cache.committing();
        cache.committed(Some(seen), Some(seen), vec![put(&key, "v1")], &conn);
        assert_eq!(cache.get(&key, seen), None);
        assert_eq!(cache.gauges().sessions, 0);
    }

    #[test]
    fn the_least_recently_used_copies_go_first_past_the_budget() {
        let conn = counted_database();
        let first = SessionKey::generate();
        let (cache, stamp) = cache_after_a_commit(&conn, &first);
        let cache = RowCache {
            budget: 4 * 1024,
            ..cache
        };
        let data = "x".repeat(900);
        let keys: Vec<SessionKey> = (0..8).map(|_| SessionKey::generate()).collect();
        for key in &keys {
            cache.fill(key, &row(&data), stamp);
            // The first copy stays in use, so it stays.
            assert!(cache.get(&first, stamp).is_some());
        }
        let gauges = cache.gauges();
        assert!(gauges.bytes <= 4 * 1024, "{gauges:?}");
        assert_eq!(gauges.sessions, 4, "{gauges:?}");
        assert!(cache.get(&keys[7], stamp).is_some());
        assert!(cache.get(&keys[0], stamp).is_none());
        // A row larger than the whole budget is not kept.
        cache.fill(&keys[0], &row(&"y".repeat(8 * 1024)), stamp);
        assert!(cache.get(&keys[0], stamp).is_none());
        assert!(cache.gauges().bytes <= 4 * 1024);
    }
}
