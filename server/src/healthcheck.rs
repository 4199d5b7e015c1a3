//! `sessiond healthcheck`: asks a running server's gRPC health service
//! whether it is serving, for container health checks that have no gRPC
//! probe of their own: the overall status (`""`, alive until shutdown) for
//! liveness, or `sessiond.v1.SessionService` (SERVING only while the store
//! answers) for readiness.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Which server to ask, and how.
#[derive(Debug, Clone)]
pub struct HealthcheckConfig {
    /// The address the server listens on; an unspecified address
    /// (`0.0.0.0`, `[::]`) is reached on loopback.
    pub listen: SocketAddr,
    /// Connect with TLS, trusting this CA certificate (PEM).
    pub tls_ca: Option<std::path::PathBuf>,
    /// With `tls_ca`: the name the server's certificate must carry.
    pub tls_name: String,
    /// With `tls_ca`: a client certificate and its key (PEM files), for a
    /// server that requires them (mutual TLS).
    pub tls_client: Option<ClientCertificate>,
    /// The service whose health is asked; `""` is the server as a whole.
    pub service: String,
    /// How long to wait for the answer.
    pub timeout: std::time::Duration,
}

/// A client certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Why the server is not healthy, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("cannot read the CA certificate {} (--tls-ca, SESSIOND_HEALTHCHECK_TLS_CA)", .path.display())]
    ReadCa {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the client certificate {} (--tls-cert, SESSIOND_HEALTHCHECK_TLS_CERT)", .path.display())]
    ReadCert {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the client certificate's key {} (--tls-key, SESSIOND_HEALTHCHECK_TLS_KEY)", .path.display())]
    ReadKey {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to sessiond at {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("sessiond at {url} did not answer the health check of {}", shown(.service))]
    Call {
        url: String,
        service: String,
        #[source]
        source: tonic::Status,
    },
    #[error("sessiond at {url} answered {status:?} for {}, not SERVING", shown(.service))]
    NotServing {
        url: String,
        service: String,
        status: ServingStatus,
    },
}

/// A service name as messages show it: the empty name is the server.
fn shown(service: &str) -> String {
    if service.is_empty() {
        "the server as a whole (\"\")".to_owned()
    } else {
        service.to_owned()
    }
}

/// Where to reach a server listening on `listen`: an unspecified address
/// (all interfaces) is reached on loopback.
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// Asks the health of `config.service` (`""`: overall) of the server
/// `config` names.
pub async fn check(config: &HealthcheckConfig) -> Result<(), HealthcheckError> {
    let addr = reachable(config.listen);
    let scheme = if config.tls_ca.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}");
    let connect = |source| HealthcheckError::Connect {
        url: url.clone(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(connect)?
        .connect_timeout(config.timeout)
        .timeout(config.timeout);
    if let Some(path) = &config.tls_ca {
        let pem = std::fs::read(path).map_err(|source| HealthcheckError::ReadCa {
            path: path.clone(),
            source,
        })?;
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem))
            .domain_name(config.tls_name.clone());
        if let Some(client) = &config.tls_client {
            tls = tls.identity(read_identity(client)?);
        }
        endpoint = endpoint.tls_config(tls).map_err(connect)?;
    }
    let channel = endpoint.connect().await.map_err(connect)?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: config.service.clone(),
        })
        .await
        .map_err(|source| HealthcheckError::Call {
            url: url.clone(),
            service: config.service.clone(),
            source,
        })?;
    match answer.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        status => Err(HealthcheckError::NotServing {
            url,
            service: config.service.clone(),
            status,
        }),
    }
}

/// The client certificate and key, read.
fn read_identity(client: &ClientCertificate) -> Result<Identity, HealthcheckError> {
    let cert = std::fs::read(&client.cert).map_err(|source| HealthcheckError::ReadCert {
        path: client.cert.clone(),
        source,
    })?;
    let key = std::fs::read(&client.key).map_err(|source| HealthcheckError::ReadKey {
        path: client.key.clone(),
        source,
    })?;
    Ok(Identity::from_pem(cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_interfaces_are_reached_on_loopback() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert_eq!(reachable(addr("0.0.0.0:50051")), addr("127.0.0.1:50051"));
        assert_eq!(reachable(addr("[::]:50051")), addr("[::1]:50051"));
        assert_eq!(reachable(addr("10.1.2.3:7")), addr("10.1.2.3:7"));
    }
}
