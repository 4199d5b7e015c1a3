//! [`SessionCookies`]: the cookie handling of Django's `SessionMiddleware`
//! as two plain steps, for any web framework (actix-web, Rocket, a
//! hand-written hyper service) and any version of the `http` crate: headers
//! go in and out as text.
//!
//! 1. Before the handler, [`SessionCookies::request_session`] reads the
//!    session cookie from the request's `Cookie` header.
//! 2. After it, [`RequestSession::finish`] does what Django's
//!    `process_response` does, for the response's status: `Vary: Cookie`
//!    when the session was used, delete the cookie of a session that was
//!    emptied, save a modified (or, if configured, any) non-empty session
//!    and set its cookie, never save on a 5xx response, and fail with
//!    [`SessionError::Interrupted`] (answer 400, with
//!    [`INTERRUPTED_BODY`]) when the session was deleted meanwhile.
//!
//! [`SessionCookies::check_host`] warns, once, when the cookie goes out
//! without `Secure` to a site that is not on the machine itself.
//!
//! `SessionLayer` (feature `tower`) is these steps
//! around a tower service.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sessiond_signing::SessionKey;

use crate::backend::Backend;
use crate::error::SessionError;
use crate::session::Session;
use crate::settings::{SameSite, Settings};

/// The body of the 400 answer to [`SessionError::Interrupted`] (the
/// session was deleted while the request ran): what the user can do about
/// it. `SessionLayer` (feature `tower`) and the axum response of
/// [`SessionError`] answer with it; so should a middleware of another
/// framework, as plain text.
pub const INTERRUPTED_BODY: &str = "Your session ended while this request was running (did you log out in another tab?). Please reload the page.";

/// Where sessions are kept and how their cookie looks: what a web app sets
/// up once and then uses for every request.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sessiond_client::{Backend, SessionCookies, Settings, SignedCookies};
///
/// // Backend::Server(client) keeps sessions in sessiond; signed cookies
/// // need no server, which suits an example.
/// let backend = Backend::SignedCookies(SignedCookies::new("a secret", Vec::<String>::new())?);
/// let cookies = SessionCookies::new(backend, Settings::default());
///
/// // A request without a cookie; the handler stores something.
/// let request = cookies.request_session(None);
/// request.session().insert("visits", 1).await?;
/// let headers = request.finish(200).await?;
/// let set_cookie = headers.set_cookie.expect("a new session gets a cookie");
/// assert!(set_cookie.starts_with("sessionid="));
/// assert!(headers.vary_cookie);
///
/// // The browser sends the cookie back on the next request.
/// let cookie_header = set_cookie.split(';').next().unwrap_or_default();
/// let request = cookies.request_session(Some(cookie_header));
/// assert_eq!(request.session().get::<u64>("visits").await?, Some(1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SessionCookies {
    backend: Backend,
    settings: Arc<Settings>,
    /// Whether [`check_host`](Self::check_host) has warned, for these
    /// cookies and their clones.
    insecure_warned: Arc<AtomicBool>,
}

impl SessionCookies {
    /// Sessions in `backend`, with the cookie and expiry `settings` (a
    /// [`Settings`] or a [`SettingsBuilder`](crate::SettingsBuilder)).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use sessiond_client::{Backend, SessionCookies, Settings, SignedCookies};
    ///
    /// let backend = Backend::SignedCookies(SignedCookies::new("a secret", [""; 0])?);
    /// let cookies = SessionCookies::new(backend, Settings::builder().secure(true));
    /// # assert!(cookies.settings().cookie_secure);
    /// # Ok(()) }
    /// ```
    pub fn new(backend: Backend, settings: impl Into<Settings>) -> Self {
        Self {
            backend,
            settings: Arc::new(settings.into()),
            insecure_warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Warns when the cookie goes out without `Secure` to `host`, the host
    /// a request was sent to (its `Host` header, or the URI's authority;
    /// with or without a port). Call it before
    /// [`request_session`](Self::request_session);
    /// `SessionLayer` (feature `tower`) does.
    ///
    /// With [`Settings::cookie_secure`] off (Django's default, for
    /// development over plain HTTP), the first host that is not loopback
    /// (`localhost`, `127.0.0.0/8`, `::1`) logs one warning through
    /// `tracing`: such a site is most likely served over HTTPS, where the
    /// cookie should be `Secure`. One warning for these cookies and their
    /// clones, never one per request.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, SessionCookies, Settings, SignedCookies};
    /// # let backend = Backend::SignedCookies(SignedCookies::new("a secret", [""; 0])?);
    /// let cookies = SessionCookies::new(backend, Settings::default());
    /// cookies.check_host("localhost:3000"); // development: no warning
    /// cookies.check_host("shop.example.com"); // warns, once
    /// # Ok(()) }
    /// ```
    pub fn check_host(&self, host: &str) {
        if self.settings.cookie_secure
            || host.is_empty()
            || self.insecure_warned.load(Ordering::Relaxed)
            || is_loopback(host)
            || self.insecure_warned.swap(true, Ordering::Relaxed)
        {
            return;
        }
        tracing::warn!(
            host = %host,
            "the session cookie is sent without Secure to a host that is not loopback; \
             if the site is served over HTTPS, turn on Settings::cookie_secure \
             (SESSION_COOKIE_SECURE) so that the cookie never travels in clear text"
        );
    }

    /// The settings sessions and cookies follow.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, SessionCookies, Settings, SignedCookies};
    /// # let backend = Backend::SignedCookies(SignedCookies::new("a secret", [""; 0])?);
    /// let cookies = SessionCookies::new(backend, Settings::default());
    /// assert_eq!(cookies.settings().cookie_name, "sessionid");
    /// # Ok(()) }
    /// ```
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The session of a request, given the values of its `Cookie` headers
    /// (usually one; `None` or an empty iterator when there is none). The
    /// cookie named [`Settings::cookie_name`] carries the session key; the
    /// last one wins, as in Django. Nothing is loaded yet: the session loads
    /// on first use, and a value that cannot be a session key gives a new,
    /// empty session without any call to the store.
    ///
    /// ```
    /// # fn demo(cookies: &sessiond_client::SessionCookies) {
    /// // With an `http` 1.x request:
    /// # let request = http::Request::new(());
    /// let cookie_headers = request
    ///     .headers()
    ///     .get_all(http::header::COOKIE)
    ///     .iter()
    ///     .filter_map(|value| value.to_str().ok());
    /// let request_session = cookies.request_session(cookie_headers);
    /// # let _ = request_session;
    /// # }
    /// ```
    pub fn request_session<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a str>,
    ) -> RequestSession {
        let key = cookie_value(cookie_headers, &self.settings.cookie_name);
        RequestSession {
            session: Session::new(self.backend.clone(), self.settings.clone(), key.as_deref()),
            had_cookie: key.is_some(),
        }
    }
}

/// The session of one request, from [`SessionCookies::request_session`]:
/// hand [`session`](Self::session) to the handler, then call
/// [`finish`](Self::finish) with the response's status.
#[derive(Debug)]
pub struct RequestSession {
    session: Session,
    had_cookie: bool,
}

impl RequestSession {
    /// The session; clone it for the handler (clones are the same session).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, SessionCookies, Settings, SignedCookies};
    /// # let backend = Backend::SignedCookies(SignedCookies::new("a secret", [""; 0])?);
    /// # let cookies = SessionCookies::new(backend, Settings::default());
    /// # let mut request = http::Request::new(());
    /// let request_session = cookies.request_session(None);
    /// // For the handler, e.g. in the request's extensions:
    /// request.extensions_mut().insert(request_session.session().clone());
    /// # Ok(()) }
    /// ```
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Saves the session as Django's `SessionMiddleware` does for a response
    /// with HTTP status `status`, and returns the headers to add to that
    /// response.
    ///
    /// On an error, answer [`SessionError::http_status`] instead of the
    /// handler's response (400 with [`INTERRUPTED_BODY`] for
    /// [`SessionError::Interrupted`]: the session was deleted meanwhile,
    /// typically by a logout in another tab, and is not brought back; 500
    /// otherwise, and log the error). When the handler's own save already
    /// met the deletion, that is the answer at once, with no second call to
    /// the store (Django's middleware would try once more, and fail alike).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, SessionCookies, Settings, SignedCookies};
    /// # let backend = Backend::SignedCookies(SignedCookies::new("a secret", Vec::<String>::new())?);
    /// # let cookies = SessionCookies::new(backend, Settings::default());
    /// // A handler that stored something, then failed: nothing is saved.
    /// let request = cookies.request_session(None);
    /// request.session().insert("cart", ["book"]).await?;
    /// let headers = request.finish(500).await?;
    /// assert_eq!(headers.set_cookie, None);
    /// assert!(headers.vary_cookie);
    /// # Ok(()) }
    /// ```
    pub async fn finish(self, status: u16) -> Result<SessionHeaders, SessionError> {
        let session = &self.session;
        let settings = session.settings();
        let accessed = session.accessed();
        let modified = session.modified();
        let empty = session.is_empty();

        if self.had_cookie && empty {
            return Ok(SessionHeaders {
                set_cookie: Some(deletion_cookie(settings)),
                vary_cookie: true,
            });
        }
        let unchanged = SessionHeaders {
            set_cookie: None,
            vary_cookie: accessed,
        };
        let server_error = (500..600).contains(&status);
        if !(modified || settings.save_every_request) || empty || server_error {
            return Ok(unchanged);
        }
        if session.interrupted() {
            return Err(SessionError::Interrupted);
        }
        let max_age = if session.get_expire_at_browser_close().await? {
            None
        } else {
            Some(session.get_expiry_age().await?)
        };
        session.save().await?;
        Ok(SessionHeaders {
            set_cookie: session
                .session_key()
                .map(|key| session_cookie(settings, &key, max_age)),
            vary_cookie: true,
        })
    }
}

/// The headers the session adds to a response, from
/// [`RequestSession::finish`].
///
/// ```
/// # let headers = sessiond_client::SessionHeaders::default();
/// # let mut response = http::Response::new(());
/// use http::header::{HeaderValue, SET_COOKIE, VARY};
///
/// if let Some(cookie) = &headers.set_cookie {
///     response.headers_mut().append(SET_COOKIE, HeaderValue::from_str(cookie)?);
/// }
/// let vary = response.headers().get_all(VARY).iter().filter_map(|v| v.to_str().ok());
/// if let Some(value) = headers.vary_to_append(vary) {
///     response.headers_mut().append(VARY, HeaderValue::from_static(value));
/// }
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
///
/// Its `Debug` form shows the cookie's name and attributes, never its value
/// (the session key, or with signed cookies the session itself): a key
/// shows as its [fingerprint](SessionKey::fingerprint).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SessionHeaders {
    /// A `Set-Cookie` header value to append: the session's cookie after a
    /// save, or the deletion of the cookie of a session that was emptied.
    /// Written as Django writes it, so a Django site reads it alike.
    pub set_cookie: Option<String>,
    /// Whether the response depended on the session cookie, so that caches
    /// must keep it apart per cookie: `Cookie` belongs in its `Vary` header
    /// ([`vary_to_append`](Self::vary_to_append) says whether to add it).
    pub vary_cookie: bool,
}

impl SessionHeaders {
    /// The `Vary` header value to append to a response whose `Vary` headers
    /// are `current_vary`: `Some("Cookie")` when the response depended on
    /// the cookie and `Vary` names neither `Cookie` nor `*` yet (Django's
    /// `patch_vary_headers`), else `None`.
    ///
    /// ```
    /// # let headers = sessiond_client::SessionHeaders::default();
    /// # assert_eq!(headers.vary_to_append(None), None);
    /// # let headers = sessiond_client::SessionHeaders { vary_cookie: true, ..headers };
    /// assert_eq!(headers.vary_to_append(None), Some("Cookie"));
    /// assert_eq!(headers.vary_to_append(Some("Accept-Encoding, cookie")), None);
    /// assert_eq!(headers.vary_to_append(["*"]), None);
    /// ```
    pub fn vary_to_append<'a>(
        &self,
        current_vary: impl IntoIterator<Item = &'a str>,
    ) -> Option<&'static str> {
        let present = current_vary
            .into_iter()
            .flat_map(|value| value.split(','))
            .any(|field| {
                let field = field.trim();
                field == "*" || field.eq_ignore_ascii_case("cookie")
            });
        (self.vary_cookie && !present).then_some("Cookie")
    }
}

impl fmt::Debug for SessionHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHeaders")
            .field("set_cookie", &self.set_cookie.as_deref().map(redacted))
            .field("vary_cookie", &self.vary_cookie)
            .finish()
    }
}

/// A `Set-Cookie` value for logs: `sessionid=SessionKey(1a2b3c4d); Path=/`,
/// the value replaced by the key's fingerprint, or by `<redacted>` when it
/// is not a key (a signed session); the deletion's `""` stays.
fn redacted(cookie: &str) -> String {
    let (pair, attributes) = match cookie.split_once(';') {
        Some((pair, rest)) => (pair, Some(rest)),
        None => (cookie, None),
    };
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    let value = match SessionKey::parse(value) {
        Ok(key) => format!("{key:?}"),
        Err(_) if value.is_empty() || value == "\"\"" => value.to_owned(),
        Err(_) => "<redacted>".to_owned(),
    };
    match attributes {
        Some(attributes) => format!("{name}={value};{attributes}"),
        None => format!("{name}={value}"),
    }
}

/// Whether `host` (with or without a port; an IPv6 address in brackets)
/// names this machine: `localhost` and its subdomains (RFC 6761), an
/// address in `127.0.0.0/8`, or `::1`.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
        None => host.split(':').next().unwrap_or(host),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The value of the cookie named `name`; the last one wins, as in Django.
fn cookie_value<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<String> {
    let mut found = None;
    for text in headers {
        for pair in text.split(';') {
            if let Some((key, value)) = pair.split_once('=')
                && key.trim() == name
            {
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                found = Some(value.to_owned());
            }
        }
    }
    found
}

/// The last second an HTTP date can name, 9999-12-31T23:59:59Z, after 1970.
const LATEST_HTTP_DATE: Duration = Duration::from_secs(253_402_300_799);

/// A `Set-Cookie` value in Django's form: attributes in alphabetical order.
fn session_cookie(settings: &Settings, key: &str, max_age: Option<i64>) -> String {
    let mut cookie = format!("{}={}", settings.cookie_name, key);
    if let Some(domain) = &settings.cookie_domain {
        cookie.push_str(&format!("; Domain={domain}"));
    }
    if let Some(max_age) = max_age {
        let offset = Duration::from_secs(max_age.unsigned_abs());
        let now = SystemTime::now();
        let latest = UNIX_EPOCH + LATEST_HTTP_DATE;
        let expires = if max_age >= 0 {
            now.checked_add(offset).unwrap_or(latest)
        } else {
            now.checked_sub(offset).unwrap_or(UNIX_EPOCH)
        };
        // An HTTP date names a time from 1970 to 9999 (httpdate panics on
        // others); a cookie that expired before 1970 or lasts past 9999 is
        // described as well by the nearest of them, and Max-Age decides.
        let expires = expires.clamp(UNIX_EPOCH, latest);
        cookie.push_str(&format!("; expires={}", httpdate::fmt_http_date(expires)));
    }
    if settings.cookie_httponly {
        cookie.push_str("; HttpOnly");
    }
    if let Some(max_age) = max_age {
        cookie.push_str(&format!("; Max-Age={max_age}"));
    }
    cookie.push_str(&format!("; Path={}", settings.cookie_path));
    if let Some(same_site) = settings.cookie_samesite {
        cookie.push_str(&format!("; SameSite={same_site}"));
    }
    if settings.cookie_secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The `Set-Cookie` that makes the browser drop the session cookie, as
/// Django's `delete_cookie` writes it.
fn deletion_cookie(settings: &Settings) -> String {
    let mut cookie = format!("{}=\"\"", settings.cookie_name);
    if let Some(domain) = &settings.cookie_domain {
        cookie.push_str(&format!("; Domain={domain}"));
    }
    cookie.push_str("; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0");
    cookie.push_str(&format!("; Path={}", settings.cookie_path));
    if let Some(same_site) = settings.cookie_samesite {
        cookie.push_str(&format!("; SameSite={same_site}"));
    }
    let prefixed = ["__Secure-", "__Host-"]
        .iter()
        .any(|prefix| settings.cookie_name.starts_with(prefix));
    if prefixed || settings.cookie_samesite == Some(SameSite::None) {
        cookie.push_str("; Secure");
    }
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_like_django_reads_them() {
        let headers = ["a=1; sessionid=abc; b=2"];
        assert_eq!(cookie_value(headers, "sessionid").as_deref(), Some("abc"));
        let headers = ["a=1; sessionid=abc; b=2", "sessionid=\"later\""];
        assert_eq!(cookie_value(headers, "sessionid").as_deref(), Some("later"));
        assert_eq!(cookie_value(headers, "other"), None);
        assert_eq!(cookie_value(None, "sessionid"), None);
    }

    #[test]
    fn set_cookie_matches_djangos_attribute_order() {
        let settings = Settings::default();
        let cookie = session_cookie(&settings, "k", Some(60));
        assert!(cookie.starts_with("sessionid=k; expires="), "{cookie}");
        assert!(
            cookie.ends_with(" GMT; HttpOnly; Max-Age=60; Path=/; SameSite=Lax"),
            "{cookie}"
        );
        assert_eq!(
            session_cookie(&settings, "k", None),
            "sessionid=k; HttpOnly; Path=/; SameSite=Lax"
        );
        let custom = Settings {
            cookie_domain: Some(".example.com".into()),
            cookie_path: "/app/".into(),
            cookie_secure: true,
            cookie_httponly: false,
            cookie_samesite: Some(SameSite::None),
            ..Settings::default()
        };
        let cookie = session_cookie(&custom, "k", Some(1_209_600));
        assert!(
            cookie.starts_with("sessionid=k; Domain=.example.com; expires="),
            "{cookie}"
        );
        assert!(
            cookie.ends_with("; Max-Age=1209600; Path=/app/; SameSite=None; Secure"),
            "{cookie}"
        );
        let no_samesite = Settings {
            cookie_samesite: None,
            ..Settings::default()
        };
        assert!(session_cookie(&no_samesite, "k", Some(5)).ends_with("; Max-Age=5; Path=/"));
    }

    #[test]
    fn deletion_cookies_match_django() {
        assert_eq!(
            deletion_cookie(&Settings::default()),
            "sessionid=\"\"; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=Lax"
        );
        let custom = Settings {
            cookie_domain: Some(".example.com".into()),
            cookie_path: "/app/".into(),
            cookie_samesite: Some(SameSite::None),
            ..Settings::default()
        };
        assert_eq!(
            deletion_cookie(&custom),
            "sessionid=\"\"; Domain=.example.com; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/app/; SameSite=None; Secure"
        );
    }

    #[test]
    fn loopback_hosts_are_told_apart() {
        for host in [
            "localhost",
            "LOCALHOST:3000",
            "app.localhost",
            "localhost.",
            "127.0.0.1",
            "127.1.2.3:8080",
            "[::1]",
            "[::1]:3000",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "example.com:443",
            "localhost.example.com",
            "10.0.0.1",
            "192.168.1.2:3000",
            "[2001:db8::1]:443",
            "[::]",
            "0.0.0.0",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn debug_shows_no_cookie_value() {
        let key = SessionKey::generate();
        let settings = Settings::default();
        let headers = SessionHeaders {
            set_cookie: Some(session_cookie(&settings, key.as_str(), None)),
            vary_cookie: true,
        };
        let shown = format!("{headers:?}");
        assert!(!shown.contains(key.as_str()), "{shown}");
        assert_eq!(
            shown,
            format!(
                "SessionHeaders {{ set_cookie: Some(\"sessionid=SessionKey({}); HttpOnly; Path=/; SameSite=Lax\"), vary_cookie: true }}",
                key.fingerprint()
            )
        );
        let signed = SessionHeaders {
            set_cookie: Some(session_cookie(
                &settings,
                "eyJ1c2VyIjoiYWRhIn0:1vb66i:sig",
                None,
            )),
            vary_cookie: true,
        };
        let shown = format!("{signed:?}");
        assert!(shown.contains("sessionid=<redacted>; HttpOnly"), "{shown}");
        assert!(!shown.contains("eyJ1c2VyIjoiYWRhIn0"), "{shown}");
        let deletion = SessionHeaders {
            set_cookie: Some(deletion_cookie(&settings)),
            vary_cookie: true,
        };
        let shown = format!("{deletion:?}");
        assert!(shown.contains(r#"sessionid=\"\"; expires=Thu"#), "{shown}");
    }

    #[test]
    fn vary_gets_cookie_once() {
        let varies = SessionHeaders {
            set_cookie: None,
            vary_cookie: true,
        };
        assert_eq!(varies.vary_to_append(None), Some("Cookie"));
        assert_eq!(varies.vary_to_append(["Accept-Encoding"]), Some("Cookie"));
        assert_eq!(varies.vary_to_append(["Accept-Encoding, cookie"]), None);
        assert_eq!(varies.vary_to_append(["Accept", "Cookie"]), None);
        assert_eq!(varies.vary_to_append(["*"]), None);
        assert_eq!(SessionHeaders::default().vary_to_append(None), None);
    }
}
