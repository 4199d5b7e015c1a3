//! `_session_expiry` values that no time can hold (issue 16): another writer
//! may store `1e300`, `u64::MAX` or year 10000, and the client must treat
//! them as no expiry, never panic. Checked through the public [`Session`]
//! API, on the paths the session layer and `save` take, and as properties
//! over arbitrary JSON numbers, strings and modification times.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Datelike, FixedOffset, TimeDelta, Utc};
use common::Sessiond;
use proptest::prelude::*;
use serde_json::{Number, Value, json};
use sessiond_client::{
    Backend, DEFAULT_COOKIE_AGE, EXPIRY_KEY, Expiry, ExpiryArgs, Session, Settings, SignedCookies,
};

const SECRET: &str = "sessiond-test-secret";

/// First and last second of the years 1 to 9999 (UTC), Python's `datetime`
/// range.
const FIRST: i64 = -62_135_596_800;
const LAST: i64 = 253_402_300_799;

/// A new session in a signed cookie: no server, no I/O.
fn session(settings: Settings) -> Session {
    let backend = Backend::SignedCookies(SignedCookies::new(SECRET, Vec::<String>::new()).unwrap());
    Session::new(backend, Arc::new(settings), None)
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn close_to(a: DateTime<FixedOffset>, b: DateTime<Utc>) -> bool {
    (a.with_timezone(&Utc) - b).num_seconds().abs() <= 2
}

/// Stored values no time in the years 1 to 9999 can stand for.
fn unrepresentable() -> Vec<Value> {
    vec![
        json!(1e300),
        json!(-1e300),
        json!(1e19),
        json!(-1e19),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(-100_000_000_000_000_i64),
        json!(300_000_000_000_i64),
        // Too big for an f64, kept as text by serde_json's
        // `arbitrary_precision` when the workspace turns it on.
        serde_json::from_str("123456789012345678901234567890").unwrap(),
        json!("10000-01-01T00:00:00+00:00"),
        json!("9999-12-31T23:59:59-00:01"),
        json!("0001-01-01T00:00:00+00:01"),
        json!("+262143-12-31T23:59:59+00:00"),
    ]
}

/// Stored values Django could not have written or cannot parse.
fn invalid() -> Vec<Value> {
    vec![
        json!("0001-01-01"),
        json!("soon"),
        json!(""),
        json!("2026-13-01T00:00:00+00:00"),
        json!(true),
        json!(null),
        json!([3600]),
        json!({"seconds": 1e300}),
    ]
}

#[tokio::test]
async fn an_unrepresentable_or_invalid_expiry_reads_as_none() {
    for browser_close in [false, true] {
        for stored in unrepresentable().into_iter().chain(invalid()) {
            let session = session(Settings {
                expire_at_browser_close: browser_close,
                ..Settings::default()
            });
            session.insert(EXPIRY_KEY, &stored).await.unwrap();
            let now = Utc::now();
            let date = session.get_expiry_date().await.unwrap();
            assert!(
                close_to(date, now + TimeDelta::seconds(DEFAULT_COOKIE_AGE)),
                "{stored}: {date}"
            );
            assert_eq!(
                session.get_expiry_age().await.unwrap(),
                DEFAULT_COOKIE_AGE,
                "{stored}"
            );
            assert_eq!(
                session.get_expire_at_browser_close().await.unwrap(),
                browser_close,
                "{stored}"
            );
            // The layer saves after asking for the above.
            session.save().await.unwrap();
        }
    }
}

#[tokio::test]
async fn expiries_at_the_ends_of_the_range_are_honoured() {
    let session = session(Settings::default());
    for (stored, date) in [
        ("9999-12-31T23:59:59+00:00", LAST),
        ("0001-01-01T00:00:00+00:00", FIRST),
    ] {
        session.insert(EXPIRY_KEY, stored).await.unwrap();
        let expected = DateTime::from_timestamp(date, 0).unwrap();
        assert_eq!(session.get_expiry_date().await.unwrap(), expected);
        let age = session.get_expiry_age().await.unwrap();
        assert!((age - (expected - Utc::now()).num_seconds()).abs() <= 2);
        assert!(!session.get_expire_at_browser_close().await.unwrap());
    }
}

#[tokio::test]
async fn set_expiry_out_of_range_stores_no_expiry() {
    let far = DateTime::<Utc>::MAX_UTC.fixed_offset();
    let before_year_one = DateTime::from_timestamp(FIRST - 1, 0)
        .unwrap()
        .fixed_offset();
    for expiry in [
        Expiry::In(TimeDelta::MAX),
        Expiry::In(TimeDelta::MIN),
        Expiry::In(TimeDelta::days(3_000_000)),
        Expiry::At(far),
        Expiry::At(before_year_one),
    ] {
        let session = session(Settings::default());
        session.set_expiry(Expiry::Seconds(60)).await.unwrap();
        session.set_expiry(expiry).await.unwrap();
        assert_eq!(
            session.get_value(EXPIRY_KEY).await.unwrap(),
            None,
            "{expiry:?}"
        );
        assert_eq!(session.get_expiry_age().await.unwrap(), DEFAULT_COOKIE_AGE);
    }
    // Seconds are stored as given, as Django stores them; they read as none.
    let session = session(Settings::default());
    session.set_expiry(Expiry::Seconds(i64::MAX)).await.unwrap();
    assert_eq!(
        session.get_value(EXPIRY_KEY).await.unwrap(),
        Some(json!(i64::MAX))
    );
    assert_eq!(session.get_expiry_age().await.unwrap(), DEFAULT_COOKIE_AGE);
    assert!(close_to(
        session.get_expiry_date().await.unwrap(),
        Utc::now() + TimeDelta::seconds(DEFAULT_COOKIE_AGE)
    ));
}

#[tokio::test]
async fn expiries_from_durations_are_stored_as_django_stores_them() {
    let session = session(Settings::default());
    session
        .set_expiry(Expiry::after_inactivity(Duration::from_millis(1_800_900)))
        .await
        .unwrap();
    assert_eq!(
        session.get_value(EXPIRY_KEY).await.unwrap(),
        Some(json!(1800))
    );
    assert_eq!(session.get_expiry_age().await.unwrap(), 1800);

    session
        .set_expiry(Expiry::from_now(Duration::from_secs(3600)))
        .await
        .unwrap();
    let stored = session.get::<String>(EXPIRY_KEY).await.unwrap().unwrap();
    let at = DateTime::parse_from_rfc3339(&stored).unwrap();
    assert!(close_to(at, Utc::now() + TimeDelta::hours(1)), "{stored}");
    assert!((3598..=3600).contains(&session.get_expiry_age().await.unwrap()));

    // Zero seconds is Django's "when the browser closes".
    session
        .set_expiry(Expiry::after_inactivity(Duration::ZERO))
        .await
        .unwrap();
    assert!(session.get_expire_at_browser_close().await.unwrap());

    // Past the year 9999: no expiry, as for any other time out of range.
    for expiry in [
        Expiry::from_now(Duration::MAX),
        Expiry::from_now(Duration::from_secs(400 * 366 * 86_400 * 25)),
    ] {
        session.set_expiry(expiry).await.unwrap();
        assert_eq!(session.get_value(EXPIRY_KEY).await.unwrap(), None);
        assert_eq!(session.get_expiry_age().await.unwrap(), DEFAULT_COOKIE_AGE);
    }
    // So are seconds no i64 holds, stored as the largest and read as none.
    session
        .set_expiry(Expiry::after_inactivity(Duration::MAX))
        .await
        .unwrap();
    assert_eq!(
        session.get_value(EXPIRY_KEY).await.unwrap(),
        Some(json!(i64::MAX))
    );
    assert_eq!(session.get_expiry_age().await.unwrap(), DEFAULT_COOKIE_AGE);
}

/// The `expire_date` the server stored for `key`, as seconds from now.
async fn stored_age(server: &Sessiond, key: &str) -> i64 {
    let loaded = server.client.load(key).await.unwrap().unwrap();
    let expire: DateTime<Utc> = loaded.expire_date.into();
    (expire - DateTime::<Utc>::from(SystemTime::now())).num_seconds()
}

#[tokio::test]
async fn the_server_gets_the_cookie_age_for_an_unrepresentable_expiry() {
    let server = Sessiond::start().await;
    for stored in unrepresentable() {
        // Create, then update (a patch), then cycle the key: the three ways
        // an expire_date reaches the server.
        let session = server.session(None);
        session.insert(EXPIRY_KEY, &stored).await.unwrap();
        session.save().await.unwrap();
        let key = session.session_key().unwrap();
        assert!(
            (stored_age(&server, &key).await - DEFAULT_COOKIE_AGE).abs() <= 2,
            "{stored}"
        );

        let session = server.session(Some(&key));
        session.insert("user", "ada").await.unwrap();
        session.insert(EXPIRY_KEY, &stored).await.unwrap();
        session.save().await.unwrap();
        assert!(
            (stored_age(&server, &key).await - DEFAULT_COOKIE_AGE).abs() <= 2,
            "{stored}"
        );

        session.cycle_key().await.unwrap();
        let key = session.session_key().unwrap();
        assert!(
            (stored_age(&server, &key).await - DEFAULT_COOKIE_AGE).abs() <= 2,
            "{stored}"
        );
    }
}

#[cfg(feature = "axum")]
mod layer {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use reqwest::header::SET_COOKIE;
    use sessiond_client::SessionLayer;

    use super::*;

    /// Stores the JSON body as the session's `_session_expiry`.
    async fn store_expiry(session: Session, body: String) -> Result<(), StatusCode> {
        let value: Value = serde_json::from_str(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
        session
            .insert(EXPIRY_KEY, value)
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
    }

    #[tokio::test]
    async fn the_cookie_of_an_unrepresentable_expiry_lives_for_the_cookie_age() {
        let backend =
            Backend::SignedCookies(SignedCookies::new(SECRET, Vec::<String>::new()).unwrap());
        let app = Router::new()
            .route("/expiry", post(store_expiry))
            .layer(SessionLayer::new(backend, Settings::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/expiry", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let http = reqwest::Client::new();
        // The Set-Cookie of a session whose `_session_expiry` is `stored`.
        let cookie_of = |stored: Value| {
            let request = http.post(&url).body(stored.to_string()).send();
            async move {
                let response = request.await.unwrap();
                assert_eq!(response.status(), 200, "{stored}");
                response.headers()[SET_COOKIE].to_str().unwrap().to_owned()
            }
        };
        let cases = unrepresentable()
            .into_iter()
            .chain(invalid())
            .map(|stored| (stored, DEFAULT_COOKIE_AGE))
            .chain([(json!(3600), 3600)]);
        for (stored, max_age) in cases {
            let cookie = cookie_of(stored.clone()).await;
            assert!(
                cookie.contains(&format!("; Max-Age={max_age}; ")),
                "{stored}: {cookie}"
            );
        }
        // Valid expiries long past, before 1970: Max-Age says the cookie is
        // gone, and the expires date is the earliest an HTTP date names.
        for stored in [
            json!(-3_000_000_000_i64),
            json!("1960-01-01T00:00:00+00:00"),
            json!("0001-01-01T00:00:00+00:00"),
        ] {
            let cookie = cookie_of(stored.clone()).await;
            assert!(
                cookie.contains("; expires=Thu, 01 Jan 1970 00:00:00 GMT; ")
                    && cookie.contains("; Max-Age=-"),
                "{stored}: {cookie}"
            );
        }
    }
}

// Properties.

/// Any instant chrono holds, often one within the years 1 to 9999.
fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp();
    let max = DateTime::<Utc>::MAX_UTC.timestamp();
    (prop_oneof![min..=max, FIRST..=LAST], 0..1_000_000_000_u32)
        .prop_filter_map("in chrono's range", |(seconds, nanos)| {
            DateTime::from_timestamp(seconds, nanos)
        })
}

fn any_offset() -> impl Strategy<Value = FixedOffset> {
    prop_oneof![
        (-1439..=1439_i32).prop_map(|minutes| minutes * 60),
        -86_399..=86_399_i32,
    ]
    .prop_map(|seconds| FixedOffset::east_opt(seconds).unwrap())
}

fn any_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |float| {
            Number::from_f64(float).map(Value::Number)
        }),
        // Around the ends of the range, and small ones (0, 0.5: browser
        // close).
        (-70_000_000_000..260_000_000_000_i64).prop_map(Value::from),
        (-2.0..2.0_f64).prop_map(Value::from),
        // Integers no i64 holds and exponents, as JSON text.
        "-?[1-9][0-9]{0,45}".prop_filter_map("valid JSON", |text| serde_json::from_str(&text).ok()),
        "-?[0-9]{1,3}(\\.[0-9]{1,6})?[eE][+-]?[0-9]{1,3}"
            .prop_filter_map("valid JSON", |text| serde_json::from_str(&text).ok()),
    ]
}

fn any_expiry_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[+-]?[0-9]{1,6}-[01][0-9]-[0-3][0-9]([T ][0-2][0-9]:[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,9})?)?(Z|[+-][0-2][0-9]:?[0-5][0-9])?)?",
        (any_instant(), any_offset())
            .prop_map(|(at, offset)| at.with_timezone(&offset).to_rfc3339()),
    ]
}

fn any_stored() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any_number(),
        4 => any_expiry_string().prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any_number().prop_map(|number| json!([number])),
        1 => any_expiry_string().prop_map(|text| json!({ "at": text })),
    ]
}

fn any_cookie_age() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(DEFAULT_COOKIE_AGE),
        0..=1_000_000_000_i64,
        any::<i64>()
    ]
}

/// The whole seconds a stored number stands for, rounded down; `None` for
/// something else. Beyond ±1e30 the exact value no longer matters: it is far
/// out of range either way.
fn seconds_of(stored: &Value) -> Option<i128> {
    let Value::Number(number) = stored else {
        return None;
    };
    let text = number.to_string();
    if let Ok(integer) = text.parse::<i128>() {
        return Some(integer);
    }
    let float: f64 = text.parse().ok().filter(|float: &f64| float.is_finite())?;
    Some(float.floor().clamp(-1e30, 1e30) as i128)
}

/// `modification + seconds`, if that falls within the years 1 to 9999.
fn in_range_after(modification: DateTime<Utc>, seconds: i128) -> Option<DateTime<Utc>> {
    let at = i64::try_from(i128::from(modification.timestamp()) + seconds).ok()?;
    DateTime::from_timestamp(at, modification.timestamp_subsec_nanos())
        .filter(|at| (1..=9999).contains(&at.year()))
}

/// `modification + cookie_age`, or chrono's last (first) instant when that
/// is beyond it.
fn default_date(modification: DateTime<Utc>, cookie_age: i64) -> DateTime<Utc> {
    let at = i64::try_from(i128::from(modification.timestamp()) + i128::from(cookie_age)).ok();
    at.and_then(|at| DateTime::from_timestamp(at, modification.timestamp_subsec_nanos()))
        .unwrap_or(if cookie_age < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

/// Whole seconds from `from` to `to`, rounded down.
fn floor_seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let delta = to - from;
    delta.num_seconds() - i64::from(delta.subsec_nanos() < 0)
}

/// What the three expiry methods answered for one stored value.
struct Answers {
    age: i64,
    date: DateTime<Utc>,
    browser_close: bool,
}

fn ask(stored: &Value, modification: DateTime<Utc>, settings: Settings) -> Answers {
    block_on(async {
        let session = session(settings);
        session.insert(EXPIRY_KEY, stored).await.unwrap();
        let args = ExpiryArgs {
            modification: Some(modification),
            expiry: None,
        };
        Answers {
            age: session.get_expiry_age_with(args).await.unwrap(),
            date: session
                .get_expiry_date_with(args)
                .await
                .unwrap()
                .with_timezone(&Utc),
            browser_close: session.get_expire_at_browser_close().await.unwrap(),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever is stored, the answers either follow the session's own
    /// expiry, a time within the years 1 to 9999, or all fall back to the
    /// settings as if nothing were stored. For numbers, which one is known.
    #[test]
    fn any_stored_expiry_gives_own_or_default_answers(
        stored in any_stored(),
        modification in any_instant(),
        cookie_age in any_cookie_age(),
        browser_close in any::<bool>(),
    ) {
        let settings = Settings {
            cookie_age,
            expire_at_browser_close: browser_close,
            ..Settings::default()
        };
        let answers = ask(&stored, modification, settings);
        let fallback = answers.age == cookie_age
            && answers.date == default_date(modification, cookie_age);
        let own = (1..=9999).contains(&answers.date.year())
            && answers.age == floor_seconds(modification, answers.date);
        prop_assert!(fallback || own, "{stored}");

        if let Some(seconds) = seconds_of(&stored) {
            match in_range_after(modification, seconds) {
                Some(date) if seconds != 0 => {
                    prop_assert_eq!(i128::from(answers.age), seconds);
                    prop_assert_eq!(answers.date, date);
                }
                _ => {
                    prop_assert_eq!(answers.age, cookie_age);
                    prop_assert_eq!(answers.date, default_date(modification, cookie_age));
                }
            }
            // Browser close is decided at the time of asking.
            let own_now = |now| seconds != 0 && in_range_after(now, seconds).is_some();
            let before = own_now(Utc::now() - TimeDelta::seconds(5));
            let after = own_now(Utc::now() + TimeDelta::seconds(5));
            if seconds == 0 {
                prop_assert!(answers.browser_close);
            } else if before == after {
                prop_assert_eq!(answers.browser_close, !before && browser_close);
            }
        }
        if let Value::String(text) = &stored
            && let Ok(at) = DateTime::parse_from_rfc3339(text)
        {
            let at = at.with_timezone(&Utc);
            if (1..=9999).contains(&at.year()) {
                prop_assert_eq!(answers.date, at);
                prop_assert_eq!(answers.age, floor_seconds(modification, at));
                prop_assert!(!answers.browser_close);
            } else {
                prop_assert_eq!(answers.age, cookie_age);
                prop_assert_eq!(answers.browser_close, browser_close);
            }
        }
    }

    /// Seconds that land just inside or just outside the years 1 to 9999.
    #[test]
    fn seconds_at_the_ends_of_the_range(
        modification in any_instant(),
        edge in prop_oneof![Just(FIRST), Just(LAST + 1)],
        step in -3..=3_i64,
    ) {
        let seconds = i128::from(edge) - i128::from(modification.timestamp()) + i128::from(step);
        let stored = Value::from(i64::try_from(seconds).unwrap());
        let answers = ask(&stored, modification, Settings::default());
        match in_range_after(modification, seconds) {
            Some(date) if seconds != 0 => {
                prop_assert_eq!(i128::from(answers.age), seconds);
                prop_assert_eq!(answers.date, date);
            }
            _ => prop_assert_eq!(answers.age, DEFAULT_COOKIE_AGE),
        }
    }

    /// `set_expiry` of a time stores it so that it reads back (to the
    /// microsecond, with its offset), or stores nothing when it is out of
    /// range; it never stores a string Django could not parse.
    #[test]
    fn set_expiry_at_reads_back_or_stores_nothing(
        at in any_instant(),
        offset in any_offset(),
    ) {
        let at = at.with_timezone(&offset);
        block_on(async {
            let session = session(Settings::default());
            session.set_expiry(Expiry::At(at)).await.unwrap();
            let stored = session.get_value(EXPIRY_KEY).await.unwrap();
            if (1..=9999).contains(&at.with_timezone(&Utc).year()) {
                let Some(Value::String(_)) = stored else {
                    panic!("no string stored for {at}: {stored:?}");
                };
                let date = session.get_expiry_date().await.unwrap();
                let lost = at - date;
                assert!(
                    lost >= TimeDelta::zero() && lost < TimeDelta::microseconds(1),
                    "{at} read back as {date}"
                );
                assert_eq!(date.offset(), at.offset(), "{at} read back as {date}");
            } else {
                assert_eq!(stored, None, "{at}");
            }
        });
    }

    /// `set_expiry` of a duration never panics, however long.
    #[test]
    fn set_expiry_in_any_duration(milliseconds in any::<i64>()) {
        let Some(delta) = TimeDelta::try_milliseconds(milliseconds) else {
            return Ok(());
        };
        block_on(async {
            let session = session(Settings::default());
            session.set_expiry(Expiry::In(delta)).await.unwrap();
            let age = session.get_expiry_age().await.unwrap();
            let expected = delta.num_seconds();
            let own = session.get_value(EXPIRY_KEY).await.unwrap().is_some();
            if own {
                assert!((age - expected).abs() <= 2, "{delta}: {age}");
            } else {
                assert_eq!(age, DEFAULT_COOKIE_AGE, "{delta}");
            }
        });
    }
}
