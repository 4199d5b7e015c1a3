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
//! file, a second sessiond) has written the table since. Migration
//! `0002_sessiond_changes` has SQLite count every row changed in
//! `django_session`, by triggers, whoever changes it; the count's row can be
//! neither deleted nor lowered. Each read transaction a connection thread
//! holds, and each write transaction, reads that count with the schema
//! version: its [`Stamp`]. The cache knows the stamp of the state its copies
//! are of:
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
//!   triggers are seen in place at that very version (`schema` puts them
//!   back at each start). Without the count (its table gone), nothing is
//!   cached.
//!
//! This rests on two things SQLite does not promise of other programs: that
//! they leave sessiond's triggers and their table alone, and that their
//! connections run triggers (SQLite can turn them off per connection, with
//! `SQLITE_DBCONFIG_ENABLE_TRIGGER`). Django does both. A program that does
//! not should not share the file with sessiond's copies: `row_cache_mib=0`.
//!
//! Each Load checks a copy's `expire_date` against its own `now`, as its
//! SQL does, and an expired copy answers that there is no session. So a
//! purge, which deletes only sessions expired before it began, changes no
//! answer a copy gives to a Load sent after it: sessiond's own purges run
//! with triggers off, uncounted, and leave the copies of what they delete
//! to go as they are next asked for, or as the least recently used.

use std::sync::{Mutex, MutexGuard, PoisonError};

use hashlink::LruCache;
use rusqlite::Connection;

use super::schema::change_count_in_place;
use crate::session::SessionKey;
use crate::store::RowCacheGauges;

/// A stored row as read, both columns as the file holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) session_data: String,
    /// Django's text, `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC.
    pub(super) expire_date: String,
}

impl Row {
    /// Whether the row is live at `now` (Django's text), compared as the
    /// lookup's SQL compares them: as text.
    pub(super) fn is_live_at(&self, now: &str) -> bool {
        self.expire_date.as_str() > now
    }
}

/// Memory a copy takes beyond its text: the map's entry, its links and the
/// strings' headers, roughly. Counted so that many small sessions cannot
/// take far more than the budget.
const ENTRY_OVERHEAD: usize = 128;

/// What a transaction saw of the table: the count of rows changed in it,
/// and the schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    changes: i64,
    schema: i64,
}

impl Stamp {
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

/// Whether the triggers that keep the count were in place, as last looked
/// up, and at which schema version.
#[derive(Debug, Clone, Copy)]
struct TriggersSeen {
    schema: i64,
    in_place: bool,
}

/// Copies of rows, at most `budget` bytes of them, least recently used
/// dropped first.
#[derive(Debug)]
pub(super) struct RowCache {
    budget: usize,
    copies: Mutex<Copies>,
}

#[derive(Debug)]
struct Copies {
    rows: LruCache<String, Row>,
    bytes: usize,
    /// The state the copies are of; `None` while none may answer.
    stamp: Option<Stamp>,
    triggers: Option<TriggersSeen>,
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
            copies: Mutex::new(Copies {
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

    /// The stamp of what `conn`'s transaction sees (beginning its snapshot,
    /// if this is its first read); `None` when nothing is cached, or without
    /// the count.
    pub(super) fn stamp(&self, conn: &Connection) -> Option<Stamp> {
        if self.budget == 0 {
            return None;
        }
        conn.prepare_cached(
            "SELECT changes, (SELECT schema_version FROM pragma_schema_version) \
             FROM sessiond_changes WHERE id = 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([], |row| {
                Ok(Stamp {
                    changes: row.get(0)?,
                    schema: row.get(1)?,
                })
            })
        })
        .ok()
    }

    /// The answer to a Load of `key` at `now` (Django's text) whose
    /// transaction saw `seen`, from a copy: its row if live, no session if
    /// expired. `None` where no copy answers, and the file must.
    ///
    /// An expired copy is dropped as it answers: only a write brings a
    /// session back, and a write puts a new copy.
    pub(super) fn answer(&self, key: &SessionKey, seen: Stamp, now: &str) -> Option<Option<Row>> {
        let mut copies = self.lock();
        let answer = if copies.answer_for(seen) {
            match copies.rows.get(key.as_str()) {
                Some(row) if row.is_live_at(now) => Some(Some(row.clone())),
                Some(_) => {
                    copies.remove(key.as_str());
                    Some(None)
                }
                None => None,
            }
        } else {
            None
        };
        match answer {
            Some(_) => copies.hits += 1,
            None => copies.misses += 1,
        }
        answer
    }

    pub(super) fn gauges(&self) -> RowCacheGauges {
        let copies = self.lock();
        RowCacheGauges {
            sessions: copies.rows.len() as u64,
            bytes: copies.bytes as u64,
            hits: copies.hits,
            misses: copies.misses,
        }
    }

    /// Keeps a copy of a row a Load read in a transaction that saw `seen`.
    pub(super) fn fill(&self, key: &SessionKey, row: &Row, seen: Stamp) {
        let mut copies = self.lock();
        if copies.stamp == Some(seen) {
            copies.put(key.as_str().to_owned(), row.clone(), self.budget);
        }
    }

    /// Drops the copies if a read transaction that saw `seen` on `conn` saw
    /// another process's write: a newer state than the cache's, which no
    /// commit of the writer explains. The cache then takes that state.
    pub(super) fn drop_if_written_elsewhere(&self, seen: Stamp, conn: &Connection) {
        if !self.lock().may_take(seen) {
            return;
        }
        let in_place = self.triggers_in_place(seen.schema, conn);
        let mut copies = self.lock();
        if !copies.may_take(seen) {
            return;
        }
        let dropped = copies.take_rows();
        copies.stamp = in_place.then_some(seen);
        drop(copies);
        drop(dropped);
    }

    /// A read transaction found no count to read (its table gone): no copy
    /// may answer until it is back.
    pub(super) fn count_unreadable(&self) {
        if self.budget == 0 {
            return;
        }
        let mut copies = self.lock();
        if copies.stamp.is_some() {
            tracing::warn!(
                "the sqlite row cache is off: the count of changes to django_session \
                 (table sessiond_changes, migration 0002_sessiond_changes) cannot be read, so \
                 Loads read the file; restarting sessiond, or `sessiond migrate`, puts it back"
            );
        }
        let dropped = copies.take_rows();
        copies.stamp = None;
        drop(copies);
        drop(dropped);
    }

    /// The writer is about to commit: until [`Self::commit_done`], a Load
    /// that sees the commit must not take it for another process's.
    pub(super) fn begin_commit(&self) {
        if self.budget > 0 {
            self.lock().committing = true;
        }
    }

    /// The writer committed `changes` in a transaction that began at
    /// `before` and ended at `after`, on `conn`.
    pub(super) fn commit_done(
        &self,
        before: Option<Stamp>,
        after: Option<Stamp>,
        changes: Vec<Change>,
        conn: &Connection,
    ) {
        if self.budget == 0 {
            return;
        }
        // Looked up after the commit: at a newer schema version than
        // `after`'s, this answers no, and the cache stays off for now.
        let in_place = after.is_some_and(|after| self.triggers_in_place(after.schema, conn));
        let mut copies = self.lock();
        copies.committing = false;
        // An empty cache holds nothing another process could have changed.
        let follows = (copies.stamp == before || copies.rows.is_empty())
            && after
                .is_some_and(|after| before.is_some_and(|before| before.schema == after.schema));
        let mut dropped = if follows {
            None
        } else {
            Some(copies.take_rows())
        };
        copies.stamp = if in_place { after } else { None };
        if copies.stamp.is_some() {
            for change in changes {
                match change {
                    Change::Put(key, row) => copies.put(key, row, self.budget),
                    Change::Remove(key) => copies.remove(&key),
                }
            }
        } else if dropped.is_none() {
            dropped = Some(copies.take_rows());
        }
        drop(copies);
        drop(dropped);
    }

    /// The writer's commit failed: what the file holds now is not known.
    pub(super) fn commit_failed(&self) {
        let mut copies = self.lock();
        copies.committing = false;
        let dropped = copies.take_rows();
        copies.stamp = None;
        drop(copies);
        drop(dropped);
    }

    /// Whether the triggers that keep the count are in the schema of
    /// version `schema`, as `conn` sees it now; looked up once per version.
    fn triggers_in_place(&self, schema: i64, conn: &Connection) -> bool {
        if let Some(seen) = self.lock().triggers
            && seen.schema == schema
        {
            return seen.in_place;
        }
        let (seen_schema, in_place) = match change_count_in_place(conn) {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look up the triggers that count changes to django_session; no copy of a row answers meanwhile");
                return false;
            }
        };
        let mut copies = self.lock();
        let known = copies
            .triggers
            .is_some_and(|seen| seen.schema == seen_schema);
        if !in_place && !known {
            tracing::warn!(
                "the sqlite row cache is off: the triggers that count changes to django_session \
                 (migration 0002_sessiond_changes) are gone, so Loads read the file; restarting \
                 sessiond, or `sessiond migrate`, puts them back"
            );
        }
        copies.triggers = Some(TriggersSeen {
            schema: seen_schema,
            in_place,
        });
        // Seen at another version than asked about: that one is not known.
        in_place && seen_schema == schema
    }

    fn lock(&self) -> MutexGuard<'_, Copies> {
        // Every change to `Copies` leaves it whole before it can panic.
        self.copies.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Copies {
    /// Whether the copies may answer a Load that saw `seen`.
    fn answer_for(&self, seen: Stamp) -> bool {
        self.stamp.is_some_and(|stamp| stamp.covers(seen))
    }

    /// Whether a Load that saw `seen` may reset the cache to its state:
    /// it is not covered, no commit of the writer's is under way, and it
    /// is not of an older schema than the copies (a snapshot begun before
    /// a schema change, which a newer one has already passed).
    fn may_take(&self, seen: Stamp) -> bool {
        !self.committing
            && !self.answer_for(seen)
            && self.stamp.is_none_or(|stamp| stamp.schema <= seen.schema)
    }

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

    /// Empties the cache, handing back the copies so that the caller frees
    /// them after letting go of the lock, which every Load takes.
    fn take_rows(&mut self) -> LruCache<String, Row> {
        self.bytes = 0;
        std::mem::replace(&mut self.rows, LruCache::new_unbounded())
    }
}

fn size_of_copy(key: &str, row: &Row) -> usize {
    key.len() + row.session_data.len() + row.expire_date.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{Change, Row, RowCache, Stamp};
    use crate::session::SessionKey;

    fn counted_database() -> Connection {
        super::super::schema::migrated_database()
    }

    /// Loads' time in these tests: long before any row's expiry.
    const NOW: &str = "2026-01-01 00:00:00";

    /// The live copy of `key` that answers a Load that saw `seen`.
    fn copy(cache: &RowCache, key: &SessionKey, seen: Stamp) -> Option<Row> {
        cache.answer(key, seen, NOW).flatten()
    }

    fn row(data: &str) -> Row {
        Row {
            session_data: data.to_owned(),
            expire_date: "9999-12-31 00:00:00".to_owned(),
        }
    }

    fn put(key: &SessionKey, data: &str) -> Change {
        Change::Put(key.as_str().to_owned(), row(data))
    }

    /// A cache that followed one commit of the writer's, putting `key`.
    fn cache_after_a_commit(conn: &Connection, key: &SessionKey) -> (RowCache, Stamp) {
        let cache = RowCache::new(1 << 20);
        let before = cache.stamp(conn).unwrap();
        conn.execute(
            "INSERT INTO django_session VALUES (?1, 'v1', '9999-12-31 00:00:00')",
            [key.as_str()],
        )
        .unwrap();
        let after = cache.stamp(conn).unwrap();
        assert_eq!(after.changes, before.changes + 1, "the trigger counted");
        cache.begin_commit();
        cache.commit_done(Some(before), Some(after), vec![put(key, "v1")], conn);
        (cache, after)
    }

    #[test]
    fn a_copy_answers_loads_that_saw_its_state_or_an_older_one() {
        let conn = counted_database();
        let key = SessionKey::generate();
        let (cache, stamp) = cache_after_a_commit(&conn, &key);
        assert_eq!(copy(&cache, &key, stamp), Some(row("v1")));
        let older = Stamp {
            changes: stamp.changes - 1,
            ..stamp
        };
        assert_eq!(copy(&cache, &key, older), Some(row("v1")));
        let newer = Stamp {
            changes: stamp.changes + 1,
            ..stamp
        };
        assert_eq!(
            copy(&cache, &key, newer),
            None,
            "another process wrote since"
        );
        let other_schema = Stamp {
            schema: stamp.schema + 1,
            ..stamp
        };
        assert_eq!(copy(&cache, &key, other_schema), None);
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
        let before = cache.stamp(&conn).unwrap();
        conn.execute(
            "INSERT INTO django_session VALUES (?1, 'o1', '9999-12-31 00:00:00')",
            [other.as_str()],
        )
        .unwrap();
        let after = cache.stamp(&conn).unwrap();
        cache.begin_commit();
        cache.commit_done(Some(before), Some(after), vec![put(&other, "o1")], &conn);
        assert_eq!(
            copy(&cache, &key, after),
            None,
            "the old copy outlived a write"
        );
        assert_eq!(copy(&cache, &other, after), Some(row("o1")));
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
        let seen = cache.stamp(&conn).unwrap();
        // Not while the writer is between its commit and its update of the
        // cache: that commit may be what the Load saw.
        cache.begin_commit();
        cache.drop_if_written_elsewhere(seen, &conn);
        assert_eq!(copy(&cache, &key, stamp), Some(row("v1")));
        cache.commit_done(Some(stamp), Some(stamp), Vec::new(), &conn);
        cache.drop_if_written_elsewhere(seen, &conn);
        assert_eq!(copy(&cache, &key, seen), None);
        // The emptied cache takes the Load's state, and its fills.
        cache.fill(&key, &row("v2"), seen);
        assert_eq!(copy(&cache, &key, seen), Some(row("v2")));
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
        assert_eq!(copy(&cache, &other, stamp), None);
        cache.fill(&other, &row("now"), stamp);
        assert_eq!(copy(&cache, &other, stamp), Some(row("now")));
    }

    #[test]
    fn without_the_triggers_nothing_is_kept() {
        let conn = counted_database();
        conn.execute_batch("DROP TRIGGER sessiond_changes_update")
            .unwrap();
        let cache = RowCache::new(1 << 20);
        let key = SessionKey::generate();
        let seen = cache.stamp(&conn).unwrap();
        cache.drop_if_written_elsewhere(seen, &conn);
        cache.fill(&key, &row("v1"), seen);
        assert_eq!(copy(&cache, &key, seen), None);
        cache.begin_commit();
        cache.commit_done(Some(seen), Some(seen), vec![put(&key, "v1")], &conn);
        assert_eq!(copy(&cache, &key, seen), None);
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
            assert!(copy(&cache, &first, stamp).is_some());
        }
        let gauges = cache.gauges();
        assert!(gauges.bytes <= 4 * 1024, "{gauges:?}");
        assert_eq!(gauges.sessions, 4, "{gauges:?}");
        assert!(copy(&cache, &keys[7], stamp).is_some());
        assert!(copy(&cache, &keys[0], stamp).is_none());
        // A row larger than the whole budget is not kept.
        cache.fill(&keys[0], &row(&"y".repeat(8 * 1024)), stamp);
        assert!(copy(&cache, &keys[0], stamp).is_none());
        assert!(cache.gauges().bytes <= 4 * 1024);
    }

    #[test]
    fn a_snapshot_from_before_a_schema_change_leaves_the_copies_alone() {
        let conn = counted_database();
        let key = SessionKey::generate();
        let (cache, stamp) = cache_after_a_commit(&conn, &key);
        let older_schema = Stamp {
            schema: stamp.schema - 1,
            ..stamp
        };
        cache.drop_if_written_elsewhere(older_schema, &conn);
        assert_eq!(copy(&cache, &key, older_schema), None, "not its schema");
        assert_eq!(copy(&cache, &key, stamp), Some(row("v1")));
    }

    #[test]
    fn an_expired_copy_answers_no_session_and_goes() {
        let conn = counted_database();
        let key = SessionKey::generate();
        let (cache, stamp) = cache_after_a_commit(&conn, &key);
        assert_eq!(cache.answer(&key, stamp, "9999-12-31 00:00:00"), Some(None));
        assert_eq!(cache.gauges().sessions, 0);
        assert_eq!(cache.answer(&key, stamp, NOW), None, "the file answers now");
    }
}
