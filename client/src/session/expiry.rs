//! The expiry methods of [`Session`], as Django's `SessionBase` has them:
//! `set_expiry`, `get_expiry_age`, `get_expiry_date`,
//! `get_expire_at_browser_close`. How an expiry is stored and computed is in
//! [`crate::expiry`].

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value;

use super::{Session, to_raw};
use crate::backend::Data;
use crate::error::SessionError;
use crate::expiry::{EXPIRY_KEY, Expiry, ExpiryValue};

/// Optional arguments of [`Session::get_expiry_age_with`] and
/// [`Session::get_expiry_date_with`], as Django's keyword arguments.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExpiryArgs {
    /// The last modification (default: now).
    pub modification: Option<DateTime<Utc>>,
    /// The expiry to use instead of the session's own; when given, the
    /// session is not loaded.
    pub expiry: Option<ExpiryValue>,
}

impl Session {
    /// Seconds a session lives without its own expiry (`SESSION_COOKIE_AGE`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// assert_eq!(session.get_session_cookie_age(), 14 * 24 * 3600);
    /// # Ok(()) }
    /// ```
    pub fn get_session_cookie_age(&self) -> i64 {
        self.inner.settings.cookie_age
    }

    /// Sets this session's expiry, stored under `_session_expiry` exactly as
    /// Django stores it (seconds as a number, a time as an ISO 8601 string).
    /// A time outside the years 1 to 9999 is stored as no expiry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// use std::time::Duration;
    /// use sessiond_client::Expiry;
    /// use sessiond_client::chrono::{TimeDelta, Utc};
    ///
    /// // Half an hour of inactivity, or when the browser closes.
    /// session.set_expiry(Expiry::after_inactivity(Duration::from_secs(1800))).await?;
    /// session.set_expiry(Expiry::BrowserClose).await?;
    /// // A fixed time: tomorrow at this time.
    /// session.set_expiry(Expiry::At((Utc::now() + TimeDelta::days(1)).fixed_offset())).await?;
    /// // Back to the cookie age.
    /// session.set_expiry(Expiry::Default).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_expiry(&self, expiry: Expiry) -> Result<(), SessionError> {
        match expiry.to_stored(Utc::now()) {
            Some(value) => {
                let value = to_raw(EXPIRY_KEY, value)?;
                self.with_state(|state| state.set(EXPIRY_KEY, value)).await
            }
            None => {
                self.with_state(|state| state.remove(EXPIRY_KEY)).await?;
                Ok(())
            }
        }
    }

    async fn expiry_value(&self, given: Option<ExpiryValue>) -> Result<ExpiryValue, SessionError> {
        match given {
            Some(value) => Ok(value),
            None => self.with_state(|state| stored_expiry(state.data())).await,
        }
    }

    /// Seconds until the session expires, counted from now: its own expiry,
    /// else the cookie age. Negative once an absolute expiry has passed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// use sessiond_client::Expiry;
    ///
    /// assert_eq!(session.get_expiry_age().await?, session.get_session_cookie_age());
    /// session.set_expiry(Expiry::Seconds(300)).await?;
    /// assert_eq!(session.get_expiry_age().await?, 300);
    /// # Ok(()) }
    /// ```
    pub async fn get_expiry_age(&self) -> Result<i64, SessionError> {
        self.get_expiry_age_with(ExpiryArgs::default()).await
    }

    /// Seconds until the session expires, with Django's optional
    /// `modification` and `expiry` arguments.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// use sessiond_client::chrono::{TimeDelta, Utc};
    /// use sessiond_client::{ExpiryArgs, ExpiryValue};
    ///
    /// let now = Utc::now();
    /// let args = ExpiryArgs {
    ///     modification: Some(now),
    ///     expiry: Some(ExpiryValue::At((now + TimeDelta::hours(1)).fixed_offset())),
    /// };
    /// assert_eq!(session.get_expiry_age_with(args).await?, 3600);
    /// # Ok(()) }
    /// ```
    pub async fn get_expiry_age_with(&self, args: ExpiryArgs) -> Result<i64, SessionError> {
        let expiry = self.expiry_value(args.expiry).await?;
        let modification = args.modification.unwrap_or_else(Utc::now);
        Ok(expiry.age(modification, self.get_session_cookie_age()))
    }

    /// When the session expires, counted from now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// use sessiond_client::chrono::Utc;
    ///
    /// let expires = session.get_expiry_date().await?;
    /// assert!(expires > Utc::now());
    /// # Ok(()) }
    /// ```
    pub async fn get_expiry_date(&self) -> Result<DateTime<FixedOffset>, SessionError> {
        self.get_expiry_date_with(ExpiryArgs::default()).await
    }

    /// When the session expires, with Django's optional `modification` and
    /// `expiry` arguments.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// use sessiond_client::chrono::{TimeDelta, Utc};
    /// use sessiond_client::{ExpiryArgs, ExpiryValue};
    ///
    /// let now = Utc::now();
    /// let args = ExpiryArgs {
    ///     modification: Some(now),
    ///     expiry: Some(ExpiryValue::Seconds(60)),
    /// };
    /// assert_eq!(session.get_expiry_date_with(args).await?, now + TimeDelta::seconds(60));
    /// # Ok(()) }
    /// ```
    pub async fn get_expiry_date_with(
        &self,
        args: ExpiryArgs,
    ) -> Result<DateTime<FixedOffset>, SessionError> {
        let expiry = self.expiry_value(args.expiry).await?;
        let modification = args.modification.unwrap_or_else(Utc::now);
        Ok(expiry.date(modification, self.get_session_cookie_age()))
    }

    /// Whether the cookie should end with the browser session: the
    /// session's own `set_expiry(0)`, or the global setting when it has
    /// none (or one out of range).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// use sessiond_client::Expiry;
    ///
    /// assert!(!session.get_expire_at_browser_close().await?);
    /// session.set_expiry(Expiry::BrowserClose).await?;
    /// assert!(session.get_expire_at_browser_close().await?);
    /// # Ok(()) }
    /// ```
    pub async fn get_expire_at_browser_close(&self) -> Result<bool, SessionError> {
        let expiry = self.expiry_value(None).await?;
        Ok(expiry.at_browser_close(Utc::now(), self.inner.settings.expire_at_browser_close))
    }

    /// The expiry in the data already loaded, without loading.
    pub(super) fn expiry_in_hand(&self) -> ExpiryValue {
        let state = self.lock();
        state
            .cache
            .as_ref()
            .map_or(ExpiryValue::None, stored_expiry)
    }
}

/// The expiry stored in `data`. A value no `serde_json::Value` holds (a
/// lone surrogate escape) counts as absent, as does any other value Django
/// could not have written.
fn stored_expiry(data: &Data) -> ExpiryValue {
    let value = data
        .get(EXPIRY_KEY)
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
    ExpiryValue::from_stored(value.as_ref())
}
