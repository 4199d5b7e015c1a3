//! [`Settings`]: Django's `SESSION_*` settings, with Django's defaults.

use std::fmt;

/// Django's `SESSION_COOKIE_AGE`: two weeks, in seconds.
pub const DEFAULT_COOKIE_AGE: i64 = 1_209_600;

/// Django's `SESSION_COOKIE_NAME`.
pub const DEFAULT_COOKIE_NAME: &str = "sessionid";

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on top-level navigations from other sites (Django's default).
    Lax,
    /// Never sent on requests from other sites.
    Strict,
    /// Sent on every request; browsers then require `Secure`.
    None,
}

impl fmt::Display for SameSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
            Self::None => "None",
        })
    }
}

/// How [`Session::save`](crate::Session::save) writes an existing session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveMode {
    /// Send only the keys this request set and removed (the `Patch` RPC),
    /// so concurrent requests of one user that change different keys all
    /// keep their changes.
    #[default]
    Patch,
    /// Send the whole dictionary (the `Save` RPC), exactly as Django does:
    /// the last of two concurrent requests wins.
    Whole,
}

/// Session and cookie settings, mirroring Django's `SESSION_*` settings.
/// `Settings::default()` has Django's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SESSION_COOKIE_NAME`: the cookie that carries the session key.
    pub cookie_name: String,
    /// `SESSION_COOKIE_AGE`: seconds a session lives without its own expiry.
    pub cookie_age: i64,
    /// `SESSION_COOKIE_DOMAIN`: `None` for a host-only cookie.
    pub cookie_domain: Option<String>,
    /// `SESSION_COOKIE_PATH`.
    pub cookie_path: String,
    /// `SESSION_COOKIE_SECURE`: send the cookie over HTTPS only.
    pub cookie_secure: bool,
    /// `SESSION_COOKIE_HTTPONLY`: hide the cookie from JavaScript.
    pub cookie_httponly: bool,
    /// `SESSION_COOKIE_SAMESITE`: `None` omits the attribute (Django's
    /// `False`).
    pub cookie_samesite: Option<SameSite>,
    /// `SESSION_EXPIRE_AT_BROWSER_CLOSE`: sessions without their own expiry
    /// get a cookie without `Max-Age`.
    pub expire_at_browser_close: bool,
    /// `SESSION_SAVE_EVERY_REQUEST`: save (and renew the cookie of) every
    /// non-empty session, modified or not.
    pub save_every_request: bool,
    /// How an existing session is written; see [`SaveMode`].
    pub save_mode: SaveMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cookie_name: DEFAULT_COOKIE_NAME.to_owned(),
            cookie_age: DEFAULT_COOKIE_AGE,
            cookie_domain: None,
            cookie_path: "/".to_owned(),
            cookie_secure: false,
            cookie_httponly: true,
            cookie_samesite: Some(SameSite::Lax),
            expire_at_browser_close: false,
            save_every_request: false,
            save_mode: SaveMode::Patch,
        }
    }
}
