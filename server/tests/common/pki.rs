//! Certificates for TLS tests, made with rcgen: one test CA, a server
//! certificate for `localhost` and a client certificate, written as PEM
//! files into a temporary directory (keys readable by the owner alone).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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

/// A CA and the certificates it signs, in `dir`.
pub fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sessiond test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();

    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(vec!["app".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca).unwrap();

    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        ca_pem: ca.pem(),
        server_cert: write("server.pem", &server.pem()),
        server_key: write_private(dir, "server-key.pem", &server_key.serialize_pem()),
        client_cert: write("client.pem", &client.pem()),
        client_key: write_private(dir, "client-key.pem", &client_key.serialize_pem()),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}
