//! `sessiond_native.node`: one gRPC channel to one sessiond address, on
//! napi's Tokio runtime, and a unary call on it that JavaScript awaits.
//!
//! It carries serialized protobuf messages both ways: `src/client.js`
//! builds every request and reads every answer with the proto's own
//! serializers, names the RPC, tries the next address and words the errors.
//! A call always resolves, to `{ code, details, message }`: `code` 0 with
//! the serialized answer, or the gRPC status code and message of a failure,
//! which the JavaScript side turns into its own errors.

use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use napi::bindgen_prelude::{Buffer, within_runtime_if_available};
use napi_derive::napi;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

/// How a channel connects: TLS (PEM), token, and the timings in milliseconds.
#[napi(object)]
pub struct ChannelOptions {
    pub tls: bool,
    pub ca: Option<Buffer>,
    pub cert: Option<Buffer>,
    pub key: Option<Buffer>,
    pub server_name: Option<String>,
    pub token: Option<String>,
    pub connect_timeout_ms: f64,
    pub keepalive_time_ms: f64,
    pub keepalive_timeout_ms: f64,
}

/// The outcome of a call: `code` 0 and the serialized answer in `message`,
/// or a gRPC status code and its message in `details`.
#[napi(object)]
pub struct Answer {
    pub code: u32,
    pub details: String,
    pub message: Option<Buffer>,
}

/// One channel to one address. Calls share it: tonic multiplexes them over
/// one HTTP/2 connection, reconnecting on the next call after the
/// connection is lost, and keeps it alive between calls (pings) on napi's
/// runtime threads.
#[napi]
pub struct Channel {
    // `None` once closed: dropping the last clone closes the connection
    // (calls in flight hold their own), where garbage collection of the
    // JavaScript object might never come.
    channel: Mutex<Option<tonic::transport::Channel>>,
    authorization: Option<AsciiMetadataValue>,
}

#[napi]
impl Channel {
    /// `address` is `host:port` (checked by the caller).
    #[napi(constructor)]
    pub fn new(address: String, options: ChannelOptions) -> napi::Result<Self> {
        let scheme = if options.tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|err| invalid(format!("address {address:?}: {err}")))?
            .connect_timeout(millis(options.connect_timeout_ms, "connectTimeoutMs")?)
            .http2_keep_alive_interval(millis(options.keepalive_time_ms, "keepaliveTimeMs")?)
            .keep_alive_timeout(millis(options.keepalive_timeout_ms, "keepaliveTimeoutMs")?)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if options.tls {
            endpoint = endpoint
                .tls_config(tls_config(&options))
                .map_err(|err| invalid(format!("TLS settings: {err}")))?;
        }
        let authorization = options
            .token
            .map(|token| MetadataValue::from_str(&format!("Bearer {token}")))
            .transpose()
            // Never echo the token.
            .map_err(|_| invalid("the token cannot be sent as a header".to_owned()))?;
        // Connects on the first call; a lost connection is reopened by the
        // next call, at once (no back-off to wait out).
        let channel = within_runtime_if_available(|| endpoint.connect_lazy());
        Ok(Channel {
            channel: Mutex::new(Some(channel)),
            authorization,
        })
    }

    /// Closes the channel: its connection ends once the calls in flight have
    /// answered, and later calls fail with UNAVAILABLE.
    #[napi]
    pub fn close(&self) {
        self.channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Sends `request` (a serialized message) to the method at `path`
    /// (`/sessiond.v1.SessionService/Load`). `timeout_ms` covers connecting
    /// too.
    #[napi]
    pub async fn call(
        &self,
        path: String,
        request: Buffer,
        timeout_ms: f64,
    ) -> napi::Result<Answer> {
        let path = PathAndQuery::from_str(&path)
            .map_err(|err| invalid(format!("method path {path:?}: {err}")))?;
        let timeout = millis(timeout_ms, "timeoutMs")?;
        let mut request = Request::new(Bytes::copy_from_slice(&request));
        request.set_timeout(timeout);
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(channel) = channel else {
            return Ok(Answer {
                code: u32::try_from(i32::from(Code::Unavailable)).unwrap_or(14),
                details: "the client was closed".to_owned(),
                message: None,
            });
        };
        // sessiond bounds what it stores (--max-data-bytes); the 4 MiB
        // default here would refuse larger configured limits.
        let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
        let call = async move {
            grpc.ready()
                .await
                .map_err(|err| Status::unavailable(err.to_string()))?;
            grpc.unary(request, path, RawCodec).await
        };
        let answer = match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(Status::deadline_exceeded("deadline exceeded")),
        };
        Ok(match answer {
            Ok(response) => Answer {
                code: 0,
                details: String::new(),
                message: Some(Buffer::from(response.into_inner().to_vec())),
            },
            Err(status) => Answer {
                code: u32::try_from(i32::from(failure_code(&status))).unwrap_or(2),
                details: failure_message(&status),
                message: None,
            },
        })
    }
}

fn invalid(reason: String) -> napi::Error {
    napi::Error::new(napi::Status::InvalidArg, reason)
}

/// The code of a failure, as grpc-js reports it. A status that sessiond
/// sent has no error under it and keeps its code. tonic reports the call's
/// own deadline as CANCELLED ("Timeout expired"), where grpc-js says
/// DEADLINE_EXCEEDED; and a connection that broke under a call (reset,
/// closed, a TLS alert after the handshake, as a server that wants a client
/// certificate sends) as UNKNOWN, where grpc-js says UNAVAILABLE: the
/// address could not be used, so the client tries the next one.
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

fn tls_config(options: &ChannelOptions) -> ClientTlsConfig {
    let mut config = ClientTlsConfig::new();
    config = match &options.ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(&ca[..])),
        None => config.with_webpki_roots(),
    };
    if let (Some(cert), Some(key)) = (&options.cert, &options.key) {
        config = config.identity(Identity::from_pem(&cert[..], &key[..]));
    }
    if let Some(name) = &options.server_name {
        config = config.domain_name(name);
    }
    config
}

fn millis(value: f64, name: &str) -> napi::Result<Duration> {
    Duration::try_from_secs_f64(value / 1000.0)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| invalid(format!("{name} must be a positive number of milliseconds")))
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
