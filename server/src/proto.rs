//! The wire contract: the code generated from
//! `proto/sessiond/v1/sessiond.proto` (by `build.rs`), and the codec the
//! generated service decodes requests with.

mod request_codec;

pub use generated::*;
pub use request_codec::RequestCodec;

use crate::method::Method;

/// Code generated from `proto/sessiond/v1/sessiond.proto`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
mod generated {
    tonic::include_proto!("sessiond.v1");

    /// The encoded descriptors of the proto files, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/sessiond_descriptor.bin"));
}

/// A request message of one RPC: every RPC takes a message of its own.
pub trait RpcRequest {
    const METHOD: Method;
}

macro_rules! rpc_requests {
    ($($message:ident => $method:ident,)+) => {
        $(impl RpcRequest for $message {
            const METHOD: Method = Method::$method;
        })+
    };
}

rpc_requests! {
    LoadRequest => Load,
    ExistsRequest => Exists,
    CreateRequest => Create,
    SaveRequest => Save,
    DeleteRequest => Delete,
    CycleKeyRequest => CycleKey,
    PatchRequest => Patch,
    ClearExpiredRequest => ClearExpired,
}
