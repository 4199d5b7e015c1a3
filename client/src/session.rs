//! [`Session`]: a dictionary-like session handle with the API and flag
//! semantics of Django's `SessionBase`, stored in sessiond.

mod expiry;

pub use expiry::ExpiryArgs;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::backend::{Backend, Data};
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
    cache: Option<Data>,
    accessed: bool,
    modified: bool,
    changes: Changes,
    /// A save found the session deleted meanwhile
    /// ([`SessionError::Interrupted`]), so the end of the request does not
    /// try again: it answers 400 at once.
    interrupted: bool,
}

impl State {
    fn data(&mut self) -> &mut Data {
        self.cache.get_or_insert_with(Data::new)
    }

    fn set(&mut self, key: &str, value: Box<RawValue>) {
        self.data().insert(key.to_owned(), value);
        self.changes.set(key);
        self.modified = true;
    }

    /// Removes `key`; the keys after it keep their order, as in a Python
    /// dict.
    fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
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
/// Values go in and out through serde and are stored as JSON. Each value is
/// kept as the JSON text the store holds until it is replaced, so what the
/// app does not touch is saved back unchanged (a big integer Python wrote,
/// a float's literal), and the keys keep their insertion order.
///
/// Cheap to clone: clones are the same session. The session layer hands one
/// to each request and saves it when the response goes out.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sessiond_client::{Backend, Session, Settings, SignedCookies};
///
/// // Backend::Server(client) keeps sessions in sessiond; signed cookies
/// // need no server, which suits an example.
/// let backend = Backend::SignedCookies(SignedCookies::new("a secret", [""; 0])?);
/// let session = Session::new(backend, Settings::default(), None);
/// session.insert("cart", ["book"]).await?;
/// assert_eq!(session.get::<Vec<String>>("cart").await?, Some(vec!["book".to_owned()]));
/// assert_eq!(session.remove::<Vec<String>>("cart").await?, Some(vec!["book".to_owned()]));
/// assert_eq!(session.remove::<Vec<String>>("cart").await?, None);
/// # Ok(()) }
/// ```
///
/// # Why the calls are async
///
/// As in Django, nothing is loaded when the session is made: a request
/// that never looks at its session costs no call to the store. The first
/// method that reads or writes the data (`get`, `insert`, `remove`,
/// `keys`, `set_expiry`…) loads it, so each of them may be the one that
/// waits for sessiond, and each is `async` and returns a `Result` (the
/// store may be down). Once loaded, they work on the data in hand and do
/// not call the store again; [`save`](Self::save), [`create`](Self::create),
/// [`cycle_key`](Self::cycle_key), [`flush`](Self::flush),
/// [`delete`](Self::delete), [`exists`](Self::exists) and
/// [`clear_expired`](Self::clear_expired) always call it.
///
/// What only looks at the handle is plain and never waits:
/// [`session_key`](Self::session_key), [`accessed`](Self::accessed),
/// [`modified`](Self::modified), [`is_empty`](Self::is_empty),
/// [`clear`](Self::clear), [`settings`](Self::settings) and
/// [`get_session_cookie_age`](Self::get_session_cookie_age).
///
/// # Reserved keys
///
/// Keys beginning with `_` are reserved for the framework, as Django
/// documents and does not enforce: `_session_expiry` holds the expiry that
/// [`set_expiry`](Self::set_expiry) writes, and Django's apps keep theirs
/// there (`_auth_user_id`, `_auth_user_backend`, `_auth_user_hash` for the
/// logged-in user, `_messages`…). They are not refused, because an app that
/// shares its sessions with a Django site writes exactly those keys to log a
/// user in on both; any other key of an app's own should not begin with
/// `_`.
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

fn to_raw<T: Serialize>(key: &str, value: T) -> Result<Box<RawValue>, SessionError> {
    serde_json::value::to_raw_value(&value).map_err(|source| SessionError::Serialize {
        key: key.to_owned(),
        source,
    })
}

fn from_raw<T: DeserializeOwned>(key: &str, value: &RawValue) -> Result<T, SessionError> {
    serde_json::from_str(value.get()).map_err(|source| SessionError::Deserialize {
        key: key.to_owned(),
        source,
    })
}

impl Session {
    /// A session for the key a request carried (its cookie value), or a new
    /// one for `None`. A key the backend cannot have issued is dropped here,
    /// without any call to the store. `settings` is a [`Settings`] or an
    /// `Arc<Settings>` shared by many sessions.
    ///
    /// The session layer makes one per request; make one yourself outside a
    /// request (a background job that knows a session key).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use sessiond_client::{Backend, Client, Session, Settings};
    ///
    /// let backend = Backend::Server(Client::connect("http://127.0.0.1:50051").await?);
    /// let settings = Arc::new(Settings::default());
    /// let session = Session::new(backend, settings, Some("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o"));
    /// if session.get::<String>("user").await?.is_none() {
    ///     // Missing, expired or logged out: the session read as empty.
    /// }
    /// # Ok(()) }
    /// ```
    pub fn new(
        backend: Backend,
        settings: impl Into<Arc<Settings>>,
        session_key: Option<&str>,
    ) -> Self {
        let settings = settings.into();
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
                    interrupted: false,
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// assert_eq!(session.settings().cookie_name, "sessionid");
    /// # Ok(()) }
    /// ```
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The session key, if the session has one. Read-only, as in Django. A
    /// new session has none until it is saved; one whose key named no live
    /// session loses it on its first read.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// assert_eq!(session.session_key(), None);
    /// session.insert("visits", 1).await?;
    /// session.save().await?;
    /// assert!(session.session_key().is_some());
    /// # Ok(()) }
    /// ```
    pub fn session_key(&self) -> Option<String> {
        self.lock().key.clone()
    }

    /// Whether the data has been read or written in this request (the
    /// response then carries `Vary: Cookie`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// assert!(!session.accessed());
    /// session.get::<u64>("visits").await?;
    /// assert!(session.accessed());
    /// # Ok(()) }
    /// ```
    pub fn accessed(&self) -> bool {
        self.lock().accessed
    }

    /// Whether the data has been changed in this request (the session is
    /// then saved at the end of it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.get::<u64>("visits").await?;
    /// assert!(!session.modified());
    /// session.insert("visits", 1).await?;
    /// assert!(session.modified());
    /// # Ok(()) }
    /// ```
    pub fn modified(&self) -> bool {
        self.lock().modified
    }

    /// Whether a save of this request found the session deleted meanwhile
    /// (and no new key was made since): saving again would only fail again.
    pub(crate) fn interrupted(&self) -> bool {
        self.lock().interrupted
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
                    state.cache = Some(Data::new());
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
                    state.cache = Some(Data::new());
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

    /// The value under `key`, converted to `T`; `None` if absent. The stored
    /// JSON is read straight into `T`: an integer past `u64`, as Python
    /// writes them, reads exactly as a `u128` or `i128`. A value of another
    /// type is [`SessionError::Deserialize`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("visits", 3).await?;
    /// assert_eq!(session.get::<u64>("visits").await?, Some(3));
    /// assert_eq!(session.get::<u64>("cart").await?, None);
    /// assert!(session.get::<String>("visits").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.with_state(|state| {
            state
                .data()
                .get(key)
                .map(|value| from_raw(key, value))
                .transpose()
        })
        .await?
    }

    /// The JSON value under `key`; `None` if absent. Numbers are as exact as
    /// the app's `serde_json::Value` holds them; the stored value itself is
    /// left as it was.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("cart", ["book"]).await?;
    /// assert_eq!(session.get_value("cart").await?, Some(serde_json::json!(["book"])));
    /// # Ok(()) }
    /// ```
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, SessionError> {
        self.get(key).await
    }

    /// Stores `value` under `key` (Django's `session[key] = value`). A value
    /// that cannot become JSON is refused here, before anything changes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// #[derive(serde::Serialize)]
    /// struct Cart {
    ///     items: Vec<String>,
    /// }
    ///
    /// session.insert("cart", Cart { items: vec!["book".into()] }).await?;
    /// session.insert("visits", 1).await?;
    /// assert_eq!(session.keys().await?, ["cart", "visits"]);
    /// # Ok(()) }
    /// ```
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = to_raw(key, value)?;
        self.with_state(|state| state.set(key, value)).await
    }

    /// Removes `key` and returns its value converted to `T`; `None`, with
    /// nothing changed, if it is absent. A value that does not convert to
    /// `T` is [`SessionError::Deserialize`] and stays in the session. Only a
    /// present key marks the session modified.
    ///
    /// [`pop`](Self::pop) is Django's `pop(key)` and `del session[key]`, for
    /// which an absent key is an error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("cart", ["book"]).await?;
    /// let cart: Option<Vec<String>> = session.remove("cart").await?;
    /// assert_eq!(cart, Some(vec!["book".to_owned()]));
    /// assert_eq!(session.remove::<Vec<String>>("cart").await?, None);
    /// // Any JSON value, whatever its type:
    /// assert_eq!(session.remove::<serde_json::Value>("flash").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.take(key).await
    }

    /// Removes `key` if its value converts to `T`, and returns the value;
    /// `None` if it is absent.
    async fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.with_state(|state| {
            let Some(raw) = state.data().get(key) else {
                return Ok(None);
            };
            let value = from_raw(key, raw)?;
            state.remove(key);
            Ok(Some(value))
        })
        .await?
    }

    /// Whether `key` is in the session (Django's `key in session`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("cart", ["book"]).await?;
    /// assert!(session.contains("cart").await?);
    /// assert!(!session.contains("user").await?);
    /// # Ok(()) }
    /// ```
    pub async fn contains(&self, key: &str) -> Result<bool, SessionError> {
        self.with_state(|state| state.data().contains_key(key))
            .await
    }

    /// Removes `key` and returns its value converted to `T`;
    /// [`SessionError::KeyNotFound`] if it is absent (Django's `pop(key)`,
    /// and `del session[key]`, which raise `KeyError`). A value that does
    /// not convert to `T` is [`SessionError::Deserialize`] and stays in the
    /// session. [`remove`](Self::remove) answers `None` instead for an
    /// absent key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// use sessiond_client::SessionError;
    ///
    /// session.insert("flash", "Saved.").await?;
    /// assert_eq!(session.pop::<String>("flash").await?, "Saved.");
    /// assert!(matches!(
    ///     session.pop::<String>("flash").await,
    ///     Err(SessionError::KeyNotFound(_))
    /// ));
    /// # Ok(()) }
    /// ```
    pub async fn pop<T: DeserializeOwned>(&self, key: &str) -> Result<T, SessionError> {
        self.take(key)
            .await?
            .ok_or_else(|| SessionError::KeyNotFound(key.to_owned()))
    }

    /// Removes `key` and returns its value, or `default` if it is absent
    /// (Django's `pop(key, default)`; only a present key marks the session
    /// modified).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// let cart = session.pop_or::<Vec<String>>("cart", Vec::new()).await?;
    /// assert!(cart.is_empty());
    /// assert!(!session.modified());
    /// # Ok(()) }
    /// ```
    pub async fn pop_or<T: DeserializeOwned>(
        &self,
        key: &str,
        default: T,
    ) -> Result<T, SessionError> {
        Ok(self.take(key).await?.unwrap_or(default))
    }

    /// The value under `key`, after storing `default` there if it was
    /// absent (Django's `setdefault`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// assert_eq!(session.setdefault("theme", "light".to_owned()).await?, "light");
    /// assert_eq!(session.setdefault("theme", "dark".to_owned()).await?, "light");
    /// # Ok(()) }
    /// ```
    pub async fn setdefault<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        default: T,
    ) -> Result<T, SessionError> {
        let default = to_raw(key, default)?;
        self.with_state(|state| match state.data().get(key) {
            Some(value) => from_raw(key, value),
            None => {
                let value = from_raw(key, &default);
                state.set(key, default);
                value
            }
        })
        .await?
    }

    /// Stores every member of `values`, a map or a struct (Django's
    /// `update`; marks the session modified even when `values` is empty).
    /// Anything else is [`SessionError::NotAnObject`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.update(serde_json::json!({"theme": "dark", "lang": "fr"})).await?;
    /// assert_eq!(session.get::<String>("lang").await?.as_deref(), Some("fr"));
    /// # Ok(()) }
    /// ```
    pub async fn update<T: Serialize>(&self, values: T) -> Result<(), SessionError> {
        let values = to_raw("", values)?;
        // The members in the order `values` wrote them; only a JSON object
        // parses as one.
        let Ok(values) = serde_json::from_str::<Data>(values.get()) else {
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("b", 1).await?;
    /// session.insert("a", 2).await?;
    /// assert_eq!(session.keys().await?, ["b", "a"]);
    /// # Ok(()) }
    /// ```
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        self.with_state(|state| state.data().keys().cloned().collect())
            .await
    }

    /// The values, in insertion order.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("b", 1).await?;
    /// session.insert("a", "two").await?;
    /// assert_eq!(session.values().await?, [serde_json::json!(1), serde_json::json!("two")]);
    /// # Ok(()) }
    /// ```
    pub async fn values(&self) -> Result<Vec<Value>, SessionError> {
        self.with_state(|state| {
            state
                .data()
                .iter()
                .map(|(key, value)| from_raw(key, value))
                .collect()
        })
        .await?
    }

    /// The key-value pairs, in insertion order.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("visits", 1).await?;
    /// for (key, value) in session.items().await? {
    ///     println!("{key} = {value}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn items(&self) -> Result<Vec<(String, Value)>, SessionError> {
        self.with_state(|state| {
            state
                .data()
                .iter()
                .map(|(key, value)| Ok((key.clone(), from_raw(key, value)?)))
                .collect()
        })
        .await?
    }

    /// Empties the session without loading it; the key stays (Django's
    /// `clear`). Not async: it needs nothing from the store.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("cart", ["book"]).await?;
    /// session.clear();
    /// assert!(session.keys().await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn clear(&self) {
        let mut state = self.lock();
        state.cache = Some(Data::new());
        state.accessed = true;
        state.modified = true;
        state.changes = Changes {
            replace: true,
            ..Changes::default()
        };
    }

    /// True when the session has no key and no data; does not load
    /// (Django's `is_empty`), so a session with a key is not empty even
    /// before its data is read.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// assert!(session.is_empty());
    /// session.insert("visits", 1).await?;
    /// assert!(!session.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn is_empty(&self) -> bool {
        let state = self.lock();
        state.key.is_none() && state.cache.as_ref().is_none_or(IndexMap::is_empty)
    }

    /// Empties the session, deletes it from the store and drops its key, as
    /// `logout()` does (Django's `flush`). The session layer then deletes
    /// the cookie.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("user", "ada").await?;
    /// session.save().await?;
    /// session.flush().await?;
    /// assert_eq!(session.session_key(), None);
    /// assert!(session.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) -> Result<(), SessionError> {
        self.clear();
        self.delete().await?;
        let mut state = self.lock();
        state.key = None;
        // What comes next is a new session, which nothing has deleted.
        state.interrupted = false;
        Ok(())
    }

    /// Sets Django's test cookie value, to check next request whether the
    /// browser keeps cookies.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.set_test_cookie().await?;
    /// // On the next request of that browser:
    /// if session.test_cookie_worked().await? {
    ///     session.delete_test_cookie().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn set_test_cookie(&self) -> Result<(), SessionError> {
        self.insert(TEST_COOKIE_NAME, TEST_COOKIE_VALUE).await
    }

    /// Whether the test cookie set on an earlier request came back.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// assert!(!session.test_cookie_worked().await?);
    /// session.set_test_cookie().await?;
    /// assert!(session.test_cookie_worked().await?);
    /// # Ok(()) }
    /// ```
    pub async fn test_cookie_worked(&self) -> Result<bool, SessionError> {
        Ok(self
            .get_value(TEST_COOKIE_NAME)
            .await?
            .as_ref()
            .and_then(Value::as_str)
            == Some(TEST_COOKIE_VALUE))
    }

    /// Removes the test cookie value; [`SessionError::KeyNotFound`] if it is
    /// not set, as in Django.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.set_test_cookie().await?;
    /// session.delete_test_cookie().await?;
    /// assert!(session.delete_test_cookie().await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn delete_test_cookie(&self) -> Result<(), SessionError> {
        self.pop::<Value>(TEST_COOKIE_NAME).await.map(|_| ())
    }

    /// Moves the data to a fresh key and deletes the old one, in one step
    /// on the store; `login()` does this against session fixation. (A
    /// signed cookie has no key of its own: its value changes with its
    /// data.)
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Client, Session, Settings};
    /// # let client = Client::connect("http://127.0.0.1:50051").await?;
    /// # let session = Session::new(Backend::Server(client), Settings::default(), Some("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o"));
    /// // Logging in: a new key, the same data (the cart of the anonymous
    /// // visit), then the user.
    /// let before = session.session_key();
    /// session.cycle_key().await?;
    /// session.insert("user", "ada").await?;
    /// assert_ne!(session.session_key(), before);
    /// # Ok(()) }
    /// ```
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
        state.interrupted = false;
        Ok(())
    }

    /// Removes every expired session from the store; returns how many
    /// (Django's `clear_expired`, run by `clearsessions`). sessiond also
    /// purges on its own (`--purge-interval`); signed cookies have nothing
    /// to purge and answer 0.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Client, Session, Settings};
    /// # let client = Client::connect("http://127.0.0.1:50051").await?;
    /// # let session = Session::new(Backend::Server(client), Settings::default(), Some("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o"));
    /// let removed = session.clear_expired().await?;
    /// println!("{removed} expired sessions removed");
    /// # Ok(()) }
    /// ```
    pub async fn clear_expired(&self) -> Result<u64, SessionError> {
        self.inner.backend.clear_expired().await
    }

    /// Whether a session exists in the store under `session_key`, expired
    /// or not (Django's `exists`); always false for signed cookies.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Client, Session, Settings};
    /// # let client = Client::connect("http://127.0.0.1:50051").await?;
    /// # let session = Session::new(Backend::Server(client), Settings::default(), Some("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o"));
    /// if !session.exists("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o").await? {
    ///     println!("no such session");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn exists(&self, session_key: &str) -> Result<bool, SessionError> {
        self.inner.backend.exists(session_key).await
    }

    /// Deletes this session from the store (not the data in hand, nor the
    /// key: [`flush`](Self::flush) does all three, as logging out needs).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Client, Session, Settings};
    /// # let client = Client::connect("http://127.0.0.1:50051").await?;
    /// # let session = Session::new(Backend::Server(client), Settings::default(), Some("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o"));
    /// session.delete().await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self) -> Result<(), SessionError> {
        let key = self.lock().key.clone();
        if let Some(key) = key {
            self.inner.backend.delete(&key).await?;
        }
        Ok(())
    }

    /// Stores the session under a fresh key, with the data in hand (Django's
    /// `create`); [`save`](Self::save) does this for a session without a
    /// key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("cart", ["book"]).await?;
    /// session.create().await?;
    /// assert!(session.session_key().is_some());
    /// # Ok(()) }
    /// ```
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
        state.cache.get_or_insert_with(Data::new);
        state.modified = true;
        state.changes = Changes::default();
        state.interrupted = false;
        Ok(())
    }

    /// Writes the session: creates it if it has no key, otherwise updates
    /// it (only the keys changed since it was loaded, with
    /// [`SaveMode::Patch`]). [`SessionError::Interrupted`] if it was deleted
    /// meanwhile; it is never brought back, and the end of the request
    /// ([`RequestSession::finish`](crate::RequestSession::finish)) then
    /// answers 400 without trying again.
    ///
    /// The session layer saves at the end of each request; call this
    /// outside a request, or to save before a long task.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// session.insert("visits", 1).await?;
    /// session.save().await?;
    /// let key = session.session_key().ok_or("a saved session has a key")?;
    /// # let _ = key;
    /// # Ok(()) }
    /// ```
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
                // In the session's order, so that new keys are added to the
                // stored session in the order they were set.
                let set: Data = data
                    .iter()
                    .filter(|(key, _)| changes.set.contains(key.as_str()))
                    .map(|(key, value)| (key.clone(), value.clone()))
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
                // A retry cannot bring a deleted session back; the end of
                // the request answers 400 without one.
                if matches!(err, SessionError::Interrupted) {
                    state.interrupted = true;
                }
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
