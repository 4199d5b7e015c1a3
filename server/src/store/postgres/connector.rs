//! The TLS settings in force turned into what tokio-postgres uses: the
//! files read and checked at start-up (an error names the option or
//! variable that gave the file), and rustls's client configuration with
//! the certificate check each `sslmode` asks for.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_postgres::config::SslMode as DriverMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::{Given, PgTlsError, RootCert, SslMode, TlsSettings};
use super::verify::{ChainOnly, EncryptOnly};
use crate::permissions::warn_if_others_can_read;

/// TLS ready for the driver: the mode it applies and the connector it uses.
pub(super) struct Tls {
    pub driver_mode: DriverMode,
    pub connector: MakeRustlsConnect,
}

impl TlsSettings {
    /// Reads the files and builds the connector; under `disable` the
    /// connector is never used.
    pub(super) fn load(&self) -> Result<Tls, PgTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(PgTlsError::Rustls)?;
        let roots = match &self.root_cert {
            Some(root) if self.mode.value != SslMode::Disable => Some(load_roots(root)?),
            _ => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match roots {
            None => Arc::new(EncryptOnly::new(provider)),
            Some(roots) => {
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|source| PgTlsError::Roots {
                        root: self.root_cert.clone(),
                        source,
                    })?;
                if self.mode.value == SslMode::VerifyFull {
                    webpki
                } else {
                    // libpq's require and prefer with a root certificate
                    // check the chain as verify-ca does.
                    Arc::new(ChainOnly::new(webpki))
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let key = private_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(PgTlsError::ClientCert)?
            }
        };
        let driver_mode = match self.mode.value {
            SslMode::Disable => DriverMode::Disable,
            SslMode::Prefer => DriverMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverMode::Require,
        };
        Ok(Tls {
            driver_mode,
            connector: MakeRustlsConnect::new(config),
        })
    }
}

fn load_roots(root: &Given<RootCert>) -> Result<RootCertStore, PgTlsError> {
    let mut roots = RootCertStore::empty();
    match &root.value {
        RootCert::File(path) => {
            let given = Given {
                value: path.clone(),
                source: root.source,
            };
            roots.add_parsable_certificates(certificates(&given)?);
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(PgTlsError::NoSystemRoots(found.errors.into_iter().next()));
            }
        }
    }
    Ok(roots)
}

fn read(file: &Given<PathBuf>) -> Result<Vec<u8>, PgTlsError> {
    std::fs::read(&file.value).map_err(|source| PgTlsError::Read {
        path: file.value.clone(),
        source_of: file.source,
        source,
    })
}

/// The certificates of a PEM file: at least one, all valid.
fn certificates(file: &Given<PathBuf>) -> Result<Vec<CertificateDer<'static>>, PgTlsError> {
    let pem = read(file)?;
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certificates) if !certificates.is_empty() => Ok(certificates),
        _ => Err(PgTlsError::NotPem {
            path: file.value.clone(),
            source_of: file.source,
            what: "certificate",
            hint: "give a PEM file (-----BEGIN CERTIFICATE-----)",
        }),
    }
}

fn private_key(file: &Given<PathBuf>) -> Result<PrivateKeyDer<'static>, PgTlsError> {
    let pem = read(file)?;
    warn_if_others_can_read(&file.value, "the PostgreSQL client key (sslkey)");
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| PgTlsError::NotPem {
        path: file.value.clone(),
        source_of: file.source,
        what: "private key",
        hint: "give the unencrypted key of sslcert (-----BEGIN PRIVATE KEY-----)",
    })
}
