//! Malformed traffic on the gRPC port: random bytes, broken and oversized
//! HTTP/2 frames, huge metadata, undecodable and oversized gRPC messages, a
//! flood of broken streams, and connections that stall mid-frame.
//!
//! Each case runs on a fresh connection to a server of its own. It must end
//! in a closed connection or a clean error (GOAWAY, RST_STREAM, a gRPC
//! status) within a bound, never a hang; and afterwards the server must be
//! unharmed: no panic anywhere in it, still serving, health SERVING, and a
//! real Create and Load through the client work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use sessiond_client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long one exchange may take before it counts as a hang. A correct
/// server answers in milliseconds; this only has to outlast a slow CI host.
const BOUND: Duration = Duration::from_secs(20);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const LOAD: &str = "/sessiond.v1.SessionService/Load";

// Frame types and flags (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// The GOAWAY error code of a graceful close (RFC 9113 §7).
const NO_ERROR: u32 = 0x0;

// ---------------------------------------------------------------- harness

static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every panic raised outside the tests' own code, then reports it
/// as usual. A failed assertion in a test is not the server's panic; a
/// panic in a connection task or a handler is, even though tokio catches it
/// and the server carries on.
fn watch_for_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let tests_dir = Path::new(file!()).parent().unwrap().to_owned();
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tests = info
                .location()
                .is_some_and(|location| Path::new(location.file()).starts_with(&tests_dir));
            if !in_tests {
                SERVER_PANICS
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(info.to_string());
            }
            report(info);
        }));
    });
}

async fn start() -> TestServer {
    start_with(&[]).await
}

async fn start_with(args: &[&str]) -> TestServer {
    watch_for_panics();
    TestServer::start_with(args).await
}

/// `future`, or a failure naming `what` if it has not finished within BOUND.
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing happened within {BOUND:?}"))
}

/// The server survived: nothing panicked, the serving task runs, health
/// says SERVING and a session can be created and loaded on a new connection.
async fn assert_unharmed(server: &TestServer) {
    let panics = SERVER_PANICS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(panics.is_empty(), "the server panicked: {panics:#?}");
    assert!(!server.has_stopped(), "the server stopped serving");

    let url = format!("http://{}", server.addr);
    let status = within("health check", async {
        let channel = tonic::transport::Channel::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: "sessiond.v1.SessionService".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status()
    })
    .await;
    assert_eq!(status, ServingStatus::Serving);

    let data = r#"{"after":"malformed traffic"}"#;
    let loaded = within("create and load", async {
        let client = Client::connect(url.clone()).await.unwrap();
        let key = client.create(data, None).await.unwrap().session_key;
        client.load(&key).await.unwrap()
    })
    .await;
    assert_eq!(loaded.expect("the session just created").data, data);
}

async fn stop(server: TestServer) {
    within("graceful shutdown", server.stop()).await;
}

/// Reproducible noise: xorshift64* from `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

// ---------------------------------------------------------------- raw HTTP/2

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    frame_header(payload.len(), kind, flags, stream)
        .into_iter()
        .chain(payload.iter().copied())
        .collect()
}

fn frame_header(len: usize, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
    let len = u32::try_from(len).unwrap();
    assert!(len < 1 << 24);
    let mut header = len.to_be_bytes()[1..].to_vec();
    header.extend([kind, flags]);
    header.extend(stream.to_be_bytes());
    header
}

/// The preface and an empty SETTINGS frame: a client that has said hello.
fn hello() -> Vec<u8> {
    [PREFACE.to_vec(), frame(SETTINGS, 0, 0, &[])].concat()
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, n: u8, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(u8::try_from(value).unwrap());
        return;
    }
    out.push(u8::try_from(max).unwrap());
    let mut rest = value - max;
    while rest >= 128 {
        out.push(u8::try_from(rest % 128).unwrap() | 0x80);
        rest /= 128;
    }
    out.push(u8::try_from(rest).unwrap());
}

/// A header block of literals without indexing, no Huffman (RFC 7541 §6.2.2).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        hpack_int(&mut block, 7, name.len());
        block.extend(name.as_bytes());
        hpack_int(&mut block, 7, value.len());
        block.extend(value.as_bytes());
    }
    block
}

fn grpc_request_headers(path: &str) -> Vec<u8> {
    header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ])
}

/// A message as gRPC frames it: compression flag, big-endian length, bytes.
fn grpc_message(flag: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![flag];
    message.extend(u32::try_from(body.len()).unwrap().to_be_bytes());
    message.extend(body);
    message
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    payload: Vec<u8>,
}

/// What a raw connection received before the server closed it.
#[derive(Debug)]
struct Closed {
    frames: Vec<Frame>,
}

impl Closed {
    fn parse(mut bytes: &[u8]) -> Self {
        let mut frames = Vec::new();
        while bytes.len() >= 9 {
            let len =
                usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let Some(payload) = bytes.get(9..9 + len) else {
                break;
            };
            frames.push(Frame {
                kind: bytes[3],
                payload: payload.to_vec(),
            });
            bytes = &bytes[9 + len..];
        }
        Self { frames }
    }

    /// The error code of the GOAWAY the server sent, if it sent one.
    fn goaway(&self) -> Option<u32> {
        self.frames
            .iter()
            .find(|frame| frame.kind == GOAWAY)
            .and_then(|frame| frame.payload.get(4..8))
            .map(|code| u32::from_be_bytes(code.try_into().unwrap()))
    }
}

/// The server told the client to go away for an error, not a graceful close.
fn assert_goaway_error(closed: &Closed, case: &str) {
    assert!(
        closed.goaway().is_some_and(|code| code != NO_ERROR),
        "{case}: expected a GOAWAY with an error code, got {closed:?}"
    );
}

/// What to do after sending.
#[derive(Clone, Copy, Debug)]
enum Then {
    /// Keep the connection open: the server must close it by itself.
    Wait,
    /// Close our side: the server sees the end of the stream.
    Eof,
}

/// Sends `bytes` on a fresh connection and reads until the server closes
/// it, which it must do within BOUND.
async fn send_raw(addr: SocketAddr, case: &str, bytes: &[u8], then: Then) -> Closed {
    within(&format!("{case}, then {then:?}"), async {
        let mut connection = TcpStream::connect(addr).await.unwrap();
        // The server may close before it has read everything; a failed
        // write is part of the outcome, not a failure of the test.
        let _ = connection.write_all(bytes).await;
        if let Then::Eof = then {
            let _ = connection.shutdown().await;
        }
        let mut received = Vec::new();
        let mut buffer = [0u8; 16 * 1024];
        // A reset by the server ends the exchange as well as a clean close.
        while let Ok(n @ 1..) = connection.read(&mut buffer).await {
            received.extend_from_slice(&buffer[..n]);
        }
        Closed::parse(&received)
    })
    .await
}

// ---------------------------------------------------------------- h2 client

/// An HTTP/2 connection through the `h2` crate, which sends whatever
/// headers and bytes it is given.
async fn h2_connection(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    within("HTTP/2 handshake", async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (send, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        send
    })
    .await
}

/// How a gRPC call over raw HTTP/2 ended.
#[derive(Debug)]
struct Answer {
    http_status: u16,
    grpc_status: Option<Code>,
    grpc_message: String,
}

/// Posts `body` to `path` as a gRPC request with `extra` headers, ending
/// the stream after it if `end`, and reads the answer.
async fn grpc_call(
    addr: SocketAddr,
    path: &str,
    extra: &[(String, String)],
    body: Vec<u8>,
    end: bool,
) -> Result<Answer, h2::Error> {
    let send = h2_connection(addr).await;
    within(&format!("gRPC call to {path}"), async move {
        let mut request = http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in extra {
            request = request.header(name, value);
        }
        let mut send = send.ready().await?;
        let (response, mut stream) = send.send_request(request.body(()).unwrap(), false)?;
        // The server may refuse the stream before the body is sent (the
        // headers alone were too much); its answer says how.
        let _ = stream.send_data(Bytes::from(body), end);
        let response = response.await?;
        let http_status = response.status().as_u16();
        let (parts, mut body) = response.into_parts();
        // An error is "trailers-only": the status comes in the headers.
        let mut metadata = parts.headers;
        if !metadata.contains_key("grpc-status") {
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            metadata = body.trailers().await?.unwrap_or_default();
        }
        drop(stream);
        let grpc_status = metadata
            .get("grpc-status")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<i32>().ok())
            .map(Code::from);
        let grpc_message = metadata
            .get("grpc-message")
            .map(|value| {
                percent_encoding::percent_decode(value.as_bytes())
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        Ok(Answer {
            http_status,
            grpc_status,
            grpc_message,
        })
    })
    .await
}

// ---------------------------------------------------------------- cases

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_are_answered_by_closing_the_connection() {
    let server = start().await;
    for (seed, len) in [
        (1, 1),
        (2, 23),
        (3, 24),
        (4, 100),
        (5, 4096),
        (6, 64 * 1024),
    ] {
        let mut bytes = noise(seed, len);
        // Not a beginning of the preface, which the server would wait out.
        if bytes[0] == PREFACE[0] {
            bytes[0] ^= 0xff;
        }
        let case = format!("{len} random bytes (seed {seed})");
        send_raw(server.addr, &case, &bytes, Then::Wait).await;
    }
    // An HTTP/1.1 request is random bytes to an HTTP/2-only server.
    let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    send_raw(server.addr, "an HTTP/1.1 request", http1, Then::Wait).await;
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frames_end_with_the_connection() {
    let server = start().await;
    let headers = frame(HEADERS, END_HEADERS, 1, &grpc_request_headers(LOAD));
    let truncated: Vec<(&str, Vec<u8>)> = vec![
        ("half a preface", PREFACE[..12].to_vec()),
        ("the preface alone", PREFACE.to_vec()),
        (
            "five bytes of a frame header",
            [PREFACE, &frame(SETTINGS, 0, 0, &[])[..5]].concat(),
        ),
        (
            "half a HEADERS frame",
            [hello(), headers[..headers.len() / 2].to_vec()].concat(),
        ),
        (
            "half a DATA frame",
            [
                hello(),
                headers.clone(),
                frame(DATA, END_STREAM, 1, &grpc_message(0, b"\x0a\x08abcdefgh"))[..12].to_vec(),
            ]
            .concat(),
        ),
    ];
    for (case, bytes) in truncated {
        send_raw(server.addr, case, &bytes, Then::Eof).await;
    }
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_get_a_goaway_with_an_error() {
    let server = start().await;
    let request = grpc_request_headers(LOAD);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a DATA frame where SETTINGS must come first",
            [PREFACE.to_vec(), frame(DATA, 0, 1, b"hello")].concat(),
        ),
        (
            "SETTINGS of 5 bytes",
            [PREFACE.to_vec(), frame(SETTINGS, 0, 0, &[0; 5])].concat(),
        ),
        (
            "a PING of 7 bytes",
            [hello(), frame(PING, 0, 0, &[0; 7])].concat(),
        ),
        (
            "HEADERS on stream 0",
            [hello(), frame(HEADERS, END_HEADERS, 0, &request)].concat(),
        ),
        (
            "HEADERS on an even stream",
            [hello(), frame(HEADERS, END_HEADERS, 2, &request)].concat(),
        ),
        (
            "a header block that is not HPACK",
            [hello(), frame(HEADERS, END_HEADERS, 1, &[0xff; 32])].concat(),
        ),
        (
            "CONTINUATION without HEADERS",
            [hello(), frame(CONTINUATION, END_HEADERS, 1, &request)].concat(),
        ),
        (
            "a connection window past 2^31 - 1",
            [
                hello(),
                frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
                frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
            ]
            .concat(),
        ),
    ];
    for (case, bytes) in cases {
        let closed = send_raw(server.addr, case, &bytes, Then::Wait).await;
        assert_goaway_error(&closed, case);
    }
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_after_the_preface_never_hang_the_connection() {
    let server = start().await;
    for seed in 0..32 {
        let mut bytes = hello();
        bytes.extend(noise(seed, 512));
        let case = format!("512 random bytes after the preface (seed {seed})");
        send_raw(server.addr, &case, &bytes, Then::Eof).await;
    }
    // Well-formed frame headers of every type around random payloads.
    for kind in 0..=10u8 {
        let mut bytes = hello();
        for stream in 0..8u32 {
            let seed = u64::from(kind) << 8 | u64::from(stream);
            let payload = noise(seed, usize::from(kind) * 7);
            let flags = noise(seed, 1)[0];
            bytes.extend(frame(kind, flags, stream * 2 + 1, &payload));
        }
        let case = format!("frames of type {kind:#x} with random payloads");
        send_raw(server.addr, &case, &bytes, Then::Eof).await;
    }
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_announcing_a_huge_length_is_refused_without_waiting_for_it() {
    let server = start().await;
    for kind in [DATA, HEADERS, SETTINGS, CONTINUATION, 0xfa] {
        for len in [16 * 1024 + 1, (1 << 24) - 1] {
            let bytes = [hello(), frame_header(len, kind, 0, 1)].concat();
            let case = format!("a frame of type {kind:#x} announcing {len} bytes");
            let closed = send_raw(server.addr, &case, &bytes, Then::Wait).await;
            assert_goaway_error(&closed, &case);
        }
    }
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_continuation_frames_are_cut_off() {
    let server = start().await;
    let mut bytes = hello();
    bytes.extend(frame(HEADERS, 0, 1, &grpc_request_headers(LOAD)));
    let filler = header_block(&[("x-filler", &"a".repeat(1000))]);
    for _ in 0..200 {
        bytes.extend(frame(CONTINUATION, 0, 1, &filler));
    }
    let case = "200 CONTINUATION frames of 1 KB";
    let closed = send_raw(server.addr, case, &bytes, Then::Wait).await;
    assert_goaway_error(&closed, case);
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_streams_is_cut_off() {
    let server = start().await;
    // Each stream lacks :method, so the server resets it; a client that
    // makes it do so without end is told to go away.
    let malformed = header_block(&[(":path", "/"), (":scheme", "http")]);
    let mut bytes = hello();
    for stream in 0..4096u32 {
        bytes.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream * 2 + 1,
            &malformed,
        ));
    }
    let case = "4096 streams without :method";
    let closed = send_raw(server.addr, case, &bytes, Then::Wait).await;
    assert_goaway_error(&closed, case);
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_metadata_gets_a_clean_refusal() {
    let server = start().await;
    let one_mib_value = vec![("x-huge".to_owned(), "a".repeat(1 << 20))];
    let many_headers: Vec<(String, String)> = (0..10_000)
        .map(|i| (format!("x-header-{i}"), format!("value-{i}")))
        .collect();
    for (case, headers) in [
        ("a 1 MiB value", one_mib_value),
        ("10 000 headers", many_headers),
    ] {
        let body = grpc_message(0, b"\x0a\x08abcdefgh");
        match grpc_call(server.addr, LOAD, &headers, body, true).await {
            Ok(answer) => assert!(
                answer.http_status != 200
                    || answer.grpc_status.is_some_and(|code| code != Code::Ok),
                "{case}: {answer:?}"
            ),
            Err(err) => assert!(
                err.is_go_away() || err.is_reset() || err.is_io(),
                "{case}: {err:?}"
            ),
        }
    }
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_request_is_an_invalid_argument_naming_its_type() {
    let server = start().await;
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("a key that is not UTF-8", b"\x0a\x02\xff\xfe".to_vec()),
        ("a key longer than the message", b"\x0a\x10abc".to_vec()),
        ("wire type 7", b"\x0f".to_vec()),
        ("field 0", b"\x00\x01".to_vec()),
        ("a varint where a string belongs", b"\x08\x01".to_vec()),
        (
            "a varint of 11 bytes",
            [&b"\x10"[..], &[0xff; 10], &[0x01]].concat(),
        ),
        ("random bytes", noise(7, 64)),
    ];
    for (case, body) in &bodies {
        for (path, request) in [
            (LOAD, "sessiond.v1.LoadRequest"),
            (
                "/sessiond.v1.SessionService/Save",
                "sessiond.v1.SaveRequest",
            ),
        ] {
            let answer = grpc_call(server.addr, path, &[], grpc_message(0, body), true)
                .await
                .unwrap();
            assert_eq!(
                answer.grpc_status,
                Some(Code::InvalidArgument),
                "{case}: {answer:?}"
            );
            assert!(
                answer.grpc_message.starts_with("request:")
                    && answer.grpc_message.contains(request),
                "{case}: the message should name {request}: {answer:?}"
            );
        }
    }
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_grpc_framing_gets_a_clean_status() {
    let server = start().await;
    let key = b"\x0a\x08abcdefgh";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no message at all", Vec::new()),
        ("half a length prefix", vec![0, 0, 0]),
        (
            "a message shorter than its prefix",
            grpc_message(0, key)[..7].to_vec(),
        ),
        (
            "a compressed message without grpc-encoding",
            grpc_message(1, key),
        ),
        ("a compression flag of 2", grpc_message(2, key)),
    ];
    for (case, body) in cases {
        let answer = grpc_call(server.addr, LOAD, &[], body, true).await.unwrap();
        assert!(
            answer.grpc_status.is_some_and(|code| code != Code::Ok),
            "{case}: {answer:?}"
        );
    }
    // tonic answers the first of two messages to a unary call and ignores
    // the second; an answer is all that is asked of it here.
    let two = [grpc_message(0, key), grpc_message(0, key)].concat();
    let answer = grpc_call(server.addr, LOAD, &[], two, true).await.unwrap();
    assert!(answer.grpc_status.is_some(), "{answer:?}");

    let unknown = grpc_call(
        server.addr,
        "/sessiond.v1.SessionService/Nothing",
        &[],
        grpc_message(0, key),
        true,
    )
    .await
    .unwrap();
    assert_eq!(
        unknown.grpc_status,
        Some(Code::Unimplemented),
        "{unknown:?}"
    );
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_prefix_over_the_limit_is_refused_before_the_message_arrives() {
    let server = start_with(&["--max-data-bytes", "1000"]).await;
    for len in [1u32 << 20, u32::MAX] {
        // Only the prefix is sent, and the stream stays open: the answer
        // must come from the prefix alone.
        let mut prefix = vec![0];
        prefix.extend(len.to_be_bytes());
        let answer = grpc_call(server.addr, LOAD, &[], prefix, false)
            .await
            .unwrap();
        assert!(
            matches!(
                answer.grpc_status,
                Some(Code::OutOfRange | Code::ResourceExhausted)
            ),
            "{len}: {answer:?}"
        );
    }
    assert_unharmed(&server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_stalled_mid_frame_holds_up_no_one_and_can_be_dropped() {
    let server = start().await;
    let headers = frame(HEADERS, END_HEADERS, 1, &grpc_request_headers(LOAD));
    let stalls = [
        [
            hello(),
            headers.clone(),
            frame_header(100, DATA, 0, 1),
            vec![0; 10],
        ]
        .concat(),
        [
            hello(),
            frame_header(100, HEADERS, END_HEADERS, 3)[..4].to_vec(),
        ]
        .concat(),
        [
            hello(),
            headers.clone(),
            frame(DATA, 0, 1, &grpc_message(0, b"\x0a\x08abc")[..6]),
        ]
        .concat(),
    ];
    let mut stalled = Vec::new();
    for bytes in &stalls {
        let mut connection = within("connect", TcpStream::connect(server.addr))
            .await
            .unwrap();
        within("write", connection.write_all(bytes)).await.unwrap();
        stalled.push(connection);
    }
    // While they stall, everyone else is served.
    assert_unharmed(&server).await;
    drop(stalled);
    assert_unharmed(&server).await;
    stop(server).await;
}

/// The stalls above, once more, without the client ever giving up: the
/// server's keepalive ping goes unanswered and it closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stops_answering_is_closed_after_an_unanswered_ping() {
    let server = start_with(&["--keepalive", "300ms"]).await;
    let headers = frame(HEADERS, END_HEADERS, 1, &grpc_request_headers(LOAD));
    let stalls = [
        ("an idle connection", hello()),
        (
            "a DATA frame cut short",
            [hello(), headers, frame_header(100, DATA, 0, 1)].concat(),
        ),
        (
            "a frame header cut short",
            [
                hello(),
                frame_header(100, HEADERS, END_HEADERS, 3)[..4].to_vec(),
            ]
            .concat(),
        ),
    ];
    for (case, bytes) in &stalls {
        let closed = send_raw(server.addr, case, bytes, Then::Wait).await;
        assert!(
            closed.frames.iter().any(|frame| frame.kind == PING),
            "{case}: expected the server to ping before closing, got {closed:?}"
        );
    }
    assert_unharmed(&server).await;
    stop(server).await;
}

/// Before the HTTP/2 preface there is nothing to ping: a connection that
/// stays silent, or drips its opening bytes, is closed by the handshake
/// deadline instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_opens_is_closed_after_the_handshake_timeout() {
    let server = start_with(&["--handshake-timeout", "300ms"]).await;
    for (case, bytes) in [
        ("nothing at all", Vec::new()),
        ("half a preface", PREFACE[..10].to_vec()),
    ] {
        // Closed within BOUND, having said no more than its own SETTINGS.
        let closed = send_raw(server.addr, case, &bytes, Then::Wait).await;
        assert!(
            closed.frames.iter().all(|frame| frame.kind == SETTINGS),
            "{case}: {closed:?}"
        );
    }

    // A byte every 100 ms, for longer than BOUND if nothing stopped it.
    let dripped = within("a preface sent a byte at a time", async {
        let mut connection = TcpStream::connect(server.addr).await.unwrap();
        for byte in PREFACE.iter().cycle() {
            if connection.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buffer = [0u8; 1024];
            let read = tokio::time::timeout(Duration::ZERO, connection.read(&mut buffer)).await;
            if let Ok(Ok(0) | Err(_)) = read {
                return;
            }
        }
    });
    dripped.await;

    assert_unharmed(&server).await;
    stop(server).await;
}

/// A call whose request body never ends is answered DEADLINE_EXCEEDED at
/// `--request-timeout`, and gives its slot of `--max-in-flight` back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_never_ends_is_cut_off_and_frees_its_slot() {
    let server = start_with(&["--max-in-flight", "1", "--request-timeout", "3s"]).await;
    let addr = server.addr;
    // The probes below take the only slot now and then; a stalled call that
    // arrives during one is refused at once, and is sent again.
    let answer = within("the stalled call's answer", async {
        loop {
            // A Load message announcing more bytes than are ever sent, on a
            // stream left open.
            let mut partial = grpc_message(0, &[0x0a; 64]);
            partial.truncate(16);
            let mut stalled = tokio::spawn(async move {
                grpc_call(
                    addr,
                    "/sessiond.v1.SessionService/Load",
                    &[],
                    partial,
                    false,
                )
                .await
            });
            // While it holds the only slot, other calls are refused.
            let mut refused = false;
            let answer = loop {
                tokio::select! {
                    answer = &mut stalled => break answer.unwrap().unwrap(),
                    result = server.client.exists("abcdefgh") => {
                        if result.is_err_and(|err| err.code() == Some(Code::ResourceExhausted)) {
                            refused = true;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            if answer.grpc_status != Some(Code::ResourceExhausted) {
                assert!(refused, "the stalled call never held the slot: {answer:?}");
                return answer;
            }
        }
    })
    .await;
    assert_eq!(
        answer.grpc_status,
        Some(Code::DeadlineExceeded),
        "{answer:?}"
    );
    assert!(
        answer.grpc_message.contains("--request-timeout"),
        "{answer:?}"
    );
    assert_unharmed(&server).await;
    stop(server).await;
}

/// A client that never reads its answer (it leaves its HTTP/2 window at
/// zero) holds its own connection, not a slot of `--max-in-flight`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answer_holds_no_slot() {
    let server = start_with(&["--max-in-flight", "1", "--drain-timeout", "1s"]).await;
    let key = server
        .client
        .create(r#"{"a":1}"#, None)
        .await
        .unwrap()
        .session_key;
    let addr = server.addr;
    let (send, _stream) = within("HTTP/2 handshake with a zero window", async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, Bytes>(tcp)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = http::Request::post(format!("http://{addr}/sessiond.v1.SessionService/Load"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut send = send.ready().await.unwrap();
        let (response, mut stream) = send.send_request(request, false).unwrap();
        // LoadRequest { session_key: key }: field 1, length-delimited.
        let mut message = vec![0x0a, u8::try_from(key.len()).unwrap()];
        message.extend_from_slice(key.as_bytes());
        stream
            .send_data(Bytes::from(grpc_message(0, &message)), true)
            .unwrap();
        // The answer's headers come; its data never can.
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        (send, response)
    })
    .await;
    // The answer is ready, so its slot is free for everyone else.
    within("a call past the unread answer", async {
        server.client.load(&key).await.unwrap().unwrap();
    })
    .await;
    drop(send);
    assert_unharmed(&server).await;
    stop(server).await;
}
