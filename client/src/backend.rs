//! [`Backend`]: where a [`Session`](crate::Session) keeps its data.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, FixedOffset};
use indexmap::IndexMap;
use serde_json::value::RawValue;
use sessiond_signing::{MIN_KEY_LEN, SIGNED_COOKIES_SALT, SessionKey, Signer};

use crate::client::Client;
use crate::error::{Error, SessionError};

/// A session's data as the store holds it: the keys in insertion order, as
/// a Python dict keeps them, and each value as its JSON text. A value the
/// app does not touch goes back byte for byte (every digit of `2**70`, a
/// float's literal) without serde_json's `arbitrary_precision` and
/// `preserve_order`, which a library must not switch on for the app.
pub(crate) type Data = IndexMap<String, Box<RawValue>>;

/// Where sessions are stored.
#[derive(Debug, Clone)]
pub enum Backend {
    /// In sessiond, through a [`Client`]; the cookie carries only the key.
    Server(Client),
    /// In the cookie itself, signed as Django's `signed_cookies` engine
    /// signs it, with no server at all.
    SignedCookies(SignedCookies),
}

/// Django's `signed_cookies` session engine: the cookie value is the session
/// data, signed with `SECRET_KEY` (`signing.dumps(…, compress=True, salt=
/// "django.contrib.sessions.backends.signed_cookies")`), so a Django site
/// with the same secret reads and writes the same cookies.
///
/// As in Django, the data is readable by the user (signed, not encrypted),
/// a cookie is valid for `cookie_age` seconds after it was last written,
/// `_session_expiry` does not shorten that, and a logged-out cookie cannot
/// be revoked before it expires. Browsers drop cookies over about 4 KiB.
#[derive(Debug, Clone)]
pub struct SignedCookies {
    signer: Signer,
}

impl SignedCookies {
    /// Signs with `secret_key` (Django's `SECRET_KEY`), and also accepts
    /// cookies signed with any of `fallback_keys` (`SECRET_KEY_FALLBACKS`).
    /// An empty secret is refused.
    ///
    /// ```
    /// # fn main() -> Result<(), sessiond_client::SigningConfigError> {
    /// use sessiond_client::{Backend, SignedCookies};
    ///
    /// let secret = std::env::var("SECRET_KEY").unwrap_or_else(|_| "dev only".into());
    /// // Cookies signed before the secret was rotated still read.
    /// let backend = Backend::SignedCookies(SignedCookies::new(&secret, ["the old secret"])?);
    /// # let _ = backend;
    /// # Ok(()) }
    /// ```
    pub fn new<I, K>(
        secret_key: &str,
        fallback_keys: I,
    ) -> Result<Self, sessiond_signing::ConfigError>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let signer =
            Signer::new(secret_key, SIGNED_COOKIES_SALT)?.with_fallback_keys(fallback_keys);
        Ok(Self { signer })
    }

    fn dumps(&self, data: &Data) -> Result<String, SessionError> {
        // The values came from `loads_json` or from serde, which Django's
        // JSON can always re-encode; were one not, the save would fail
        // rather than the cookie lose data.
        self.signer
            .dumps_json(&to_text(data), unix_now())
            .map_err(|source| SessionError::Serialize {
                key: String::new(),
                source,
            })
    }
}

/// The longest cookie value worth verifying: browsers keep cookies of up to
/// about 4 KiB, name included.
const MAX_COOKIE_VALUE: usize = 4096;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Whether `key` could have been issued by sessiond, by the rule of
/// [`SessionKey`]. Anything else is never sent to the server.
///
/// ```
/// use sessiond_client::is_server_key;
///
/// assert!(is_server_key("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o"));
/// assert!(!is_server_key("../../etc/passwd"));
/// ```
pub fn is_server_key(key: &str) -> bool {
    SessionKey::is_valid(key)
}

fn to_text(data: &Data) -> String {
    // A map of JSON texts always serializes.
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned())
}

fn to_system_time(at: DateTime<FixedOffset>) -> SystemTime {
    SystemTime::from(at)
}

/// An update of a session that is gone means it was deleted meanwhile.
fn interrupted_if_missing(err: Error) -> SessionError {
    if err.code() == Some(tonic::Code::NotFound) {
        SessionError::Interrupted
    } else {
        SessionError::Backend(err)
    }
}

impl Backend {
    /// Whether a cookie value may be a session key of this backend.
    pub(crate) fn accepts_key(&self, key: &str) -> bool {
        match self {
            Self::Server(_) => is_server_key(key),
            Self::SignedCookies(_) => (MIN_KEY_LEN..=MAX_COOKIE_VALUE).contains(&key.len()),
        }
    }

    /// The live session's data; `None` if it is missing or expired. Data
    /// that is not a JSON object reads as an empty session, as Django reads
    /// a corrupted one.
    /// `cookie_age` bounds how old a signed cookie may be.
    pub(crate) async fn load(
        &self,
        key: &str,
        cookie_age: i64,
    ) -> Result<Option<Data>, SessionError> {
        match self {
            Self::Server(client) => Ok(client
                .load(key)
                .await?
                .map(|loaded| serde_json::from_str(&loaded.data).unwrap_or_default())),
            Self::SignedCookies(cookies) => {
                let max_age = Duration::from_secs(cookie_age.max(0).unsigned_abs());
                // A forged, tampered, expired or foreign cookie is an empty
                // session, as in Django.
                Ok(cookies
                    .signer
                    .loads_json(key, Some(max_age), unix_now())
                    .ok()
                    .and_then(|json| serde_json::from_str(&json).ok()))
            }
        }
    }

    /// Stores `data` under a fresh key; returns the key.
    pub(crate) async fn create(
        &self,
        data: &Data,
        expire: DateTime<FixedOffset>,
    ) -> Result<String, SessionError> {
        match self {
            Self::Server(client) => Ok(client
                .create(&to_text(data), Some(to_system_time(expire)))
                .await?
                .session_key),
            Self::SignedCookies(cookies) => cookies.dumps(data),
        }
    }

    /// Replaces the data of an existing session; returns its key.
    pub(crate) async fn save(
        &self,
        key: &str,
        data: &Data,
        expire: DateTime<FixedOffset>,
    ) -> Result<String, SessionError> {
        match self {
            Self::Server(client) => {
                client
                    .save(key, &to_text(data), Some(to_system_time(expire)), false)
                    .await
                    .map_err(interrupted_if_missing)?;
                Ok(key.to_owned())
            }
            Self::SignedCookies(cookies) => cookies.dumps(data),
        }
    }

    /// Applies the changes of one request to an existing session; returns
    /// its key. `data` is the whole session as this request sees it, for
    /// backends that cannot patch.
    pub(crate) async fn patch(
        &self,
        key: &str,
        data: &Data,
        set: &Data,
        removed: &[String],
        replace: bool,
        expire: DateTime<FixedOffset>,
    ) -> Result<String, SessionError> {
        match self {
            Self::Server(client) => {
                let set = if set.is_empty() {
                    String::new()
                } else {
                    to_text(set)
                };
                client
                    .patch(key, &set, removed, replace, Some(to_system_time(expire)))
                    .await
                    .map_err(interrupted_if_missing)?;
                Ok(key.to_owned())
            }
            // The cookie holds the whole session: there is nothing to patch.
            Self::SignedCookies(cookies) => cookies.dumps(data),
        }
    }

    /// Moves `data` to a fresh key and deletes `old_key`; returns the new key.
    pub(crate) async fn cycle_key(
        &self,
        old_key: Option<&str>,
        data: &Data,
        expire: DateTime<FixedOffset>,
    ) -> Result<String, SessionError> {
        match (self, old_key) {
            (Self::Server(client), Some(old_key)) => Ok(client
                .cycle_key(old_key, Some(&to_text(data)), Some(to_system_time(expire)))
                .await?
                .session_key),
            (Self::Server(_), None) => self.create(data, expire).await,
            (Self::SignedCookies(cookies), _) => cookies.dumps(data),
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), SessionError> {
        match self {
            Self::Server(client) => {
                client.delete(key).await?;
                Ok(())
            }
            // The browser holds the only copy; the emptied session deletes
            // the cookie.
            Self::SignedCookies(_) => Ok(()),
        }
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, SessionError> {
        match self {
            Self::Server(client) => {
                if !is_server_key(key) {
                    return Ok(false);
                }
                Ok(client.exists(key).await?)
            }
            Self::SignedCookies(_) => Ok(false),
        }
    }

    pub(crate) async fn clear_expired(&self) -> Result<u64, SessionError> {
        match self {
            Self::Server(client) => Ok(client.clear_expired().await?),
            // Signed cookies expire in the browser and by their age.
            Self::SignedCookies(_) => Ok(0),
        }
    }
}
