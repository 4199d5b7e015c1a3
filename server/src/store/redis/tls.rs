//! TLS to Redis (`rediss://`, `rediss+sentinel://`, `rediss+cluster://`):
//! the `ca`, `cert` and `key` options of the URL, and the files they name,
//! read when the engine opens.
//!
//! Without `ca` the server's certificate is checked against the system trust
//! store (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured); with it, against
//! that file's certificates only, as `redis-cli --cacert` does. The host
//! name in the URL (or the address Sentinel and Cluster announce) must match
//! the certificate: there is no option to skip that check.

use std::path::{Path, PathBuf};

use ::redis::{ClientTlsConfig, TlsCertificates};

use crate::store::kit::{OpenFailure, UrlOption, UrlOptionError, UrlQuery};

/// The `ca` option: a PEM file of the certificates that may sign the
/// server's (instead of the system trust store).
const CA: UrlOption<Option<PathBuf>> = path_option("ca");

/// The `cert` option: a PEM file of the client certificate (and its chain),
/// for a Redis that asks for one (`tls-auth-clients yes`).
const CERT: UrlOption<Option<PathBuf>> = path_option("cert");

/// The `key` option: the PEM file of the client certificate's private key.
const KEY: UrlOption<Option<PathBuf>> = path_option("key");

/// The names of the TLS options, for the refusal of one in a URL without TLS.
pub(super) const OPTION_NAMES: [&str; 3] = ["ca", "cert", "key"];

const fn path_option(name: &'static str) -> UrlOption<Option<PathBuf>> {
    UrlOption {
        name,
        expected: "the path of a PEM file",
        parse: |path| (!path.is_empty()).then(|| Some(PathBuf::from(path))),
        default: || None,
        secret: false,
    }
}

/// The TLS settings of a `rediss` URL: which files to read, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TlsFiles {
    pub(super) ca: Option<PathBuf>,
    pub(super) client: Option<ClientFiles>,
}

/// A client certificate and its key, for Redis servers that check clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ClientFiles {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

/// A client certificate without its key, or the reverse.
#[derive(Debug, thiserror::Error)]
#[error(
    "{scheme}://: a client certificate needs both cert= and key= (only {given}= is given); give both or neither"
)]
pub struct HalfClientCertificate {
    scheme: &'static str,
    given: &'static str,
}

/// Why the TLS options of a URL are refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsOptionError {
    #[error(transparent)]
    Option(#[from] UrlOptionError),
    #[error(transparent)]
    HalfClientCertificate(#[from] HalfClientCertificate),
}

impl TlsFiles {
    /// Takes `ca`, `cert` and `key` from `options`.
    pub(super) fn take(
        scheme: &'static str,
        options: &mut UrlQuery,
    ) -> Result<Self, TlsOptionError> {
        let ca = options.take(&CA)?;
        let client = match (options.take(&CERT)?, options.take(&KEY)?) {
            (Some(cert), Some(key)) => Some(ClientFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(HalfClientCertificate {
                    scheme,
                    given: "cert",
                }
                .into());
            }
            (None, Some(_)) => {
                return Err(HalfClientCertificate {
                    scheme,
                    given: "key",
                }
                .into());
            }
        };
        Ok(Self { ca, client })
    }

    /// The options as they are written back in a URL: `&ca=…&cert=…&key=…`.
    pub(super) fn options(&self) -> Vec<(&'static str, &Path)> {
        let mut shown = Vec::new();
        if let Some(ca) = &self.ca {
            shown.push(("ca", ca.as_path()));
        }
        if let Some(client) = &self.client {
            shown.push(("cert", client.cert.as_path()));
            shown.push(("key", client.key.as_path()));
        }
        shown
    }

    /// Reads the files, for the driver. The key's content is never shown in
    /// an error, only its path.
    pub(super) fn certificates(&self) -> Result<TlsCertificates, OpenFailure> {
        let root_cert = self.ca.as_deref().map(|ca| read(ca, "ca")).transpose()?;
        let client_tls = match &self.client {
            Some(client) => Some(ClientTlsConfig {
                client_cert: read(&client.cert, "cert")?,
                client_key: read(&client.key, "key")?,
            }),
            None => None,
        };
        Ok(TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

fn read(path: &Path, option: &str) -> Result<Vec<u8>, OpenFailure> {
    std::fs::read(path).map_err(|err| {
        OpenFailure::unusable_because(
            format!(
                "cannot read the file {} that {option}= in the Redis URL names; check the path and its permissions",
                path.display()
            ),
            err,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(query: &str) -> Result<TlsFiles, TlsOptionError> {
        let mut options = UrlQuery::parse("rediss", query);
        let files = TlsFiles::take("rediss", &mut options)?;
        options.finish()?;
        Ok(files)
    }

    #[test]
    fn a_client_certificate_comes_with_its_key() {
        assert_eq!(files("").unwrap(), TlsFiles::default());
        let both = files("ca=/etc/ca.pem&cert=/c.pem&key=/k.pem").unwrap();
        assert_eq!(both.ca.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(
            both.client,
            Some(ClientFiles {
                cert: "/c.pem".into(),
                key: "/k.pem".into()
            })
        );
        let err = files("cert=/c.pem").unwrap_err().to_string();
        assert!(err.contains("needs both cert= and key="), "{err}");
        let err = files("key=/k.pem").unwrap_err().to_string();
        assert!(err.contains("only key= is given"), "{err}");
        let err = files("ca=").unwrap_err().to_string();
        assert!(err.contains("ca must be the path of a PEM file"), "{err}");
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let missing = TlsFiles {
            ca: Some("/nonexistent/sessiond-ca.pem".into()),
            client: None,
        };
        let err = missing.certificates().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/sessiond-ca.pem"), "{err}");
        assert!(err.contains("ca="), "{err}");
    }
}
