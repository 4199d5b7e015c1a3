//! Django's `signed_cookies` engine in the client: cookies Django signed are
//! read, cookies the client signs have Django's form, and tampering gives a
//! fresh session. No server is involved.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use reqwest::header::{COOKIE, SET_COOKIE};
use sessiond_client::{Backend, Session, SessionLayer, Settings, SignedCookies};

const SECRET: &str = "sessiond-test-secret";

/// `{'a': 1}` signed by Django 6.1 for the signed_cookies engine with
/// SECRET_KEY `sessiond-test-secret` at 2026-01-01T00:00:00Z.
const DJANGO_COOKIE: &str = "eyJhIjoxfQ:1vb66i:hC6rO9N40wsFYA1qfylbi3MZVjhw0PDHyrbVuSuXSPw";

fn backend(secret: &str) -> Backend {
    Backend::SignedCookies(SignedCookies::new(secret, Vec::<String>::new()).unwrap())
}

fn session(backend: Backend, cookie_age: i64, cookie: Option<&str>) -> Session {
    let settings = Settings {
        cookie_age,
        ..Settings::default()
    };
    Session::new(backend, Arc::new(settings), cookie)
}

const TEN_YEARS: i64 = 10 * 366 * 86_400;

#[tokio::test]
async fn a_cookie_signed_by_django_is_read() {
    let session = session(backend(SECRET), TEN_YEARS, Some(DJANGO_COOKIE));
    assert_eq!(session.get::<i64>("a").await.unwrap(), Some(1));
    assert!(!session.exists(DJANGO_COOKIE).await.unwrap());
}

#[tokio::test]
async fn a_cookie_older_than_the_cookie_age_is_an_empty_session() {
    // Signed at 2026-01-01, more than two weeks before any run of this test.
    let session = session(backend(SECRET), 1_209_600, Some(DJANGO_COOKIE));
    assert_eq!(session.get::<i64>("a").await.unwrap(), None);
    assert_eq!(session.session_key(), None);
}

#[tokio::test]
async fn another_secret_or_a_tampered_cookie_is_an_empty_session() {
    let tampered = DJANGO_COOKIE.replacen("eyJhIjox", "eyJhIjoy", 1);
    for (secret, cookie) in [
        ("another-secret", DJANGO_COOKIE),
        (SECRET, tampered.as_str()),
    ] {
        let session = session(backend(secret), TEN_YEARS, Some(cookie));
        assert_eq!(session.get_value("a").await.unwrap(), None, "{cookie}");
    }
}

#[tokio::test]
async fn a_cookie_signed_with_a_fallback_key_is_read_and_resigned_with_the_primary() {
    let old = session(backend("the-old-secret"), TEN_YEARS, None);
    old.insert("user", "ada").await.unwrap();
    old.save().await.unwrap();
    let old_cookie = old.session_key().unwrap();

    let rotated =
        Backend::SignedCookies(SignedCookies::new("the-new-secret", ["the-old-secret"]).unwrap());
    let session = session(rotated, TEN_YEARS, Some(&old_cookie));
    assert_eq!(
        session.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    session.save().await.unwrap();
    let new_cookie = session.session_key().unwrap();
    let only_new = self::session(backend("the-new-secret"), TEN_YEARS, Some(&new_cookie));
    assert_eq!(
        only_new.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
}

/// A session Django 5.2 wrote (signed_cookies, same secret, at
/// 2026-01-01T00:00:00Z): `{"z": 1, "big": 2**70, "f": 1e16, "name": "Zoë",
/// "nested": {"y": [1.5, 2, 1e-05], "x": None}, "a": True}`, in that order.
const DJANGO_SESSION: &str = ".eJwNydEKgkAQheF3ObeNMWfd1ZpHKbtQmiIwA3OhEt-9vfrh-1f8YBQMj3spD5qObIK2bCNZax1DFNzK8h0bwdQ_HYbTq8uqPqCIvxe_wlZ8YWfukwShV5ougg9syuO4CXrYMmff_hBfHa4:1vb66i:M4l2m_XO-Bk7FCMty2NEUWVtVHSPJdwlNeO_uoyTEzk";

/// What Django 5.2 signed after `session["added"] = "new"` on it.
const DJANGO_RESAVED: &str = ".eJwVi8EOgkAMRP9lrlbTLrug_RTRA2SrMUFMlI0o4d-tp5m8ebPgCxVCf7t6yp7TQerAjTRRpOIqhki4-GQbqQljdzcojo9TYbYeTuw1WYYu-EBb2SUKJLbldCbM0LEMw0rooNOzmJec_7bf3lh_y8Ah2A:1vb66i:YfiJlyvcQeFrwiDqh3sN9XopItH9HNFj4pKu1HTGua4";

/// The compressed, base64-encoded JSON of a signed cookie, without the
/// timestamp and signature (which depend on when it was signed).
fn payload(cookie: &str) -> &str {
    cookie.split(':').next().unwrap()
}

/// Django's bytes come out of a re-signed Django session: this proves the
/// client re-encodes what the app did not touch as Django wrote it, keys
/// in order. It cannot prove that the client needs no serde_json feature
/// for it: inside this workspace the server turns on `arbitrary_precision`
/// and `preserve_order` for every crate, so values kept in a
/// `serde_json::Map` would pass too. `client/tests/app_json/` (run by
/// `client/tests/app_json.rs`), an app in a workspace of its own where both
/// are off, repeats this case as the proof.
#[tokio::test]
async fn what_the_app_does_not_touch_is_signed_again_byte_for_byte() {
    let session = session(backend(SECRET), TEN_YEARS, Some(DJANGO_SESSION));
    assert_eq!(
        session.keys().await.unwrap(),
        ["z", "big", "f", "name", "nested", "a"]
    );
    session.insert("added", "new").await.unwrap();
    session.save().await.unwrap();
    let cookie = session.session_key().unwrap();
    // The whole session is re-encoded, and Django's bytes come out: 2**70
    // to the digit, 1e+16 and 1e-05 as Python writes them, keys in order.
    assert_eq!(payload(&cookie), payload(DJANGO_RESAVED));
    assert_eq!(
        session.keys().await.unwrap(),
        ["z", "big", "f", "name", "nested", "a", "added"]
    );

    let reread = self::session(backend(SECRET), TEN_YEARS, Some(&cookie));
    assert_eq!(
        reread.get::<u128>("big").await.unwrap(),
        Some(1_180_591_620_717_411_303_424)
    );
    assert_eq!(reread.get::<f64>("f").await.unwrap(), Some(1e16));
    assert_eq!(
        reread.get::<String>("added").await.unwrap().as_deref(),
        Some("new")
    );
}

#[tokio::test]
async fn an_empty_secret_is_refused() {
    assert!(SignedCookies::new("", Vec::<String>::new()).is_err());
}

async fn increment(session: Session) -> Result<String, StatusCode> {
    let count = session
        .get::<i64>("count")
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
        .unwrap_or(0)
        + 1;
    session
        .insert("count", count)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(count.to_string())
}

async fn logout(session: Session) -> Result<&'static str, StatusCode> {
    session
        .flush()
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok("bye")
}

#[tokio::test]
async fn the_session_layer_keeps_the_session_in_a_signed_cookie() {
    let app = Router::new()
        .route("/increment", get(increment))
        .route("/logout", get(logout))
        .layer(SessionLayer::new(backend(SECRET), Settings::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let mut cookie: Option<String> = None;
    for expected in 1..=3 {
        let mut request = http.get(format!("{url}/increment"));
        if let Some(value) = &cookie {
            request = request.header(COOKIE, format!("sessionid={value}"));
        }
        let response = request.send().await.unwrap();
        let set_cookie = response
            .headers()
            .get(SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(response.text().await.unwrap(), expected.to_string());
        let value = set_cookie
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("sessionid=")
            .unwrap()
            .to_owned();
        assert_eq!(value.split(':').count(), 3, "{value}");
        assert!(
            set_cookie.contains("; HttpOnly; Max-Age=1209600; Path=/; SameSite=Lax"),
            "{set_cookie}"
        );
        cookie = Some(value);
    }

    // Tampering with the cookie starts over instead of failing.
    let forged = cookie.clone().unwrap().replacen(':', "x:", 1);
    let response = http
        .get(format!("{url}/increment"))
        .header(COOKIE, format!("sessionid={forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "1");

    let response = http
        .get(format!("{url}/logout"))
        .header(COOKIE, format!("sessionid={}", cookie.unwrap()))
        .send()
        .await
        .unwrap();
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        set_cookie.starts_with("sessionid=\"\"; expires=Thu, 01 Jan 1970"),
        "{set_cookie}"
    );
}
