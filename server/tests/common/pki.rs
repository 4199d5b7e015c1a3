//! Certificates for TLS tests, made with rcgen, the one place that makes
//! them: a [`TestCa`] signs server certificates (for host names and IP
//! addresses, current or expired) and client certificates (by common
//! name), handed back as PEM text and written as files (keys readable by
//! the owner alone). [`make_pki`] is the usual set: one CA, a server
//! certificate for `localhost` and a client certificate.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A self-signed CA of a test.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From now on, for as long as rcgen's default.
    Current,
    /// During 2020 only: a certificate that expired long ago.
    Expired,
}

/// A certificate and its private key, as PEM text.
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

/// Where [`PemPair::write`] put a certificate and its key.
pub struct PemFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A CA whose common name is `name`.
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        Self { issuer }
    }

    /// The CA's certificate, as PEM text.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA's certificate to `dir/name`.
    pub fn write_ca(&self, dir: &Path, name: &str) -> PathBuf {
        write_public(dir, name, &self.ca_pem())
    }

    /// A server certificate for `names`: host names, or IP addresses (which
    /// rcgen turns into IP subject alternative names).
    pub fn server_cert(&self, names: &[&str], validity: Validity) -> PemPair {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if validity == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.sign(params)
    }

    /// A client certificate (for client authentication only) whose common
    /// name is `common_name`, which PostgreSQL takes as the user's name.
    pub fn client_cert(&self, common_name: &str) -> PemPair {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: rcgen::CertificateParams) -> PemPair {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

impl PemPair {
    /// Writes the certificate to `dir/NAME.pem` and the key to
    /// `dir/NAME-key.pem` (mode 0600).
    pub fn write(&self, dir: &Path, name: &str) -> PemFiles {
        PemFiles {
            cert: write_public(dir, &format!("{name}.pem"), &self.cert),
            key: write_private(dir, &format!("{name}-key.pem"), &self.key),
        }
    }
}

fn write_public(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes `text` to `dir/name`, readable by the owner alone, as a private
/// key must be.
pub fn write_private(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::io::Write;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    path
}

pub struct Pki {
    /// The CA's certificate, as a file and as PEM text.
    pub ca: PathBuf,
    pub ca_pem: String,
    /// The server's certificate (for `localhost`) and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The client's certificate (`app`, for client authentication) and
    /// key, as files and as PEM text.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

/// A CA and the certificates it signs, in `dir`: `ca.pem`, `server.pem`
/// (and `server-key.pem`), `client.pem` (and `client-key.pem`).
pub fn make_pki(dir: &Path) -> Pki {
    let ca = TestCa::new("sessiond test CA");
    let server = ca
        .server_cert(&["localhost"], Validity::Current)
        .write(dir, "server");
    let client = ca.client_cert("app");
    let client_files = client.write(dir, "client");
    Pki {
        ca: ca.write_ca(dir, "ca.pem"),
        ca_pem: ca.ca_pem(),
        server_cert: server.cert,
        server_key: server.key,
        client_cert: client_files.cert,
        client_key: client_files.key,
        client_cert_pem: client.cert,
        client_key_pem: client.key,
    }
}
