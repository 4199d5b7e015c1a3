//! Loads read together: the Loads that arrive together share one read
//! transaction.
//!
//! A read transaction has a fixed cost apart from the lookup itself: in WAL
//! mode SQLite takes and drops a shared lock on the `-shm` file (a `fcntl`
//! and a process-wide mutex), reads the log's index header, and, whenever
//! anything was committed since the connection's last transaction, throws
//! its whole page cache away, so that the lookup reads its pages again. On
//! a store that is written to all the time that fixed cost is larger than
//! the lookup. Sharing it, as the writer shares one commit among many
//! writes, is what makes loads cheap while saves go on.
//!
//! On a thread that serves connections, a Load is answered where it runs,
//! from a read transaction the thread holds until it next reads from a
//! socket or has nothing left to do (see [`HELD`]): the Loads of a burst
//! share it, each answered as its call runs, so that the first half of a
//! burst is answered and written while the second half waits its turn
//! (`split_turns`), as on `memory://`. Nothing goes to another thread and
//! back. Sending every Load to the drainer below cost the connection's
//! thread about 4 µs more a Load than `memory://` (a wake for each chunk of
//! answers, each call run once more, and smaller turns between sleeps),
//! and on two cores the drainer took turns with it on one core; answered
//! where they run, Loads came to about 1.2 times as many a second, in
//! interleaved rounds. The price: a lookup that waits for the disk (a file
//! much larger than the operating system keeps cached) holds up that
//! thread's other calls meanwhile, where the drainer waited on a thread of
//! its own.
//!
//! Elsewhere (a test's runtime, the main runtime), or when the thread
//! cannot answer (no read connection to spare, or the database keeping
//! readers out), a Load queues itself and yields once, so that the calls that
//! arrived with it queue theirs too; then the first to run again hands the
//! queue to the drainer: one blocking thread at a time that takes a read
//! connection and answers everything queued in one read transaction, and
//! again for what was queued meanwhile, until the queue is empty. Its
//! answers go back in chunks, one wake of a connection's thread for each
//! (see [`Delivery`]). Reading the queue itself on the connection's thread,
//! after the yield, left that thread waiting on every batch and served
//! fewer Loads a second (27 700–34 800 against 40 800–46 500 in three
//! interleaved rounds): the whole burst was answered at once. A Load still
//! alone in the queue after its yield, with no drainer running, is read on
//! its caller's thread, without the two thread wake-ups of the hand-over.
//! When the database keeps readers out, the drainer waits for the locks,
//! one store timeout for the whole queue, and then answers one Load at a
//! time.
//!
//! No Load waits for another caller's call to go on: the drainer runs on
//! its own, and a chunk's first Load hands the rest their answers as soon
//! as its task runs or is dropped, on the thread that runs theirs.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use r2d2::PooledConnection;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::connection::Readers;
use super::errors::{classify, is_busy};
use super::row_cache::{Row, RowCache, Stamp};
use crate::session::SessionKey;
use crate::store::kit::StoreError;
use crate::{before_sleep, socket_reads};

type Answer = Result<Option<Row>, StoreError>;

/// Answers the drainer sends together, to Loads asked on one thread: one
/// wake of that thread for each chunk (see [`Delivery`]). Chunks of 4, 8
/// and 16 served the same Loads a second in interleaved rounds; 16 cost a
/// little less CPU a Load (15.9 µs against 16.1 and 16.6, medians).
const ANSWERS_PER_WAKE: usize = 16;

/// Where a Load's answer goes.
type Reply = oneshot::Sender<Delivery>;

/// One queued Load: the key, the moment it was asked at (as Django's
/// text), where its answer goes, and the thread that asked.
struct Pending {
    key: SessionKey,
    now: String,
    reply: Reply,
    asked_on: ThreadId,
}

/// What a Load receives: its own answer and, for the first Load of a chunk
/// the drainer answered, the answers of the rest, which it hands on as it
/// is dropped.
///
/// A chunk holds Loads asked on one thread, so it wakes that thread once,
/// not once per Load; the first Load's task then wakes the rest there, in
/// the same turn of its runtime, and their answers can go out together.
/// Woken one at a time from the drainer, the answers reached the
/// connection a few at a time, and it wrote to its socket for every few:
/// the server spent about a sixth more CPU a Load. Chunks, not whole
/// batches, so that the connection writes the first answers while the
/// drainer reads the rest: a whole batch at once left each side idle while
/// the other worked, and served about a quarter fewer Loads a second.
///
/// Handing on in `Drop` answers the rest however the first Load ends:
/// received, or dropped unread because its call was cancelled.
struct Delivery {
    /// An `Option` so that the Load can take its answer out: a type with
    /// `Drop` cannot be moved out of.
    own: Option<Answer>,
    others: Vec<(Reply, Answer)>,
}

impl Delivery {
    fn alone(answer: Answer) -> Self {
        Self {
            own: Some(answer),
            others: Vec::new(),
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        for (reply, answer) in self.others.drain(..) {
            let _ = reply.send(Delivery::alone(answer));
        }
    }
}

/// Answers gathered into chunks: one being filled for each thread that
/// asked, so a few at most.
#[derive(Default)]
struct Chunks(Vec<(ThreadId, Vec<(Reply, Answer)>)>);

impl Chunks {
    /// Adds an answer to the chunk of the thread that asked, and sends that
    /// chunk once it is full.
    fn add(&mut self, asked_on: ThreadId, reply: Reply, answer: Answer) {
        let index = match self.0.iter().position(|(thread, _)| *thread == asked_on) {
            Some(index) => index,
            None => {
                self.0
                    .push((asked_on, Vec::with_capacity(ANSWERS_PER_WAKE)));
                self.0.len() - 1
            }
        };
        let chunk = &mut self.0[index].1;
        chunk.push((reply, answer));
        if chunk.len() == ANSWERS_PER_WAKE {
            deliver(std::mem::replace(
                chunk,
                Vec::with_capacity(ANSWERS_PER_WAKE),
            ));
        }
    }

    /// Sends what every chunk holds.
    fn send_rest(self) {
        for (_, chunk) in self.0 {
            deliver(chunk);
        }
    }
}

/// Sends a chunk of answers, all to its first Load still waiting, which
/// hands the rest on (see [`Delivery`]).
fn deliver(answered: Vec<(Reply, Answer)>) {
    let mut answered = answered.into_iter();
    while let Some((reply, own)) = answered.next() {
        let delivery = Delivery {
            own: Some(own),
            others: answered.collect(),
        };
        match reply.send(delivery) {
            Ok(()) => return,
            // That Load's call was cancelled: the next one takes them.
            Err(mut unsent) => answered = std::mem::take(&mut unsent.others).into_iter(),
        }
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

/// The queue of Loads waiting for a read transaction, and the connections
/// that answer them.
#[derive(Debug)]
pub(super) struct Loads {
    readers: Readers,
    timeout: Duration,
    /// Copies of rows, which answer Loads on connection threads.
    cache: Arc<RowCache>,
    queue: Mutex<Vec<Pending>>,
    /// A drainer thread is running (at most one at a time).
    draining: AtomicBool,
    /// The runtime the store was opened on, whose blocking threads drain.
    /// Not the caller's: a connection thread's runtime ends with its
    /// connections, and would drop a drainer it had not started yet.
    runtime: Option<tokio::runtime::Handle>,
}

impl Loads {
    /// Loads answered on `readers`, or on a connection thread from
    /// `cache`; one kept out by another process's lock waits up to
    /// `timeout` for it.
    pub(super) fn new(readers: Readers, timeout: Duration, cache: Arc<RowCache>) -> Arc<Self> {
        Arc::new(Self {
            readers,
            timeout,
            cache,
            queue: Mutex::new(Vec::new()),
            draining: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// The row of `key` unexpired at `now` (Django's text), if any.
    pub(super) async fn load(self: &Arc<Self>, key: SessionKey, now: String) -> Answer {
        if let Some(answer) = self.answer_from_held_snapshot(&key, &now) {
            return answer;
        }
        let (reply, answered) = oneshot::channel();
        let asked_on = std::thread::current().id();
        self.lock().push(Pending {
            key,
            now,
            reply,
            asked_on,
        });
        tokio::task::yield_now().await;
        self.answer_alone();
        self.answer_queued();
        let mut delivery = answered
            .await
            .map_err(|_| StoreError::Internal("a load was dropped without an answer".into()))?;
        let own = delivery.own.take();
        // Hands the rest of the chunk their answers, here on this thread.
        drop(delivery);
        own.unwrap_or_else(|| Err(StoreError::Internal("a load's answer was missing".into())))
    }

    /// Answers a Load on a connection thread from the read transaction the
    /// thread holds, begun since it last read from a socket (see [`HELD`]).
    /// `None` where that cannot be done: not a connection thread, no read
    /// connection to spare, or the database keeping readers out; the queue
    /// then answers.
    fn answer_from_held_snapshot(self: &Arc<Self>, key: &SessionKey, now: &str) -> Option<Answer> {
        if !socket_reads::heard_here() {
            return None;
        }
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if held
                .as_ref()
                .is_some_and(|held| !Arc::ptr_eq(&held.loads, self))
            {
                // Another store's (tests open several in one process).
                drop(held.take());
            }
            if held.is_none() {
                *held = Some(self.hold_snapshot()?);
            }
            let current = held.as_ref()?;
            if let Some(seen) = current.seen
                && let Some(answer) = self.cache.answer(key, seen, now)
            {
                return Some(Ok(answer));
            }
            match lookup(&current.conn, key, now) {
                Err(err) if is_busy(&err) => {
                    drop(held.take());
                    None
                }
                result => {
                    if let (Ok(Some(row)), Some(seen)) = (&result, current.seen) {
                        self.cache.fill(key, row, seen);
                    }
                    Some(result.map_err(|err| classify(err, self.timeout)))
                }
            }
        })
    }

    /// Begins the read transaction this thread holds until its next socket
    /// read or its next sleep. Leaves the pool's last idle connection to
    /// the drainer and to other reads: with more serving threads than read
    /// connections, the others' Loads queue rather than wait.
    fn hold_snapshot(self: &Arc<Self>) -> Option<Held> {
        if self.readers.state().idle_connections < 2 {
            return None;
        }
        let conn = self.readers.try_get()?;
        execute(&conn, "BEGIN").ok()?;
        socket_reads::before_next(end_held_snapshot);
        before_sleep::once(end_held_snapshot);
        // The transaction's first read, which begins its snapshot.
        let seen = self.cache.stamp(&conn);
        match seen {
            Some(seen) => self.cache.drop_if_written_elsewhere(seen, &conn),
            None => self.cache.count_unreadable(),
        }
        Some(Held {
            loads: self.clone(),
            conn,
            seen,
        })
    }

    /// Answers a Load that is alone in the queue, with no drainer running,
    /// here on the caller's thread: a store asked one thing at a time then
    /// spares each Load two thread wake-ups (to the drainer and back), about
    /// as long as the lookup itself. Only when a reader is free and no lock
    /// keeps it out; otherwise the drainer answers, as it answers the many
    /// Loads that arrive together.
    fn answer_alone(&self) {
        if self.draining.load(Ordering::SeqCst) {
            return;
        }
        let alone = {
            let mut queue = self.lock();
            if queue.len() == 1 { queue.pop() } else { None }
        };
        let Some(pending) = alone else { return };
        let Some(conn) = self.readers.try_get() else {
            self.lock().push(pending);
            return;
        };
        if let Err(locked_out) = answer_batch(&conn, vec![pending], self.timeout) {
            self.lock().extend(locked_out);
        }
    }

    /// Hands what is queued to the drainer.
    fn answer_queued(self: &Arc<Self>) {
        if self.lock().is_empty() {
            return;
        }
        self.start_drainer();
    }

    /// Starts the drainer unless it is running.
    fn start_drainer(self: &Arc<Self>) {
        if self.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        let loads = self.clone();
        let drainer = move || {
            let _unwinding = DrainerGuard(&loads);
            loop {
                loads.drain();
                loads.draining.store(false, Ordering::SeqCst);
                // A Load queued after the last look, whose caller saw the
                // drainer still running, is answered by another round.
                if loads.lock().is_empty() || loads.draining.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
        };
        match &self.runtime {
            Some(runtime) => drop(runtime.spawn_blocking(drainer)),
            None => drop(tokio::task::spawn_blocking(drainer)),
        }
    }

    /// Answers the queue until it is empty, waiting for a connection and for
    /// locks; every Load of one round waits at most the store timeout.
    fn drain(&self) {
        loop {
            let batch = std::mem::take(&mut *self.lock());
            if batch.is_empty() {
                return;
            }
            let conn = match self.readers.get() {
                Ok(conn) => conn,
                Err(err) => {
                    for pending in batch {
                        let failure = StoreError::Unavailable(err.to_string().into());
                        let _ = pending.reply.send(Delivery::alone(Err(failure)));
                    }
                    continue;
                }
            };
            if let Err(locked_out) = answer_batch(&conn, batch, self.timeout) {
                self.answer_waiting_for_locks(&conn, locked_out);
            }
        }
    }

    /// Answers `batch` one Load at a time, each waiting for the locks until
    /// one store timeout from now.
    fn answer_waiting_for_locks(&self, conn: &Connection, batch: Vec<Pending>) {
        let deadline = Instant::now() + self.timeout;
        let mut batch = batch.into_iter();
        while let Some(pending) = batch.next() {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = conn
                .busy_timeout(left)
                .and_then(|()| lookup(conn, &pending.key, &pending.now));
            match result {
                Err(err) if is_busy(&err) => {
                    // Still locked at the deadline: so are the rest.
                    let rest = std::iter::once(pending).chain(batch.by_ref());
                    fail_all(rest, &err, self.timeout);
                }
                result => {
                    let answer = result.map_err(|err| classify(err, self.timeout));
                    let _ = pending.reply.send(Delivery::alone(answer));
                }
            }
        }
        let _ = conn.busy_timeout(Duration::ZERO);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        // A panic while holding the lock leaves a queue that is still whole.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

thread_local! {
    /// The read transaction a connection thread holds, begun since it last
    /// read from a socket.
    ///
    /// Every call a connection thread runs was read from its own sockets,
    /// in a read before the call ran (see `socket_reads`). A transaction
    /// begun after the thread's last read therefore sees every write
    /// committed before any of its Loads was sent, whichever process
    /// committed it. So the Loads of a burst share one transaction, and
    /// the thread waits for no other: a transaction's fixed cost (two
    /// `fcntl` calls on the `-shm` lock, a look at the log's index, and the
    /// page cache thrown away if anything was committed) is paid once a
    /// burst, and nothing is handed to another thread and back. The
    /// transaction ends at the thread's next socket read, before anything
    /// read can run, and before the thread sleeps, so that an idle thread
    /// holds no snapshot (one kept open would keep the write-ahead log from
    /// starting over).
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// What [`HELD`] holds: a read connection inside its transaction.
struct Held {
    /// The store the connection is of; held, so that no other store can
    /// take its address.
    loads: Arc<Loads>,
    conn: PooledConnection<SqliteConnectionManager>,
    /// What the transaction saw of the table, for the row cache; `None`
    /// while that cannot be told (see `row_cache`).
    seen: Option<Stamp>,
}

/// A connection goes back to the pool with no transaction open, however
/// the thread lets it go.
impl Drop for Held {
    fn drop(&mut self) {
        end_read_transaction_if_open(&self.conn);
    }
}

/// Ends the transaction this thread holds, and gives its connection back
/// to the pool: the thread is about to read from a socket, or to sleep.
fn end_held_snapshot() {
    HELD.with(|held| drop(held.borrow_mut().take()));
}

fn end_read_transaction_if_open(conn: &Connection) {
    if !conn.is_autocommit() {
        end_read_transaction(conn);
    }
}

/// Ends the drainer's turn if it panics: clears `draining`, so that the
/// next Load starts a new drainer instead of waiting for one that is gone,
/// and fails what is queued, which would otherwise wait out its request
/// timeout. The Loads of the batch being read fail as their replies drop.
struct DrainerGuard<'a>(&'a Loads);

impl Drop for DrainerGuard<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let queued = std::mem::take(&mut *self.0.lock());
        self.0.draining.store(false, Ordering::SeqCst);
        tracing::error!(
            queued = queued.len(),
            "the sqlite reading thread panicked; failing the loads it had queued"
        );
        for pending in queued {
            let failure = StoreError::Internal("the thread reading this load panicked".into());
            let _ = pending.reply.send(Delivery::alone(Err(failure)));
        }
    }
}

/// Answers `batch` in one read transaction on `conn`, which does not wait
/// for locks. When the database keeps readers out (another process is
/// recovering the log after a crash, or holds a rollback-journal database's
/// write lock), hands back the Loads not answered yet.
fn answer_batch(
    conn: &Connection,
    batch: Vec<Pending>,
    timeout: Duration,
) -> Result<(), Vec<Pending>> {
    if !conn.is_autocommit() {
        // Left inside a transaction by a failed end: it would read an old
        // snapshot.
        let _ = execute(conn, "ROLLBACK");
    }
    let in_transaction = batch.len() > 1;
    if in_transaction && let Err(err) = execute(conn, "BEGIN") {
        fail_all(batch, &err, timeout);
        return Ok(());
    }
    let mut batch = batch.into_iter();
    let mut outcome = Ok(());
    let mut chunks = Chunks::default();
    while let Some(pending) = batch.next() {
        match lookup(conn, &pending.key, &pending.now) {
            Err(err) if is_busy(&err) => {
                outcome = Err(std::iter::once(pending).chain(batch.by_ref()).collect());
            }
            result => {
                let answer = result.map_err(|err| classify(err, timeout));
                chunks.add(pending.asked_on, pending.reply, answer);
            }
        }
    }
    if in_transaction {
        end_read_transaction(conn);
    }
    chunks.send_rest();
    outcome
}

/// Ends a batch's read transaction, so that the connection's next one sees
/// what was committed since.
fn end_read_transaction(conn: &Connection) {
    if let Err(err) = execute(conn, "COMMIT") {
        tracing::warn!(error = %err, "ending a read transaction failed; rolling it back");
        let _ = execute(conn, "ROLLBACK");
    }
}

fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn lookup(conn: &Connection, key: &SessionKey, now: &str) -> rusqlite::Result<Option<Row>> {
    conn.prepare_cached(
        "SELECT session_data, expire_date FROM django_session \
         WHERE session_key = ?1 AND expire_date > ?2",
    )?
    .query_row((key.as_str(), now), |row| {
        Ok(Row {
            session_data: row.get(0)?,
            expire_date: row.get(1)?,
        })
    })
    .optional()
}

fn fail_all(batch: impl IntoIterator<Item = Pending>, err: &rusqlite::Error, timeout: Duration) {
    for pending in batch {
        let failure = classify(clone_error(err), timeout);
        let _ = pending.reply.send(Delivery::alone(Err(failure)));
    }
}

/// rusqlite's errors are not `Clone`; one failure answers many Loads.
fn clone_error(err: &rusqlite::Error) -> rusqlite::Error {
    match err {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use chrono::{TimeDelta, Utc};

    use crate::session::{ExpireDate, Record, SessionKey};
    use crate::store::kit::StoreError;
    use crate::store::sqlite::{DEFAULT_ROW_CACHE_MIB, SqliteStore, SqliteUrl, Synchronous};
    use crate::store::{SessionStore, StoreOptions};

    async fn open(dir: &tempfile::TempDir, timeout: Duration) -> Arc<SqliteStore> {
        let url = SqliteUrl {
            path: dir.path().join("sessions.sqlite3"),
            synchronous: Synchronous::Normal,
            row_cache_mib: DEFAULT_ROW_CACHE_MIB,
        };
        let options = StoreOptions {
            timeout,
            ..StoreOptions::default()
        };
        let store = Arc::new(SqliteStore::open(&url, &options).unwrap());
        store.migrate().await.unwrap();
        store
    }

    /// The tests of the queue run without copies of rows.
    fn no_row_cache() -> Arc<super::RowCache> {
        Arc::new(super::RowCache::new(0))
    }

    /// Awaits `future`, bounded: a Load left in the queue with no one to
    /// answer it would otherwise hang the test run.
    async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), future)
            .await
            .expect("a load was never answered")
    }

    fn record(data: String, hours: i64) -> Record {
        Record {
            session_data: data,
            expire_date: ExpireDate::after(Utc::now(), TimeDelta::hours(hours)).unwrap(),
        }
    }

    /// Many Loads in flight at once, while Saves go on: each gets its own
    /// key's row as last saved before it was asked, none another's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loads_answered_together_each_get_their_own_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Duration::from_secs(5)).await;
        let keys: Vec<SessionKey> = (0..64).map(|_| SessionKey::generate()).collect();
        for key in &keys {
            let data = format!("{{\"key\": \"{}\", \"round\": 0}}", key.as_str());
            store.insert(key, record(data, 1)).await.unwrap();
        }
        let expired = SessionKey::generate();
        store
            .insert(&expired, record("{}".into(), -1))
            .await
            .unwrap();
        let missing = SessionKey::generate();

        for round in 1..=20 {
            let mut tasks = tokio::task::JoinSet::new();
            for key in &keys {
                let (store, key) = (store.clone(), key.clone());
                tasks.spawn(async move {
                    let loaded = store.load(&key, Utc::now()).await.unwrap().unwrap();
                    let expected =
                        format!("\"key\": \"{}\", \"round\": {}", key.as_str(), round - 1);
                    assert!(
                        loaded.session_data.contains(&expected),
                        "{} loaded {}",
                        key.as_str(),
                        loaded.session_data
                    );
                });
            }
            for key in [expired.clone(), missing.clone()] {
                let store = store.clone();
                tasks.spawn(async move {
                    assert!(store.load(&key, Utc::now()).await.unwrap().is_none());
                });
            }
            within(tasks.join_all()).await;
            // Saves between rounds: the next round's Loads, asked after
            // these were acknowledged, must see them.
            let mut saves = tokio::task::JoinSet::new();
            for key in &keys {
                let (store, key) = (store.clone(), key.clone());
                saves.spawn(async move {
                    let data = format!("{{\"key\": \"{}\", \"round\": {round}}}", key.as_str());
                    store.update(&key, record(data, 1)).await
                });
            }
            for result in saves.join_all().await {
                result.unwrap();
            }
        }
        store.close().await;
    }

    /// A database of one session, `{"a": 1}` under the returned key, and a
    /// read pool on it. The database is in rollback-journal mode: in WAL
    /// mode the pool's connections, once they have read, keep a shared lock
    /// that no other process can break, and only a rare moment (another
    /// process recovering the log after a crash) keeps them out; a write
    /// lock held in rollback mode keeps them out at will.
    fn database_with_pool(
        dir: &tempfile::TempDir,
        timeout: Duration,
    ) -> (std::path::PathBuf, SessionKey, super::Readers) {
        let path = dir.path().join("sessions.sqlite3");
        let setup = rusqlite::Connection::open(&path).unwrap();
        let key = SessionKey::generate();
        setup
            .execute_batch(
                "CREATE TABLE django_session (session_key varchar(40) NOT NULL PRIMARY KEY, \
                 session_data text NOT NULL, expire_date datetime NOT NULL);",
            )
            .unwrap();
        setup
            .execute(
                "INSERT INTO django_session VALUES (?1, '{\"a\": 1}', '9999-12-31 00:00:00')",
                [key.as_str()],
            )
            .unwrap();
        drop(setup);
        let readers = super::super::connection::read_pool(&path, 2, timeout).unwrap();
        (path, key, readers)
    }

    /// Another process's exclusive lock, held until the connection commits
    /// or is dropped.
    fn hold_exclusively(path: &std::path::Path) -> rusqlite::Connection {
        let holder = rusqlite::Connection::open(path).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        holder
    }

    fn now() -> String {
        super::super::dates::to_django_text(Utc::now())
    }

    /// `count` Loads of `key` in flight at once.
    fn spawn_loads(
        loads: &Arc<super::Loads>,
        key: &SessionKey,
        count: usize,
    ) -> Vec<tokio::task::JoinHandle<super::Answer>> {
        (0..count)
            .map(|_| {
                let (loads, key) = (loads.clone(), key.clone());
                tokio::spawn(async move { loads.load(key, now()).await })
            })
            .collect()
    }

    /// Answers for `count` Loads, each its own index as data, with the
    /// receivers that wait for them.
    fn chunk(
        count: usize,
    ) -> (
        Vec<(super::Reply, super::Answer)>,
        Vec<tokio::sync::oneshot::Receiver<super::Delivery>>,
    ) {
        (0..count)
            .map(|index| {
                let (reply, answered) = tokio::sync::oneshot::channel();
                let row = super::Row {
                    session_data: index.to_string(),
                    expire_date: "9999-12-31 00:00:00".to_owned(),
                };
                ((reply, Ok(Some(row))), answered)
            })
            .unzip()
    }

    /// The data of the answer `answered` holds, once it has arrived.
    fn data_of(answered: &mut tokio::sync::oneshot::Receiver<super::Delivery>) -> String {
        let mut delivery = answered.try_recv().expect("no answer arrived");
        let own = delivery.own.take().unwrap().unwrap().unwrap();
        own.session_data
    }

    /// A chunk goes to its first Load, and every other Load gets its own
    /// answer once the first Load's delivery is dropped.
    #[test]
    fn a_chunk_is_handed_on_by_its_first_load() {
        let (answered, mut receivers) = chunk(4);
        super::deliver(answered);
        for later in &mut receivers[1..] {
            assert!(later.try_recv().is_err(), "answered before the first load");
        }
        assert_eq!(data_of(&mut receivers[0]), "0");
        for (index, later) in receivers.iter_mut().enumerate().skip(1) {
            assert_eq!(data_of(later), index.to_string());
        }
    }

    /// A cancelled call drops its Load: the chunk then goes to the next
    /// Load still waiting, and an answer that arrived after the call was
    /// dropped, unread, still reaches the others.
    #[test]
    fn a_chunk_reaches_every_load_whose_call_was_not_cancelled() {
        let (answered, mut receivers) = chunk(4);
        drop(receivers.remove(0));
        super::deliver(answered);
        for (index, later) in receivers.iter_mut().enumerate() {
            assert_eq!(data_of(later), (index + 1).to_string());
        }

        let (answered, mut receivers) = chunk(4);
        super::deliver(answered);
        drop(receivers.remove(0));
        for (index, later) in receivers.iter_mut().enumerate() {
            assert_eq!(data_of(later), (index + 1).to_string());
        }
    }

    /// A chunk holds the Loads asked on one thread: answers for Loads of
    /// two threads, asked in turn, go out as one chunk for each thread.
    #[test]
    fn a_chunk_holds_the_loads_of_one_thread() {
        let here = std::thread::current().id();
        let there = std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap();
        let (answered, mut receivers) = chunk(2 * super::ANSWERS_PER_WAKE + 2);
        let mut chunks = super::Chunks::default();
        for (index, (reply, answer)) in answered.into_iter().enumerate() {
            chunks.add(if index % 2 == 0 { here } else { there }, reply, answer);
        }
        chunks.send_rest();
        for first in [0, 1] {
            let delivery = receivers[first].try_recv().unwrap();
            let others: Vec<usize> = delivery
                .others
                .iter()
                .map(|(_, answer)| {
                    answer
                        .as_ref()
                        .unwrap()
                        .as_ref()
                        .unwrap()
                        .session_data
                        .parse()
                        .unwrap()
                })
                .collect();
            assert_eq!(others.len(), super::ANSWERS_PER_WAKE - 1);
            assert!(
                others.iter().all(|index| index % 2 == first),
                "a chunk of Loads asked on two threads: {others:?}"
            );
        }
        // The two left over, one for each thread, each alone.
        let last = receivers.len() - 2;
        for receiver in &mut receivers[last..] {
            assert!(receiver.try_recv().unwrap().others.is_empty());
        }
    }

    /// On a thread that hears of its socket reads, Loads share one snapshot
    /// until the next read: a commit in between is seen only after it.
    /// The snapshot ends, and its connection goes back to the pool, when the
    /// thread is about to sleep.
    #[test]
    fn loads_share_a_snapshot_until_the_thread_next_reads_a_socket() {
        std::thread::spawn(|| {
            let dir = tempfile::tempdir().unwrap();
            let timeout = Duration::from_secs(5);
            let (path, key, readers) = database_with_pool(&dir, timeout);
            let writer = rusqlite::Connection::open(&path).unwrap();
            writer.pragma_update(None, "journal_mode", "WAL").unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let loads = runtime
                .block_on(async { super::Loads::new(readers.clone(), timeout, no_row_cache()) });
            crate::socket_reads::hear_on_this_thread();
            let data = || {
                let loaded = runtime.block_on(within(loads.load(key.clone(), now())));
                loaded.unwrap().unwrap().session_data
            };
            let commit = |data: &str| {
                let sql = "UPDATE django_session SET session_data = ?1 WHERE session_key = ?2";
                assert_eq!(writer.execute(sql, (data, key.as_str())).unwrap(), 1);
            };

            assert_eq!(data(), "{\"a\": 1}");
            commit("{\"a\": 2}");
            assert_eq!(data(), "{\"a\": 1}", "each Load took a snapshot of its own");
            crate::socket_reads::read_in();
            assert_eq!(data(), "{\"a\": 2}", "a snapshot outlived the socket read");

            assert_eq!(readers.state().idle_connections, 1);
            crate::before_sleep::run();
            assert_eq!(readers.state().idle_connections, 2, "held while asleep");
            commit("{\"a\": 3}");
            assert_eq!(data(), "{\"a\": 3}");
            crate::before_sleep::run();
        })
        .join()
        .unwrap();
    }

    /// A drainer that panics leaves no Load waiting: what it had queued
    /// fails at once, and the next Load starts a new drainer.
    #[test]
    fn a_panicking_drainer_fails_its_queue_and_lets_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(5);
        let (_path, key, readers) = database_with_pool(&dir, timeout);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let loads = runtime.block_on(async { super::Loads::new(readers, timeout, no_row_cache()) });
        let (reply, mut answered) = tokio::sync::oneshot::channel();
        loads.lock().push(super::Pending {
            key: key.clone(),
            now: now(),
            reply,
            asked_on: std::thread::current().id(),
        });
        loads.draining.store(true, Ordering::SeqCst);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _unwinding = super::DrainerGuard(&loads);
            panic!("a drainer's bug");
        }));
        assert!(unwound.is_err());
        assert!(
            !loads.draining.load(Ordering::SeqCst),
            "still marked as draining"
        );
        let mut delivery = answered.try_recv().expect("the queued load got no answer");
        match delivery.own.take().unwrap() {
            Err(StoreError::Internal(cause)) => {
                assert!(cause.to_string().contains("panicked"), "{cause}");
            }
            other => panic!("not the drainer's failure: {other:?}"),
        }

        let row = runtime
            .block_on(within(loads.load(key, now())))
            .unwrap()
            .unwrap();
        assert_eq!(row.session_data, "{\"a\": 1}");
    }

    /// Through the store: a chunk whose first Load's call is cancelled
    /// after the chunk arrived, unread, still reaches the rest.
    #[tokio::test]
    async fn a_chunk_whose_first_call_was_cancelled_still_reaches_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(5);
        let (_path, key, readers) = database_with_pool(&dir, timeout);
        let loads = super::Loads::new(readers.clone(), timeout, no_row_cache());
        // With every connection taken, every Load queues, in the order the
        // tasks were spawned, and the drainer waits for a connection.
        let taken = [readers.get().unwrap(), readers.get().unwrap()];
        let waiting = spawn_loads(&loads, &key, 2 * super::ANSWERS_PER_WAKE);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(taken);
        // This thread alone runs the Loads' tasks (a single-threaded
        // runtime): held here, it lets the drainer send both chunks before
        // any of their Loads runs.
        std::thread::sleep(Duration::from_millis(300));
        let firsts = [0, super::ANSWERS_PER_WAKE];
        for first in firsts {
            waiting[first].abort();
        }
        for (index, load) in waiting.into_iter().enumerate() {
            match within(load).await {
                Err(err) if firsts.contains(&index) => assert!(err.is_cancelled(), "{err}"),
                answer => {
                    let row = answer.unwrap().unwrap().unwrap();
                    assert_eq!(row.session_data, "{\"a\": 1}", "load {index}");
                }
            }
        }
    }

    /// A Load alone is read where it was asked: the runtime the drainer
    /// would run on is gone (a blocking task handed to a runtime that has
    /// shut down never runs, so a Load left to the drainer would go
    /// unanswered), and the Load is answered all the same.
    #[test]
    fn a_load_alone_is_read_on_the_callers_thread() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(5);
        let (_path, key, readers) = database_with_pool(&dir, timeout);
        let opened_on = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let loads =
            opened_on.block_on(async { super::Loads::new(readers, timeout, no_row_cache()) });
        drop(opened_on);
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let row = caller
            .block_on(within(loads.load(key, now())))
            .unwrap()
            .unwrap();
        assert_eq!(row.session_data, "{\"a\": 1}");
    }

    /// Loads kept out by a lock are not failed at once: the drainer waits
    /// for the lock, for a Load alone (first tried on the caller's thread)
    /// as for many.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loads_kept_out_by_a_lock_wait_for_it_then_answer() {
        for count in [1, 8] {
            let dir = tempfile::tempdir().unwrap();
            let timeout = Duration::from_secs(5);
            let (path, key, readers) = database_with_pool(&dir, timeout);
            let loads = super::Loads::new(readers, timeout, no_row_cache());
            let holder = hold_exclusively(&path);
            let waiting = spawn_loads(&loads, &key, count);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                waiting.iter().all(|load| !load.is_finished()),
                "a load did not wait for the lock ({count} in flight)"
            );
            holder.execute_batch("COMMIT").unwrap();
            drop(holder);
            for load in waiting {
                let row = within(load).await.unwrap().unwrap().unwrap();
                assert_eq!(row.session_data, "{\"a\": 1}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loads_kept_out_past_the_timeout_fail_as_unavailable_together() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_millis(300);
        let (path, key, readers) = database_with_pool(&dir, timeout);
        let loads = super::Loads::new(readers, timeout, no_row_cache());
        let holder = hold_exclusively(&path);
        let started = Instant::now();
        let waiting = spawn_loads(&loads, &key, 8);
        for load in waiting {
            let err = within(load).await.unwrap().unwrap_err();
            let StoreError::Unavailable(cause) = &err else {
                panic!("{err:?}");
            };
            assert!(
                cause.to_string().contains("locked by another process"),
                "{cause}"
            );
        }
        // Each waited about the timeout, not one timeout after another.
        assert!(
            started.elapsed() < 3 * timeout,
            "the loads failed after {:?}",
            started.elapsed()
        );
        drop(holder);
        // Once it lets go, loads are answered again.
        let answer = within(loads.load(key, now())).await.unwrap();
        assert!(answer.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_that_finds_every_connection_taken_is_answered_when_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(5);
        let (_path, key, readers) = database_with_pool(&dir, timeout);
        let loads = super::Loads::new(readers.clone(), timeout, no_row_cache());
        // Taken as other reads (Exists, the readiness probe) take them.
        let taken = [readers.get().unwrap(), readers.get().unwrap()];
        let load = spawn_loads(&loads, &key, 1).remove(0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!load.is_finished(), "answered without a connection");
        drop(taken);
        let row = within(load).await.unwrap().unwrap().unwrap();
        assert_eq!(row.session_data, "{\"a\": 1}");
    }
}
