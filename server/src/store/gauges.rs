//! [`StoreGauges`]: what an engine can tell about itself when metrics are
//! scraped (its connection pool, its files), read from state the engine
//! keeps anyway, so that no call on the hot path records anything for it.

use std::time::SystemTime;

/// An engine's state at one moment; each part is there only for engines
/// that have it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// Its connection pool: PostgreSQL's, SQLite's read connections.
    pub pool: Option<PoolGauges>,
    /// Its SQLite database file.
    pub sqlite: Option<SqliteGauges>,
}

/// A connection pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolGauges {
    /// Connections handed out to calls now.
    pub in_use: u64,
    /// Connections open and waiting for a call.
    pub idle: u64,
    /// Most connections the pool opens.
    pub max: u64,
    /// Calls waiting for a connection, where the pool counts them (r2d2,
    /// SQLite's, does not).
    pub waiters: Option<u64>,
}

/// An SQLite database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteGauges {
    /// Size of the database file.
    pub file_bytes: u64,
    /// Size of its write-ahead log (`-wal`), 0 when there is none.
    pub wal_bytes: u64,
    /// When a background checkpoint last left nothing of the log to copy;
    /// `None` before the first one, or when SQLite checkpoints by itself.
    pub last_checkpoint: Option<SystemTime>,
    /// The copies of rows that answer Loads.
    pub row_cache: RowCacheGauges,
}

/// The SQLite engine's copies of rows in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCacheGauges {
    /// Sessions copied.
    pub sessions: u64,
    /// Memory they take, as the budget counts it.
    pub bytes: u64,
    /// Loads answered from a copy, since the start.
    pub hits: u64,
    /// Loads on a connection's thread read from the file instead (no copy,
    /// or none that may answer), since the start.
    pub misses: u64,
}
