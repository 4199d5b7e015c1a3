//! What each request does, and which session it touches.

use std::sync::Arc;

use clap::ValueEnum;
use rand::RngExt;
use rand::rngs::SmallRng;
use serde::Serialize;

/// The request mix of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Load a random pre-created session.
    Load,
    /// Update a random pre-created session (Save without must_create).
    Save,
    /// Create a new session.
    Create,
    /// Load or save, by --load-percent.
    Mixed,
    /// Move a pre-created session to a new key (CycleKey).
    Cycle,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Save => "save",
            Self::Create => "create",
            Self::Mixed => "mixed",
            Self::Cycle => "cycle",
        }
    }

    /// Whether requests pick among pre-created sessions.
    pub fn needs_sessions(self) -> bool {
        !matches!(self, Self::Create)
    }
}

/// One request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'k> {
    Load(&'k str),
    Save(&'k str),
    Create,
    /// The key at this index of the worker's own keys.
    Cycle(usize),
}

/// The sessions one worker picks from.
///
/// Loads and saves pick from all pre-created sessions, shared by every
/// worker. A key cycle replaces its key, so each worker cycles keys of its
/// own (a disjoint share), in turn; two workers never cycle one session.
#[derive(Debug)]
pub enum WorkerKeys {
    Shared(Arc<[String]>),
    Own { keys: Vec<String>, next: usize },
}

impl WorkerKeys {
    /// Splits `keys` among `workers` for `workload`.
    pub fn split(workload: Workload, keys: Vec<String>, workers: usize) -> Vec<Self> {
        if workload == Workload::Cycle {
            let mut shares: Vec<Vec<String>> = (0..workers).map(|_| Vec::new()).collect();
            for (index, key) in keys.into_iter().enumerate() {
                if let Some(share) = shares.get_mut(index % workers.max(1)) {
                    share.push(key);
                }
            }
            shares
                .into_iter()
                .map(|keys| Self::Own { keys, next: 0 })
                .collect()
        } else {
            let shared: Arc<[String]> = keys.into();
            (0..workers).map(|_| Self::Shared(shared.clone())).collect()
        }
    }

    /// The next request of `workload`; `None` when there is no session to
    /// pick from.
    pub fn next_op(
        &mut self,
        workload: Workload,
        load_percent: u8,
        rng: &mut SmallRng,
    ) -> Option<Op<'_>> {
        match (workload, self) {
            (Workload::Create, _) => Some(Op::Create),
            (Workload::Cycle, Self::Own { keys, next }) => {
                if keys.is_empty() {
                    return None;
                }
                let index = *next % keys.len();
                *next = index + 1;
                Some(Op::Cycle(index))
            }
            (Workload::Cycle, Self::Shared(_)) | (_, Self::Own { .. }) => None,
            (workload, Self::Shared(keys)) => {
                if keys.is_empty() {
                    return None;
                }
                let key = keys[rng.random_range(0..keys.len())].as_str();
                let load = match workload {
                    Workload::Load => true,
                    Workload::Save => false,
                    _ => rng.random_range(0..100u8) < load_percent,
                };
                Some(if load { Op::Load(key) } else { Op::Save(key) })
            }
        }
    }

    /// After a key cycle: the session at `index` now lives under `key`.
    pub fn replace(&mut self, index: usize, key: String) {
        if let Self::Own { keys, .. } = self
            && let Some(slot) = keys.get_mut(index)
        {
            *slot = key;
        }
    }

    /// The key at `index` of the worker's own keys.
    pub fn own(&self, index: usize) -> Option<&str> {
        match self {
            Self::Own { keys, .. } => keys.get(index).map(String::as_str),
            Self::Shared(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("key{i:05}")).collect()
    }

    #[test]
    fn cycle_gives_each_worker_a_disjoint_share_in_turn() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut workers = WorkerKeys::split(Workload::Cycle, keys(5), 2);
        assert_eq!(workers.len(), 2);
        let first = &mut workers[0];
        let picks: Vec<_> = (0..4)
            .map(|_| match first.next_op(Workload::Cycle, 0, &mut rng) {
                Some(Op::Cycle(index)) => Some(index),
                _ => None,
            })
            .collect();
        assert_eq!(picks, [Some(0), Some(1), Some(2), Some(0)]);
        first.replace(1, "fresh".to_owned());
        assert_eq!(first.own(0), Some("key00000"));
        assert_eq!(first.own(1), Some("fresh"));
        assert_eq!(workers[1].own(0), Some("key00001"));
    }

    #[test]
    fn mixed_follows_the_load_percent() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut worker = WorkerKeys::split(Workload::Mixed, keys(100), 1).remove(0);
        let loads = (0..10_000)
            .filter(|_| {
                matches!(
                    worker.next_op(Workload::Mixed, 90, &mut rng),
                    Some(Op::Load(_))
                )
            })
            .count();
        assert!((8_700..9_300).contains(&loads), "{loads}");
        assert!(matches!(
            worker.next_op(Workload::Save, 90, &mut rng),
            Some(Op::Save(_))
        ));
    }

    #[test]
    fn without_sessions_only_create_has_something_to_do() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut worker = WorkerKeys::split(Workload::Load, Vec::new(), 1).remove(0);
        assert_eq!(worker.next_op(Workload::Load, 90, &mut rng), None);
        assert_eq!(
            worker.next_op(Workload::Create, 90, &mut rng),
            Some(Op::Create)
        );
    }
}
