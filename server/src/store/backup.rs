//! `sessiond backup`: a consistent copy of the store, taken while sessiond
//! serves it. sessiond copies SQLite, the embedded default, itself; the
//! other engines are backed up with their own tools, which the refusal
//! names.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::store::open::StoreConfig;
use crate::store::sqlite::{SqliteBackupError, SqliteUrl, back_up};
use crate::store::url::StoreUrl;

/// What a finished backup holds and what it took.
#[derive(Debug, Clone, Copy)]
pub struct BackupSummary {
    /// Sessions (rows of `django_session`) in the copy, expired ones
    /// included.
    pub sessions: u64,
    /// The size of the backup file.
    pub bytes: u64,
    /// From opening the store to the copy in place.
    pub elapsed: Duration,
}

impl fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sessions, {} bytes, {:.2} s, integrity check ok",
            self.sessions,
            self.bytes,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Why `sessiond backup` failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "cannot back up {url} (--store, SESSIOND_STORE): sessiond backup copies SQLite stores only; {advice}"
    )]
    Unsupported {
        url: Box<StoreUrl>,
        advice: &'static str,
    },
    #[error("cannot back up {url} to {dest}")]
    Sqlite {
        url: Box<StoreUrl>,
        dest: PathBuf,
        #[source]
        source: SqliteBackupError,
    },
    #[error("the backup of {url} stopped unexpectedly")]
    Interrupted {
        url: Box<StoreUrl>,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl BackupError {
    /// Whether the command asked for cannot work with this store at all, so
    /// that the command line exits as on a usage error (2) rather than as a
    /// backup that failed (1).
    pub fn is_usage_error(&self) -> bool {
        matches!(self, Self::Unsupported { .. })
    }
}

impl StoreConfig {
    /// Copies the store to the new file `dest` (`sessiond backup`),
    /// replacing an existing file only with `force`. The cache, if any, is
    /// not copied: it fills again from the database.
    pub async fn back_up(&self, dest: &Path, force: bool) -> Result<BackupSummary, BackupError> {
        let advice = match &self.url {
            StoreUrl::Sqlite(url) => return self.back_up_sqlite(url, dest, force).await,
            StoreUrl::Postgres(_) => {
                "back up PostgreSQL with its own tools: pg_dump, or the managed database's snapshots"
            }
            StoreUrl::Redis(_) => {
                "Redis keeps its own copies: RDB snapshots (BGSAVE, or save in redis.conf) or the append-only file (appendonly yes); copy dump.rdb or the AOF"
            }
            StoreUrl::File(_) => {
                "copy the directory (cp -a, tar or rsync): each session file is written whole and moved into place"
            }
            StoreUrl::Memory(_) => {
                "memory:// sessions live inside the serving process and end with it: there is nothing to back up"
            }
        };
        Err(BackupError::Unsupported {
            url: Box::new(self.url.clone()),
            advice,
        })
    }

    async fn back_up_sqlite(
        &self,
        url: &SqliteUrl,
        dest: &Path,
        force: bool,
    ) -> Result<BackupSummary, BackupError> {
        let started = Instant::now();
        let (source, target, timeout) = (url.path.clone(), dest.to_owned(), self.options.timeout);
        let copied = tokio::task::spawn_blocking(move || back_up(&source, &target, force, timeout))
            .await
            .map_err(|source| BackupError::Interrupted {
                url: Box::new(self.url.clone()),
                source,
            })?
            .map_err(|source| BackupError::Sqlite {
                url: Box::new(self.url.clone()),
                dest: dest.to_owned(),
                source,
            })?;
        Ok(BackupSummary {
            sessions: copied.sessions,
            bytes: copied.bytes,
            elapsed: started.elapsed(),
        })
    }
}
