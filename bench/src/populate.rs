//! The sessions a run picks from, created before anything is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connection::{Connection, Written};
use crate::progress::Progress;

/// Creates in flight while populating: far more than a run's concurrency,
/// so that SQLite's group commit and PostgreSQL's pool batch them and
/// 100 000 sessions take seconds.
const POPULATE_CONCURRENCY: usize = 256;

/// Creates `sessions` sessions with many concurrent Creates spread over the
/// connections, and returns their keys. The first failure stops it: a run
/// on a store that cannot even create its sessions measures nothing useful.
pub async fn populate(
    connections: &[Connection],
    sessions: usize,
    written: &Written,
    progress: &Progress,
    label: &str,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<String>> {
    if sessions == 0 {
        return Ok(Vec::new());
    }
    let created = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let created = created.clone();
        let label = label.to_owned();
        progress.tick(move |_| {
            let done = created.load(Ordering::Relaxed);
            format!("{label}: creating sessions {done}/{sessions}")
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for index in 0..POPULATE_CONCURRENCY.min(sessions) {
        let Some(conn) = connections.get(index % connections.len().max(1)) else {
            bail!("no connection to create sessions on");
        };
        let mut conn = conn.clone();
        let (next, created, written, cancel) = (
            next.clone(),
            created.clone(),
            written.clone(),
            cancel.clone(),
        );
        // Bounded by `sessions` in count, and each Create by the timeout.
        tasks.spawn(async move {
            let mut keys = Vec::new();
            while !cancel.is_cancelled() && next.fetch_add(1, Ordering::Relaxed) < sessions {
                keys.push(conn.create(&written).await?);
                created.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, crate::connection::Failure>(keys)
        });
    }
    let mut keys = Vec::with_capacity(sessions);
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(mut more)) => keys.append(&mut more),
            Ok(Err(err)) => {
                failure.get_or_insert(err);
                tasks.abort_all();
            }
            Err(aborted) if aborted.is_cancelled() => {}
            Err(panicked) => {
                return Err(panicked).context("a task creating sessions panicked");
            }
        }
    }
    ticker.stop().await;
    if let Some(failure) = failure {
        bail!(
            "creating the {sessions} sessions to work on failed after {}: Create answered {failure}",
            created.load(Ordering::Relaxed)
        );
    }
    if cancel.is_cancelled() {
        bail!("interrupted");
    }
    Ok(keys)
}
