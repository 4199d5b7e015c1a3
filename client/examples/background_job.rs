//! A session used outside any request: a background job (a queue worker, a
//! cron task, an admin command) that knows a session key, here one saved
//! from an earlier request, and changes that user's session, as Django code
//! does with `SessionStore(session_key=…)`.
//!
//! Start sessiond, then the job:
//!
//! ```sh
//! cargo run --release -p sessiond -- serve &
//! cargo run -p sessiond-client --example background_job
//! ```
//!
//! `SESSIOND_URL` overrides the address. With a session key as its argument
//! the job works on that session (one from a browser's `sessionid` cookie,
//! say); without one it creates a session first, as a request would.

use std::sync::Arc;

use sessiond_client::{Backend, Client, Session, SessionError, Settings};

/// The live session under `key`; `None` if it is missing or expired, or
/// `key` cannot be a session key. A job must not go on with such a session:
/// its save would create a new, orphan one.
async fn load_existing(
    backend: Backend,
    settings: Arc<Settings>,
    key: &str,
) -> Result<Option<Session>, SessionError> {
    let session = Session::new(backend, settings, Some(key));
    // Any read loads the session; one that is not there loses its key.
    session.keys().await?;
    Ok(session.session_key().is_some().then_some(session))
}

/// What the job does to one session: the cart has been checked out by the
/// payment worker, so it is emptied and the order noted. The save sends
/// only these two changes (a `Patch`), so the user's own requests running
/// meanwhile keep theirs.
async fn mark_paid(session: &Session, order: u64) -> Result<(), SessionError> {
    session.pop_or::<Vec<String>>("cart", Vec::new()).await?;
    session.insert("last_order", order).await?;
    // Without the session layer nothing saves for us.
    session.save().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessiond =
        std::env::var("SESSIOND_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let client = Client::connect(sessiond).await?;
    let backend = Backend::Server(client);
    // The same settings as the web app's: the cookie age decides the
    // expiry that a save renews.
    let settings = Arc::new(Settings::default());

    let key = match std::env::args().nth(1) {
        Some(key) => key,
        None => {
            // What a request would have done: a session with a cart.
            let session = Session::new(backend.clone(), settings.clone(), None);
            session.insert("cart", ["book", "lamp"]).await?;
            session.save().await?;
            session.session_key().ok_or("a saved session has a key")?
        }
    };

    // The job proper: load by key, change, save.
    let Some(session) = load_existing(backend, settings, &key).await? else {
        return Err("no such session: it expired, or the user logged out".into());
    };
    match mark_paid(&session, 1042).await {
        Ok(()) => {}
        // The user logged out while the job ran: nothing to update, and the
        // session is not brought back.
        Err(SessionError::Interrupted) => {
            println!("the session ended meanwhile; nothing saved");
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    }
    let cart = session
        .get::<Vec<String>>("cart")
        .await?
        .unwrap_or_default();
    let order = session.get::<u64>("last_order").await?;
    println!("cart: {cart:?}, last order: {order:?}");
    Ok(())
}
