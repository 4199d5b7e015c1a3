//! TLS for the gRPC port, with rustls: the server's certificate and key
//! (`--tls-cert`, `--tls-key`), and optionally the CA whose client
//! certificates it requires (`--tls-client-ca`, mutual TLS). sessiond
//! terminates TLS itself (see `server::connections`), so that a peer that
//! completes the handshake and then sends nothing is closed like one that
//! sends nothing at all. Client certificates are checked in the handshake;
//! calls do not see them (tonic's `Request::peer_certs` is empty), which
//! nothing in sessiond needs.
//!
//! The files are read and checked at start-up, so that a wrong path or a
//! file of the wrong kind stops the server before it listens, naming the
//! flag; certificates are not reloaded while it runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::permissions::warn_if_others_can_read;

/// The only application protocol the port speaks: gRPC clients ask for it.
const ALPN_H2: &[u8] = b"h2";

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
    Rejected(#[source] rustls::Error),
    #[error(
        "{} (--tls-client-ca, SESSIOND_TLS_CLIENT_CA) holds no certificate that can be a CA for client certificates",
        path.display()
    )]
    ClientCa {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}

/// The PEM files of the server's TLS settings; none means plain HTTP/2.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

/// TLS as configured: the acceptor for new connections, and what it tells
/// the operator.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// Clients must present a certificate signed by `--tls-client-ca`.
    pub client_certificates: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client_certificates", &self.client_certificates)
            .finish_non_exhaustive()
    }
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
        let chain = certificates(&cert_pem, cert, "--tls-cert, SESSIOND_TLS_CERT")?;
        let key_pem = read(key, "--tls-key, SESSIOND_TLS_KEY")?;
        warn_if_others_can_read(key, "the TLS private key (--tls-key)");
        let Ok(key) = PrivateKeyDer::from_pem_slice(&key_pem) else {
            return Err(TlsError::NotPem {
                path: key.clone(),
                flag: "--tls-key, SESSIOND_TLS_KEY",
                what: "private key",
                hint: "give the key of the certificate (-----BEGIN PRIVATE KEY-----)",
            });
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rejected)?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let ca_pem = read(ca, "--tls-client-ca, SESSIOND_TLS_CLIENT_CA")?;
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(certificates(
                    &ca_pem,
                    ca,
                    "--tls-client-ca, SESSIOND_TLS_CLIENT_CA",
                )?);
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|source| TlsError::ClientCa {
                            path: ca.clone(),
                            source,
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        // Where a key that does not belong to the certificate shows.
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(TlsError::Rejected)?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Some(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
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

/// The certificates of a PEM file, at least one, all of them valid PEM.
fn certificates(
    pem: &[u8],
    path: &Path,
    flag: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certificates {
        Ok(certificates) if !certificates.is_empty() => Ok(certificates),
        _ => Err(TlsError::NotPem {
            path: path.to_owned(),
            flag,
            what: "certificate",
            hint: "give a PEM file (-----BEGIN CERTIFICATE-----), with the chain after the certificate",
        }),
    }
}
