//! The `file://DIR` engine: Django's file session engine. Each session is
//! one file in `DIR`, named as Django names it, `<prefix><key>` (the prefix
//! is Django's `SESSION_COOKIE_NAME`, `sessionid` unless the URL says
//! `?prefix=...`), holding the `session_data` text exactly as the codec
//! produced it, which is what Django's `backends.file` writes.
//!
//! # Expiry, and what a Django app on the same directory sees
//!
//! A file has no room for an expiry beside its data, so the expiry lives in
//! the file's modification time. Django's file engine reads a session's
//! expiry as `_session_expiry` from the decoded data when that is set, and
//! otherwise as *mtime + `SESSION_COOKIE_AGE`*. This engine therefore writes
//! *mtime = expire_date − session_age* and reads *expire_date = mtime +
//! session_age*, where `session_age` is sessiond's `--session-age` (default
//! Django's 1 209 600 seconds), the lifetime every engine gives a session
//! saved without one. With `--session-age` equal to the Django app's
//! `SESSION_COOKIE_AGE`:
//!
//! - Django computes, for a file sessiond wrote, the expiry sessiond was
//!   given; sessiond computes, for a file Django wrote, the expiry Django
//!   meant (Django's mtime is the time of its save). Both agree on which
//!   sessions load, and Django's `clearsessions` and sessiond's
//!   `ClearExpired` remove the same files.
//! - A session whose data holds `_session_expiry` is read by Django from that
//!   value, by sessiond from the file time. For sessions saved through
//!   sessiond's client these are the same instant (the client derives
//!   `expire_date` from `_session_expiry` as Django does). For sessions Django
//!   saved after `set_expiry(...)` they differ: sessiond sees mtime + session
//!   age. An integer `_session_expiry` makes Django's file engine treat the
//!   session as never expiring (its `get_expiry_age` returns the integer
//!   unchanged); sessiond expires it at mtime + session age.
//! - The data is shared only if it is encoded as Django encodes it (a codec
//!   that signs with Django's `SECRET_KEY`). Django reads plain `json` data as
//!   a corrupted, empty session; the expiry rules above still hold.
//! - Django's `load()` deletes an expired file it reads; sessiond's Load never
//!   writes, as with every engine.
//!
//! Times are kept exactly: `open` refuses a file system that does not keep
//! file times to the microsecond (the precision of `expire_date`), so a
//! session expiring exactly `now` is neither loaded nor purged, as in the
//! database engines; and an expiry the file system cannot hold (ext4 keeps
//! 1901 to 2446, after the offset) is refused as an invalid `expire_date`
//! rather than silently clamped, which Linux would do.
//!
//! # Atomicity and durability
//!
//! Every write goes to a temporary file `.<prefix><key>.tmp-<random>` in
//! `DIR` (the dot keeps it from looking like a session to sessiond or
//! Django), which is flushed to disk and then moved into place, after which
//! the directory is flushed too: an acknowledged write survives a crash, and
//! a reader sees the old file or the new one, never a torn one. An insert
//! moves the file with `link(2)`, which fails if the name exists, so exactly
//! one of several concurrent inserts of a key wins, in any process (Django's
//! own `O_EXCL` create included), and the file never appears empty. An
//! update moves it with `rename(2)`, only after checking that the session
//! still exists.
//!
//! # Concurrency: one sessiond per directory
//!
//! Inside this process, writers of one key exclude each other with a per-key
//! lock (see `locks`), taken on a blocking thread and never held across an
//! `.await`: a patch or a cycle is an atomic read-modify-write, and an update
//! cannot bring back a file deleted meanwhile. Between processes there is no
//! lock, as in Django's file engine (ticket #8616): two sessiond processes,
//! or sessiond and Django, writing one key at the same moment may lose one of
//! two concurrent patches, and an update racing a delete in the other process
//! may bring the session back. Inserts stay exclusive across processes. An
//! `flock` would not close that gap: Django takes no lock, and a lock on the
//! session file guards an inode that the next rename replaces, so it would
//! need a second, long-lived lock file per session. Run one sessiond per
//! directory; several replicas need a shared database engine.
//! `--store-timeout` has nothing to bound here: the only locks are this
//! process's own, each held for the length of one file write.
//!
//! `ClearExpired` lists the directory, skipping anything that is not
//! `<prefix>` followed by a valid key (Django's `_out_` temporary files,
//! other apps' files), and removes expired files under their key's lock after
//! checking their time again. Each batch lists the directory until it has
//! found `limit` expired files, which suits the tens of thousands of files a
//! directory handles well. It also removes temporary files that a crash left
//! behind, once they are an hour old.
//!
//! Session files get mode 0600; `DIR` should belong to sessiond's user with
//! mode 0700, since whoever can write there can plant sessions.

mod directory;
mod errors;
mod locks;
mod sessions;
mod url;
mod write;

use std::fs;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::session::{ExpireDate, Record, SessionKey};
use crate::store::kit::{Engine, OpenFailure, StoreError, StoreOptions};
use crate::store::{Patcher, SessionStore};
use sessions::Sessions;

pub use url::{FileUrl, FileUrlError};

/// The file engine.
#[derive(Debug)]
pub struct FileStore {
    sessions: Arc<Sessions>,
}

#[async_trait]
impl Engine for FileUrl {
    fn is_database(&self) -> bool {
        true
    }

    async fn open(&self, options: &StoreOptions) -> Result<Arc<dyn SessionStore>, OpenFailure> {
        let (url, session_age) = (self.clone(), options.session_age);
        let sessions = tokio::task::spawn_blocking(move || Sessions::open(&url, session_age))
            .await
            .map_err(OpenFailure::driver)??;
        Ok(Arc::new(FileStore {
            sessions: Arc::new(sessions),
        }))
    }
}

impl FileStore {
    /// Runs `op` on a blocking thread: file I/O must not stall the runtime.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Sessions) -> Result<T, StoreError> + Send + 'static,
    {
        let sessions = self.sessions.clone();
        tokio::task::spawn_blocking(move || op(&sessions))
            .await
            .map_err(|err| StoreError::Internal(err.into()))?
    }
}

#[async_trait]
impl SessionStore for FileStore {
    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let key = key.clone();
        self.run(move |sessions| {
            let stored = sessions.read(&sessions.path(&key))?;
            Ok(stored.filter(|record| record.expire_date.instant() > now))
        })
        .await
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.run(move |sessions| sessions.exists(&key)).await
    }

    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |sessions| {
            let _held = sessions.lock(&key)?;
            sessions.create(&key, &record)?;
            sessions.sync_dir()
        })
        .await
    }

    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |sessions| {
            let _held = sessions.lock(&key)?;
            if !sessions.exists(&key)? {
                return Err(StoreError::NotFound);
            }
            sessions.replace(&key, &record)?;
            sessions.sync_dir()
        })
        .await
    }

    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<Record, StoreError> {
        let key = key.clone();
        self.run(move |sessions| {
            let _held = sessions.lock(&key)?;
            let stored = sessions
                .read(&sessions.path(&key))?
                .ok_or(StoreError::NotFound)?;
            let live = stored.expire_date.instant() > now;
            let session_data = patcher(live.then_some(stored.session_data))?;
            let record = Record {
                session_data,
                expire_date,
            };
            sessions.replace(&key, &record)?;
            sessions.sync_dir()?;
            Ok(record)
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.run(move |sessions| {
            let _held = sessions.lock(&key)?;
            let removed = sessions.remove(&sessions.path(&key))?;
            if removed {
                sessions.sync_dir()?;
            }
            Ok(removed)
        })
        .await
    }

    async fn cycle_key(
        &self,
        old_key: &SessionKey,
        new_key: &SessionKey,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (old_key, new_key) = (old_key.clone(), new_key.clone());
        self.run(move |sessions| {
            let _held = sessions.lock_pair(&old_key, &new_key)?;
            let old_path = sessions.path(&old_key);
            let session_data = match session_data {
                Some(data) => data,
                None => {
                    sessions
                        .read(&old_path)?
                        .filter(|record| record.expire_date.instant() > now)
                        .ok_or(StoreError::NotFound)?
                        .session_data
                }
            };
            let record = Record {
                session_data,
                expire_date,
            };
            sessions.create(&new_key, &record)?;
            if let Err(err) = sessions.remove(&old_path) {
                // Undo the new file so that a failed cycle changes nothing.
                let new_path = sessions.path(&new_key);
                if let Err(undo) = fs::remove_file(new_path) {
                    tracing::error!(error = %undo, "a failed cycle_key left both the old and the new session file");
                }
                return Err(err);
            }
            sessions.sync_dir()
        })
        .await
    }

    async fn clear_expired_batch(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        self.run(move |sessions| sessions.clear_expired_batch(now, limit))
            .await
    }

    /// A look at the directory, which a lost mount or a removed directory
    /// fails; on a blocking thread, since a stalled network file system
    /// hangs even that.
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(Sessions::check_dir).await
    }

    /// Refuses further writes, then waits for the writes under way.
    async fn close(&self) {
        let sessions = self.sessions.clone();
        let _ = tokio::task::spawn_blocking(move || sessions.close()).await;
    }
}
