//! The protobuf codec of `SessionService`: tonic's prost codec, except for
//! what a request that does not decode is answered with.

use std::marker::PhantomData;

use prost::{Message, Name};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use super::RpcRequest;
use crate::error::{Classified, ErrorKind, to_status};

/// A request body that is not the message its RPC takes.
#[derive(Debug, thiserror::Error)]
#[error(
    "request: is not a valid {request} message; generate the client from the server's sessiond.proto"
)]
struct Undecodable {
    request: String,
    #[source]
    source: prost::DecodeError,
}

impl Classified for Undecodable {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

/// Encodes responses and decodes requests as `tonic_prost::ProstCodec`
/// does, but a request body that is not a valid message is
/// INVALID_ARGUMENT naming the message type. tonic (like the gRPC core
/// libraries) answers INTERNAL, which in sessiond's contract is a server
/// fault to look up in the log; bytes a client sent that are not its
/// request are the client's error.
#[derive(Debug)]
pub struct RequestCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + RpcRequest + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder(PhantomData)
    }
}

/// Decodes one request message of type `U`.
#[derive(Debug)]
pub struct RequestDecoder<U>(PhantomData<U>);

impl<U: Message + Name + RpcRequest + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|source| {
            let err = Undecodable {
                request: U::full_name(),
                source,
            };
            to_status(&err, U::METHOD)
        })
    }
}
