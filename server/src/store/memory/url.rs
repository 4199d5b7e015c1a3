//! The `memory://[?max_sessions=N]` store URL.

use std::fmt;
use std::num::NonZeroUsize;

use crate::store::kit::{UrlOption, UrlOptionError, UrlQuery};

/// Sessions held when the URL does not say: 100 000 sessions of a typical
/// 1 KiB take roughly 150 MB with the map's overhead, which a development
/// machine or a test run can spare, and a store that is left running cannot
/// grow past it.
pub const DEFAULT_MAX_SESSIONS: NonZeroUsize = match NonZeroUsize::new(100_000) {
    Some(max) => max,
    None => NonZeroUsize::MIN,
};

/// The `max_sessions` option.
const MAX_SESSIONS: UrlOption<NonZeroUsize> = UrlOption {
    name: "max_sessions",
    expected: "a whole number of at least 1",
    parse: |text| text.parse().ok(),
    default: || DEFAULT_MAX_SESSIONS,
    secret: false,
};

/// A `memory://` URL that sessiond does not understand.
#[derive(Debug, thiserror::Error)]
pub enum MemoryUrlError {
    #[error(
        "memory:// takes no path, only options; expected memory:// or memory://?max_sessions=N"
    )]
    Path,
    #[error(transparent)]
    Options(#[from] UrlOptionError),
}

/// A parsed `memory://[?max_sessions=N]` store URL.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MemoryUrl {
    max_sessions: NonZeroUsize,
}

impl MemoryUrl {
    /// How the URL is written.
    pub const FORM: &'static str = "memory://[?max_sessions=N]";

    /// Parses `memory://[?max_sessions=N]`.
    pub fn parse(text: &str) -> Result<Self, MemoryUrlError> {
        let rest = text.strip_prefix("memory://").unwrap_or(text);
        let query = match rest.split_once('?') {
            Some(("", query)) => query,
            None if rest.is_empty() => "",
            _ => return Err(MemoryUrlError::Path),
        };
        let mut options = UrlQuery::parse("memory", query);
        let max_sessions = options.take(&MAX_SESSIONS)?;
        options.finish()?;
        Ok(Self { max_sessions })
    }

    /// The most sessions the store holds.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions.get()
    }
}

impl Default for MemoryUrl {
    fn default() -> Self {
        Self {
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

impl fmt::Display for MemoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "memory://?max_sessions={}", self.max_sessions)
    }
}

impl fmt::Debug for MemoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
