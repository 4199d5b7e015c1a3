//! `sessiond-client`: web sessions for Rust apps, stored in sessiond, the
//! session-store server that Django and other languages share.
//!
//! - [`Client`]: one typed call per RPC of `sessiond.v1.SessionService`,
//!   over one or several servers, with timeouts, optional TLS and a bearer
//!   token.
//! - [`Session`]: a dictionary-like handle with the API and flag semantics
//!   of Django's `request.session` (`SessionBase`), loaded lazily and saved
//!   as a patch of the keys a request changed, so that concurrent requests
//!   of one user do not overwrite each other.
//! - [`Settings`]: Django's `SESSION_*` settings with Django's defaults.
//! - `SessionLayer` (feature `tower`) and an axum extractor (feature
//!   `axum`): the cookie handling of Django's `SessionMiddleware`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sessiond_client::{Backend, Client, Session, Settings};
//!
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//! let session = Session::new(Backend::Server(client), Arc::new(Settings::default()), None);
//! session.insert("cart", vec![1, 2, 3]).await?;
//! session.save().await?;
//! let key = session.session_key().expect("saved sessions have a key");
//! # let _ = key;
//! # Ok(()) }
//! ```
//!
//! Out of scope: rendering pages, authentication; the session only carries
//! what the app puts in it.

#![deny(missing_docs)]

#[cfg(feature = "axum")]
mod axum;
mod backend;
mod client;
mod error;
mod expiry;
#[cfg(feature = "tower")]
mod layer;
mod session;
mod settings;

/// Code generated from `proto/sessiond/v1/sessiond.proto`, for calls the
/// typed [`Client`] does not cover.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    tonic::include_proto!("sessiond.v1");
}

pub use backend::{Backend, SignedCookies, is_server_key};
pub use client::{
    BearerToken, Client, ClientBuilder, Created, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
    Loaded, Transport,
};
pub use error::{Error, SessionError};
pub use expiry::{EXPIRY_KEY, Expiry, ExpiryValue};
#[cfg(feature = "tower")]
pub use layer::{SessionLayer, SessionService};
pub use session::{ExpiryArgs, Session};
pub use sessiond_signing::ConfigError as SigningConfigError;
// The session-key rule shared with sessiond and its tools, which
// `is_server_key` applies.
pub use sessiond_signing::{SessionKey, SessionKeyError};
pub use settings::{DEFAULT_COOKIE_AGE, DEFAULT_COOKIE_NAME, SameSite, SaveMode, Settings};
