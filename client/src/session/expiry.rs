//! The expiry methods of [`Session`], as Django's `SessionBase` has them:
//! `set_expiry`, `get_expiry_age`, `get_expiry_date`,
//! `get_expire_at_browser_close`. How an expiry is stored and computed is in
//! [`crate::expiry`].

use chrono::{DateTime, FixedOffset, Utc};

use super::Session;
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
    pub fn get_session_cookie_age(&self) -> i64 {
        self.inner.settings.cookie_age
    }

    /// Sets this session's expiry, stored under `_session_expiry` exactly as
    /// Django stores it (seconds as a number, a time as an ISO 8601 string).
    /// A time outside the years 1 to 9999 is stored as no expiry.
    pub async fn set_expiry(&self, expiry: Expiry) -> Result<(), SessionError> {
        match expiry.to_stored(Utc::now()) {
            Some(value) => self.with_state(|state| state.set(EXPIRY_KEY, value)).await,
            None => {
                self.with_state(|state| state.remove(EXPIRY_KEY)).await?;
                Ok(())
            }
        }
    }

    async fn expiry_value(&self, given: Option<ExpiryValue>) -> Result<ExpiryValue, SessionError> {
        match given {
            Some(value) => Ok(value),
            None => {
                self.with_state(|state| ExpiryValue::from_stored(state.data().get(EXPIRY_KEY)))
                    .await
            }
        }
    }

    /// Seconds until the session expires, counted from now.
    pub async fn get_expiry_age(&self) -> Result<i64, SessionError> {
        self.get_expiry_age_with(ExpiryArgs::default()).await
    }

    /// Seconds until the session expires, with Django's optional
    /// `modification` and `expiry` arguments.
    pub async fn get_expiry_age_with(&self, args: ExpiryArgs) -> Result<i64, SessionError> {
        let expiry = self.expiry_value(args.expiry).await?;
        let modification = args.modification.unwrap_or_else(Utc::now);
        Ok(expiry.age(modification, self.get_session_cookie_age()))
    }

    /// When the session expires, counted from now.
    pub async fn get_expiry_date(&self) -> Result<DateTime<FixedOffset>, SessionError> {
        self.get_expiry_date_with(ExpiryArgs::default()).await
    }

    /// When the session expires, with Django's optional `modification` and
    /// `expiry` arguments.
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
    pub async fn get_expire_at_browser_close(&self) -> Result<bool, SessionError> {
        let expiry = self.expiry_value(None).await?;
        Ok(expiry.at_browser_close(Utc::now(), self.inner.settings.expire_at_browser_close))
    }

    /// The expiry in the data already loaded, without loading.
    pub(super) fn expiry_in_hand(&self) -> ExpiryValue {
        let state = self.lock();
        ExpiryValue::from_stored(state.cache.as_ref().and_then(|data| data.get(EXPIRY_KEY)))
    }
}
