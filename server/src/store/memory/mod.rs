//! The in-process engine, `memory://`: sessions live in a map inside the
//! sessiond process and die with it, like Django's `locmem` cache. Meant for
//! tests, development and as the benchmark ceiling of the server itself.
//!
//! Expiry follows the SQL engines exactly: a load needs `expire_date > now`,
//! the purge removes `expire_date < now`, `exists` ignores expiry. Every
//! operation runs under one mutex, which makes `patch` and `cycle_key`
//! atomic for free; the lock is never held across an `.await` and no
//! operation blocks, so nothing goes through `spawn_blocking`.
//!
//! The map is bounded by `max_sessions` (`memory://?max_sessions=N`). An
//! insert into a full map first drops the sessions that have expired by the
//! server's clock; if the map is still full, the insert is refused with
//! [`StoreError::Full`] (`RESOURCE_EXHAUSTED`) rather than evicting a live
//! session, which would log a user out without telling anyone.
//!
//! Out of scope: sharing sessions between processes, and surviving a
//! restart. Use `redis://` or `sqlite://` for those.

mod url;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::session::{ExpireDate, Record, SessionKey};
use crate::store::kit::{Engine, OpenFailure, StoreError, StoreOptions};
use crate::store::{Patcher, SessionStore};
pub use url::{DEFAULT_MAX_SESSIONS, MemoryUrl, MemoryUrlError};

/// The store holds as many sessions as it may, none of them expired.
#[derive(Debug, thiserror::Error)]
#[error(
    "the memory store holds its maximum of {max_sessions} live sessions (memory://?max_sessions=N)"
)]
struct AtCapacity {
    max_sessions: usize,
}

/// The store was closed; the process is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the memory store is closed")]
struct Closed;

/// The in-process engine.
pub struct MemoryStore {
    state: Mutex<State>,
    max_sessions: usize,
}

struct State {
    sessions: HashMap<String, Record>,
    /// No stored session expires before this instant. A lower bound, not the
    /// exact minimum: removals leave it where it is. It lets a full store
    /// know without a scan that there is nothing expired to drop.
    earliest_expiry: DateTime<Utc>,
    closed: bool,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Engine for MemoryUrl {
    fn is_database(&self) -> bool {
        false
    }

    async fn open(&self, _options: &StoreOptions) -> Result<Arc<dyn SessionStore>, OpenFailure> {
        Ok(Arc::new(MemoryStore::open(self)))
    }
}

impl MemoryStore {
    fn open(url: &MemoryUrl) -> Self {
        Self {
            state: Mutex::new(State {
                sessions: HashMap::new(),
                earliest_expiry: DateTime::<Utc>::MAX_UTC,
                closed: false,
            }),
            max_sessions: url.max_sessions(),
        }
    }

    /// The state, unless the store is closed. A panic while the lock was
    /// held (only a patcher could panic) left the map as it was, since every
    /// operation computes first and writes last, so a poisoned lock is safe
    /// to keep using.
    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return Err(StoreError::Unavailable(Box::new(Closed)));
        }
        Ok(state)
    }
}

impl State {
    fn store(&mut self, key: String, record: Record) {
        self.earliest_expiry = self.earliest_expiry.min(record.expire_date.instant());
        self.sessions.insert(key, record);
    }

    /// Makes room for one more session: drops the sessions expired at `now`
    /// if the store is full, and refuses if it is full of live ones.
    fn make_room(&mut self, max_sessions: usize, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.sessions.len() < max_sessions {
            return Ok(());
        }
        if self.earliest_expiry < now {
            let mut earliest = DateTime::<Utc>::MAX_UTC;
            self.sessions.retain(|_, record| {
                let expire = record.expire_date.instant();
                earliest = earliest.min(expire);
                expire >= now
            });
            self.earliest_expiry = earliest;
        }
        if self.sessions.len() < max_sessions {
            Ok(())
        } else {
            Err(StoreError::Full(Box::new(AtCapacity { max_sessions })))
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let state = self.state()?;
        Ok(state
            .sessions
            .get(key.as_str())
            .filter(|record| record.expire_date.instant() > now)
            .cloned())
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        Ok(self.state()?.sessions.contains_key(key.as_str()))
    }

    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let mut state = self.state()?;
        if state.sessions.contains_key(key.as_str()) {
            return Err(StoreError::AlreadyExists);
        }
        // The trait gives inserts no `now`; making room is the only thing
        // here that needs one, and the server's clock is what the service
        // would pass.
        state.make_room(self.max_sessions, Utc::now())?;
        state.store(key.as_str().to_owned(), record);
        Ok(())
    }

    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let mut state = self.state()?;
        let expire = record.expire_date.instant();
        let Some(stored) = state.sessions.get_mut(key.as_str()) else {
            return Err(StoreError::NotFound);
        };
        *stored = record;
        state.earliest_expiry = state.earliest_expiry.min(expire);
        Ok(())
    }

    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<Record, StoreError> {
        let mut state = self.state()?;
        let Some(stored) = state.sessions.get_mut(key.as_str()) else {
            return Err(StoreError::NotFound);
        };
        // A copy, not the stored text itself: a patch that is refused (the
        // result is too large) must leave the session as it was.
        let base = (stored.expire_date.instant() > now).then(|| stored.session_data.clone());
        let session_data = patcher(base).map_err(StoreError::Invalid)?;
        let patched = Record {
            session_data,
            expire_date,
        };
        *stored = patched.clone();
        state.earliest_expiry = state.earliest_expiry.min(expire_date.instant());
        Ok(patched)
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        Ok(self.state()?.sessions.remove(key.as_str()).is_some())
    }

    async fn cycle_key(
        &self,
        old_key: &SessionKey,
        new_key: &SessionKey,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.state()?;
        let session_data = match session_data {
            Some(data) => data,
            None => match state.sessions.get(old_key.as_str()) {
                Some(old) if old.expire_date.instant() > now => old.session_data.clone(),
                _ => return Err(StoreError::NotFound),
            },
        };
        if state.sessions.contains_key(new_key.as_str()) {
            return Err(StoreError::AlreadyExists);
        }
        if state.sessions.remove(old_key.as_str()).is_none() {
            // Nothing freed a place for the new key.
            state.make_room(self.max_sessions, now)?;
        }
        state.store(
            new_key.as_str().to_owned(),
            Record {
                session_data,
                expire_date,
            },
        );
        Ok(())
    }

    async fn clear_expired_batch(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        let mut state = self.state()?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let removed = state
            .sessions
            .extract_if(|_, record| record.expire_date.instant() < now)
            .take(limit)
            .count();
        Ok(removed as u64)
    }

    /// Always reachable while open: it lives in this process.
    async fn ping(&self) -> Result<(), StoreError> {
        self.state().map(|_| ())
    }

    async fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.closed = true;
        // Give the memory back now rather than when the last handle goes.
        state.sessions = HashMap::new();
    }
}
