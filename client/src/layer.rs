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
//! that is not on the machine itself
//! ([`SessionCookies::check_host`](crate::SessionCookies::check_host)).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{CONTENT_TYPE, COOKIE, HOST, HeaderValue, SET_COOKIE, VARY};
use http::{HeaderMap, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::backend::Backend;
use crate::cookies::{INTERRUPTED_BODY, SessionCookies, SessionHeaders};
use crate::error::SessionError;
use crate::session::Session;
use crate::settings::Settings;

/// Adds a [`Session`] to every request and manages its cookie.
///
/// When the session cannot be saved it answers instead of the app: 400
/// with [`INTERRUPTED_BODY`] (a plain text) when the session was deleted
/// meanwhile, 500 with `Internal Server Error` otherwise, which it logs. The
/// response body type must be one a `&'static str` converts into (axum's
/// `Body` is).
///
/// With [`Settings::cookie_secure`] off (Django's default, for development
/// over plain HTTP), the first request whose `Host` is not loopback
/// (`localhost`, `127.0.0.0/8`, `::1`) logs one warning through `tracing`:
/// such a site is most likely served over HTTPS, where the cookie should be
/// `Secure`. One warning per layer (and its clones), never per request
/// ([`SessionCookies::check_host`]).
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Debug, Clone)]
pub struct SessionLayer {
    cookies: SessionCookies,
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
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> SessionService<S> {
        SessionService {
            inner,
            cookies: self.cookies.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around an app.
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    cookies: SessionCookies,
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if let Some(host) = request_host(&request) {
            self.cookies.check_host(host);
        }
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
                Err(SessionError::Interrupted) => {
                    Ok(plain(StatusCode::BAD_REQUEST, INTERRUPTED_BODY))
                }
                Err(err) => {
                    // The message carries the whole cause; the key shows
                    // only as a fingerprint.
                    tracing::error!(
                        error = %err,
                        session = %session_fingerprint(&session),
                        "cannot save the session"
                    );
                    Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, FAILED_BODY))
                }
            }
        })
    }
}

/// The body of the 500 answer; the details go to the log, never to the
/// client.
pub(crate) const FAILED_BODY: &str = "Internal Server Error";

/// A plain-text answer, as axum writes one.
fn plain<B: From<&'static str>>(status: StatusCode, body: &'static str) -> Response<B> {
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
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
