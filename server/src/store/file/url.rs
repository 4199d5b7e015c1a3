//! The `file://DIR?prefix=NAME&cookie_age=SECONDS` store URL.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Django's default `SESSION_COOKIE_NAME`, which its file engine puts before
/// every key to name the session's file.
pub const DEFAULT_PREFIX: &str = "sessionid";

/// Django's default `SESSION_COOKIE_AGE` (two weeks, in seconds). Django's
/// file engine reads a session's expiry as its file's modification time plus
/// this age, so the file engine writes modification times that far before
/// the expiry; see the module documentation of the engine.
pub const DEFAULT_COOKIE_AGE: u32 = 1_209_600;

/// The longest prefix accepted: a file name must stay well under the usual
/// 255-byte limit with a 40-character key and the temporary-file decoration.
const MAX_PREFIX_LEN: usize = 100;

/// Where and how the file engine stores sessions, parsed from what follows
/// `file://` in `--store`.
#[derive(Clone, PartialEq, Eq)]
pub struct FileUrl {
    /// The directory holding one file per session.
    pub dir: PathBuf,
    /// Put before each key to name its file: Django's `SESSION_COOKIE_NAME`.
    pub prefix: String,
    /// Django's `SESSION_COOKIE_AGE` of any Django app sharing the
    /// directory, in seconds: a file's modification time is its session's
    /// expiry minus this age.
    pub cookie_age: u32,
}

/// A `file://` URL sessiond cannot use.
#[derive(Debug, thiserror::Error)]
pub enum FileUrlError {
    #[error("file:// needs a directory, e.g. file:///var/lib/sessiond")]
    EmptyPath,
    #[error(
        "unknown option '{0}' in the file:// URL; expected prefix=NAME or cookie_age=SECONDS, e.g. file:///var/lib/sessiond?prefix=sessionid"
    )]
    UnknownOption(String),
    #[error(
        "prefix: must be 1 to {MAX_PREFIX_LEN} characters of a-z, A-Z, 0-9, '_', '-' or '.', not starting with '.' (it is Django's SESSION_COOKIE_NAME, default sessionid)"
    )]
    BadPrefix,
    #[error(
        "cookie_age: must be a whole number of seconds (Django's SESSION_COOKIE_AGE, default {DEFAULT_COOKIE_AGE}), got '{0}'"
    )]
    BadCookieAge(String),
}

impl FromStr for FileUrl {
    type Err = FileUrlError;

    /// Parses what follows `file://`: a directory, then optional
    /// `?prefix=NAME&cookie_age=SECONDS`. The path is taken literally (no
    /// percent-decoding); a relative one is relative to the working directory.
    fn from_str(rest: &str) -> Result<Self, Self::Err> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(FileUrlError::EmptyPath);
        }
        let mut url = Self {
            dir: path.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            cookie_age: DEFAULT_COOKIE_AGE,
        };
        for option in query.split('&').filter(|option| !option.is_empty()) {
            match option.split_once('=') {
                Some(("prefix", value)) if is_valid_prefix(value) => {
                    value.clone_into(&mut url.prefix);
                }
                Some(("prefix", _)) => return Err(FileUrlError::BadPrefix),
                Some(("cookie_age", value)) => {
                    url.cookie_age = value
                        .parse()
                        .map_err(|_| FileUrlError::BadCookieAge(value.to_owned()))?;
                }
                _ => return Err(FileUrlError::UnknownOption(option.to_owned())),
            }
        }
        Ok(url)
    }
}

/// Whether `prefix` can start a file name safely: no path separators, and no
/// leading dot, which marks the engine's own temporary files.
fn is_valid_prefix(prefix: &str) -> bool {
    (1..=MAX_PREFIX_LEN).contains(&prefix.len())
        && !prefix.starts_with('.')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl fmt::Display for FileUrl {
    /// The URL as it would be written, with only the options that differ
    /// from the defaults.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file://{}", self.dir.display())?;
        let mut separator = '?';
        if self.prefix != DEFAULT_PREFIX {
            write!(f, "{separator}prefix={}", self.prefix)?;
            separator = '&';
        }
        if self.cookie_age != DEFAULT_COOKIE_AGE {
            write!(f, "{separator}cookie_age={}", self.cookie_age)?;
        }
        Ok(())
    }
}

impl fmt::Debug for FileUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_comes_with_djangos_defaults() {
        let url: FileUrl = "/var/lib/sessiond".parse().unwrap();
        assert_eq!(url.dir, PathBuf::from("/var/lib/sessiond"));
        assert_eq!(url.prefix, "sessionid");
        assert_eq!(url.cookie_age, 1_209_600);
        assert_eq!(url.to_string(), "file:///var/lib/sessiond");
    }

    #[test]
    fn options_set_the_prefix_and_cookie_age_and_round_trip() {
        let url: FileUrl = "/srv/s?prefix=my_app-sid&cookie_age=3600".parse().unwrap();
        assert_eq!(url.prefix, "my_app-sid");
        assert_eq!(url.cookie_age, 3600);
        assert_eq!(
            url.to_string(),
            "file:///srv/s?prefix=my_app-sid&cookie_age=3600"
        );
        let again: FileUrl = url.to_string()["file://".len()..].parse().unwrap();
        assert_eq!(again, url);
        let url: FileUrl = "/srv/s?cookie_age=0".parse().unwrap();
        assert_eq!(url.to_string(), "file:///srv/s?cookie_age=0");
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        assert!(matches!(
            "".parse::<FileUrl>(),
            Err(FileUrlError::EmptyPath)
        ));
        assert!(matches!(
            "?prefix=x".parse::<FileUrl>(),
            Err(FileUrlError::EmptyPath)
        ));
        for bad in [
            "prefix=",
            "prefix=../x",
            "prefix=a/b",
            "prefix=.hidden",
            "prefix=sp ace",
            "prefix=%2e%2e",
        ] {
            let err = format!("/d?{bad}").parse::<FileUrl>().unwrap_err();
            assert!(matches!(err, FileUrlError::BadPrefix), "{bad}: {err}");
        }
        let long = format!("/d?prefix={}", "a".repeat(MAX_PREFIX_LEN + 1));
        assert!(long.parse::<FileUrl>().is_err());
        for bad in ["cookie_age=-1", "cookie_age=2weeks", "cookie_age="] {
            let err = format!("/d?{bad}").parse::<FileUrl>().unwrap_err();
            assert!(err.to_string().starts_with("cookie_age:"), "{bad}: {err}");
        }
        let err = "/d?prefx=a".parse::<FileUrl>().unwrap_err().to_string();
        assert!(err.contains("'prefx=a'"), "{err}");
    }
}
