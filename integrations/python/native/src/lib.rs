//! `sessiond._native`: one gRPC channel to one sessiond address, on
//! runtimes of its own (see [`lanes`]), and a blocking unary call on it that
//! releases the GIL while it waits.
//!
//! It carries serialized protobuf messages both ways: `sessiond_client`
//! builds every request and reads every answer with the generated Python
//! messages, names the RPC, tries the next address and words the errors.
//! A failed call raises [`RpcFailure`] with the gRPC status code (an int)
//! and the status message, which the Python side turns into its own errors.

mod lanes;

use std::str::FromStr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

create_exception!(
    _native,
    RpcFailure,
    PyException,
    "A call that did not succeed: args are (gRPC status code as an int, status message)."
);

/// One channel to one address. Calls from several Python threads share it:
/// tonic multiplexes them over HTTP/2, reconnecting on the next call after
/// a connection is lost.
#[pyclass(frozen, module = "sessiond._native")]
struct Channel {
    // Always `Some`; taken only by `drop` in a child made by `fork`.
    lanes: Option<lanes::Lanes>,
    // The process that made the runtimes: only there do their threads exist.
    pid: u32,
    authorization: Option<AsciiMetadataValue>,
}

#[pymethods]
impl Channel {
    /// `address` is `host:port` (checked by the caller). PEM bytes: `ca`
    /// (None: the bundled Mozilla roots), `cert` and `key` for mutual TLS; TLS is
    /// on when `tls` is true. Durations are in seconds.
    #[new]
    #[pyo3(signature = (
        address, *, tls, ca=None, cert=None, key=None, server_name=None, token=None,
        connect_timeout, keepalive_time, keepalive_timeout
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        address: &str,
        tls: bool,
        ca: Option<&[u8]>,
        cert: Option<&[u8]>,
        key: Option<&[u8]>,
        server_name: Option<&str>,
        token: Option<&str>,
        connect_timeout: f64,
        keepalive_time: f64,
        keepalive_timeout: f64,
    ) -> PyResult<Self> {
        let scheme = if tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|err| PyValueError::new_err(format!("address {address:?}: {err}")))?
            .connect_timeout(seconds(connect_timeout, "connect_timeout")?)
            .http2_keep_alive_interval(seconds(keepalive_time, "keepalive_time")?)
            .keep_alive_timeout(seconds(keepalive_timeout, "keepalive_timeout")?)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if tls {
            endpoint = endpoint
                .tls_config(tls_config(ca, cert, key, server_name))
                .map_err(|err| PyValueError::new_err(format!("TLS settings: {err}")))?;
        }
        let authorization = token
            .map(|token| MetadataValue::from_str(&format!("Bearer {token}")))
            .transpose()
            // Never echo the token.
            .map_err(|_| PyValueError::new_err("the token cannot be sent as a header"))?;
        let lanes = lanes::Lanes::open(endpoint).map_err(|err| {
            PyRuntimeError::new_err(format!("cannot start the channel's runtime: {err}"))
        })?;
        Ok(Channel {
            lanes: Some(lanes),
            pid: std::process::id(),
            authorization,
        })
    }

    /// Sends `request` (a serialized message) to the method at `path`
    /// (`/sessiond.v1.SessionService/Load`) and returns the serialized
    /// answer. `timeout` (seconds) covers connecting too.
    fn call<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        request: &[u8],
        timeout: f64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let path = tonic::codegen::http::uri::PathAndQuery::from_str(path)
            .map_err(|err| PyValueError::new_err(format!("method path {path:?}: {err}")))?;
        let timeout = seconds(timeout, "timeout")?;
        let mut request = Request::new(Bytes::copy_from_slice(request));
        request.set_timeout(timeout);
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        let (Some(lanes), true) = (&self.lanes, self.pid == std::process::id()) else {
            return Err(PyValueError::new_err(
                "this channel was made before the process forked: open a new one",
            ));
        };
        let answer = py.detach(|| {
            lanes.run(|channel| async move {
                let call = async move {
                    // sessiond bounds what it stores (--max-data-bytes); the
                    // 4 MiB default here would refuse larger configured limits.
                    let mut grpc =
                        tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
                    grpc.ready()
                        .await
                        .map_err(|err| Status::unavailable(err.to_string()))?;
                    grpc.unary(request, path, RawCodec).await
                };
                match tokio::time::timeout(timeout, call).await {
                    Ok(answer) => answer,
                    Err(_) => Err(Status::deadline_exceeded("deadline exceeded")),
                }
            })
        });
        match answer {
            Ok(response) => Ok(PyBytes::new(py, response.get_ref())),
            Err(status) => Err(RpcFailure::new_err((
                i32::from(failure_code(&status)),
                failure_message(&status),
            ))),
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if self.pid == std::process::id() {
            // Stopping the keeper and the runtimes waits for their threads,
            // and for any name lookup under way: not with the GIL held,
            // unless the interpreter is shutting down (the closure, and the
            // lanes in it, are then dropped here).
            if let Some(lanes) = self.lanes.take() {
                Python::try_attach(|py| py.detach(|| drop(lanes)));
            }
        } else {
            // In a child made by fork the runtimes' threads are gone:
            // dropping a runtime would wait for them forever, and dropping
            // a channel would wake its tasks on that dead runtime, taking
            // locks a parent thread may have held at the fork. Leave them.
            std::mem::forget(self.lanes.take());
        }
    }
}

/// The code of a failure, as grpcio and grpc-js report it. A status that
/// sessiond sent has no error under it and keeps its code. tonic reports
/// the call's own deadline as CANCELLED ("Timeout expired"), where they say
/// DEADLINE_EXCEEDED; and a connection that broke under a call (reset,
/// closed, a TLS alert after the handshake, as a server that wants a client
/// certificate sends) as UNKNOWN, where they say UNAVAILABLE: the address
/// could not be used, so the client tries the next one.
fn failure_code(status: &Status) -> Code {
    let mut source = std::error::Error::source(status);
    let local = source.is_some();
    while let Some(cause) = source {
        if cause.is::<tonic::TimeoutExpired>() {
            return Code::DeadlineExceeded;
        }
        source = cause.source();
    }
    match status.code() {
        // Also CANCELLED: hyper's word for a request whose connection closed
        // before the answer (sessiond refusing what is not TLS, say). This
        // client cancels nothing itself but at its deadline, read above.
        Code::Unknown | Code::Cancelled if local => Code::Unavailable,
        code => code,
    }
}

/// What a failure says: the status message, and the transport error under
/// it when there is one ("error trying to connect: Connection refused").
fn failure_message(status: &Status) -> String {
    let mut message = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message = if message.is_empty() {
                cause_text
            } else {
                format!("{message}: {cause_text}")
            };
        }
        source = cause.source();
    }
    if message.is_empty() && status.code() == Code::Unavailable {
        message = "connection failed".to_owned();
    }
    message
}

fn tls_config(
    ca: Option<&[u8]>,
    cert: Option<&[u8]>,
    key: Option<&[u8]>,
    server_name: Option<&str>,
) -> ClientTlsConfig {
    let mut config = ClientTlsConfig::new();
    config = match ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
        None => config.with_webpki_roots(),
    };
    if let (Some(cert), Some(key)) = (cert, key) {
        config = config.identity(Identity::from_pem(cert, key));
    }
    if let Some(name) = server_name {
        config = config.domain_name(name);
    }
    config
}

fn seconds(value: f64, name: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| {
            PyValueError::new_err(format!("{name} must be a positive number of seconds"))
        })
}

/// Passes serialized messages through unchanged.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Channel>()?;
    module.add("RpcFailure", module.py().get_type::<RpcFailure>())?;
    Ok(())
}
