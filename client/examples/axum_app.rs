//! A small axum site with sessions in sessiond: a visit counter, a login
//! that cycles the session key, and a logout that flushes the session.
//!
//! Start sessiond, then the site:
//!
//! ```sh
//! cargo run --release -p sessiond -- serve &
//! cargo run -p sessiond-client --features axum --example axum_app
//! ```
//!
//! and open <http://127.0.0.1:3000/>. `SESSIOND_URL` and `SITE_LISTEN`
//! override the addresses.

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{Html, Redirect};
use axum::routing::get;
use sessiond_client::{Backend, Client, Session, SessionError, SessionLayer, Settings};

type Page = Result<Html<String>, (StatusCode, String)>;

fn fail(err: SessionError) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

async fn home(session: Session) -> Page {
    let visits = session
        .get::<u64>("visits")
        .await
        .map_err(fail)?
        .unwrap_or(0)
        + 1;
    session.insert("visits", visits).await.map_err(fail)?;
    let user = session.get::<String>("user").await.map_err(fail)?;
    let greeting = match user {
        Some(user) => format!("Hello, {user}. <a href=\"/logout\">Log out</a>"),
        None => "Not logged in. <a href=\"/login?user=ada\">Log in as ada</a>".to_owned(),
    };
    Ok(Html(format!(
        "<p>{greeting}</p><p>Visits in this session: {visits}</p>"
    )))
}

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

async fn login(
    session: Session,
    Query(login): Query<Login>,
) -> Result<Redirect, (StatusCode, String)> {
    // A new key on login, against session fixation, as Django's login() does.
    session.cycle_key().await.map_err(fail)?;
    session.insert("user", login.user).await.map_err(fail)?;
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Result<Redirect, (StatusCode, String)> {
    session.flush().await.map_err(fail)?;
    Ok(Redirect::to("/"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessiond =
        std::env::var("SESSIOND_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let listen = std::env::var("SITE_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());

    let client = Client::connect(sessiond.clone()).await?;
    let app = Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/logout", get(logout))
        .layer(SessionLayer::new(
            Backend::Server(client),
            Settings::default(),
        ));

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("serving on http://{listen}/ with sessions in {sessiond}");
    axum::serve(listener, app).await?;
    Ok(())
}
