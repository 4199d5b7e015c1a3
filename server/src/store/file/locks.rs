//! Mutual exclusion between writers of one session inside this process.
//!
//! A file system offers no read-modify-write of a file, so a patch (read,
//! change, rename over) or a cycle (read, link, unlink) of one key must not
//! interleave with another write of the same key. Keys hash onto a fixed set
//! of mutexes: memory stays constant however many sessions exist, and two
//! keys sharing a shard merely wait for each other's (short) write.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

use crate::session::SessionKey;

/// Number of lock shards: far more than the writes that run at once (they
/// run on tokio's blocking pool), so unrelated keys rarely wait on each other.
const SHARDS: usize = 256;

/// The per-key write locks. Only ever held on a blocking thread, never across
/// an `.await`.
pub(super) struct KeyLocks {
    shards: Box<[Mutex<()>]>,
}

impl std::fmt::Debug for KeyLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLocks")
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// Held while one or two keys are being written.
#[derive(Debug)]
pub(super) struct Held<'a> {
    _first: MutexGuard<'a, ()>,
    _second: Option<MutexGuard<'a, ()>>,
}

impl KeyLocks {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Waits until no other writer of `key` runs in this process.
    pub(super) fn lock(&self, key: &SessionKey) -> Held<'_> {
        Held {
            _first: self.lock_shard(shard_of(key)),
            _second: None,
        }
    }

    /// Locks two keys at once, always in shard order, so that two cycles
    /// taking the same pair of keys in opposite roles cannot deadlock.
    pub(super) fn lock_pair(&self, a: &SessionKey, b: &SessionKey) -> Held<'_> {
        let (low, high) = {
            let (x, y) = (shard_of(a), shard_of(b));
            (x.min(y), x.max(y))
        };
        let first = self.lock_shard(low);
        let second = (high != low).then(|| self.lock_shard(high));
        Held {
            _first: first,
            _second: second,
        }
    }

    /// Waits for every writer that holds a lock now to finish.
    pub(super) fn wait_for_writers(&self) {
        for shard in 0..self.shards.len() {
            drop(self.lock_shard(shard));
        }
    }

    fn lock_shard(&self, shard: usize) -> MutexGuard<'_, ()> {
        // A writer that panicked (a panicking patcher) leaves nothing behind
        // to repair: the lock guards no data, only the order of file writes.
        self.shards[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn shard_of(key: &SessionKey) -> usize {
    let mut hasher = DefaultHasher::new();
    key.as_str().hash(&mut hasher);
    (hasher.finish() % SHARDS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_in_one_shard_is_locked_once_and_either_order_works() {
        let locks = KeyLocks::new();
        let a = SessionKey::parse("aaaaaaaa").unwrap();
        let b = SessionKey::parse("bbbbbbbb").unwrap();
        drop(locks.lock_pair(&a, &a));
        drop(locks.lock_pair(&a, &b));
        drop(locks.lock_pair(&b, &a));
        let held = locks.lock(&a);
        drop(held);
        locks.wait_for_writers();
    }
}
