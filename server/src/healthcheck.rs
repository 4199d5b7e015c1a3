//! `sessiond healthcheck`: asks a running server's gRPC health service
//! whether it is serving, for container health checks that have no gRPC
//! probe of their own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
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
    /// How long to wait for the answer.
    pub timeout: std::time::Duration,
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
    #[error("cannot connect to sessiond at {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("sessiond at {url} did not answer the health check")]
    Call {
        url: String,
        #[source]
        source: tonic::Status,
    },
    #[error("sessiond at {url} answered {status:?}, not SERVING")]
    NotServing { url: String, status: ServingStatus },
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

/// Asks the overall health (service `""`) of the server `config` names.
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
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem))
            .domain_name(config.tls_name.clone());
        endpoint = endpoint.tls_config(tls).map_err(connect)?;
    }
    let channel = endpoint.connect().await.map_err(connect)?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|source| HealthcheckError::Call {
            url: url.clone(),
            source,
        })?;
    match answer.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        status => Err(HealthcheckError::NotServing { url, status }),
    }
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
