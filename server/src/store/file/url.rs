//! The `file://DIR[?prefix=NAME]` store URL.

use std::fmt;
use std::path::PathBuf;

use crate::store::kit::{UrlOption, UrlOptionError, UrlQuery};

/// Django's default `SESSION_COOKIE_NAME`, which its file engine puts before
/// every key to name the session's file.
pub const DEFAULT_PREFIX: &str = "sessionid";

/// The longest prefix accepted: a file name must stay well under the usual
/// 255-byte limit with a 40-character key and the temporary-file decoration.
const MAX_PREFIX_LEN: usize = 100;

/// The `prefix` option.
const PREFIX: UrlOption<String> = UrlOption {
    name: "prefix",
    expected: "1 to 100 characters of a-z, A-Z, 0-9, '_', '-' or '.', not starting with '.' (it is Django's SESSION_COOKIE_NAME, default sessionid)",
    parse: |text| is_valid_prefix(text).then(|| text.to_owned()),
    default: || DEFAULT_PREFIX.to_owned(),
    secret: false,
};

/// Where and how the file engine stores sessions, parsed from `--store`.
#[derive(Clone, PartialEq, Eq)]
pub struct FileUrl {
    /// The directory holding one file per session.
    pub dir: PathBuf,
    /// Put before each key to name its file: Django's `SESSION_COOKIE_NAME`.
    pub prefix: String,
}

/// A `file://` URL sessiond cannot use.
#[derive(Debug, thiserror::Error)]
pub enum FileUrlError {
    #[error("file:// needs a directory, e.g. file:///var/lib/sessiond")]
    EmptyPath,
    #[error(
        "file://: cookie_age is not an option: a session file's expiry is its modification time plus --session-age (SESSIOND_SESSION_AGE), as Django's is plus its SESSION_COOKIE_AGE; remove cookie_age and give --session-age the value it had"
    )]
    CookieAge,
    #[error(transparent)]
    Options(#[from] UrlOptionError),
}

impl FileUrl {
    /// How the URL is written.
    pub const FORM: &'static str = "file:///DIR[?prefix=NAME]";

    /// Parses `file://DIR[?prefix=NAME]`. The directory is taken literally
    /// up to the first `?` (no percent-decoding); a relative one is relative
    /// to the working directory.
    pub fn parse(text: &str) -> Result<Self, FileUrlError> {
        let rest = text.strip_prefix("file://").unwrap_or(text);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(FileUrlError::EmptyPath);
        }
        let mut options = UrlQuery::parse("file", query);
        let prefix = options.take(&PREFIX)?;
        if options.has("cookie_age") {
            return Err(FileUrlError::CookieAge);
        }
        options.finish()?;
        Ok(Self {
            dir: path.into(),
            prefix,
        })
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
        if self.prefix != DEFAULT_PREFIX {
            write!(f, "?prefix={}", self.prefix)?;
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
    fn the_directory_comes_with_djangos_prefix() {
        let url = FileUrl::parse("file:///var/lib/sessiond").unwrap();
        assert_eq!(url.dir, PathBuf::from("/var/lib/sessiond"));
        assert_eq!(url.prefix, "sessionid");
        assert_eq!(url.to_string(), "file:///var/lib/sessiond");
    }

    #[test]
    fn the_prefix_option_sets_the_prefix_and_round_trips() {
        let url = FileUrl::parse("file:///srv/s?prefix=my_app-sid").unwrap();
        assert_eq!(url.prefix, "my_app-sid");
        assert_eq!(url.to_string(), "file:///srv/s?prefix=my_app-sid");
        assert_eq!(FileUrl::parse(&url.to_string()).unwrap(), url);
    }

    #[test]
    fn the_prefix_rule_says_its_limit() {
        assert!(
            PREFIX
                .expected
                .starts_with(&format!("1 to {MAX_PREFIX_LEN} "))
        );
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        assert!(matches!(
            FileUrl::parse("file://"),
            Err(FileUrlError::EmptyPath)
        ));
        assert!(matches!(
            FileUrl::parse("file://?prefix=x"),
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
            let err = FileUrl::parse(&format!("file:///d?{bad}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("file://: prefix must be 1 to 100"),
                "{bad}: {err}"
            );
        }
        let long = format!("file:///d?prefix={}", "a".repeat(MAX_PREFIX_LEN + 1));
        assert!(FileUrl::parse(&long).is_err());
        let err = FileUrl::parse("file:///d?cookie_age=3600")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--session-age"), "{err}");
        let err = FileUrl::parse("file:///d?prefx=a").unwrap_err().to_string();
        assert!(err.contains("unknown option 'prefx'"), "{err}");
        assert!(err.contains("accepts only the option prefix"), "{err}");
    }
}
