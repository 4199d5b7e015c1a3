//! [`Backend`]: where a [`Session`](crate::Session) keeps its data.

use std::time::SystemTime;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use crate::client::Client;
use crate::session::SessionError;

/// Where sessions are stored.
#[derive(Debug, Clone)]
pub enum Backend {
    /// In sessiond, through a [`Client`]; the cookie carries only the key.
    Server(Client),
}

/// Whether `key` could have been issued by sessiond: 8 to 40 characters of
/// `[a-z0-9]`. Anything else is never sent to the server.
pub fn is_server_key(key: &str) -> bool {
    (8..=40).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn to_text(data: &Map<String, Value>) -> String {
    // A map of JSON values always serializes.
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned())
}

fn to_system_time(at: DateTime<FixedOffset>) -> SystemTime {
    SystemTime::from(at)
}

/// An update of a session that is gone means it was deleted meanwhile.
fn interrupted_if_missing(err: crate::Error) -> SessionError {
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
        }
    }

    /// The live session's data; `None` if it is missing or expired. Data
    /// that is not a JSON object reads as an empty session, as Django reads
    /// a corrupted one.
    pub(crate) async fn load(&self, key: &str) -> Result<Option<Map<String, Value>>, SessionError> {
        match self {
            Self::Server(client) => Ok(client
                .load(key)
                .await?
                .map(|loaded| serde_json::from_str(&loaded.data).unwrap_or_default())),
        }
    }

    /// Stores `data` under a fresh key; returns the key.
    pub(crate) async fn create(
        &self,
        data: &Map<String, Value>,
        expire: DateTime<FixedOffset>,
    ) -> Result<String, SessionError> {
        match self {
            Self::Server(client) => Ok(client
                .create(&to_text(data), Some(to_system_time(expire)))
                .await?
                .session_key),
        }
    }

    /// Replaces the data of an existing session; returns its key.
    pub(crate) async fn save(
        &self,
        key: &str,
        data: &Map<String, Value>,
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
        }
    }

    /// Applies the changes of one request to an existing session; returns
    /// its key. `data` is the whole session as this request sees it, for
    /// backends that cannot patch.
    pub(crate) async fn patch(
        &self,
        key: &str,
        _data: &Map<String, Value>,
        set: &Map<String, Value>,
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
        }
    }

    /// Moves `data` to a fresh key and deletes `old_key`; returns the new key.
    pub(crate) async fn cycle_key(
        &self,
        old_key: Option<&str>,
        data: &Map<String, Value>,
        expire: DateTime<FixedOffset>,
    ) -> Result<String, SessionError> {
        match (self, old_key) {
            (Self::Server(client), Some(old_key)) => Ok(client
                .cycle_key(old_key, Some(&to_text(data)), Some(to_system_time(expire)))
                .await?
                .session_key),
            (Self::Server(_), None) => self.create(data, expire).await,
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), SessionError> {
        match self {
            Self::Server(client) => {
                client.delete(key).await?;
                Ok(())
            }
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
        }
    }

    pub(crate) async fn clear_expired(&self) -> Result<u64, SessionError> {
        match self {
            Self::Server(client) => Ok(client.clear_expired().await?),
        }
    }
}
