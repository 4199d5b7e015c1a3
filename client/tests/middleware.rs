//! `SessionLayer` through a real axum app over HTTP, against a real
//! sessiond: the cookie and `Vary` behaviour of Django's `SessionMiddleware`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use common::Sessiond;
use common::logs::Logs;
use common::pauses::{Paused, Pauses};
use reqwest::header::{CONTENT_TYPE, COOKIE, HOST, SET_COOKIE, VARY};
use sessiond_client::{
    Expiry, INTERRUPTED_BODY, SameSite, Session, SessionError, SessionLayer, Settings,
};

type Reply = Result<String, (StatusCode, String)>;

fn fail(err: sessiond_client::SessionError) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

async fn count(session: Session) -> Reply {
    let count = session
        .get::<i64>("count")
        .await
        .map_err(fail)?
        .unwrap_or(0);
    Ok(count.to_string())
}

async fn increment(session: Session) -> Reply {
    let count = session
        .get::<i64>("count")
        .await
        .map_err(fail)?
        .unwrap_or(0)
        + 1;
    session.insert("count", count).await.map_err(fail)?;
    Ok(count.to_string())
}

#[derive(serde::Deserialize)]
struct SetParams {
    key: String,
    value: String,
}

/// Loads the session, pauses, then sets one key: two of these on one
/// session overlap like two browser tabs.
async fn set_slowly(
    session: Session,
    State(pauses): State<Pauses>,
    Query(params): Query<SetParams>,
) -> Reply {
    session.keys().await.map_err(fail)?;
    pauses.pause().await;
    session
        .insert(&params.key, params.value)
        .await
        .map_err(fail)?;
    Ok("ok".into())
}

async fn flush(session: Session) -> Reply {
    session.flush().await.map_err(fail)?;
    Ok("flushed".into())
}

async fn login(session: Session) -> Reply {
    session.cycle_key().await.map_err(fail)?;
    session.insert("_auth_user_id", "42").await.map_err(fail)?;
    Ok("logged in".into())
}

async fn browser_close(session: Session) -> Reply {
    session
        .set_expiry(Expiry::BrowserClose)
        .await
        .map_err(fail)?;
    session.insert("x", 1).await.map_err(fail)?;
    Ok("ok".into())
}

async fn broken(session: Session) -> (StatusCode, &'static str) {
    let _ = session.insert("lost", true).await;
    (StatusCode::INTERNAL_SERVER_ERROR, "boom")
}

async fn untouched() -> &'static str {
    "nothing"
}

/// `/increment` with `?`: a `SessionError` is a response.
async fn increment_with_question_mark(session: Session) -> Result<String, SessionError> {
    let count = session.get::<i64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count).await?;
    Ok(count.to_string())
}

/// `/set` that saves by itself, so that the handler meets a logout that
/// happened meanwhile.
async fn save_slowly(
    session: Session,
    State(pauses): State<Pauses>,
    Query(params): Query<SetParams>,
) -> Result<&'static str, SessionError> {
    session.keys().await?;
    pauses.pause().await;
    session.insert(&params.key, params.value).await?;
    session.save().await?;
    Ok("saved")
}

/// An axum site with sessions on `sessiond`, served on 127.0.0.1:0.
async fn site(sessiond: &Sessiond, settings: Settings) -> String {
    site_with_pauses(sessiond, settings).await.0
}

/// [`site`], and the requests to `/set` and `/question-mark/set` that wait
/// for the test after loading their session.
async fn site_with_pauses(sessiond: &Sessiond, settings: Settings) -> (String, Paused) {
    let (pauses, paused) = Pauses::new();
    let app = Router::new()
        .route("/count", get(count))
        .route("/increment", get(increment))
        .route("/set", get(set_slowly))
        .route("/flush", get(flush))
        .route("/login", get(login))
        .route("/browser-close", get(browser_close))
        .route("/broken", get(broken))
        .route("/untouched", get(untouched))
        .route(
            "/question-mark/increment",
            get(increment_with_question_mark),
        )
        .route("/question-mark/set", get(save_slowly))
        .layer(SessionLayer::new(sessiond.backend(), settings))
        .with_state(pauses);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, paused)
}

/// Waits until `count` requests have loaded their session, runs `meanwhile`,
/// then lets the requests go on.
async fn between_load_and_save(
    paused: &mut Paused,
    count: usize,
    meanwhile: impl Future<Output = ()>,
) {
    let mut resumes = Vec::new();
    for _ in 0..count {
        resumes.push(paused.recv().await.expect("a paused request"));
    }
    meanwhile.await;
    for resume in resumes {
        resume.send(()).expect("the request still waits");
    }
}

struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    set_cookie: Vec<String>,
    vary: Option<String>,
    body: String,
}

impl Answer {
    /// The session key the response's cookie carries.
    fn key(&self) -> String {
        let cookie = self.set_cookie.first().expect("a Set-Cookie header");
        let value = cookie.split(';').next().unwrap();
        value.strip_prefix("sessionid=").unwrap().to_owned()
    }
}

async fn fetch(url: &str, cookie: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().get(url);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let set_cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    let vary = response
        .headers()
        .get(VARY)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    Answer {
        status,
        content_type,
        set_cookie,
        vary,
        body,
    }
}

/// The status of a GET of `url` sent with `Host: host`, as a browser
/// reaching the site under that name would send it.
async fn fetch_as(url: &str, host: &str) -> StatusCode {
    let response = reqwest::Client::new()
        .get(url)
        .header(HOST, host)
        .send()
        .await
        .unwrap();
    StatusCode::from_u16(response.status().as_u16()).unwrap()
}

#[tokio::test]
async fn a_modified_session_is_saved_and_gets_a_cookie_with_djangos_defaults() {
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    let answer = fetch(&format!("{url}/increment"), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.set_cookie.len(), 1);
    let cookie = &answer.set_cookie[0];
    assert!(
        cookie.ends_with(" GMT; HttpOnly; Max-Age=1209600; Path=/; SameSite=Lax"),
        "{cookie}"
    );
    assert!(cookie.contains("; expires="), "{cookie}");
    assert_eq!(answer.vary.as_deref(), Some("Cookie"));
    let key = answer.key();
    assert_eq!(key.len(), 32);
    assert!(sessiond.client.exists(&key).await.unwrap());

    let again = fetch(
        &format!("{url}/increment"),
        Some(&format!("sessionid={key}")),
    )
    .await;
    assert_eq!(again.body, "2");
    assert_eq!(again.key(), key);
}

#[tokio::test]
async fn cookie_attributes_follow_the_settings() {
    let sessiond = Sessiond::start().await;
    let settings = Settings {
        cookie_secure: true,
        cookie_httponly: false,
        cookie_samesite: Some(SameSite::None),
        cookie_domain: Some(".example.com".into()),
        cookie_path: "/app/".into(),
        ..Settings::default()
    };
    let url = site(&sessiond, settings).await;
    let answer = fetch(&format!("{url}/increment"), None).await;
    let cookie = &answer.set_cookie[0];
    assert!(
        cookie.contains("; Domain=.example.com; expires="),
        "{cookie}"
    );
    assert!(
        cookie.ends_with("; Max-Age=1209600; Path=/app/; SameSite=None; Secure"),
        "{cookie}"
    );
    assert!(!cookie.contains("HttpOnly"), "{cookie}");

    let strict = Settings {
        cookie_samesite: Some(SameSite::Strict),
        ..Settings::default()
    };
    let url = site(&sessiond, strict).await;
    assert!(
        fetch(&format!("{url}/increment"), None).await.set_cookie[0].contains("SameSite=Strict")
    );
}

#[tokio::test]
async fn a_browser_close_session_gets_a_cookie_without_max_age() {
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    let answer = fetch(&format!("{url}/browser-close"), None).await;
    let cookie = &answer.set_cookie[0];
    assert!(
        cookie.ends_with("; HttpOnly; Path=/; SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("expires"),
        "{cookie}"
    );

    let global = Settings {
        expire_at_browser_close: true,
        ..Settings::default()
    };
    let url = site(&sessiond, global).await;
    let cookie = &fetch(&format!("{url}/increment"), None).await.set_cookie[0];
    assert!(!cookie.contains("Max-Age"), "{cookie}");
}

#[tokio::test]
async fn nothing_is_saved_on_a_server_error() {
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    let answer = fetch(&format!("{url}/broken"), None).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(answer.set_cookie.is_empty());
    assert_eq!(answer.vary.as_deref(), Some("Cookie"));
}

/// A session is made, then `path` (a handler that sets `a`) is fetched with
/// it while the session is deleted between the handler's load and its save,
/// as a logout in another tab would. Returns the answer and the key.
async fn set_while_logged_out_elsewhere(sessiond: &Sessiond, path: &str) -> (Answer, String) {
    let (url, mut paused) = site_with_pauses(sessiond, Settings::default()).await;
    let key = fetch(&format!("{url}/increment"), None).await.key();
    let cookie = format!("sessionid={key}");
    let set = format!("{url}{path}?key=a&value=b");
    let (answer, ()) = tokio::join!(
        fetch(&set, Some(&cookie)),
        between_load_and_save(&mut paused, 1, async {
            sessiond.client.delete(&key).await.unwrap();
        }),
    );
    (answer, key)
}

/// The session is loaded by a request, then logged out elsewhere before the
/// layer saves it: 400, saying what to do.
#[tokio::test]
async fn an_update_of_a_session_deleted_meanwhile_answers_400() {
    let sessiond = Sessiond::start_with_metrics().await;
    let (answer, key) = set_while_logged_out_elsewhere(&sessiond, "/set").await;
    assert_interrupted(&answer);
    assert!(
        !sessiond.client.exists(&key).await.unwrap(),
        "the deleted session came back"
    );
    assert_eq!(sessiond.calls("Patch", "NOT_FOUND").await, 1);
}

/// The answer to a request whose session was deleted meanwhile.
fn assert_interrupted(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body, INTERRUPTED_BODY);
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(answer.set_cookie.is_empty(), "{:?}", answer.set_cookie);
}

#[tokio::test]
async fn an_emptied_session_deletes_its_cookie() {
    let sessiond = Sessiond::start().await;
    for (settings, expected) in [
        (
            Settings::default(),
            "sessionid=\"\"; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=Lax",
        ),
        (
            Settings {
                cookie_domain: Some(".example.com".into()),
                cookie_path: "/app/".into(),
                ..Settings::default()
            },
            "sessionid=\"\"; Domain=.example.com; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/app/; SameSite=Lax",
        ),
    ] {
        let url = site(&sessiond, settings).await;
        let key = fetch(&format!("{url}/increment"), None).await.key();
        let answer = fetch(&format!("{url}/flush"), Some(&format!("sessionid={key}"))).await;
        assert_eq!(answer.set_cookie, vec![expected.to_owned()]);
        assert_eq!(answer.vary.as_deref(), Some("Cookie"));
        assert!(!sessiond.client.exists(&key).await.unwrap());
    }
}

#[tokio::test]
async fn flush_without_a_cookie_sets_no_cookie() {
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    let answer = fetch(&format!("{url}/flush"), None).await;
    assert!(answer.set_cookie.is_empty());
    assert_eq!(answer.vary.as_deref(), Some("Cookie"));
}

#[tokio::test]
async fn reading_without_a_cookie_varies_but_sets_nothing() {
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    let answer = fetch(&format!("{url}/count"), None).await;
    assert_eq!(answer.body, "0");
    assert!(answer.set_cookie.is_empty());
    assert_eq!(answer.vary.as_deref(), Some("Cookie"));
}

#[tokio::test]
async fn an_untouched_session_with_an_unknown_key_changes_nothing() {
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    let answer = fetch(
        &format!("{url}/untouched"),
        Some("sessionid=abcdefghijklmnopqrstuvwxyz012345"),
    )
    .await;
    assert!(answer.set_cookie.is_empty());
    assert_eq!(answer.vary, None);
}

#[tokio::test]
async fn junk_cookies_give_a_fresh_session_never_an_error() {
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    let junk = "x".repeat(4096);
    for cookie in [
        "abc",
        "NOT-A-KEY-AT-ALL!",
        junk.as_str(),
        "../../etc/passwd",
    ] {
        let answer = fetch(
            &format!("{url}/increment"),
            Some(&format!("sessionid={cookie}")),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{cookie}");
        assert_eq!(answer.body, "1", "{cookie}");
        let key = answer.key();
        assert_ne!(key, cookie);
        assert_eq!(key.len(), 32);
    }
    // Untouched, a too-short cookie is dropped as Django drops it.
    let answer = fetch(&format!("{url}/untouched"), Some("sessionid=abc")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.set_cookie.len(), 1);
    assert!(
        answer.set_cookie[0].starts_with("sessionid=\"\"; expires=Thu, 01 Jan 1970"),
        "{:?}",
        answer.set_cookie
    );
}

#[tokio::test]
async fn save_every_request_renews_the_cookie_of_an_untouched_session() {
    let sessiond = Sessiond::start().await;
    let settings = Settings {
        save_every_request: true,
        ..Settings::default()
    };
    let url = site(&sessiond, settings).await;
    let key = fetch(&format!("{url}/increment"), None).await.key();
    let answer = fetch(
        &format!("{url}/untouched"),
        Some(&format!("sessionid={key}")),
    )
    .await;
    assert_eq!(answer.set_cookie.len(), 1);
    assert_eq!(answer.key(), key);
    assert_eq!(answer.vary.as_deref(), Some("Cookie"));
    // The data is kept; only the expiry moves.
    assert_eq!(
        fetch(&format!("{url}/count"), Some(&format!("sessionid={key}")))
            .await
            .body,
        "1"
    );
}

#[tokio::test]
async fn login_cycles_the_key() {
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    let before = fetch(&format!("{url}/increment"), None).await.key();
    let after = fetch(
        &format!("{url}/login"),
        Some(&format!("sessionid={before}")),
    )
    .await
    .key();
    assert_ne!(before, after);
    assert!(!sessiond.client.exists(&before).await.unwrap());
    assert_eq!(
        fetch(&format!("{url}/count"), Some(&format!("sessionid={after}")))
            .await
            .body,
        "1"
    );
}

#[tokio::test]
async fn two_concurrent_requests_changing_different_keys_both_survive() {
    let sessiond = Sessiond::start().await;
    let (url, mut paused) = site_with_pauses(&sessiond, Settings::default()).await;
    let key = fetch(&format!("{url}/increment"), None).await.key();
    let cookie = format!("sessionid={key}");
    let cart = format!("{url}/set?key=cart&value=book");
    let theme = format!("{url}/set?key=theme&value=dark");
    // Both have loaded the session before either saves.
    let (tab_a, tab_b, ()) = tokio::join!(
        fetch(&cart, Some(&cookie)),
        fetch(&theme, Some(&cookie)),
        between_load_and_save(&mut paused, 2, async {}),
    );
    assert_eq!(tab_a.status, StatusCode::OK);
    assert_eq!(tab_b.status, StatusCode::OK);
    let loaded = sessiond.client.load(&key).await.unwrap().unwrap();
    let data: serde_json::Value = serde_json::from_str(&loaded.data).unwrap();
    assert_eq!(data["cart"], "book", "{}", loaded.data);
    assert_eq!(data["theme"], "dark", "{}", loaded.data);
    assert_eq!(data["count"], 1, "{}", loaded.data);
}

/// A handler's failed session call answers 500 through `?`, logged once
/// with its cause and without the session key; nothing leaks to the client.
#[tokio::test(flavor = "current_thread")]
async fn a_handler_using_question_mark_answers_500_when_sessiond_is_down() {
    let (logs, _guard) = Logs::capture("sessiond_client=error");
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    let key = fetch(&format!("{url}/question-mark/increment"), None)
        .await
        .key();
    sessiond.stop().await;

    let answer = fetch(
        &format!("{url}/question-mark/increment"),
        Some(&format!("sessionid={key}")),
    )
    .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.body, "Internal Server Error");
    assert!(answer.set_cookie.is_empty());
    assert_eq!(answer.vary.as_deref(), Some("Cookie"));

    let logged = logs.text();
    assert_eq!(
        logged.matches(" ERROR ").count(),
        1,
        "logged once:\n{logged}"
    );
    assert!(
        logged.contains("a request failed on its session"),
        "{logged}"
    );
    // The cause, down to the transport (a refused or a closed connection).
    assert!(
        logged.contains("error=the session store failed: sessiond Load failed ("),
        "{logged}"
    );
    assert!(logged.contains(": transport error: "), "{logged}");
    assert!(!logged.contains(&key), "the key was logged:\n{logged}");
}

/// A failure of the final save, in the layer, is logged once too.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_final_save_answers_500_and_is_logged_once() {
    let (logs, _guard) = Logs::capture("sessiond_client=error");
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    sessiond.stop().await;

    // No cookie: the handler never calls the store; the save does.
    let answer = fetch(&format!("{url}/question-mark/increment"), None).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(answer.set_cookie.is_empty());
    let logged = logs.text();
    assert_eq!(
        logged.matches(" ERROR ").count(),
        1,
        "logged once:\n{logged}"
    );
    assert!(logged.contains("cannot save the session"), "{logged}");
    assert!(
        logged.contains("error=the session store failed: sessiond Create failed ("),
        "{logged}"
    );
    assert!(logged.contains(": transport error: "), "{logged}");
}

/// The handler's own save meets the logout and answers 400 through `?`;
/// the layer then answers the same, without saving again (one Patch reaches
/// sessiond, not two), so the explanation reaches the user.
#[tokio::test]
async fn a_handler_using_question_mark_answers_400_after_a_concurrent_logout() {
    let sessiond = Sessiond::start_with_metrics().await;
    let (answer, key) = set_while_logged_out_elsewhere(&sessiond, "/question-mark/set").await;
    assert_interrupted(&answer);
    assert!(
        !sessiond.client.exists(&key).await.unwrap(),
        "the deleted session came back"
    );
    assert_eq!(
        sessiond.calls("Patch", "NOT_FOUND").await,
        1,
        "the session was saved again after the handler's save failed"
    );
}

/// A cookie without `Secure` on a site reached under a public name warns
/// once per layer; loopback names and `Secure` cookies never warn.
#[tokio::test(flavor = "current_thread")]
async fn a_cookie_without_secure_on_a_public_host_warns_once() {
    let (logs, _guard) = Logs::capture("sessiond_client=warn");
    let sessiond = Sessiond::start().await;
    let url = site(&sessiond, Settings::default()).await;
    let warnings = || logs.text().matches(" WARN ").count();

    for host in ["127.0.0.1", "localhost:3000", "[::1]:3000", "127.0.0.2"] {
        assert_eq!(
            fetch_as(&format!("{url}/increment"), host).await,
            StatusCode::OK
        );
    }
    assert_eq!(warnings(), 0, "{}", logs.text());

    for _ in 0..3 {
        assert_eq!(
            fetch_as(&format!("{url}/increment"), "shop.example.com").await,
            StatusCode::OK
        );
    }
    let logged = logs.text();
    assert_eq!(warnings(), 1, "warned once:\n{logged}");
    assert!(logged.contains("without Secure"), "{logged}");
    assert!(logged.contains("host=shop.example.com"), "{logged}");

    let secure = site(&sessiond, Settings::builder().secure(true).build()).await;
    fetch_as(&format!("{secure}/increment"), "shop.example.com").await;
    assert_eq!(warnings(), 1, "{}", logs.text());

    // Another layer warns on its own.
    let other = site(&sessiond, Settings::default()).await;
    fetch_as(&format!("{other}/untouched"), "10.0.0.7:8000").await;
    assert_eq!(warnings(), 2, "{}", logs.text());
}
