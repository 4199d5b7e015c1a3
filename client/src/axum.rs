//! The [`Session`] as an axum extractor, for handlers behind a
//! [`SessionLayer`](crate::SessionLayer), and [`SessionError`] as a
//! response, so that handlers can use `?`.

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::cookies::INTERRUPTED_BODY;
use crate::error::SessionError;
use crate::layer::FAILED_BODY;
use crate::session::Session;

/// A handler behind a [`SessionLayer`](crate::SessionLayer) takes the
/// request's session as an argument; without the layer it answers 500.
///
/// ```
/// use sessiond_client::{Session, SessionError};
///
/// async fn cart(session: Session) -> Result<String, SessionError> {
///     let cart = session.get::<Vec<String>>("cart").await?.unwrap_or_default();
///     Ok(format!("{} items", cart.len()))
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(cart);
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no session: add sessiond_client::SessionLayer to the router",
        ))
    }
}

/// A handler that returns `Result<_, SessionError>` can use `?` on session
/// calls.
///
/// [`SessionError::Interrupted`] (the session was deleted meanwhile, e.g. by
/// a logout in another tab) answers 400 with
/// [`INTERRUPTED_BODY`](crate::INTERRUPTED_BODY), as the session layer
/// does, and is not logged: it is the user's doing, not a fault. Anything else answers
/// 500 with a fixed body, and is logged here, once, with
/// `tracing::error!` and the whole cause (which never holds the session key
/// or data). A handler that handles a session error itself, rather than
/// returning it, decides whether to log it: the crate never logs an error it
/// hands back to the app, so no failure is logged twice.
///
/// ```
/// use sessiond_client::{Session, SessionError};
///
/// async fn visits(session: Session) -> Result<String, SessionError> {
///     let visits = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
///     session.insert("visits", visits).await?;
///     Ok(format!("visit {visits}"))
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(visits);
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        if let Self::Interrupted = self {
            return (StatusCode::BAD_REQUEST, INTERRUPTED_BODY).into_response();
        }
        tracing::error!(error = %self, "a request failed on its session");
        (StatusCode::INTERNAL_SERVER_ERROR, FAILED_BODY).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_answer_as_the_session_layer_does() {
        let interrupted = SessionError::Interrupted.into_response();
        assert_eq!(interrupted.status(), StatusCode::BAD_REQUEST);
        let failed = SessionError::KeyNotFound("cart".into()).into_response();
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        for err in [SessionError::Interrupted, SessionError::NotAnObject] {
            let status = err.http_status();
            assert_eq!(err.into_response().status().as_u16(), status);
        }
    }
}
