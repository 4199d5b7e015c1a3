//! TLS for the gRPC port, with rustls: the server's certificate and key
//! (`--tls-cert`, `--tls-key`), and optionally the CA whose client
//! certificates it requires (`--tls-client-ca`, mutual TLS).
//!
//! The files are read and checked at start-up, so that a wrong path or a
//! file of the wrong kind stops the server before it listens, naming the
//! flag; certificates are not reloaded while it runs.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {} ({flag})", path.display())]
    Read {
        path: PathBuf,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{} ({flag}) holds no {what} in PEM form; {hint}", path.display())]
    NotPem {
        path: PathBuf,
        flag: &'static str,
        what: &'static str,
        hint: &'static str,
    },
    #[error(
        "--tls-cert and --tls-key (SESSIOND_TLS_CERT, SESSIOND_TLS_KEY) go together; give both"
    )]
    Incomplete,
    #[error(
        "--tls-client-ca (SESSIOND_TLS_CLIENT_CA) needs --tls-cert and --tls-key: client certificates are checked inside TLS"
    )]
    ClientCaWithoutTls,
    #[error("the certificate and key cannot be used together (--tls-cert, --tls-key)")]
    Rejected(#[source] tonic::transport::Error),
}

/// The PEM files of the server's TLS settings; none means plain HTTP/2.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

/// TLS as configured: what the server hands to tonic, and what it tells
/// the operator.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: ServerTlsConfig,
    /// Clients must present a certificate signed by `--tls-client-ca`.
    pub client_certificates: bool,
}

impl TlsFiles {
    /// Reads and checks the files; `None` without `--tls-cert`.
    pub fn load(&self) -> Result<Option<Tls>, TlsError> {
        let (cert, key) = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) if self.client_ca.is_some() => return Err(TlsError::ClientCaWithoutTls),
            (None, None) => return Ok(None),
            _ => return Err(TlsError::Incomplete),
        };
        let cert_pem = read(cert, "--tls-cert, SESSIOND_TLS_CERT")?;
        check_certificates(&cert_pem, cert, "--tls-cert, SESSIOND_TLS_CERT")?;
        let key_pem = read(key, "--tls-key, SESSIOND_TLS_KEY")?;
        if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
            return Err(TlsError::NotPem {
                path: key.clone(),
                flag: "--tls-key, SESSIOND_TLS_KEY",
                what: "private key",
                hint: "give the key of the certificate (-----BEGIN PRIVATE KEY-----)",
            });
        }
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
        if let Some(ca) = &self.client_ca {
            let ca_pem = read(ca, "--tls-client-ca, SESSIOND_TLS_CLIENT_CA")?;
            check_certificates(&ca_pem, ca, "--tls-client-ca, SESSIOND_TLS_CLIENT_CA")?;
            config = config.client_ca_root(Certificate::from_pem(ca_pem));
        }
        // tonic builds the rustls configuration here, which is where a key
        // that does not belong to the certificate shows.
        tonic::transport::Server::builder()
            .tls_config(config.clone())
            .map_err(TlsError::Rejected)?;
        Ok(Some(Tls {
            config,
            client_certificates: self.client_ca.is_some(),
        }))
    }
}

fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        flag,
        source,
    })
}

fn check_certificates(pem: &[u8], path: &Path, flag: &'static str) -> Result<(), TlsError> {
    let mut certificates = CertificateDer::pem_slice_iter(pem);
    match certificates.next() {
        Some(Ok(_)) if certificates.all(|next| next.is_ok()) => Ok(()),
        _ => Err(TlsError::NotPem {
            path: path.to_owned(),
            flag,
            what: "certificate",
            hint: "give a PEM file (-----BEGIN CERTIFICATE-----), with the chain after the certificate",
        }),
    }
}
