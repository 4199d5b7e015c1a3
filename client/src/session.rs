//! [`Session`]: a dictionary-like session handle with the API and flag
//! semantics of Django's `SessionBase`, stored in sessiond.

mod expiry;

pub use expiry::ExpiryArgs;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::backend::Backend;
use crate::error::SessionError;
use crate::settings::{SaveMode, Settings};

/// The key and value of Django's test cookie.
const TEST_COOKIE_NAME: &str = "testcookie";
const TEST_COOKIE_VALUE: &str = "worked";

/// The keys changed since the session was loaded or last saved, so that a
/// save can send only those ([`SaveMode::Patch`]).
#[derive(Debug, Default)]
struct Changes {
    set: BTreeSet<String>,
    removed: BTreeSet<String>,
    replace: bool,
}

impl Changes {
    fn set(&mut self, key: &str) {
        self.removed.remove(key);
        self.set.insert(key.to_owned());
    }

    fn removed(&mut self, key: &str) {
        self.set.remove(key);
        self.removed.insert(key.to_owned());
    }
}

#[derive(Debug)]
struct State {
    key: Option<String>,
    /// `None` until the first access, like Django's `_session_cache`.
    cache: Option<Map<String, Value>>,
    accessed: bool,
    modified: bool,
    changes: Changes,
}

impl State {
    fn data(&mut self) -> &mut Map<String, Value> {
        self.cache.get_or_insert_with(Map::new)
    }

    fn set(&mut self, key: &str, value: Value) {
        self.data().insert(key.to_owned(), value);
        self.changes.set(key);
        self.modified = true;
    }

    fn remove(&mut self, key: &str) -> Option<Value> {
        let value = self.data().shift_remove(key)?;
        self.changes.removed(key);
        self.modified = true;
        Some(value)
    }
}

struct Inner {
    backend: Backend,
    settings: Arc<Settings>,
    state: Mutex<State>,
}

/// A web session, used like Django's `request.session`.
///
/// The data loads lazily on first access; a missing, expired or invalid
/// session reads as empty, and the next save then creates a fresh key.
/// Values go in and out through serde and are stored as JSON. Keys beginning
/// with `_` are reserved for the session machinery (`_session_expiry`) and
/// for Django's apps (`_auth_user_id`…).
///
/// Cheap to clone: clones are the same session. The session layer hands one
/// to each request and saves it when the response goes out.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Session")
            .field("has_key", &state.key.is_some())
            .field("loaded", &state.cache.is_some())
            .field("accessed", &state.accessed)
            .field("modified", &state.modified)
            .finish_non_exhaustive()
    }
}

fn to_value<T: Serialize>(key: &str, value: T) -> Result<Value, SessionError> {
    serde_json::to_value(value).map_err(|source| SessionError::Serialize {
        key: key.to_owned(),
        source,
    })
}

fn from_value<T: DeserializeOwned>(key: &str, value: Value) -> Result<T, SessionError> {
    serde_json::from_value(value).map_err(|source| SessionError::Deserialize {
        key: key.to_owned(),
        source,
    })
}

impl Session {
    /// A session for the key a request carried (its cookie value), or a new
    /// one for `None`. A key the backend cannot have issued is dropped here,
    /// without any call to the store.
    pub fn new(backend: Backend, settings: Arc<Settings>, session_key: Option<&str>) -> Self {
        let key = session_key
            .filter(|key| backend.accepts_key(key))
            .map(str::to_owned);
        Self {
            inner: Arc::new(Inner {
                backend,
                settings,
                state: Mutex::new(State {
                    key,
                    cache: None,
                    accessed: false,
                    modified: false,
                    changes: Changes::default(),
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent state behind (no
        // method leaves it half-updated), so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The settings this session follows.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The session key, if the session has one. Read-only, as in Django.
    pub fn session_key(&self) -> Option<String> {
        self.lock().key.clone()
    }

    /// Whether the data has been read or written in this request.
    pub fn accessed(&self) -> bool {
        self.lock().accessed
    }

    /// Whether the data has been changed in this request.
    pub fn modified(&self) -> bool {
        self.lock().modified
    }

    /// Loads the data if it has not been loaded yet, marking the session
    /// accessed. A missing or expired session reads as empty and loses its
    /// key, so that the next save creates a new one.
    async fn load_if_needed(&self) -> Result<(), SessionError> {
        let key = {
            let mut state = self.lock();
            state.accessed = true;
            if state.cache.is_some() {
                return Ok(());
            }
            match &state.key {
                Some(key) => key.clone(),
                None => {
                    state.cache = Some(Map::new());
                    return Ok(());
                }
            }
        };
        let loaded = self
            .inner
            .backend
            .load(&key, self.inner.settings.cookie_age)
            .await?;
        let mut state = self.lock();
        if state.cache.is_none() {
            match loaded {
                Some(data) => state.cache = Some(data),
                None => {
                    state.cache = Some(Map::new());
                    state.key = None;
                }
            }
        }
        Ok(())
    }

    /// Runs `f` on the loaded state.
    async fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R, SessionError> {
        self.load_if_needed().await?;
        let mut state = self.lock();
        Ok(f(&mut state))
    }

    /// The value under `key`, converted to `T`; `None` if absent.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        match self.get_value(key).await? {
            Some(value) => from_value(key, value).map(Some),
            None => Ok(None),
        }
    }

    /// The JSON value under `key`; `None` if absent.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, SessionError> {
        self.with_state(|state| state.data().get(key).cloned())
            .await
    }

    /// Stores `value` under `key` (Django's `session[key] = value`). A value
    /// that cannot become JSON is refused here, before anything changes.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = to_value(key, value)?;
        self.with_state(|state| state.set(key, value)).await
    }

    /// Removes `key` and returns its value (Django's `del session[key]`);
    /// [`SessionError::KeyNotFound`] if it is absent.
    pub async fn remove(&self, key: &str) -> Result<Value, SessionError> {
        self.with_state(|state| state.remove(key))
            .await?
            .ok_or_else(|| SessionError::KeyNotFound(key.to_owned()))
    }

    /// Whether `key` is in the session (Django's `key in session`).
    pub async fn contains(&self, key: &str) -> Result<bool, SessionError> {
        self.with_state(|state| state.data().contains_key(key))
            .await
    }

    /// Removes `key` and returns its value converted to `T`;
    /// [`SessionError::KeyNotFound`] if it is absent (Django's `pop(key)`).
    pub async fn pop<T: DeserializeOwned>(&self, key: &str) -> Result<T, SessionError> {
        from_value(key, self.remove(key).await?)
    }

    /// Removes `key` and returns its value, or `default` if it is absent
    /// (Django's `pop(key, default)`; only a present key marks the session
    /// modified).
    pub async fn pop_or<T: DeserializeOwned>(
        &self,
        key: &str,
        default: T,
    ) -> Result<T, SessionError> {
        match self.with_state(|state| state.remove(key)).await? {
            Some(value) => from_value(key, value),
            None => Ok(default),
        }
    }

    /// The value under `key`, after storing `default` there if it was
    /// absent (Django's `setdefault`).
    pub async fn setdefault<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        default: T,
    ) -> Result<T, SessionError> {
        let default = to_value(key, default)?;
        let value = self
            .with_state(|state| match state.data().get(key) {
                Some(value) => value.clone(),
                None => {
                    state.set(key, default.clone());
                    default
                }
            })
            .await?;
        from_value(key, value)
    }

    /// Stores every member of `values`, a map or a struct (Django's
    /// `update`; marks the session modified even when `values` is empty).
    pub async fn update<T: Serialize>(&self, values: T) -> Result<(), SessionError> {
        let Value::Object(values) =
            serde_json::to_value(values).map_err(|source| SessionError::Serialize {
                key: String::new(),
                source,
            })?
        else {
            return Err(SessionError::NotAnObject);
        };
        self.with_state(|state| {
            for (key, value) in values {
                state.set(&key, value);
            }
            state.modified = true;
        })
        .await
    }

    /// The keys, in insertion order.
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        self.with_state(|state| state.data().keys().cloned().collect())
            .await
    }

    /// The values, in insertion order.
    pub async fn values(&self) -> Result<Vec<Value>, SessionError> {
        self.with_state(|state| state.data().values().cloned().collect())
            .await
    }

    /// The key-value pairs, in insertion order.
    pub async fn items(&self) -> Result<Vec<(String, Value)>, SessionError> {
        self.with_state(|state| {
            state
                .data()
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
        .await
    }

    /// Empties the session without loading it; the key stays (Django's
    /// `clear`).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.cache = Some(Map::new());
        state.accessed = true;
        state.modified = true;
        state.changes = Changes {
            replace: true,
            ..Changes::default()
        };
    }

    /// True when the session has no key and no data; does not load
    /// (Django's `is_empty`).
    pub fn is_empty(&self) -> bool {
        let state = self.lock();
        state.key.is_none() && state.cache.as_ref().is_none_or(Map::is_empty)
    }

    /// Empties the session, deletes it from the store and drops its key, as
    /// `logout()` does (Django's `flush`).
    pub async fn flush(&self) -> Result<(), SessionError> {
        self.clear();
        self.delete().await?;
        self.lock().key = None;
        Ok(())
    }

    /// Sets Django's test cookie value, to check next request whether the
    /// browser keeps cookies.
    pub async fn set_test_cookie(&self) -> Result<(), SessionError> {
        self.insert(TEST_COOKIE_NAME, TEST_COOKIE_VALUE).await
    }

    /// Whether the test cookie set on an earlier request came back.
    pub async fn test_cookie_worked(&self) -> Result<bool, SessionError> {
        Ok(self
            .get_value(TEST_COOKIE_NAME)
            .await?
            .as_ref()
            .and_then(Value::as_str)
            == Some(TEST_COOKIE_VALUE))
    }

    /// Removes the test cookie value; [`SessionError::KeyNotFound`] if it is
    /// not set.
    pub async fn delete_test_cookie(&self) -> Result<(), SessionError> {
        self.remove(TEST_COOKIE_NAME).await.map(|_| ())
    }

    /// Moves the data to a fresh key and deletes the old one, in one step
    /// on the store; `login()` does this against session fixation.
    pub async fn cycle_key(&self) -> Result<(), SessionError> {
        self.load_if_needed().await?;
        let expire = self.get_expiry_date().await?;
        let (old_key, data) = {
            let state = self.lock();
            (state.key.clone(), state.cache.clone().unwrap_or_default())
        };
        let new_key = self
            .inner
            .backend
            .cycle_key(old_key.as_deref(), &data, expire)
            .await?;
        let mut state = self.lock();
        state.key = Some(new_key);
        state.modified = true;
        state.changes = Changes::default();
        Ok(())
    }

    /// Removes every expired session from the store; returns how many.
    pub async fn clear_expired(&self) -> Result<u64, SessionError> {
        self.inner.backend.clear_expired().await
    }

    /// Whether a session exists in the store under `session_key`.
    pub async fn exists(&self, session_key: &str) -> Result<bool, SessionError> {
        self.inner.backend.exists(session_key).await
    }

    /// Deletes this session from the store (not the data in hand).
    pub async fn delete(&self) -> Result<(), SessionError> {
        let key = self.lock().key.clone();
        if let Some(key) = key {
            self.inner.backend.delete(&key).await?;
        }
        Ok(())
    }

    /// Stores the session under a fresh key, with the data in hand (Django's
    /// `create`).
    pub async fn create(&self) -> Result<(), SessionError> {
        let expire = self.get_expiry_date_with(ExpiryArgs {
            expiry: Some(self.expiry_in_hand()),
            ..ExpiryArgs::default()
        });
        let expire = expire.await?;
        let data = self.lock().cache.clone().unwrap_or_default();
        let key = self.inner.backend.create(&data, expire).await?;
        let mut state = self.lock();
        state.key = Some(key);
        state.cache.get_or_insert_with(Map::new);
        state.modified = true;
        state.changes = Changes::default();
        Ok(())
    }

    /// Writes the session: creates it if it has no key, otherwise updates
    /// it. [`SessionError::Interrupted`] if it was deleted meanwhile; it is
    /// never brought back.
    pub async fn save(&self) -> Result<(), SessionError> {
        let Some(key) = self.session_key() else {
            return self.create().await;
        };
        self.load_if_needed().await?;
        let expire = self.get_expiry_date().await?;
        let (data, changes) = {
            let mut state = self.lock();
            let changes = std::mem::take(&mut state.changes);
            (state.cache.clone().unwrap_or_default(), changes)
        };
        let saved = match self.inner.settings.save_mode {
            SaveMode::Whole => self.inner.backend.save(&key, &data, expire).await,
            SaveMode::Patch => {
                let set: Map<String, Value> = changes
                    .set
                    .iter()
                    .filter_map(|k| data.get(k).map(|value| (k.clone(), value.clone())))
                    .collect();
                let removed: Vec<String> = changes.removed.iter().cloned().collect();
                self.inner
                    .backend
                    .patch(&key, &data, &set, &removed, changes.replace, expire)
                    .await
            }
        };
        match saved {
            Ok(new_key) => {
                self.lock().key = Some(new_key);
                Ok(())
            }
            Err(err) => {
                // Keep the changes for a retry of the save.
                let mut state = self.lock();
                let newer = std::mem::take(&mut state.changes);
                state.changes = merge_changes(changes, newer);
                Err(err)
            }
        }
    }
}

/// The changes of a failed save followed by those made since.
fn merge_changes(mut older: Changes, newer: Changes) -> Changes {
    if newer.replace {
        return newer;
    }
    for key in newer.removed {
        older.removed(&key);
    }
    for key in newer.set {
        older.set(&key);
    }
    older
}
