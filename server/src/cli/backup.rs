//! The flags of `sessiond backup`, and its help: how to take a backup and
//! how to restore one.

use std::path::PathBuf;

use clap::Args;

use super::StoreArgs;

/// Shown after `sessiond backup --help`: the way back.
pub const RESTORE_HELP: &str = "\
Restore:
  1. Stop sessiond (and any Django app that uses the same file).
  2. Copy the backup over the database file, owned by the user the service
     runs as, mode 0600:
       install -m 0600 -o USER -g GROUP BACKUP /var/lib/sessiond/sessions.sqlite3
  3. Remove the database's -wal and -shm files (sessions.sqlite3-wal,
     sessions.sqlite3-shm): a log left from the old file would be replayed
     into the restored one.
  4. Start sessiond.

PostgreSQL and Redis stores are refused (exit 2): back them up with pg_dump,
and with Redis's RDB snapshots (BGSAVE) or append-only file.";

/// The flags of `sessiond backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Replace DEST if it exists (by renaming the finished copy over it).
    #[arg(long)]
    pub force: bool,

    /// The backup file to write, e.g. /var/backups/sessions-2025-01-31.sqlite3;
    /// its directory must exist.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}
