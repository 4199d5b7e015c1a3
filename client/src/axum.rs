//! The [`Session`] as an axum extractor, for handlers behind a
//! [`SessionLayer`](crate::SessionLayer).

use axum_core::extract::FromRequestParts;
use http::StatusCode;
use http::request::Parts;

use crate::session::Session;

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no session: add sessiond_client::SessionLayer to the router",
        ))
    }
}
