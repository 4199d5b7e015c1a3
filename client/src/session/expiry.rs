//! The expiry methods of [`Session`], as Django's `SessionBase` has them:
//! `set_expiry`, `get_expiry_age`, `get_expiry_date`,
//! `get_expire_at_browser_close`. How an expiry is stored and computed is in
//! [`crate::expiry`].

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value;

use super::Session;
use crate::error::SessionError;
use crate::expiry::{EXPIRY_KEY, Expiry, ExpiryValue, isoformat};

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
    pub async fn set_expiry(&self, expiry: Expiry) -> Result<(), SessionError> {
        let value = match expiry {
            Expiry::Default => {
                self.with_state(|state| state.remove(EXPIRY_KEY)).await?;
                return Ok(());
            }
            Expiry::BrowserClose => Value::from(0),
            Expiry::Seconds(seconds) => Value::from(seconds),
            Expiry::In(delta) => Value::from(isoformat((Utc::now() + delta).fixed_offset())),
            Expiry::At(at) => Value::from(isoformat(at)),
        };
        self.with_state(|state| state.set(EXPIRY_KEY, value)).await
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
    /// none.
    pub async fn get_expire_at_browser_close(&self) -> Result<bool, SessionError> {
        Ok(match self.expiry_value(None).await? {
            ExpiryValue::None => self.inner.settings.expire_at_browser_close,
            ExpiryValue::Seconds(seconds) => seconds == 0,
            ExpiryValue::At(_) => false,
        })
    }

    /// The expiry in the data already loaded, without loading.
    pub(super) fn expiry_in_hand(&self) -> ExpiryValue {
        let state = self.lock();
        ExpiryValue::from_stored(state.cache.as_ref().and_then(|data| data.get(EXPIRY_KEY)))
    }
}
