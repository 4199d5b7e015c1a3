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
//! - [`Settings`]: Django's `SESSION_*` settings with Django's defaults,
//!   as a struct or through [`Settings::builder`].
//! - [`SessionCookies`]: the cookie handling of Django's `SessionMiddleware`
//!   as two framework-neutral steps (read the session from a request's
//!   `Cookie` header; save it and get the `Set-Cookie` and `Vary` headers
//!   for the response's status), for actix-web, Rocket or any server.
//! - `SessionLayer` (feature `tower`): those steps as a tower middleware;
//!   and (feature `axum`) the `Session` extractor, and `SessionError` as a
//!   response so that handlers can use `?`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sessiond_client::{Backend, Client, Session, Settings};
//!
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//! let session = Session::new(Backend::Server(client), Settings::default(), None);
//! session.insert("cart", vec![1, 2, 3]).await?;
//! session.save().await?;
//! let key = session.session_key().ok_or("a saved session has a key")?;
//! # let _ = key;
//! # Ok(()) }
//! ```
//!
//! # Why session calls are async
//!
//! A session loads lazily, as Django's does: nothing is read until the
//! handler first uses it, so a request that never does costs no call to
//! sessiond. Any method that reads or writes the data may be that first
//! use, so each is `async` and returns a `Result`. What only looks at the
//! handle (`session_key`, `accessed`, `modified`, `is_empty`, `clear`,
//! `settings`) is not. The [`Session`] documentation has the full list.
//!
//! # Features
//!
//! - `tower`: `SessionLayer`, for any tower-based framework.
//! - `axum`: `tower`, plus [`Session`] as an axum extractor and
//!   [`SessionError`] as an axum response, so that handlers use `?`.
//! - `tls`: TLS and client certificates for the connection to sessiond
//!   (`ClientBuilder::tls`).
//!
//! None is on by default; the docs on docs.rs show them all, each item
//! marked with the feature it needs.
//!
//! Times are [`chrono`] types, re-exported here so that an app needs no
//! dependency of its own to write an expiry; durations are
//! [`std::time::Duration`].
//!
//! Out of scope: rendering pages, authentication; the session only carries
//! what the app puts in it.

#![deny(missing_docs)]
// docs.rs builds with `--cfg docsrs` (see Cargo.toml), to mark what needs
// a feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod axum;
mod backend;
mod client;
mod cookies;
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
pub use cookies::{INTERRUPTED_BODY, RequestSession, SessionCookies, SessionHeaders};
pub use error::{ConnectError, Error, SessionError, code_name};
pub use expiry::{EXPIRY_KEY, Expiry, ExpiryValue};
#[cfg(feature = "tower")]
pub use layer::{SessionLayer, SessionService};
pub use session::{ExpiryArgs, Session};
pub use sessiond_signing::ConfigError as SigningConfigError;
// The session-key rule shared with sessiond and its tools, which
// `is_server_key` applies.
pub use sessiond_signing::{SessionKey, SessionKeyError};
pub use settings::{
    DEFAULT_COOKIE_AGE, DEFAULT_COOKIE_NAME, SameSite, SaveMode, Settings, SettingsBuilder,
};

/// The `chrono` version this crate's times are written in
/// ([`Expiry::At`], [`Session::get_expiry_date`], [`ExpiryArgs`]), so that
/// an app uses them without a `chrono` dependency of its own (or with one
/// of another version).
///
/// ```
/// use sessiond_client::Expiry;
/// use sessiond_client::chrono::{TimeDelta, Utc};
///
/// let expiry = Expiry::At((Utc::now() + TimeDelta::hours(8)).fixed_offset());
/// # let _ = expiry;
/// ```
pub use chrono;
