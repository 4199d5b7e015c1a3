//! TLS to PostgreSQL with libpq's options and meanings, so that the URL a
//! provider hands out works as given: `sslmode`, `sslrootcert` (a file, or
//! `system` for the OS trust store), `sslcert` and `sslkey`, with the
//! `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY` variables as
//! fallbacks (the URL wins).
//!
//! What each mode checks, as libpq:
//! - `disable`: no TLS.
//! - `prefer` (the default): TLS when the server offers it, plaintext when
//!   it refuses TLS. A handshake that fails is an error, not a reason to
//!   fall back (tokio-postgres's rule; libpq would retry in plaintext).
//! - `require`: TLS or no connection; the certificate is not checked
//!   (encryption only), unless `sslrootcert` is given: then, as in libpq,
//!   it is checked as under `verify-ca`. The same holds for `prefer`.
//! - `verify-ca`: the certificate chains to `sslrootcert`; any host name.
//! - `verify-full`: that, and the certificate names the host connected to.
//!
//! Out of scope: `sslmode=allow` (plaintext first) is refused with advice;
//! libpq's files under `~/.postgresql/` are not read; `sslpassword`
//! (encrypted keys), `sslcrl` and `sslsni` are not supported.

use std::fmt;
use std::path::PathBuf;

use crate::store::kit::{UrlOption, UrlOptionError, UrlQuery};

/// libpq's `sslmode`, without `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// What `sslmode` accepts, completing "sslmode must be …".
const SSLMODE_EXPECTED: &str = "one of disable, prefer, require, verify-ca, verify-full \
     (allow, plaintext first, is not supported: use prefer or require)";

impl SslMode {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Where the CAs that sign the server's certificate come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the OS trust store (`SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` override where it is read from).
    System,
}

impl RootCert {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "" => None,
            "system" => Some(Self::System),
            path => Some(Self::File(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for RootCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::System => f.write_str("system"),
        }
    }
}

const SSLMODE: UrlOption<Option<SslMode>> = UrlOption {
    name: "sslmode",
    expected: SSLMODE_EXPECTED,
    parse: |text| SslMode::parse(text).map(Some),
    default: || None,
    secret: false,
};

const SSLROOTCERT: UrlOption<Option<RootCert>> = UrlOption {
    name: "sslrootcert",
    expected: "the path of a PEM file of CA certificates, or system",
    parse: |text| RootCert::parse(text).map(Some),
    default: || None,
    secret: false,
};

const SSLCERT: UrlOption<Option<PathBuf>> = UrlOption {
    name: "sslcert",
    expected: "the path of a PEM file holding the client certificate",
    parse: |text| (!text.is_empty()).then(|| Some(PathBuf::from(text))),
    default: || None,
    secret: false,
};

const SSLKEY: UrlOption<Option<PathBuf>> = UrlOption {
    name: "sslkey",
    expected: "the path of a PEM file holding the client certificate's private key",
    parse: |text| (!text.is_empty()).then(|| Some(PathBuf::from(text))),
    default: || None,
    secret: false,
};

/// The TLS options a URL gives; the environment fills the gaps at open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    mode: Option<SslMode>,
    root_cert: Option<RootCert>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl TlsOptions {
    /// Takes the TLS options out of a `postgres://` URL's query.
    pub(super) fn take(query: &mut UrlQuery) -> Result<Self, UrlOptionError> {
        Ok(Self {
            mode: query.take(&SSLMODE)?,
            root_cert: query.take(&SSLROOTCERT)?,
            cert: query.take(&SSLCERT)?,
            key: query.take(&SSLKEY)?,
        })
    }

    /// The options as written in a URL's query, in a fixed order.
    pub(super) fn query_pairs(&self) -> impl Iterator<Item = String> {
        let mode = self.mode.map(|mode| format!("sslmode={}", mode.as_str()));
        let root = self
            .root_cert
            .as_ref()
            .map(|root| pair("sslrootcert", root));
        let cert = self
            .cert
            .as_ref()
            .map(|path| pair("sslcert", &path.display()));
        let key = self
            .key
            .as_ref()
            .map(|path| pair("sslkey", &path.display()));
        [mode, root, cert, key].into_iter().flatten()
    }

    /// The settings in force: the URL's, else the `PG*` variable's, else
    /// libpq's defaults. `env` reads a variable (`std::env::var` outside
    /// tests).
    pub(super) fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<TlsSettings, PgTlsError> {
        let env = |name: &'static str| env(name).filter(|value| !value.is_empty());
        let root_cert = match (&self.root_cert, env("PGSSLROOTCERT")) {
            (Some(root), _) => Some(Given::url("sslrootcert", root.clone())),
            (None, Some(text)) => {
                RootCert::parse(&text).map(|root| Given::env("PGSSLROOTCERT", root))
            }
            (None, None) => None,
        };
        let mode = match (self.mode, env("PGSSLMODE")) {
            (Some(mode), _) => Given::url("sslmode", mode),
            (None, Some(text)) => match SslMode::parse(&text) {
                Some(mode) => Given::env("PGSSLMODE", mode),
                None => return Err(PgTlsError::BadModeVariable { value: text }),
            },
            // libpq 16: a system trust store is only worth its name with
            // the host name checked.
            (None, None) if matches!(&root_cert, Some(root) if root.value == RootCert::System) => {
                Given::default("sslmode", SslMode::VerifyFull)
            }
            (None, None) => Given::default("sslmode", SslMode::Prefer),
        };
        let path = |url: &Option<PathBuf>, option: &'static str, variable: &'static str| match (
            url,
            env(variable),
        ) {
            (Some(path), _) => Some(Given::url(option, path.clone())),
            (None, Some(text)) => Some(Given::env(variable, PathBuf::from(text))),
            (None, None) => None,
        };
        let cert = path(&self.cert, "sslcert", "PGSSLCERT");
        let key = path(&self.key, "sslkey", "PGSSLKEY");

        if let Some(root) = &root_cert
            && root.value == RootCert::System
            && mode.value != SslMode::VerifyFull
        {
            return Err(PgTlsError::WeakModeWithSystem { mode: mode.clone() });
        }
        if matches!(mode.value, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
            return Err(PgTlsError::NoRootCert { mode: mode.clone() });
        }
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(given), None) | (None, Some(given)) => {
                return Err(PgTlsError::HalfClientCert {
                    given: given.source,
                });
            }
        };
        Ok(TlsSettings {
            mode,
            root_cert,
            client,
        })
    }
}

/// `name=value` with the characters that would end or change a query's
/// pair escaped.
fn pair(name: &str, value: &dyn fmt::Display) -> String {
    const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'#')
        .add(b'%')
        .add(b'&')
        .add(b'+')
        .add(b'=');
    let value = value.to_string();
    format!(
        "{name}={}",
        percent_encoding::utf8_percent_encode(&value, QUERY_VALUE)
    )
}

/// A setting and where it came from, for messages: `sslmode=require`,
/// `PGSSLMODE=require`, or the default.
#[derive(Debug, Clone)]
pub struct Given<T> {
    pub value: T,
    pub(super) source: Source,
}

#[derive(Debug, Clone, Copy)]
pub enum Source {
    Url(&'static str),
    Env(&'static str),
    Default(&'static str),
}

impl<T> Given<T> {
    fn url(option: &'static str, value: T) -> Self {
        Self {
            value,
            source: Source::Url(option),
        }
    }

    fn env(variable: &'static str, value: T) -> Self {
        Self {
            value,
            source: Source::Env(variable),
        }
    }

    fn default(option: &'static str, value: T) -> Self {
        Self {
            value,
            source: Source::Default(option),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(option) => write!(f, "the URL option {option}"),
            Self::Env(variable) => write!(f, "the variable {variable}"),
            Self::Default(option) => write!(f, "the default {option}"),
        }
    }
}

impl fmt::Display for Given<SslMode> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.source {
            Source::Env(variable) => variable,
            Source::Url(option) | Source::Default(option) => option,
        };
        write!(f, "{name}={}", self.value.as_str())?;
        if let Source::Default(_) = self.source {
            f.write_str(", the default")?;
        }
        Ok(())
    }
}

impl fmt::Display for Given<RootCert> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.source {
            Source::Env(variable) => variable,
            Source::Url(option) | Source::Default(option) => option,
        };
        write!(f, "{name}={}", self.value)
    }
}

/// The TLS settings in force, each with where it came from.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub mode: Given<SslMode>,
    pub root_cert: Option<Given<RootCert>>,
    /// The client certificate and its key.
    pub(super) client: Option<(Given<PathBuf>, Given<PathBuf>)>,
}

/// TLS settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    #[error("PGSSLMODE must be {SSLMODE_EXPECTED}, got '{value}'")]
    BadModeVariable { value: String },
    #[error(
        "{mode} checks the server's certificate against CAs that are not given; \
         set sslrootcert=FILE (the provider's CA bundle) or sslrootcert=system \
         (with verify-full), or use sslmode=require to encrypt without checking"
    )]
    NoRootCert { mode: Given<SslMode> },
    #[error(
        "sslrootcert=system needs sslmode=verify-full (as libpq): the system's CAs \
         sign certificates for anyone, so only the host name check makes them mean \
         something; got {mode}"
    )]
    WeakModeWithSystem { mode: Given<SslMode> },
    #[error(
        "a client certificate needs both sslcert and sslkey (or PGSSLCERT and PGSSLKEY); \
         only {given} is given"
    )]
    HalfClientCert { given: Source },
    #[error("cannot read {} ({source_of})", path.display())]
    Read {
        path: PathBuf,
        source_of: Source,
        #[source]
        source: std::io::Error,
    },
    #[error("{} ({source_of}) holds no {what} in PEM form; {hint}", path.display())]
    NotPem {
        path: PathBuf,
        source_of: Source,
        what: &'static str,
        hint: &'static str,
    },
    #[error("sslrootcert=system: the OS trust store holds no usable CA certificate")]
    NoSystemRoots(#[source] Option<rustls_native_certs::Error>),
    #[error("{} holds no certificate that can be a CA", root.as_ref().map_or(String::new(), ToString::to_string))]
    Roots {
        root: Option<Given<RootCert>>,
        #[source]
        source: rustls::client::VerifierBuilderError,
    },
    #[error("the client certificate and key cannot be used together (sslcert, sslkey)")]
    ClientCert(#[source] rustls::Error),
    #[error("cannot set up TLS to PostgreSQL")]
    Rustls(#[source] rustls::Error),
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn path_of(given: &Given<PathBuf>) -> &Path {
        &given.value
    }

    fn options(query: &str) -> TlsOptions {
        let mut query = UrlQuery::parse("postgres", query);
        let options = TlsOptions::take(&mut query).unwrap();
        query.finish().unwrap();
        options
    }

    fn resolve(query: &str, env: &[(&str, &str)]) -> Result<TlsSettings, PgTlsError> {
        options(query).resolve(|name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn the_default_is_prefer_and_system_roots_default_to_verify_full() {
        assert_eq!(resolve("", &[]).unwrap().mode.value, SslMode::Prefer);
        let settings = resolve("sslrootcert=system", &[]).unwrap();
        assert_eq!(settings.mode.value, SslMode::VerifyFull);
        let err = resolve("sslrootcert=system&sslmode=require", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("needs sslmode=verify-full") && err.contains("got sslmode=require"),
            "{err}"
        );
    }

    #[test]
    fn the_url_wins_over_the_environment() {
        let env = [
            ("PGSSLMODE", "verify-ca"),
            ("PGSSLROOTCERT", "/env/ca.pem"),
            ("PGSSLCERT", "/env/c.pem"),
            ("PGSSLKEY", "/env/k.pem"),
        ];
        let settings = resolve("sslmode=require&sslcert=/url/c.pem", &env).unwrap();
        assert_eq!(settings.mode.value, SslMode::Require);
        assert_eq!(settings.mode.to_string(), "sslmode=require");
        let root = settings.root_cert.unwrap();
        assert_eq!(root.to_string(), "PGSSLROOTCERT=/env/ca.pem");
        let (cert, key) = settings.client.unwrap();
        assert_eq!(path_of(&cert), Path::new("/url/c.pem"));
        assert_eq!(path_of(&key), Path::new("/env/k.pem"));
        let settings = resolve("", &env).unwrap();
        assert_eq!(settings.mode.to_string(), "PGSSLMODE=verify-ca");
    }

    #[test]
    fn refusals_name_the_option_and_say_what_to_do() {
        let err = UrlQuery::parse("postgres", "sslmode=allow");
        let err = TlsOptions::take(&mut { err }).unwrap_err().to_string();
        assert!(
            err.contains("sslmode must be one of") && err.contains("allow"),
            "{err}"
        );
        let err = resolve("", &[("PGSSLMODE", "verify")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("PGSSLMODE must be one of"), "{err}");
        let err = resolve("sslmode=verify-full", &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("sslmode=verify-full checks") && err.contains("sslrootcert"),
            "{err}"
        );
        let err = resolve("", &[("PGSSLMODE", "verify-ca")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("PGSSLMODE=verify-ca checks"), "{err}");
        let err = resolve("sslkey=/k.pem", &[]).unwrap_err().to_string();
        assert!(err.contains("only the URL option sslkey is given"), "{err}");
        let err = resolve("sslmode=require&sslrootcert=/nonexistent/ca.pem", &[])
            .unwrap()
            .load()
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "cannot read /nonexistent/ca.pem (the URL option sslrootcert)"
        );
    }

    #[test]
    fn options_are_written_back_escaped() {
        let shown: Vec<String> = options("sslrootcert=/a%20b%26c.pem&sslmode=verify-ca")
            .query_pairs()
            .collect();
        assert_eq!(shown, ["sslmode=verify-ca", "sslrootcert=/a%20b%26c.pem"]);
    }
}
