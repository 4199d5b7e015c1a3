//! `redis://` URLs: host, port, database, credentials and key prefix, shown
//! back without the password.

use std::fmt;

use ::redis::{
    ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError,
};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::store::kit::{UrlOption, UrlOptionError, UrlQuery};

/// Where sessiond's keys start unless the URL says otherwise: namespaced so
/// that one Redis database can hold other applications' keys too, and
/// distinct from Django's cache keys, whose pickled values sessiond cannot
/// read.
pub const DEFAULT_PREFIX: &str = "sessiond:session:";

/// Redis's own default port.
pub const DEFAULT_PORT: u16 = 6379;

/// The `prefix` option.
const PREFIX: UrlOption<String> = UrlOption {
    name: "prefix",
    expected: "non-empty and without spaces or control characters (a '+' in a query reads as a space; write %2B)",
    parse: |prefix| {
        let valid =
            !prefix.is_empty() && !prefix.chars().any(|c| c.is_whitespace() || c.is_control());
        valid.then(|| prefix.to_owned())
    },
    default: || DEFAULT_PREFIX.to_owned(),
    secret: false,
};

/// Characters escaped when a prefix is shown back in a URL: those that would
/// end or change the query value.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'&')
    .add(b'#')
    .add(b'+')
    .add(b'=');

/// Characters escaped in a user name shown back in a URL.
const USERINFO: &AsciiSet = &QUERY_VALUE.add(b':').add(b'@').add(b'/').add(b'?');

/// The URL forms this engine accepts, for error messages.
const EXPECTED: &str = "expected redis://[USER:PASSWORD@]HOST[:PORT][/DB][?prefix=PREFIX]";

/// A `redis://` URL that sessiond does not understand.
#[derive(Debug, thiserror::Error)]
pub enum RedisUrlError {
    #[error("not a valid redis:// URL ({0}); {EXPECTED}")]
    Malformed(#[source] url::ParseError),
    #[error("rediss:// (Redis over TLS) is not supported yet; use redis:// on a trusted network")]
    Tls,
    #[error("redis:// needs a host, e.g. redis://127.0.0.1:6379/0")]
    MissingHost,
    #[error(
        "redis://: cannot connect to the wildcard address {0}; name the host Redis runs on, e.g. 127.0.0.1"
    )]
    WildcardHost(String),
    #[error("redis://: the database must be a number such as /0, got '/{0}'; {EXPECTED}")]
    Database(String),
    #[error("redis://: the user name or password is not valid UTF-8 after percent-decoding")]
    Credentials,
    #[error("redis://: a URL #fragment means nothing here; remove it")]
    Fragment,
    #[error(transparent)]
    Options(#[from] UrlOptionError),
}

/// A parsed `redis://` store URL. Its `Display` and `Debug` forms hide the
/// password, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    host: String,
    port: u16,
    pub(super) db: i64,
    username: Option<String>,
    password: Option<String>,
    pub(super) prefix: String,
}

impl RedisUrl {
    /// How the URL is written.
    pub const FORM: &'static str = "redis://HOST[:PORT][/DB][?prefix=PREFIX]";

    /// Parses a whole `redis://…` URL.
    pub fn parse(text: &str) -> Result<Self, RedisUrlError> {
        let url = url::Url::parse(text).map_err(RedisUrlError::Malformed)?;
        if url.scheme() == "rediss" {
            return Err(RedisUrlError::Tls);
        }
        if url.fragment().is_some() {
            return Err(RedisUrlError::Fragment);
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) if !name.is_empty() => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(RedisUrlError::MissingHost),
        };
        if host == "0.0.0.0" || host == "::" {
            return Err(RedisUrlError::WildcardHost(host));
        }
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            path => path
                .parse::<u32>()
                .map(i64::from)
                .map_err(|_| RedisUrlError::Database(path.to_owned()))?,
        };
        let decode = |text: &str| {
            percent_decode_str(text)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| RedisUrlError::Credentials)
        };
        let username = match url.username() {
            "" => None,
            name => Some(decode(name)?),
        };
        let password = url.password().map(decode).transpose()?;

        let mut options = UrlQuery::parse("redis", url.query().unwrap_or_default());
        let prefix = options.take(&PREFIX)?;
        options.finish()?;

        Ok(Self {
            host,
            port: url.port().unwrap_or(DEFAULT_PORT),
            db,
            username,
            password,
            prefix,
        })
    }

    /// The prefix of every key sessiond writes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn connection_info(&self) -> Result<ConnectionInfo, RedisError> {
        let mut redis = RedisConnectionInfo::default().set_db(self.db);
        if let Some(username) = &self.username {
            redis = redis.set_username(username);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        Ok(ConnectionAddr::Tcp(self.host.clone(), self.port)
            .into_connection_info()?
            .set_redis_settings(redis))
    }

    /// `HOST:PORT`, for messages.
    pub(super) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        if let Some(username) = &self.username {
            write!(f, "{}", utf8_percent_encode(username, USERINFO))?;
        }
        if self.password.is_some() {
            f.write_str(":***")?;
        }
        if self.username.is_some() || self.password.is_some() {
            f.write_str("@")?;
        }
        write!(
            f,
            "{}/{}?prefix={}",
            self.address(),
            self.db,
            utf8_percent_encode(&self.prefix, QUERY_VALUE)
        )
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults() {
        let url = RedisUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!(url.host, "127.0.0.1");
        assert_eq!(url.port, 6379);
        assert_eq!(url.db, 0);
        assert_eq!(url.prefix, DEFAULT_PREFIX);
        assert_eq!(url.username, None);
        assert_eq!(url.password, None);

        let url =
            RedisUrl::parse("redis://app:p%40ss%3Aword@redis.internal:6380/3?prefix=myapp:s:")
                .unwrap();
        assert_eq!(url.host, "redis.internal");
        assert_eq!(url.port, 6380);
        assert_eq!(url.db, 3);
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("p@ss:word"));
        assert_eq!(url.prefix, "myapp:s:");

        let url = RedisUrl::parse("redis://:secret@[::1]/").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.username, None);
        assert_eq!(url.password.as_deref(), Some("secret"));
    }

    #[test]
    fn the_password_never_shows() {
        let url = RedisUrl::parse("redis://app:hunter2@10.0.0.5:6380/2?prefix=a:b:").unwrap();
        let shown = url.to_string();
        assert_eq!(shown, "redis://app:***@10.0.0.5:6380/2?prefix=a:b:");
        assert!(!format!("{url:?}").contains("hunter2"));
        let url = RedisUrl::parse("redis://:hunter2@[::1]").unwrap();
        assert_eq!(
            url.to_string(),
            "redis://:***@[::1]:6379/0?prefix=sessiond:session:"
        );
    }

    #[test]
    fn urls_without_a_password_show_as_they_parse() {
        for text in [
            "redis://127.0.0.1:6379/0?prefix=sessiond:session:",
            "redis://cache:7000/15?prefix=my%26app%2Bx:",
            "redis://[::1]:6379/0?prefix=p:",
        ] {
            let url = RedisUrl::parse(text).unwrap();
            assert_eq!(url.to_string(), text);
            assert_eq!(RedisUrl::parse(&url.to_string()).unwrap(), url);
        }
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (text, expected) in [
            ("redis://", "needs a host"),
            ("redis://h:notaport", "not a valid redis:// URL"),
            ("redis://h/abc", "database must be a number"),
            ("redis://h/-1", "database must be a number"),
            ("redis://h/0?db=1", "unknown option 'db'"),
            ("redis://h/0?prefix=", "prefix must be non-empty"),
            ("redis://h/0?prefix=a+b", "prefix must be non-empty"),
            ("redis://h/0?prefix=a&prefix=b", "more than once"),
            ("redis://h/0#x", "fragment"),
            ("redis://0.0.0.0", "wildcard"),
            ("rediss://h", "TLS"),
        ] {
            let err = RedisUrl::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
