//! A stand-in for an app that uses sessiond-client: its own types, parsed
//! with its own serde_json. With serde_json's `arbitrary_precision` switched
//! on by some dependency, serde buffers a number as a map, so a float inside
//! a `#[serde(flatten)]` struct or an untagged enum no longer parses; with
//! `preserve_order`, the app's `serde_json::Map` stops sorting its keys.
//!
//! The client keeps a session's numbers and key order without them; the
//! last test checks that in this build, where they are off.

use serde::Deserialize;

/// An order with its price flattened into it.
#[derive(Debug, PartialEq, Deserialize)]
pub struct Order {
    pub id: u32,
    #[serde(flatten)]
    pub price: Price,
}

/// The flattened part, with a float.
#[derive(Debug, PartialEq, Deserialize)]
pub struct Price {
    pub amount: f64,
    pub currency: String,
}

/// A reading that is a number or a text.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Reading {
    Number(f64),
    Text(String),
}

#[cfg(test)]
mod tests {
    use axum::Json;
    use axum::body::Body;
    use axum::extract::FromRequest;
    use axum::http::{Request, header};
    use serde_json::{Map, Value, json};

    use super::*;

    const ORDER: &str = r#"{"id":7,"amount":12.5,"currency":"EUR"}"#;

    fn order() -> Order {
        Order {
            id: 7,
            price: Price {
                amount: 12.5,
                currency: "EUR".to_owned(),
            },
        }
    }

    #[test]
    fn a_flattened_struct_with_a_float_parses() {
        assert_eq!(serde_json::from_str::<Order>(ORDER).unwrap(), order());
    }

    #[test]
    fn an_untagged_enum_holding_a_float_parses() {
        assert_eq!(
            serde_json::from_str::<Vec<Reading>>(r#"[21.5,"n/a"]"#).unwrap(),
            vec![Reading::Number(21.5), Reading::Text("n/a".to_owned())]
        );
    }

    #[tokio::test]
    async fn axum_json_extracts_a_flattened_struct_with_a_float() {
        let request = Request::post("/orders")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(ORDER))
            .unwrap();
        let Json(parsed) = Json::<Order>::from_request(request, &()).await.unwrap();
        assert_eq!(parsed, order());
    }

    #[test]
    fn a_serde_json_map_keeps_its_keys_sorted() {
        let map: Map<String, Value> = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(json!({"b": 1, "a": 2}).to_string(), r#"{"a":2,"b":1}"#);
    }
}

#[cfg(test)]
mod session {
    use std::sync::Arc;

    use sessiond_client::{Backend, Session, Settings, SignedCookies};

    /// A session Django 5.2 wrote (signed_cookies, SECRET_KEY
    /// `sessiond-test-secret`): `{"z": 1, "big": 2**70, "f": 1e16, "name":
    /// "Zoë", "nested": {"y": [1.5, 2, 1e-05], "x": None}, "a": True}`.
    const DJANGO_SESSION: &str = ".eJwNydEKgkAQheF3ObeNMWfd1ZpHKbtQmiIwA3OhEt-9vfrh-1f8YBQMj3spD5qObIK2bCNZax1DFNzK8h0bwdQ_HYbTq8uqPqCIvxe_wlZ8YWfukwShV5ougg9syuO4CXrYMmff_hBfHa4:1vb66i:M4l2m_XO-Bk7FCMty2NEUWVtVHSPJdwlNeO_uoyTEzk";

    /// What Django 5.2 signed after `session["added"] = "new"` on it.
    const DJANGO_RESAVED: &str = ".eJwVi8EOgkAMRP9lrlbTLrug_RTRA2SrMUFMlI0o4d-tp5m8ebPgCxVCf7t6yp7TQerAjTRRpOIqhki4-GQbqQljdzcojo9TYbYeTuw1WYYu-EBb2SUKJLbldCbM0LEMw0rooNOzmJec_7bf3lh_y8Ah2A:1vb66i:YfiJlyvcQeFrwiDqh3sN9XopItH9HNFj4pKu1HTGua4";

    fn session_for(cookie: &str) -> Session {
        let backend = SignedCookies::new("sessiond-test-secret", Vec::<String>::new()).unwrap();
        let settings = Settings {
            cookie_age: 10 * 366 * 86_400,
            ..Settings::default()
        };
        Session::new(
            Backend::SignedCookies(backend),
            Arc::new(settings),
            Some(cookie),
        )
    }

    /// The signed JSON, without the timestamp and signature.
    fn payload(cookie: &str) -> &str {
        cookie.split(':').next().unwrap()
    }

    #[tokio::test]
    async fn a_django_session_keeps_its_numbers_and_key_order() {
        let session = session_for(DJANGO_SESSION);
        assert_eq!(
            session.keys().await.unwrap(),
            ["z", "big", "f", "name", "nested", "a"]
        );
        session.insert("added", "new").await.unwrap();
        session.save().await.unwrap();
        let cookie = session.session_key().unwrap();
        assert_eq!(payload(&cookie), payload(DJANGO_RESAVED));
        assert_eq!(
            session_for(&cookie).get::<u128>("big").await.unwrap(),
            Some(1_180_591_620_717_411_303_424)
        );
    }
}

/// The client's times and durations, written by an app that has no `chrono`
/// of its own (see this crate's `[dependencies]`): the re-export and
/// `std::time::Duration` are enough.
#[cfg(test)]
mod expiry {
    use std::time::Duration;

    use sessiond_client::chrono::{TimeDelta, Utc};
    use sessiond_client::{Backend, Expiry, Session, Settings, SignedCookies};

    #[tokio::test]
    async fn expiries_need_no_chrono_of_the_apps_own() {
        let backend = SignedCookies::new("a secret", [""; 0]).unwrap();
        let settings = Settings::builder().cookie_age(Duration::from_secs(3600));
        let session = Session::new(Backend::SignedCookies(backend), settings.build(), None);
        assert_eq!(session.get_expiry_age().await.unwrap(), 3600);
        let tomorrow = (Utc::now() + TimeDelta::days(1)).fixed_offset();
        session.set_expiry(Expiry::At(tomorrow)).await.unwrap();
        assert!(session.get_expiry_date().await.unwrap() > Utc::now());
    }
}
