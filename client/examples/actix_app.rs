//! The site of `axum_app.rs` on actix-web 4, which has its own `http`
//! types and is not tower-based: the session cookie is handled by the
//! framework-neutral steps of `SessionCookies` in a small middleware.
//!
//! Start sessiond, then the site:
//!
//! ```sh
//! cargo run --release -p sessiond -- serve &
//! cargo run -p sessiond-client --example actix_app
//! ```
//!
//! and open <http://127.0.0.1:3000/>. `SESSIOND_URL` and `SITE_LISTEN`
//! override the addresses. `client/tests/actix.rs` runs this middleware and
//! these handlers against a real sessiond.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, Data, Query, ReqData};
use actix_web::{App, HttpMessage, HttpResponse, HttpServer, ResponseError};
use sessiond_client::{
    Backend, Client, INTERRUPTED_BODY, Session, SessionCookies, SessionError, Settings,
};

/// Django's `SessionMiddleware` for actix-web: puts the request's
/// [`Session`] into its extensions (handlers take `ReqData<Session>`), and
/// saves it and sets its cookie on the way out. Needs a
/// `Data<SessionCookies>` in the app data. Warns, once, when the cookie
/// goes out without `Secure` to a host that is not this machine.
pub async fn sessions(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(cookies) = request.app_data::<Data<SessionCookies>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError(
            "no session settings: add App::app_data(Data::new(SessionCookies::new(…)))",
        ));
    };
    let host = request
        .uri()
        .host()
        .or_else(|| request.headers().get(header::HOST)?.to_str().ok());
    if let Some(host) = host {
        cookies.check_host(host);
    }
    let cookie_headers = request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok());
    let request_session = cookies.request_session(cookie_headers);
    request
        .extensions_mut()
        .insert(request_session.session().clone());

    let mut response = next.call(request).await?;
    match request_session.finish(response.status().as_u16()).await {
        Ok(session_headers) => {
            let headers = response.headers_mut();
            if let Some(cookie) = &session_headers.set_cookie {
                headers.append(header::SET_COOKIE, HeaderValue::from_str(cookie)?);
            }
            let vary = headers
                .get_all(header::VARY)
                .filter_map(|value| value.to_str().ok());
            if let Some(value) = session_headers.vary_to_append(vary) {
                headers.append(header::VARY, HeaderValue::from_static(value));
            }
            Ok(response.map_into_left_body())
        }
        // The session could not be saved: the handler's response is
        // replaced by a 400 (the session was deleted meanwhile) or a 500.
        Err(err) => {
            let (request, _) = response.into_parts();
            let answer = SessionFailure(err).error_response();
            Ok(ServiceResponse::new(request, answer).map_into_right_body())
        }
    }
}

/// A failed session call, as a handler's error, so that handlers can use
/// `?` (actix-web's `ResponseError` and `SessionError` are both foreign
/// here, hence the wrapper).
pub struct SessionFailure(SessionError);

/// The message only, as `Display` shows it: actix-web's `Logger` prints a
/// failed response's error with `{:?}`, and the derived form would show
/// serde's error inside `SessionError::Deserialize`, which can quote
/// session data.
impl std::fmt::Debug for SessionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl From<SessionError> for SessionFailure {
    fn from(err: SessionError) -> Self {
        Self(err)
    }
}

impl std::fmt::Display for SessionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for SessionFailure {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 400 for a session deleted meanwhile, saying what to do; 500, logged
    /// with its cause (which never holds the session key or data), for
    /// anything else. The body never carries the details.
    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let body = if let SessionError::Interrupted = self.0 {
            INTERRUPTED_BODY
        } else {
            tracing::error!(error = %self.0, "a request failed on its session");
            status.canonical_reason().unwrap_or_default()
        };
        HttpResponse::build(status)
            .content_type("text/plain; charset=utf-8")
            .body(body)
    }
}

type Page = Result<HttpResponse, SessionFailure>;

async fn home(session: ReqData<Session>) -> Page {
    let visits = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
    session.insert("visits", visits).await?;
    let greeting = match session.get::<String>("user").await? {
        Some(user) => format!(
            "Hello, {}. <a href=\"/logout\">Log out</a>",
            html_escape::encode_text(&user)
        ),
        None => "Not logged in. <a href=\"/login?user=ada\">Log in as ada</a>".to_owned(),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<p>{greeting}</p><p>Visits in this session: {visits}</p>"
        )))
}

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

async fn login(session: ReqData<Session>, login: Query<Login>) -> Page {
    // A new key on login, against session fixation, as Django's login() does.
    session.cycle_key().await?;
    session.insert("user", &login.user).await?;
    Ok(see_other("/"))
}

async fn logout(session: ReqData<Session>) -> Page {
    session.flush().await?;
    Ok(see_other("/"))
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// The site's pages.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(home))
        .route("/login", web::get().to(login))
        .route("/logout", web::get().to(logout));
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Where a failed session call is reported (RUST_LOG filters).
    tracing_subscriber::fmt::init();
    let sessiond =
        std::env::var("SESSIOND_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let listen = std::env::var("SITE_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());

    let client = Client::connect(sessiond.clone()).await?;
    let cookies = Data::new(SessionCookies::new(
        Backend::Server(client),
        Settings::default(),
    ));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(cookies.clone())
            .wrap(from_fn(sessions))
            .configure(routes)
    })
    .bind(&listen)?;
    println!("serving on http://{listen}/ with sessions in {sessiond}");
    server.run().await?;
    Ok(())
}
