//! `GET /metrics` on a server's metrics address, over plain HTTP/1.1, and
//! the value of one series in what it returns.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The metrics text; fails the test unless the answer is 200.
pub async fn metrics_text(addr: SocketAddr) -> String {
    let response = metrics_response(addr, None).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The whole HTTP response to `GET /metrics`, with `authorization` if given.
pub async fn metrics_response(addr: SocketAddr, authorization: Option<&str>) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let authorization = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: sessiond\r\n{authorization}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    response
}

/// The value of `series` (name and labels, as written) in `text`; zero when
/// it is absent, as Prometheus reads a counter not yet created.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
