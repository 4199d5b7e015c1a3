//! [`SessionLayer`]: the cookie handling of Django's `SessionMiddleware` for
//! any tower-based web framework: the two steps of
//! [`SessionCookies`](crate::SessionCookies) around a tower service.
//!
//! On the way in it reads the session cookie and puts a [`Session`] into the
//! request's extensions. On the way out it does what Django's
//! `process_response` does: `Vary: Cookie` when the session was used, delete
//! the cookie of a session that was emptied, save a modified (or, if
//! configured, any) non-empty session and set its cookie, never save on a
//! 5xx response, and answer 400 when the session was deleted meanwhile.
//!
//! It also warns, once, when the cookie goes out without `Secure` to a site
//! that is not on the machine itself.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::header::{COOKIE, HOST, HeaderValue, SET_COOKIE, VARY};
use http::{HeaderMap, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::backend::Backend;
use crate::cookies::{SessionCookies, SessionHeaders};
use crate::error::SessionError;
use crate::session::Session;
use crate::settings::Settings;

/// Adds a [`Session`] to every request and manages its cookie.
///
/// With [`Settings::cookie_secure`] off (Django's default, for development
/// over plain HTTP), the first request whose `Host` is not loopback
/// (`localhost`, `127.0.0.0/8`, `::1`) logs one warning through `tracing`:
/// such a site is most likely served over HTTPS, where the cookie should be
/// `Secure`. One warning per layer (and its clones), never per request.
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Debug, Clone)]
pub struct SessionLayer {
    cookies: SessionCookies,
    insecure_warned: Arc<AtomicBool>,
}

impl SessionLayer {
    /// Sessions in `backend`, following `settings` (a [`Settings`] or a
    /// [`SettingsBuilder`](crate::SettingsBuilder)).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, routing::get};
    /// use sessiond_client::{Backend, SessionLayer, Settings, SignedCookies};
    ///
    /// // Backend::Server(client) keeps sessions in sessiond.
    /// let backend = Backend::SignedCookies(SignedCookies::new("a secret", [""; 0])?);
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .layer(SessionLayer::new(backend, Settings::builder().secure(true)));
    /// # let _ = app;
    /// # Ok(()) }
    /// ```
    pub fn new(backend: Backend, settings: impl Into<Settings>) -> Self {
        Self {
            cookies: SessionCookies::new(backend, settings),
            insecure_warned: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> SessionService<S> {
        SessionService {
            inner,
            cookies: self.cookies.clone(),
            insecure_warned: self.insecure_warned.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around an app.
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    cookies: SessionCookies,
    /// Whether the layer has warned about a cookie without `Secure`.
    insecure_warned: Arc<AtomicBool>,
}

impl<S> SessionService<S> {
    /// Warns, once for the layer, when the cookie is not `Secure` and the
    /// request names a host other than this machine.
    fn warn_if_insecure<B>(&self, request: &Request<B>) {
        if self.cookies.settings().cookie_secure || self.insecure_warned.load(Ordering::Relaxed) {
            return;
        }
        let Some(host) = request_host(request) else {
            return;
        };
        if is_loopback(host) || self.insecure_warned.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(
            host = %host,
            "the session cookie is sent without Secure to a host that is not loopback; \
             if the site is served over HTTPS, turn on Settings::cookie_secure \
             (SESSION_COOKIE_SECURE) so that the cookie never travels in clear text"
        );
    }
}

/// The host a request was sent to: the URI's (HTTP/2, absolute form), else
/// the `Host` header's, port and all.
fn request_host<B>(request: &Request<B>) -> Option<&str> {
    request
        .uri()
        .host()
        .or_else(|| request.headers().get(HOST)?.to_str().ok())
        .filter(|host| !host.is_empty())
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
        self.warn_if_insecure(&request);
        let cookie_headers = request.headers().get_all(COOKIE);
        let request_session = self
            .cookies
            .request_session(cookie_headers.iter().filter_map(|v| v.to_str().ok()));
        let session = request_session.session().clone();
        request.extensions_mut().insert(session.clone());

        // The clone that was made ready by poll_ready is the one to call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            match request_session.finish(response.status().as_u16()).await {
                Ok(headers) => {
                    add_headers(headers, response.headers_mut());
                    Ok(response)
                }
                Err(SessionError::Interrupted) => Ok(plain(StatusCode::BAD_REQUEST)),
                Err(err) => {
                    // The message carries the whole cause; the key shows
                    // only as a fingerprint.
                    tracing::error!(
                        error = %err,
                        session = %session_fingerprint(&session),
                        "cannot save the session"
                    );
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

/// The short tag of the session's key for logs (see
/// [`SessionKey::fingerprint`](crate::SessionKey::fingerprint)), or `"none"`.
fn session_fingerprint(session: &Session) -> String {
    session
        .session_key()
        .and_then(|key| crate::SessionKey::parse(&key).ok())
        .map_or_else(|| "none".to_owned(), |key| key.fingerprint())
}

fn add_headers(session_headers: SessionHeaders, headers: &mut HeaderMap) {
    if let Some(cookie) = &session_headers.set_cookie {
        match HeaderValue::from_str(cookie) {
            Ok(value) => {
                headers.append(SET_COOKIE, value);
            }
            Err(_) => tracing::error!(
                "the session cookie is not a valid header value; check the cookie settings"
            ),
        }
    }
    let vary = headers.get_all(VARY).iter().filter_map(|v| v.to_str().ok());
    if let Some(value) = session_headers.vary_to_append(vary) {
        headers.append(VARY, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varies() -> SessionHeaders {
        SessionHeaders {
            set_cookie: None,
            vary_cookie: true,
        }
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
    fn vary_gets_cookie_once() {
        let mut headers = HeaderMap::new();
        add_headers(varies(), &mut headers);
        add_headers(varies(), &mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("Accept-Encoding, cookie"));
        add_headers(varies(), &mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("*"));
        add_headers(varies(), &mut headers);
        assert_eq!(headers.get(VARY).unwrap(), "*");
    }
}
