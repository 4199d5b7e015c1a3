//! `sessiond-signing`: the formats of Django's session table shared by
//! sessiond, its clients and its tools: the `session_data` column, encoded
//! and verified in Rust exactly as Django 4.0–6.1 do it, and the
//! `session_key` column's rule ([`SessionKey`]).
//!
//! A session dictionary is stored as `signing.dumps(session, salt=…,
//! compress=True)`: JSON as Python writes it, zlib-compressed when that
//! helps, URL-safe base64, a base62 timestamp and an HMAC-SHA256 signature
//! keyed by `SHA256(salt + "signer" + SECRET_KEY)`:
//!
//! ```text
//! [.]payload:timestamp:signature
//! ```
//!
//! - [`Signer`] holds `SECRET_KEY`, `SECRET_KEY_FALLBACKS` and the store's
//!   salt ([`DEFAULT_SALT`] for the db, cached_db, cache and file stores,
//!   [`SIGNED_COOKIES_SALT`] for the cookie engine). [`Signer::dumps_json`]
//!   is byte-identical to Django, compressed payloads included;
//!   [`Signer::loads_json`] verifies in constant time, then decodes. Both
//!   take and give the session dictionary as JSON text;
//!   [`Signer::dumps`] and [`Signer::loads`] do the same with a
//!   `serde_json::Map`.
//! - [`django_json_from_str`] and [`django_json`] are Python's
//!   `json.dumps(…, separators=(",", ":"))` with `ensure_ascii`, the text
//!   that is compressed and signed.
//! - [`base62_encode`] and [`base62_decode`] are Django's `b62_encode` and
//!   `b62_decode`.
//! - [`SessionKey`] is a key checked once against the rule every part of
//!   sessiond applies (8 to 40 characters of `[a-z0-9]`), or, with the
//!   `generate` feature, drawn as Django draws them.
//!
//! The main trade-off: byte-identity with Django needs C zlib (built from
//! the source bundled in `libz-sys`), because Rust deflate implementations
//! emit different streams; and it needs Python's float formatting and
//! escaping, which [`django_json`] reimplements. Where Django accepts input
//! that a `serde_json` map cannot represent (a JSON list at the top level,
//! `NaN`, lone surrogates), [`Signer::loads`] returns an error instead; see
//! its documentation.
//!
//! Byte-identity also needs the key order and the digits of the session's
//! numbers as they were written (`2**70`, insertion order). The JSON-text
//! functions keep them with any serde_json. A `serde_json::Map` keeps them
//! only with serde_json's `preserve_order` and `arbitrary_precision`
//! features, which change how the whole program parses JSON: the
//! `exact-json` feature turns them on, for applications that want them;
//! this crate does not by default, so that a library depending on it (such
//! as sessiond-client) does not force them on its app.
//!
//! Pure functions only, but for drawing a fresh key from the operating
//! system's random source: time is an argument (`now_unix_seconds`), and
//! there is no other I/O and no logging. Out of scope: storing sessions,
//! expiry of sessions (`expire_date`, `_session_expiry`), cookies, the
//! pre-3.1 legacy format (Django ≥ 4.0 rejects it too), serializers other
//! than JSON, and `signing.dumps` without compression.

#![deny(missing_docs)]

mod base62;
mod compression;
mod json;
mod session_key;
mod signer;

pub use base62::{Base62Error, base62_decode, base62_encode};
pub use compression::InflateError;
pub use json::{django_json, django_json_from_str};
pub use session_key::{
    GENERATED_KEY_LEN, KEY_ALPHABET, MAX_KEY_LEN, MIN_KEY_LEN, SessionKey, SessionKeyError,
};
pub use signer::{
    ConfigError, DEFAULT_SALT, MAX_DECOMPRESSED_LEN, MalformedError, SIGNED_COOKIES_SALT, Signer,
    SigningError, derive_key,
};
