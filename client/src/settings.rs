//! [`Settings`]: Django's `SESSION_*` settings, with Django's defaults, and
//! [`SettingsBuilder`] to write them the way tower-sessions users expect.

use std::fmt;
use std::time::Duration;

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
///
/// Write them field by field, with Django's names:
///
/// ```
/// use sessiond_client::{SameSite, Settings};
///
/// let settings = Settings {
///     cookie_secure: true,
///     cookie_samesite: Some(SameSite::Strict),
///     ..Settings::default()
/// };
/// # assert_eq!(settings, Settings::builder().secure(true).same_site(SameSite::Strict).build());
/// ```
///
/// or with [`Settings::builder`], which starts from the same defaults:
///
/// ```
/// use std::time::Duration;
/// use sessiond_client::{SameSite, Settings};
///
/// let settings = Settings::builder()
///     .cookie_name("shop_session")
///     .cookie_age(Duration::from_secs(8 * 3600))
///     .secure(true)
///     .same_site(SameSite::Strict)
///     .build();
/// assert_eq!(settings.cookie_age, 28_800);
/// assert!(settings.cookie_httponly);
/// ```
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

impl Settings {
    /// A builder that starts from Django's defaults
    /// ([`Settings::default`]); each method sets one setting and names the
    /// Django setting it stands for.
    ///
    /// ```
    /// use sessiond_client::Settings;
    ///
    /// assert_eq!(Settings::builder().build(), Settings::default());
    /// ```
    pub fn builder() -> SettingsBuilder {
        SettingsBuilder {
            settings: Self::default(),
        }
    }
}

/// [`Settings`] written as a chain of calls; start with
/// [`Settings::builder`], end with [`build`](Self::build). Anything left out
/// keeps Django's default.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct SettingsBuilder {
    settings: Settings,
}

impl SettingsBuilder {
    /// The cookie that carries the session key (`SESSION_COOKIE_NAME`,
    /// default [`DEFAULT_COOKIE_NAME`]). Sharing sessions with a Django site
    /// needs the same name on both.
    ///
    /// ```
    /// # use sessiond_client::Settings;
    /// let settings = Settings::builder().cookie_name("shop_session").build();
    /// assert_eq!(settings.cookie_name, "shop_session");
    /// ```
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.settings.cookie_name = name.into();
        self
    }

    /// How long a session lives without an expiry of its own
    /// (`SESSION_COOKIE_AGE`, default two weeks): the cookie's `Max-Age`
    /// and the store's expiry. Counted in whole seconds, as Django counts
    /// it: a fraction of a second is dropped.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sessiond_client::Settings;
    /// let settings = Settings::builder().cookie_age(Duration::from_secs(3600)).build();
    /// assert_eq!(settings.cookie_age, 3600);
    /// ```
    pub fn cookie_age(mut self, age: Duration) -> Self {
        self.settings.cookie_age = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// The cookie's `Domain` (`SESSION_COOKIE_DOMAIN`), such as
    /// `.example.com` to share the session with subdomains; by default the
    /// cookie is host-only.
    ///
    /// ```
    /// # use sessiond_client::Settings;
    /// let settings = Settings::builder().domain(".example.com").build();
    /// assert_eq!(settings.cookie_domain.as_deref(), Some(".example.com"));
    /// ```
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.settings.cookie_domain = Some(domain.into());
        self
    }

    /// The cookie's `Path` (`SESSION_COOKIE_PATH`, default `/`).
    ///
    /// ```
    /// # use sessiond_client::Settings;
    /// let settings = Settings::builder().path("/shop/").build();
    /// assert_eq!(settings.cookie_path, "/shop/");
    /// ```
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.settings.cookie_path = path.into();
        self
    }

    /// Whether the cookie is sent over HTTPS only (`SESSION_COOKIE_SECURE`,
    /// default off, as in Django). Turn it on for any site served over
    /// HTTPS; `SessionLayer` (feature `tower`) warns once when it is
    /// off and a request names a host that is not loopback.
    ///
    /// ```
    /// # use sessiond_client::Settings;
    /// let settings = Settings::builder().secure(true).build();
    /// assert!(settings.cookie_secure);
    /// ```
    pub fn secure(mut self, secure: bool) -> Self {
        self.settings.cookie_secure = secure;
        self
    }

    /// Whether the cookie is hidden from JavaScript
    /// (`SESSION_COOKIE_HTTPONLY`, default on).
    ///
    /// ```
    /// # use sessiond_client::Settings;
    /// let settings = Settings::builder().http_only(false).build();
    /// assert!(!settings.cookie_httponly);
    /// ```
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.settings.cookie_httponly = http_only;
        self
    }

    /// The cookie's `SameSite` attribute (`SESSION_COOKIE_SAMESITE`,
    /// default [`SameSite::Lax`]).
    ///
    /// ```
    /// # use sessiond_client::{SameSite, Settings};
    /// let settings = Settings::builder().same_site(SameSite::Strict).build();
    /// assert_eq!(settings.cookie_samesite, Some(SameSite::Strict));
    /// ```
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.settings.cookie_samesite = Some(same_site);
        self
    }

    /// Leaves the `SameSite` attribute out of the cookie (Django's
    /// `SESSION_COOKIE_SAMESITE = False`); browsers then apply their own
    /// default, `Lax` in most.
    ///
    /// ```
    /// # use sessiond_client::Settings;
    /// let settings = Settings::builder().no_same_site().build();
    /// assert_eq!(settings.cookie_samesite, None);
    /// ```
    pub fn no_same_site(mut self) -> Self {
        self.settings.cookie_samesite = None;
        self
    }

    /// Whether sessions without an expiry of their own end when the browser
    /// closes: a cookie without `Max-Age` (`SESSION_EXPIRE_AT_BROWSER_CLOSE`,
    /// default off).
    ///
    /// ```
    /// # use sessiond_client::Settings;
    /// let settings = Settings::builder().expire_at_browser_close(true).build();
    /// assert!(settings.expire_at_browser_close);
    /// ```
    pub fn expire_at_browser_close(mut self, at_close: bool) -> Self {
        self.settings.expire_at_browser_close = at_close;
        self
    }

    /// Whether every non-empty session is saved, and its cookie renewed, on
    /// every request, changed or not (`SESSION_SAVE_EVERY_REQUEST`, default
    /// off; tower-sessions calls it `always_save`).
    ///
    /// ```
    /// # use sessiond_client::Settings;
    /// let settings = Settings::builder().save_every_request(true).build();
    /// assert!(settings.save_every_request);
    /// ```
    pub fn save_every_request(mut self, every_request: bool) -> Self {
        self.settings.save_every_request = every_request;
        self
    }

    /// How an existing session is written (default [`SaveMode::Patch`]).
    ///
    /// ```
    /// # use sessiond_client::{SaveMode, Settings};
    /// let settings = Settings::builder().save_mode(SaveMode::Whole).build();
    /// assert_eq!(settings.save_mode, SaveMode::Whole);
    /// ```
    pub fn save_mode(mut self, mode: SaveMode) -> Self {
        self.settings.save_mode = mode;
        self
    }

    /// The settings.
    ///
    /// ```
    /// # use sessiond_client::Settings;
    /// let settings = Settings::builder().secure(true).build();
    /// # assert!(settings.cookie_secure);
    /// ```
    pub fn build(self) -> Settings {
        self.settings
    }
}

/// So that `SessionLayer::new` and
/// [`SessionCookies::new`](crate::SessionCookies::new) take a builder as it
/// is.
impl From<SettingsBuilder> for Settings {
    fn from(builder: SettingsBuilder) -> Self {
        builder.build()
    }
}
