//! `Settings::builder()`: Django's defaults, one method per `SESSION_*`
//! setting, and ages given as `Duration`s that reach the cookie. No server:
//! sessions live in signed cookies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sessiond_client::{
    Backend, DEFAULT_COOKIE_AGE, SameSite, SaveMode, SessionCookies, Settings, SignedCookies,
};

fn cookies(settings: impl Into<Settings>) -> SessionCookies {
    let backend = Backend::SignedCookies(SignedCookies::new("a secret", [""; 0]).unwrap());
    SessionCookies::new(backend, settings)
}

/// The `Set-Cookie` of a request that stores one value.
async fn set_cookie(cookies: &SessionCookies) -> String {
    let request = cookies.request_session(None);
    request.session().insert("visits", 1).await.unwrap();
    request.finish(200).await.unwrap().set_cookie.unwrap()
}

#[test]
fn the_builder_starts_from_djangos_defaults() {
    let django = Settings {
        cookie_name: "sessionid".to_owned(),
        cookie_age: 1_209_600,
        cookie_domain: None,
        cookie_path: "/".to_owned(),
        cookie_secure: false,
        cookie_httponly: true,
        cookie_samesite: Some(SameSite::Lax),
        expire_at_browser_close: false,
        save_every_request: false,
        save_mode: SaveMode::Patch,
    };
    assert_eq!(Settings::builder().build(), django);
    assert_eq!(Settings::default(), django);
    assert_eq!(Settings::from(Settings::builder()), django);
}

#[test]
fn each_builder_method_sets_its_django_setting() {
    let built = Settings::builder()
        .cookie_name("shop_session")
        .cookie_age(Duration::from_secs(3600))
        .domain(".example.com")
        .path("/shop/")
        .secure(true)
        .http_only(false)
        .same_site(SameSite::Strict)
        .expire_at_browser_close(true)
        .save_every_request(true)
        .save_mode(SaveMode::Whole)
        .build();
    let written = Settings {
        cookie_name: "shop_session".to_owned(),
        cookie_age: 3600,
        cookie_domain: Some(".example.com".to_owned()),
        cookie_path: "/shop/".to_owned(),
        cookie_secure: true,
        cookie_httponly: false,
        cookie_samesite: Some(SameSite::Strict),
        expire_at_browser_close: true,
        save_every_request: true,
        save_mode: SaveMode::Whole,
    };
    assert_eq!(built, written);
    let without = Settings::builder().no_same_site().build();
    assert_eq!(without.cookie_samesite, None);
    // The last call wins.
    let relaxed = Settings::builder()
        .no_same_site()
        .same_site(SameSite::None)
        .build();
    assert_eq!(relaxed.cookie_samesite, Some(SameSite::None));
}

#[test]
fn a_duration_cookie_age_counts_whole_seconds() {
    let age = |duration| Settings::builder().cookie_age(duration).build().cookie_age;
    assert_eq!(age(Duration::from_millis(90_999)), 90);
    assert_eq!(age(Duration::ZERO), 0);
    assert_eq!(age(Duration::MAX), i64::MAX);
    assert_eq!(age(Duration::from_secs(14 * 24 * 3600)), DEFAULT_COOKIE_AGE);
}

#[tokio::test]
async fn the_cookie_carries_the_built_settings() {
    let cookies = cookies(
        Settings::builder()
            .cookie_name("shop_session")
            .cookie_age(Duration::from_secs(3600))
            .path("/shop/")
            .secure(true),
    );
    let cookie = set_cookie(&cookies).await;
    assert!(cookie.starts_with("shop_session="), "{cookie}");
    assert!(
        cookie.ends_with("; HttpOnly; Max-Age=3600; Path=/shop/; SameSite=Lax; Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn built_default_settings_make_djangos_cookie() {
    let built = set_cookie(&cookies(Settings::builder())).await;
    let default = set_cookie(&cookies(Settings::default())).await;
    let attributes = |cookie: &str| {
        cookie
            .split("; ")
            .filter(|part| !part.starts_with("sessionid=") && !part.starts_with("expires="))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(attributes(&built), attributes(&default));
    assert_eq!(
        attributes(&built),
        ["HttpOnly", "Max-Age=1209600", "Path=/", "SameSite=Lax"]
    );
}
