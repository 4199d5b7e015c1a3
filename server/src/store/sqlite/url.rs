//! The `sqlite://PATH[?synchronous=normal|full][&row_cache_mib=N]` store URL.

use std::fmt;
use std::path::PathBuf;

use crate::store::kit::{UrlOption, UrlOptionError, UrlQuery};

/// How hard SQLite works to put each commit on stable storage: its
/// `PRAGMA synchronous`, on every read-write connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// The write-ahead log is synced before each checkpoint, not at each
    /// commit: an acknowledged write survives a crash of sessiond, and a
    /// power loss or OS crash can lose the commits since the last sync.
    /// The default: a crash of the process costs nothing, and a commit
    /// costs no fsync.
    #[default]
    Normal,
    /// The log is synced at each commit, so an acknowledged write also
    /// survives a power loss; each group commit pays one fsync.
    Full,
}

impl Synchronous {
    /// The value of SQLite's `PRAGMA synchronous`.
    pub(super) fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }

    /// The setting a connection reports: `PRAGMA synchronous` answers with
    /// a number. `None` for the settings sessiond never asks for (OFF is 0,
    /// EXTRA 3).
    pub(super) fn from_pragma_number(number: i64) -> Option<Self> {
        match number {
            1 => Some(Self::Normal),
            2 => Some(Self::Full),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Full => "full",
        }
    }
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `synchronous` option.
const SYNCHRONOUS: UrlOption<Synchronous> = UrlOption {
    name: "synchronous",
    expected: "normal (the default: a crash of sessiond loses nothing acknowledged) or full (an acknowledged write also survives a power loss)",
    parse: |text| match text.to_ascii_lowercase().as_str() {
        "normal" => Some(Synchronous::Normal),
        "full" => Some(Synchronous::Full),
        _ => None,
    },
    default: Synchronous::default,
    secret: false,
};

/// Memory the row cache may take, in MiB, unless the URL says otherwise.
/// 64 MiB holds about 55 000 sessions of 1 KiB: every session of a site
/// that size, or the ones in use on a larger one, for about as much memory
/// as the read connections' page caches take at most (8 of 16 MiB).
pub const DEFAULT_ROW_CACHE_MIB: u32 = 64;

/// The most `row_cache_mib` accepts: 1 TiB, beyond any machine's memory,
/// so that a typo is refused.
const MAX_ROW_CACHE_MIB: u32 = 1 << 20;

/// The `row_cache_mib` option.
const ROW_CACHE_MIB: UrlOption<u32> = UrlOption {
    name: "row_cache_mib",
    expected: "a whole number of MiB of session rows to keep in memory, from 0 (none) to 1048576 (the default is 64)",
    parse: |text| text.parse().ok().filter(|mib| *mib <= MAX_ROW_CACHE_MIB),
    default: || DEFAULT_ROW_CACHE_MIB,
    secret: false,
};

/// An `sqlite://` URL that sessiond cannot use.
#[derive(Debug, thiserror::Error)]
pub enum SqliteUrlError {
    #[error("sqlite:// needs a database file path, e.g. sqlite://sessiond.sqlite3")]
    EmptyPath,
    #[error(transparent)]
    Options(#[from] UrlOptionError),
}

/// A parsed `sqlite://` store URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SqliteUrl {
    /// The database file. Relative paths are relative to the working
    /// directory; `sqlite:///abs/path` names an absolute one.
    pub path: PathBuf,
    /// SQLite's `PRAGMA synchronous` on every read-write connection.
    pub synchronous: Synchronous,
    /// Memory for copies of rows that answer Loads, in MiB (see the
    /// engine's `row_cache`); 0 turns the copies off.
    pub row_cache_mib: u32,
}

impl SqliteUrl {
    /// How the URL is written.
    pub const FORM: &'static str = "sqlite://PATH[?synchronous=full][&row_cache_mib=N]";

    /// Parses `sqlite://PATH[?synchronous=normal|full][&row_cache_mib=N]`.
    /// The path is taken literally up to the first `?` (no
    /// percent-decoding), as a file name.
    pub fn parse(text: &str) -> Result<Self, SqliteUrlError> {
        let rest = text.strip_prefix("sqlite://").unwrap_or(text);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(SqliteUrlError::EmptyPath);
        }
        let mut options = UrlQuery::parse("sqlite", query);
        let synchronous = options.take(&SYNCHRONOUS)?;
        let row_cache_mib = options.take(&ROW_CACHE_MIB)?;
        options.finish()?;
        Ok(Self {
            path: path.into(),
            synchronous,
            row_cache_mib,
        })
    }
}

impl fmt::Display for SqliteUrl {
    /// The URL as it would be written, with each option only when it is
    /// not the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sqlite://{}", self.path.display())?;
        let mut separator = '?';
        if self.synchronous != Synchronous::default() {
            write!(f, "{separator}synchronous={}", self.synchronous)?;
            separator = '&';
        }
        if self.row_cache_mib != DEFAULT_ROW_CACHE_MIB {
            write!(f, "{separator}row_cache_mib={}", self.row_cache_mib)?;
        }
        Ok(())
    }
}

impl fmt::Debug for SqliteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_alone_means_synchronous_normal() {
        let url = SqliteUrl::parse("sqlite://sessiond.sqlite3").unwrap();
        assert_eq!(url.path, PathBuf::from("sessiond.sqlite3"));
        assert_eq!(url.synchronous, Synchronous::Normal);
        assert_eq!(url.to_string(), "sqlite://sessiond.sqlite3");
        let url = SqliteUrl::parse("sqlite:///var/lib/sessiond/db.sqlite3?").unwrap();
        assert_eq!(url.path, PathBuf::from("/var/lib/sessiond/db.sqlite3"));
        assert_eq!(url.synchronous, Synchronous::Normal);
    }

    #[test]
    fn synchronous_is_normal_or_full_and_shows_back() {
        for (text, expected) in [
            ("/d/s.sqlite3?synchronous=normal", Synchronous::Normal),
            ("/d/s.sqlite3?synchronous=full", Synchronous::Full),
            ("/d/s.sqlite3?synchronous=FULL", Synchronous::Full),
        ] {
            let url = SqliteUrl::parse(&format!("sqlite://{text}")).unwrap();
            assert_eq!(url.path, PathBuf::from("/d/s.sqlite3"), "{text}");
            assert_eq!(url.synchronous, expected, "{text}");
        }
        let url = SqliteUrl::parse("sqlite:///d/s.sqlite3?synchronous=full").unwrap();
        assert_eq!(url.to_string(), "sqlite:///d/s.sqlite3?synchronous=full");
        assert_eq!(SqliteUrl::parse(&url.to_string()).unwrap(), url);
    }

    #[test]
    fn the_row_cache_is_64_mib_unless_the_url_says() {
        let url = SqliteUrl::parse("sqlite://s.sqlite3").unwrap();
        assert_eq!(url.row_cache_mib, DEFAULT_ROW_CACHE_MIB);
        for (text, mib, shown) in [
            (
                "s.sqlite3?row_cache_mib=0",
                0,
                "sqlite://s.sqlite3?row_cache_mib=0",
            ),
            (
                "s.sqlite3?synchronous=full&row_cache_mib=256",
                256,
                "sqlite://s.sqlite3?synchronous=full&row_cache_mib=256",
            ),
            ("s.sqlite3?row_cache_mib=64", 64, "sqlite://s.sqlite3"),
        ] {
            let url = SqliteUrl::parse(&format!("sqlite://{text}")).unwrap();
            assert_eq!(url.row_cache_mib, mib, "{text}");
            assert_eq!(url.to_string(), shown);
            assert_eq!(SqliteUrl::parse(&url.to_string()).unwrap(), url);
        }
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        for (text, expected) in [
            ("", "needs a database file path"),
            ("?synchronous=full", "needs a database file path"),
            ("s.sqlite3?synchronous=off", "normal (the default"),
            ("s.sqlite3?synchronous=extra", "got 'extra'"),
            ("s.sqlite3?synchronous=", "got ''"),
            ("s.sqlite3?synchronous", "got ''"),
            ("s.sqlite3?synchronous=1", "or full"),
            ("s.sqlite3?sync=full", "unknown option 'sync'"),
            (
                "s.sqlite3?mode=ro",
                "the options synchronous, row_cache_mib",
            ),
            ("s.sqlite3?row_cache_mib=lots", "a whole number of MiB"),
            ("s.sqlite3?row_cache_mib=-1", "got '-1'"),
            (
                "s.sqlite3?row_cache_mib=2000000",
                "from 0 (none) to 1048576",
            ),
            (
                "s.sqlite3?synchronous=full&synchronous=normal",
                "more than once",
            ),
        ] {
            let err = SqliteUrl::parse(&format!("sqlite://{text}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
