//! sessiond: a session-store server. It owns a Django-compatible
//! `django_session` table and serves it over gRPC
//! (`sessiond.v1.SessionService`), so that web apps in any language, Django
//! included, share one store of logged-in sessions.
//!
//! # Embedding
//!
//! The `sessiond` binary is a thin command line over this library: a Rust
//! program can run the same server with a [`ServerConfig`] of its own.
//!
//! ```
//! use sessiond::{Server, ServerConfig, store::StoreConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ServerConfig {
//!     store: StoreConfig::new("memory://".parse()?),
//!     ..ServerConfig::default()
//! };
//! let server = Server::open(config).await?;
//! let listener = sessiond::bind("127.0.0.1:0".parse()?)?;
//! // Serves until the future completes (here at once; a real program
//! // passes a signal), then shuts down in order.
//! server.serve(listener, async {}).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! Imports point down: `main` → [`cli`] → [`Server`] → [`service`] →
//! [`store`] and [`codec`] → [`session`], [`error`].
//!
//! - [`service`] turns a gRPC request into domain types ([`session`]):
//!   validated keys, JSON-object data within the size limit, expiry dates.
//!   It is the only place that validates input; [`error::to_status`] is the
//!   only place that builds a gRPC status from an error.
//! - [`codec`] turns session data into the stored `session_data` text:
//!   plain JSON, or signed byte for byte as Django signs it.
//! - [`store`] holds the engines behind one trait, with Django's database
//!   semantics: SQLite (the embedded default), PostgreSQL (shared by
//!   stateless replicas), Redis, files, memory, and a cache in front of a
//!   database (Django's `cached_db`); each is one folder on a shared kit.
//!
//! Around them, [`Server`] wires the health and reflection services (the
//! session service's health follows a background ping of the store), the
//! background purge and an ordered shutdown: health NOT_SERVING, stop
//! accepting, drain in-flight calls, stop the purge, close the engine.
//! Before a call reaches [`service`], it is counted and limited (`calls`:
//! past the in-flight limit it is refused rather than queued), checked for
//! a bearer token ([`auth`]) and, on the wire, for TLS and client
//! certificates ([`tls`]); [`metrics`] counts what happened, for
//! Prometheus. A server refuses to listen beyond loopback without tokens or
//! TLS unless told to.
//!
//! Out of scope here: the session cookie and the dictionary-like handle,
//! which live in the client (`sessiond-client`).

pub mod auth;
mod batched_writes;
mod before_sleep;
mod calls;
pub mod cli;
pub mod codec;
pub mod config;
mod due_once;
pub mod error;
mod handshake;
pub mod healthcheck;
mod log_throttle;
pub mod method;
pub mod metrics;
mod permissions;
pub mod proto;
mod purge;
pub mod secret;
mod server;
pub mod service;
pub mod session;
pub mod signals;
mod socket_reads;
mod split_turns;
pub mod store;
pub mod tls;

pub use config::ServerConfig;
pub use server::{LISTEN_BACKLOG, ServeError, Server, StartError, Unauthenticated, bind};
