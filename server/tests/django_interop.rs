//! One session table shared by real Django (5.2, from PyPI, in a virtualenv
//! the test builds) and sessiond with `--codec django`: each reads, writes,
//! cycles, flushes and purges what the other wrote, on SQLite and on
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{PgSchema, TestServer, hours_from_now, python};
use serde_json::{Value, json};

const SECRET: &str = "interop-secret-key-for-tests";
const SCRIPT: &str = include_str!("django/interop.py");

/// Real Django, on the same database as the server.
struct Django {
    venv: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Django {
    fn new(venv: &Path, database: (&'static str, String)) -> Self {
        Self {
            venv: venv.to_owned(),
            env: vec![("SECRET_KEY", SECRET.to_owned()), database],
        }
    }

    fn run(&self, args: &[&str]) -> Value {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = python::run(&self.venv, SCRIPT, args, &env);
        serde_json::from_str(out.trim()).unwrap()
    }
}

fn data(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Every interop case, on whichever database `server` and `django` share.
async fn shared_table(server: &TestServer, django: &Django) {
    let client = &server.client;

    // Django writes; sessiond reads the same data.
    let written = json!({"_auth_user_id": "42", "name": "Zoë 日本 🎉", "big": 9_007_199_254_740_993_u64, "nested": [1, {"x": null}]});
    let created = django.run(&["create", &written.to_string()]);
    let django_key = created["key"].as_str().unwrap().to_owned();
    let loaded = client
        .load(&django_key)
        .await
        .unwrap()
        .expect("sessiond loads Django's session");
    assert_eq!(data(&loaded.data), written);

    // sessiond writes; Django reads the same data.
    let ours = json!({"cart": [1, 2], "theme": "dark", "ünï": "çødé"});
    let key = client
        .create(&ours.to_string(), None)
        .await
        .unwrap()
        .session_key;
    let seen = django.run(&["load", &key]);
    assert_eq!(seen["key"], json!(key));
    assert_eq!(seen["data"], ours);

    // Updates cross both ways.
    django.run(&["update", &key, r#"{"from_django": true}"#]);
    let merged = data(&client.load(&key).await.unwrap().unwrap().data);
    assert_eq!(merged["from_django"], json!(true));
    assert_eq!(merged["cart"], json!([1, 2]));
    client
        .patch(&key, r#"{"from_sessiond":1}"#, &[], false, None)
        .await
        .unwrap();
    assert_eq!(
        django.run(&["load", &key])["data"]["from_sessiond"],
        json!(1)
    );

    // cycle_key: Django cycles sessiond's session, sessiond cycles Django's.
    let cycled = django.run(&["cycle", &key]);
    let new_key = cycled["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert!(!client.exists(&key).await.unwrap());
    assert_eq!(
        data(&client.load(&new_key).await.unwrap().unwrap().data)["from_django"],
        json!(true)
    );
    let ours_cycled = client.cycle_key(&django_key, None, None).await.unwrap();
    assert_eq!(django.run(&["exists", &django_key])["exists"], json!(false));
    assert_eq!(
        django.run(&["load", &ours_cycled.session_key])["data"],
        written
    );

    // flush: Django logs out of a session sessiond wrote, and the reverse.
    assert_eq!(django.run(&["flush", &new_key])["exists"], json!(false));
    assert_eq!(client.load(&new_key).await.unwrap(), None);
    client.delete(&ours_cycled.session_key).await.unwrap();
    let gone = django.run(&["load", &ours_cycled.session_key]);
    assert_eq!(gone["key"], Value::Null);
    assert_eq!(gone["data"], json!({}));

    // set_expiry from Django moves the expiry sessiond enforces.
    let key = client.create(r#"{"a":1}"#, None).await.unwrap().session_key;
    django.run(&["set_expiry", &key, "60"]);
    let expiry = client.load(&key).await.unwrap().unwrap().expire_date;
    let left = expiry.duration_since(SystemTime::now()).unwrap();
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(50),
        "{left:?}"
    );
    let in_past = django.run(&["set_expiry_delta", &key, "-10"]);
    assert!(in_past["data"]["_session_expiry"].is_string());
    assert_eq!(
        client.load(&key).await.unwrap(),
        None,
        "expired by Django's set_expiry"
    );
    // An expiry sessiond sets in the past is expired for Django too.
    let key = client
        .create(r#"{"a":1}"#, Some(hours_from_now(-1)))
        .await
        .unwrap()
        .session_key;
    assert_eq!(django.run(&["load", &key])["data"], json!({}));

    // clearsessions from either side removes the other's expired rows, and
    // only those.
    let live_ours = client.create("{}", None).await.unwrap().session_key;
    let expired_ours = client
        .create("{}", Some(hours_from_now(-2)))
        .await
        .unwrap()
        .session_key;
    let live_django = django.run(&["create", "{}"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let expired_django = django.run(&["create", "{}"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    django.run(&["set_expiry_delta", &expired_django, "-100"]);
    let removed = django.run(&["clear_expired"])["removed"].as_u64().unwrap();
    assert!(removed >= 3, "{removed}"); // two expired here, one from the set_expiry case above
    for (key, alive) in [
        (&live_ours, true),
        (&expired_ours, false),
        (&live_django, true),
        (&expired_django, false),
    ] {
        assert_eq!(client.exists(key).await.unwrap(), alive, "{key}");
    }
    let expired_again = django.run(&["create", "{}"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    django.run(&["set_expiry_delta", &expired_again, "-100"]);
    assert_eq!(client.clear_expired().await.unwrap(), 1);
    assert_eq!(
        django.run(&["exists", &expired_again])["exists"],
        json!(false)
    );
    assert_eq!(django.run(&["exists", &live_django])["exists"], json!(true));
}

#[tokio::test]
async fn django_and_sessiond_share_one_sqlite_table() {
    let Some(venv) = python::venv(&[python::DJANGO]) else {
        return;
    };
    let server = TestServer::start_with(&["--codec", "django", "--secret-key", SECRET]).await;
    let django = Django::new(&venv, ("SQLITE_PATH", server.db_path.display().to_string()));
    shared_table(&server, &django).await;
    server.stop().await;
}

#[tokio::test]
async fn django_and_sessiond_share_one_postgres_table() {
    if !common::service_available("PostgreSQL", common::POSTGRES_ADDR) {
        return;
    }
    let Some(venv) = python::venv(&[python::DJANGO, python::PSYCOPG]) else {
        return;
    };
    let schema = PgSchema::new();
    let server = TestServer::start_on(
        &schema.url(),
        &["--codec", "django", "--secret-key", SECRET],
    )
    .await;
    let django = Django::new(&venv, ("PG_SCHEMA", schema.name.clone()));
    shared_table(&server, &django).await;
    server.stop().await;
}
