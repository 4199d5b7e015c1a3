//! TLS to a sessiond the bench starts with `--tls-cert` and `--tls-key`
//! (`--tls-ca`, `--tls-name`): for its start-up health check and for idle
//! connections. rustls on ring, as sessiond's own.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Certificate, ClientTlsConfig};

/// The certificates the bench trusts and the name it checks.
#[derive(Clone)]
pub struct TlsClient {
    ca_pem: Vec<u8>,
    name: ServerName<'static>,
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trusts the certificates of the PEM file `ca` (`--tls-ca`) for a
    /// server whose certificate carries `name` (`--tls-name`).
    pub fn load(ca: &Path, name: &str) -> anyhow::Result<Self> {
        let ca_pem =
            std::fs::read(ca).with_context(|| format!("cannot read --tls-ca {}", ca.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            let cert =
                cert.with_context(|| format!("--tls-ca {}: not a PEM certificate", ca.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("--tls-ca {}: not a usable CA", ca.display()))?;
        }
        if roots.is_empty() {
            bail!("--tls-ca {} holds no certificate", ca.display());
        }
        let name = ServerName::try_from(name.to_owned())
            .with_context(|| format!("--tls-name {name}: not a DNS name or IP address"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("rustls on ring offers no TLS version")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // As a gRPC client asks: sessiond speaks only HTTP/2.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            ca_pem,
            name,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The same trust for a tonic channel.
    pub fn tonic(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(self.name.to_str())
    }

    /// The TLS handshake on `tcp`.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), tcp).await
    }
}
