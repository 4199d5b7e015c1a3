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
use axum::response::{Html, Redirect};
use axum::routing::get;
use sessiond_client::{Backend, Client, Session, SessionError, SessionLayer, Settings};

// A `SessionError` is a response: a session deleted meanwhile (a logout in
// another tab) answers 400, anything else 500, logged with its cause. So
// handlers use `?` on session calls.

async fn home(session: Session) -> Result<Html<String>, SessionError> {
    let visits = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
    session.insert("visits", visits).await?;
    let greeting = match session.get::<String>("user").await? {
        Some(user) => format!(
            "Hello, {}. <a href=\"/logout\">Log out</a>",
            html_escape::encode_text(&user)
        ),
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

async fn login(session: Session, Query(login): Query<Login>) -> Result<Redirect, SessionError> {
    // A new key on login, against session fixation, as Django's login() does.
    session.cycle_key().await?;
    session.insert("user", login.user).await?;
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Result<Redirect, SessionError> {
    session.flush().await?;
    Ok(Redirect::to("/"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Where a failed session call is reported (RUST_LOG filters).
    tracing_subscriber::fmt::init();
    let sessiond =
        std::env::var("SESSIOND_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let listen = std::env::var("SITE_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());

    // Lazy: the site starts even if sessiond is not up yet (both started
    // at once, by compose or systemd); pages that use the session answer
    // 500 until it is.
    let client = Client::connect_lazy(sessiond.clone())?;
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
