//! [`SessionLayer`]: the cookie handling of Django's `SessionMiddleware` for
//! any tower-based web framework.
//!
//! On the way in it reads the session cookie and puts a [`Session`] into the
//! request's extensions. On the way out it does what Django's
//! `process_response` does: `Vary: Cookie` when the session was used, delete
//! the cookie of a session that was emptied, save a modified (or, if
//! configured, any) non-empty session and set its cookie, never save on a
//! 5xx response, and answer 400 when the session was deleted meanwhile.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{COOKIE, HeaderValue, SET_COOKIE, VARY};
use http::{HeaderMap, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::backend::Backend;
use crate::error::SessionError;
use crate::session::Session;
use crate::settings::{SameSite, Settings};

/// Adds a [`Session`] to every request and manages its cookie.
#[derive(Debug, Clone)]
pub struct SessionLayer {
    backend: Backend,
    settings: Arc<Settings>,
}

impl SessionLayer {
    /// Sessions in `backend`, following `settings`.
    pub fn new(backend: Backend, settings: Settings) -> Self {
        Self {
            backend,
            settings: Arc::new(settings),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> SessionService<S> {
        SessionService {
            inner,
            backend: self.backend.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around an app.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    backend: Backend,
    settings: Arc<Settings>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let cookie = cookie_value(request.headers(), &self.settings.cookie_name);
        let had_cookie = cookie.is_some();
        let session = Session::new(
            self.backend.clone(),
            self.settings.clone(),
            cookie.as_deref(),
        );
        request.extensions_mut().insert(session.clone());

        // The clone that was made ready by poll_ready is the one to call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            match finish(&session, had_cookie, &mut response).await {
                Ok(()) => Ok(response),
                Err(SessionError::Interrupted) => Ok(plain(StatusCode::BAD_REQUEST)),
                Err(err) => {
                    tracing::error!(error = %ErrorChain(&err), "cannot save the session");
                    Ok(plain(StatusCode::INTERNAL_SERVER_ERROR))
                }
            }
        })
    }
}

fn plain<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

/// Django's `SessionMiddleware.process_response`.
async fn finish<B>(
    session: &Session,
    had_cookie: bool,
    response: &mut Response<B>,
) -> Result<(), SessionError> {
    let settings = session.settings();
    let accessed = session.accessed();
    let modified = session.modified();
    let empty = session.is_empty();

    if had_cookie && empty {
        append_set_cookie(response.headers_mut(), &deletion_cookie(settings));
        vary_on_cookie(response.headers_mut());
        return Ok(());
    }
    if accessed {
        vary_on_cookie(response.headers_mut());
    }
    if !(modified || settings.save_every_request) || empty {
        return Ok(());
    }
    if response.status().is_server_error() {
        return Ok(());
    }
    let max_age = if session.get_expire_at_browser_close().await? {
        None
    } else {
        Some(session.get_expiry_age().await?)
    };
    session.save().await?;
    if let Some(key) = session.session_key() {
        append_set_cookie(
            response.headers_mut(),
            &session_cookie(settings, &key, max_age),
        );
    }
    vary_on_cookie(response.headers_mut());
    Ok(())
}

/// The value of the cookie named `name`; the last one wins, as in Django.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
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

fn append_set_cookie(headers: &mut HeaderMap, cookie: &str) {
    match HeaderValue::from_str(cookie) {
        Ok(value) => {
            headers.append(SET_COOKIE, value);
        }
        Err(_) => tracing::error!(
            "the session cookie is not a valid header value; check the cookie settings"
        ),
    }
}

/// Adds `Cookie` to `Vary` unless it is there already or `Vary: *` is set
/// (Django's `patch_vary_headers`).
fn vary_on_cookie(headers: &mut HeaderMap) {
    let present = headers
        .get_all(VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|field| {
            let field = field.trim();
            field == "*" || field.eq_ignore_ascii_case("cookie")
        });
    if !present {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

/// Shows an error with all its causes, `outer: inner: root`.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_like_django_reads_them() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; sessionid=abc; b=2"));
        assert_eq!(cookie_value(&headers, "sessionid").as_deref(), Some("abc"));
        headers.append(COOKIE, HeaderValue::from_static("sessionid=\"later\""));
        assert_eq!(
            cookie_value(&headers, "sessionid").as_deref(),
            Some("later")
        );
        assert_eq!(cookie_value(&headers, "other"), None);
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
    fn vary_gets_cookie_once() {
        let mut headers = HeaderMap::new();
        vary_on_cookie(&mut headers);
        vary_on_cookie(&mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("Accept-Encoding, cookie"));
        vary_on_cookie(&mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("*"));
        vary_on_cookie(&mut headers);
        assert_eq!(headers.get(VARY).unwrap(), "*");
    }
}
