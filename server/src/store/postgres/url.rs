//! The `postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME]` store
//! URL: libpq's connection URL, plus sessiond's own `schema` and
//! `pool_size` options. The
//! TLS options (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) are libpq's
//! but read here, since tokio-postgres knows only some of them (see
//! `tls.rs`).

use std::fmt;

use super::tls::TlsOptions;
use crate::store::kit::{UrlOption, UrlOptionError, UrlQuery};

/// Connections per replica, unless the URL says `?pool_size=N`. PostgreSQL
/// serves each connection with one process, so a few busy connections per
/// replica keep it fast; replicas (surge included) times this must stay
/// under the server's `max_connections` (100 by default) less what others
/// need.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The `schema` option: where sessiond's tables live instead of the user's
/// `search_path`. Quoted into SQL, so it must be a plain identifier.
const SCHEMA: UrlOption<Option<String>> = UrlOption {
    name: "schema",
    expected: "a plain SQL identifier (letters, digits and _, not starting with a digit)",
    parse: |name| is_plain_identifier(name).then(|| Some(name.to_owned())),
    default: || None,
    secret: false,
};

/// The most connections one replica may open: far beyond what PostgreSQL
/// serves well (a process per connection), but a typo like 10000 is
/// refused rather than tried.
const MAX_POOL_SIZE: usize = 1024;

/// The `pool_size` option: connections this replica keeps at most. Not
/// `max_connections`, which is PostgreSQL's server-wide setting (and
/// sessiond's own limit on gRPC clients).
const POOL_SIZE: UrlOption<usize> = UrlOption {
    name: "pool_size",
    expected: "a whole number from 1 to 1024",
    parse: |text| {
        text.parse()
            .ok()
            .filter(|size| (1..=MAX_POOL_SIZE).contains(size))
    },
    default: || DEFAULT_POOL_SIZE,
    secret: false,
};

/// A `postgres://` URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PostgresUrlError {
    /// tokio-postgres's message never repeats the URL.
    #[error("not a PostgreSQL URL")]
    Invalid(#[source] tokio_postgres::Error),
    /// tokio-postgres would split the user part at its first `@`, leaving
    /// the rest of the password in the host name, where it shows.
    #[error("postgres://: the user name or password holds an '@'; write it as %40")]
    AtInCredentials,
    #[error(transparent)]
    Options(#[from] UrlOptionError),
}

/// Where the sessions live: a connection URL, an optional schema, and how
/// many connections to keep.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The URL as given, without sessiond's and the TLS options.
    pub(super) url: String,
    pub(super) schema: Option<String>,
    /// Connections this replica keeps at most.
    pub(super) pool_size: usize,
    pub(super) tls: TlsOptions,
}

impl PostgresUrl {
    /// How the URL is written.
    pub const FORM: &'static str = "postgres://USER@HOST/DATABASE[?schema=NAME][&pool_size=N][&sslmode=MODE&sslrootcert=FILE|system]";

    /// Parses `postgres://user:password@host:port/database?schema=name`.
    /// The TLS options are checked here; other options than `schema` and
    /// `pool_size` are libpq's and go to the driver as given.
    pub fn parse(text: &str) -> Result<Self, PostgresUrlError> {
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        if authority(base).matches('@').count() > 1 {
            return Err(PostgresUrlError::AtInCredentials);
        }
        let mut options = UrlQuery::parse("postgres", query);
        let schema = options.take(&SCHEMA)?;
        let pool_size = options.take(&POOL_SIZE)?;
        let tls = TlsOptions::take(&mut options)?;
        let rest = options.into_rest();
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{rest}")
        };
        url.parse::<tokio_postgres::Config>()
            .map_err(PostgresUrlError::Invalid)?;
        Ok(Self {
            url,
            schema,
            pool_size,
            tls,
        })
    }

    /// The driver's settings from the URL.
    pub(super) fn config(&self) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
        self.url.parse()
    }
}

fn is_plain_identifier(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|first| !first.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The libpq options that hold a password, shown as `***`: the user's, and
/// that of an encrypted client key (refused by tokio-postgres, but a URL
/// that holds one is still shown).
const PASSWORD_OPTIONS: [&str; 2] = ["password", "sslpassword"];

/// The `user:password@host:port` part of a URL without its query.
fn authority(base: &str) -> &str {
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    after_scheme.split('/').next().unwrap_or(after_scheme)
}

impl fmt::Display for PostgresUrl {
    /// The URL without its passwords, whether in the user part or in
    /// libpq's options.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (base, query) = self.url.split_once('?').unwrap_or((&self.url, ""));
        let shown = match (base.find("://"), base.find('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &base[scheme_end + 3..at];
                match credentials.split_once(':') {
                    Some((user, _password)) => {
                        format!("{}{user}:***{}", &base[..scheme_end + 3], &base[at..])
                    }
                    None => base.to_owned(),
                }
            }
            _ => base.to_owned(),
        };
        f.write_str(&shown)?;
        let options = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                // Decoded as libpq decodes it: `pass%77ord` is `password`.
                let name = url::form_urlencoded::parse(pair.as_bytes())
                    .next()
                    .map(|(name, _)| name.into_owned())
                    .unwrap_or_default();
                if PASSWORD_OPTIONS.contains(&name.as_str()) {
                    format!("{name}=***")
                } else {
                    pair.to_owned()
                }
            });
        let tls = self.tls.query_pairs();
        let schema = self.schema.iter().map(|schema| format!("schema={schema}"));
        let pool_size =
            (self.pool_size != DEFAULT_POOL_SIZE).then(|| format!("pool_size={}", self.pool_size));
        let ours = schema.chain(pool_size);
        for (at, option) in options.chain(tls).chain(ours).enumerate() {
            f.write_str(if at == 0 { "?" } else { "&" })?;
            f.write_str(&option)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_a_schema() {
        let url =
            PostgresUrl::parse("postgres://app:secret@db:5432/sessions?schema=web_1").unwrap();
        assert_eq!(url.schema.as_deref(), Some("web_1"));
        assert_eq!(url.url, "postgres://app:secret@db:5432/sessions");
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db:5432/sessions?schema=web_1"
        );
        let url = PostgresUrl::parse("postgresql://localhost/test?connect_timeout=3").unwrap();
        assert_eq!(url.schema, None);
        assert_eq!(
            url.to_string(),
            "postgresql://localhost/test?connect_timeout=3"
        );
        for bad in ["bad;name", "1abc", ""] {
            let err = PostgresUrl::parse(&format!("postgres://localhost/test?schema={bad}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("schema must be a plain SQL identifier"),
                "{err}"
            );
        }
        assert!(PostgresUrl::parse("postgres://localhost:notaport/test").is_err());
        let url = PostgresUrl::parse("postgres://h/db?host=a&host=b").unwrap();
        assert_eq!(url.to_string(), "postgres://h/db?host=a&host=b");
    }

    #[test]
    fn the_pool_size_is_bounded_and_shown_when_not_the_default() {
        let url = PostgresUrl::parse("postgres://db/s").unwrap();
        assert_eq!(url.pool_size, DEFAULT_POOL_SIZE);
        let url = PostgresUrl::parse("postgres://db/s?pool_size=4&connect_timeout=3").unwrap();
        assert_eq!(url.pool_size, 4);
        assert_eq!(url.url, "postgres://db/s?connect_timeout=3");
        assert_eq!(
            url.to_string(),
            "postgres://db/s?connect_timeout=3&pool_size=4"
        );
        assert_eq!(
            PostgresUrl::parse("postgres://db/s?pool_size=1024&schema=web")
                .unwrap()
                .to_string(),
            "postgres://db/s?schema=web&pool_size=1024"
        );
        for bad in ["0", "1025", "-1", "ten", ""] {
            let err = PostgresUrl::parse(&format!("postgres://db/s?pool_size={bad}"))
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                format!(
                    "postgres://: pool_size must be a whole number from 1 to 1024, got '{bad}'"
                )
            );
        }
    }

    #[test]
    fn passwords_never_show() {
        let url = PostgresUrl::parse(
            "postgres://app:hunter1@db/s?password=hunter2&connect_timeout=3&schema=web",
        )
        .unwrap();
        let shown = format!("{url} {url:?}");
        for secret in ["hunter1", "hunter2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db/s?password=***&connect_timeout=3&schema=web"
        );
        // Encrypted client keys are not supported; the refusal does not
        // repeat the key's password.
        let err = PostgresUrl::parse("postgres://app@db/s?sslmode=require&sslpassword=hunter5")
            .unwrap_err();
        let shown = crate::error::ErrorChain(&err).to_string();
        assert!(
            shown.contains("sslpassword") && !shown.contains("hunter5"),
            "{shown}"
        );
        let url = PostgresUrl::parse(
            "postgres://app:hunter6@db/s?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db/s?sslmode=verify-full&sslrootcert=/ca.pem"
        );
        let url = PostgresUrl::parse("postgres://app@db/s?pass%77ord=hunter3").unwrap();
        assert_eq!(url.to_string(), "postgres://app@db/s?password=***");
        let err = PostgresUrl::parse("postgres://app:p@hunter4@db/s")
            .unwrap_err()
            .to_string();
        assert!(err.contains("%40") && !err.contains("hunter4"), "{err}");
        assert!(PostgresUrl::parse("postgres://app:p%40hunter4@db/s").is_ok());
    }
}
