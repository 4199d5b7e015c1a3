//! The cases of Django's `SessionTestsMixin`, against a real sessiond.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use common::Sessiond;
use serde_json::{Value, json};
use sessiond_client::{Expiry, ExpiryArgs, ExpiryValue, SaveMode, SessionError, Settings};

fn close_to(a: DateTime<chrono::FixedOffset>, b: DateTime<Utc>) -> bool {
    (a.with_timezone(&Utc) - b).num_seconds().abs() <= 2
}

#[tokio::test]
async fn a_new_session_is_neither_accessed_nor_modified() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    assert!(!session.accessed());
    assert!(!session.modified());
    assert!(session.is_empty());
    assert_eq!(session.session_key(), None);
}

#[tokio::test]
async fn get_of_a_missing_key_is_none() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    assert_eq!(session.get::<String>("cat").await.unwrap(), None);
    assert!(session.accessed());
    assert!(!session.modified());
}

#[tokio::test]
async fn store_then_pop() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.insert("cat", "dog").await.unwrap();
    assert!(session.modified());
    assert_eq!(session.pop::<String>("cat").await.unwrap(), "dog");
}

#[tokio::test]
async fn pop_marks_accessed_and_modified_only_when_the_key_was_there() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.insert("some key", "exists").await.unwrap();
    session.save().await.unwrap();
    let session = server.session(session.session_key().as_deref());

    assert_eq!(session.pop::<String>("some key").await.unwrap(), "exists");
    assert!(session.accessed());
    assert!(session.modified());
    assert_eq!(session.get_value("some key").await.unwrap(), None);

    let fresh = server.session(None);
    assert_eq!(
        fresh
            .pop_or("some key", "does not exist".to_owned())
            .await
            .unwrap(),
        "does not exist"
    );
    assert!(fresh.accessed());
    assert!(!fresh.modified());

    let err = fresh.pop::<String>("some key").await.unwrap_err();
    assert!(
        matches!(err, SessionError::KeyNotFound(ref key) if key == "some key"),
        "{err:?}"
    );
    assert!(!fresh.modified());
}

#[tokio::test]
async fn setdefault_stores_only_when_absent() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    assert_eq!(
        session.setdefault("foo", "bar".to_owned()).await.unwrap(),
        "bar"
    );
    assert_eq!(
        session.setdefault("foo", "baz".to_owned()).await.unwrap(),
        "bar"
    );
    assert!(session.accessed());
    assert!(session.modified());
}

#[tokio::test]
async fn update_marks_modified_even_when_empty() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.update(json!({"update key": 1})).await.unwrap();
    assert!(session.modified());
    assert_eq!(session.get::<i64>("update key").await.unwrap(), Some(1));

    let other = server.session(None);
    other.update(BTreeMap::<String, i64>::new()).await.unwrap();
    assert!(other.modified());
    assert!(matches!(
        other.update(vec![1, 2]).await,
        Err(SessionError::NotAnObject)
    ));
}

#[tokio::test]
async fn reading_marks_accessed_but_not_modified() {
    let server = Sessiond::start().await;
    let writer = server.session(None);
    writer.insert("some key", "value").await.unwrap();
    writer.save().await.unwrap();
    let key = writer.session_key().unwrap();

    let session = server.session(Some(&key));
    assert!(session.contains("some key").await.unwrap());
    assert!(session.accessed() && !session.modified());

    for (name, session) in [
        ("values", server.session(Some(&key))),
        ("keys", server.session(Some(&key))),
        ("items", server.session(Some(&key))),
    ] {
        match name {
            "values" => assert_eq!(session.values().await.unwrap(), vec![json!("value")]),
            "keys" => assert_eq!(session.keys().await.unwrap(), vec!["some key".to_owned()]),
            _ => assert_eq!(
                session.items().await.unwrap(),
                vec![("some key".to_owned(), json!("value"))]
            ),
        }
        assert!(session.accessed(), "{name}");
        assert!(!session.modified(), "{name}");
    }
}

#[tokio::test]
async fn remove_of_a_missing_key_is_none_and_changes_nothing() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    assert_eq!(session.remove::<String>("nope").await.unwrap(), None);
    assert!(session.accessed());
    assert!(!session.modified());
    // Django's KeyError stays with pop.
    assert!(matches!(
        session.pop::<Value>("nope").await,
        Err(SessionError::KeyNotFound(_))
    ));
    assert!(!session.modified());
}

#[tokio::test]
async fn remove_returns_the_typed_value_and_the_save_removes_it() {
    let server = Sessiond::start().await;
    let writer = server.session(None);
    writer.insert("cart", ["book", "lamp"]).await.unwrap();
    writer.insert("visits", 3).await.unwrap();
    writer.save().await.unwrap();
    let key = writer.session_key().unwrap();

    let session = server.session(Some(&key));
    let cart: Option<Vec<String>> = session.remove("cart").await.unwrap();
    assert_eq!(cart, Some(vec!["book".to_owned(), "lamp".to_owned()]));
    assert!(session.modified());
    assert_eq!(session.remove::<Vec<String>>("cart").await.unwrap(), None);
    session.save().await.unwrap();

    let reread = server.session(Some(&key));
    assert_eq!(reread.keys().await.unwrap(), ["visits"]);
}

#[tokio::test]
async fn remove_or_pop_as_the_wrong_type_fails_and_keeps_the_value() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.insert("visits", 3).await.unwrap();
    session.save().await.unwrap();
    let session = server.session(session.session_key().as_deref());
    assert!(matches!(
        session.remove::<String>("visits").await,
        Err(SessionError::Deserialize { ref key, .. }) if key == "visits"
    ));
    assert!(matches!(
        session.pop::<String>("visits").await,
        Err(SessionError::Deserialize { .. })
    ));
    assert!(!session.modified());
    assert_eq!(session.remove::<u64>("visits").await.unwrap(), Some(3));
}

#[tokio::test]
async fn clear_empties_without_loading() {
    let server = Sessiond::start().await;
    let writer = server.session(None);
    writer.insert("x", 1).await.unwrap();
    writer.save().await.unwrap();

    let session = server.session(writer.session_key().as_deref());
    session.clear();
    assert_eq!(session.items().await.unwrap(), vec![]);
    assert!(session.accessed());
    assert!(session.modified());
    session.save().await.unwrap();
    let reread = server.session(writer.session_key().as_deref());
    assert_eq!(reread.items().await.unwrap(), vec![]);
}

#[tokio::test]
async fn save_then_exists_then_delete() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.save().await.unwrap();
    let key = session.session_key().unwrap();
    assert!(session.exists(&key).await.unwrap());
    session.delete().await.unwrap();
    assert!(!session.exists(&key).await.unwrap());
}

#[tokio::test]
async fn save_keeps_the_data_in_hand() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.insert("a", "b").await.unwrap();
    session.save().await.unwrap();
    assert_eq!(
        session.get::<String>("a").await.unwrap().as_deref(),
        Some("b")
    );
}

#[tokio::test]
async fn flush_deletes_the_stored_session_and_drops_the_key() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.insert("foo", "bar").await.unwrap();
    session.save().await.unwrap();
    let previous = session.session_key().unwrap();
    session.flush().await.unwrap();
    assert!(!session.exists(&previous).await.unwrap());
    assert_eq!(session.session_key(), None);
    assert!(session.modified());
    assert!(session.accessed());
    assert!(session.is_empty());
}

#[tokio::test]
async fn cycle_key_moves_the_data_to_a_new_key() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.insert("a", "c").await.unwrap();
    session.insert("b", "d").await.unwrap();
    session.save().await.unwrap();
    let previous_key = session.session_key().unwrap();
    let previous_data = session.items().await.unwrap();

    session.cycle_key().await.unwrap();
    assert!(!session.exists(&previous_key).await.unwrap());
    assert_ne!(session.session_key().unwrap(), previous_key);
    assert_eq!(session.items().await.unwrap(), previous_data);
    let reread = server.session(session.session_key().as_deref());
    assert_eq!(reread.items().await.unwrap(), previous_data);
}

#[tokio::test]
async fn cycle_key_of_a_session_not_loaded_yet_keeps_its_data() {
    let server = Sessiond::start().await;
    let writer = server.session(None);
    writer.insert("a", "c").await.unwrap();
    writer.save().await.unwrap();
    let data = writer.items().await.unwrap();

    let session = server.session(writer.session_key().as_deref());
    session.cycle_key().await.unwrap();
    assert_eq!(session.items().await.unwrap(), data);
}

#[tokio::test]
async fn an_invalid_key_is_replaced_on_save() {
    let server = Sessiond::start().await;
    for bad in [
        "1",
        "",
        "1234567",
        "UPPERCASE-KEY",
        "x".repeat(4096).as_str(),
    ] {
        let session = server.session(Some(bad));
        assert_eq!(session.session_key(), None, "{bad:?}");
        session.save().await.unwrap();
        let key = session.session_key().unwrap();
        assert_ne!(key, bad);
        assert_eq!(session.get::<String>("cat").await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_valid_looking_unknown_key_is_replaced_on_save_and_never_created() {
    let server = Sessiond::start().await;
    let session = server.session(Some("someunknownkey"));
    assert_eq!(session.get_value("x").await.unwrap(), None);
    assert_eq!(session.session_key(), None, "load must drop an unknown key");
    assert!(!server.client.exists("someunknownkey").await.unwrap());
    session.insert("x", 1).await.unwrap();
    session.save().await.unwrap();
    assert_ne!(session.session_key().as_deref(), Some("someunknownkey"));
    assert!(!server.client.exists("someunknownkey").await.unwrap());
}

#[tokio::test]
async fn load_does_not_create_a_record() {
    let server = Sessiond::start().await;
    let session = server.session(Some("someunknownkey"));
    session.keys().await.unwrap();
    assert!(!server.client.exists("someunknownkey").await.unwrap());
}

#[tokio::test]
async fn save_does_not_resurrect_a_session_logged_out_elsewhere() {
    for mode in [SaveMode::Patch, SaveMode::Whole] {
        let server = Sessiond::start().await;
        let settings = Settings {
            save_mode: mode,
            ..Settings::default()
        };
        let session = server.session_with(settings.clone(), None);
        session.insert("logged_in", true).await.unwrap();
        session.save().await.unwrap();
        let key = session.session_key().unwrap();

        let elsewhere = server.session_with(settings, Some(&key));
        elsewhere.flush().await.unwrap();

        session.insert("modified", true).await.unwrap();
        let err = session.save().await.unwrap_err();
        assert!(
            matches!(err, SessionError::Interrupted),
            "{mode:?}: {err:?}"
        );
        assert!(!server.client.exists(&key).await.unwrap(), "{mode:?}");
    }
}

#[tokio::test]
async fn concurrent_sessions_changing_different_keys_both_keep_their_changes() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.insert("base", 0).await.unwrap();
    session.save().await.unwrap();
    let key = session.session_key().unwrap();

    // Two requests load the same session, then each changes its own key.
    let tab_a = server.session(Some(&key));
    let tab_b = server.session(Some(&key));
    tab_a.keys().await.unwrap();
    tab_b.keys().await.unwrap();
    tab_a.insert("cart", json!([1, 2])).await.unwrap();
    tab_b.insert("theme", "dark").await.unwrap();
    tab_b.remove::<i64>("base").await.unwrap();
    tab_a.save().await.unwrap();
    tab_b.save().await.unwrap();

    let reread = server.session(Some(&key));
    assert_eq!(reread.get_value("cart").await.unwrap(), Some(json!([1, 2])));
    assert_eq!(
        reread.get::<String>("theme").await.unwrap().as_deref(),
        Some("dark")
    );
    assert!(!reread.contains("base").await.unwrap());
}

#[tokio::test]
async fn whole_saves_keep_djangos_last_writer_wins() {
    let server = Sessiond::start().await;
    let whole = Settings {
        save_mode: SaveMode::Whole,
        ..Settings::default()
    };
    let session = server.session_with(whole.clone(), None);
    session.insert("base", 0).await.unwrap();
    session.save().await.unwrap();
    let key = session.session_key().unwrap();
    let tab_a = server.session_with(whole.clone(), Some(&key));
    let tab_b = server.session_with(whole, Some(&key));
    tab_a.insert("cart", 1).await.unwrap();
    tab_b.insert("theme", "dark").await.unwrap();
    tab_a.save().await.unwrap();
    tab_b.save().await.unwrap();
    let reread = server.session(Some(&key));
    assert!(!reread.contains("cart").await.unwrap());
    assert!(reread.contains("theme").await.unwrap());
}

#[tokio::test]
async fn test_cookie_round_trip() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    assert!(!session.test_cookie_worked().await.unwrap());
    session.set_test_cookie().await.unwrap();
    assert!(session.test_cookie_worked().await.unwrap());
    session.delete_test_cookie().await.unwrap();
    assert!(!session.test_cookie_worked().await.unwrap());
    assert!(matches!(
        session.delete_test_cookie().await,
        Err(SessionError::KeyNotFound(_))
    ));
}

#[tokio::test]
async fn default_expiry_is_the_cookie_age() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    assert_eq!(session.get_session_cookie_age(), 1_209_600);
    assert_eq!(session.get_expiry_age().await.unwrap(), 1_209_600);
    session.set_expiry(Expiry::BrowserClose).await.unwrap();
    assert_eq!(session.get_expiry_age().await.unwrap(), 1_209_600);
    assert_eq!(
        session.get_value("_session_expiry").await.unwrap(),
        Some(json!(0))
    );
}

#[tokio::test]
async fn custom_expiry_in_seconds() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.set_expiry(Expiry::Seconds(10)).await.unwrap();
    assert_eq!(
        session.get_value("_session_expiry").await.unwrap(),
        Some(json!(10))
    );
    let expected = Utc::now() + TimeDelta::seconds(10);
    assert!(close_to(session.get_expiry_date().await.unwrap(), expected));
    assert!((9..=10).contains(&session.get_expiry_age().await.unwrap()));
}

#[tokio::test]
async fn custom_expiry_as_a_duration_is_stored_as_a_time() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session
        .set_expiry(Expiry::In(TimeDelta::seconds(10)))
        .await
        .unwrap();
    let stored = session
        .get::<String>("_session_expiry")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.ends_with("+00:00"), "{stored}");
    let expected = Utc::now() + TimeDelta::seconds(10);
    assert!(close_to(session.get_expiry_date().await.unwrap(), expected));
    assert!((9..=10).contains(&session.get_expiry_age().await.unwrap()));
}

#[tokio::test]
async fn custom_expiry_as_a_time() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    let at = (Utc::now() + TimeDelta::seconds(10)).fixed_offset();
    session.set_expiry(Expiry::At(at)).await.unwrap();
    assert!(close_to(
        session.get_expiry_date().await.unwrap(),
        at.with_timezone(&Utc)
    ));
}

#[tokio::test]
async fn set_expiry_default_reverts_to_the_global_policy() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.set_expiry(Expiry::Seconds(10)).await.unwrap();
    session.set_expiry(Expiry::Default).await.unwrap();
    assert_eq!(session.get_expiry_age().await.unwrap(), 1_209_600);
    assert!(!session.contains("_session_expiry").await.unwrap());
}

#[tokio::test]
async fn expiry_arguments_are_used_without_loading() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    let modification = Utc::now();
    let args = ExpiryArgs {
        modification: Some(modification),
        expiry: Some(ExpiryValue::Seconds(100)),
    };
    assert_eq!(session.get_expiry_age_with(args).await.unwrap(), 100);
    assert!(
        !session.accessed(),
        "an explicit expiry must not load the session"
    );
    let at = (modification + TimeDelta::seconds(3600)).fixed_offset();
    let args = ExpiryArgs {
        modification: Some(modification),
        expiry: Some(ExpiryValue::At(at)),
    };
    assert_eq!(session.get_expiry_age_with(args).await.unwrap(), 3600);
    assert_eq!(session.get_expiry_date_with(args).await.unwrap(), at);
}

#[tokio::test]
async fn expire_at_browser_close_follows_the_setting_then_the_session() {
    let server = Sessiond::start().await;
    for global in [false, true] {
        let settings = Settings {
            expire_at_browser_close: global,
            ..Settings::default()
        };
        let session = server.session_with(settings, None);
        session.set_expiry(Expiry::Seconds(10)).await.unwrap();
        assert!(!session.get_expire_at_browser_close().await.unwrap());
        session.set_expiry(Expiry::BrowserClose).await.unwrap();
        assert!(session.get_expire_at_browser_close().await.unwrap());
        session.set_expiry(Expiry::Default).await.unwrap();
        assert_eq!(session.get_expire_at_browser_close().await.unwrap(), global);
    }
}

#[tokio::test]
async fn a_session_saved_with_an_expiry_in_the_past_is_gone() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.insert("foo", "bar").await.unwrap();
    session.set_expiry(Expiry::Seconds(-2)).await.unwrap();
    session.save().await.unwrap();
    let reread = server.session(session.session_key().as_deref());
    assert!(!reread.contains("foo").await.unwrap());
    assert_eq!(reread.session_key(), None);
}

#[tokio::test]
async fn the_stored_expiry_follows_set_expiry() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.set_expiry(Expiry::Seconds(3600)).await.unwrap();
    session.save().await.unwrap();
    let loaded = server
        .client
        .load(&session.session_key().unwrap())
        .await
        .unwrap()
        .unwrap();
    let left = loaded
        .expire_date
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left.as_secs() > 3590 && left.as_secs() <= 3600, "{left:?}");
}

#[tokio::test]
async fn data_that_is_not_a_json_object_reads_as_an_empty_session() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.insert("a", 1).await.unwrap();
    session.save().await.unwrap();
    let key = session.session_key().unwrap();
    // What a foreign writer or a corrupted row could leave behind.
    rusqlite::Connection::open(&server.db_path)
        .unwrap()
        .execute(
            "UPDATE django_session SET session_data = '[1, 2]' WHERE session_key = ?1",
            [&key],
        )
        .unwrap();
    let reread = server.session(Some(&key));
    assert_eq!(reread.get::<i64>("a").await.unwrap(), None);
    assert_eq!(reread.session_key().as_deref(), Some(key.as_str()));
    // The row is still there, so a save overwrites it, as in Django.
    reread.insert("b", 2).await.unwrap();
    reread.save().await.unwrap();
    let again = server.session(Some(&key));
    assert_eq!(again.get::<i64>("b").await.unwrap(), Some(2));
}

#[tokio::test]
async fn values_that_cannot_be_json_are_refused_at_insert() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    let mut bad = BTreeMap::new();
    bad.insert(vec![1u8], "a map with non-string keys");
    let err = session.insert("bad", bad).await.unwrap_err();
    assert!(
        matches!(err, SessionError::Serialize { ref key, .. } if key == "bad"),
        "{err:?}"
    );
    assert!(!session.modified());
    assert_eq!(session.get::<String>("x").await.unwrap(), None);
    let err = session.get::<u32>("x").await;
    assert!(err.is_ok());
    session.insert("n", "not a number").await.unwrap();
    assert!(matches!(
        session.get::<u32>("n").await,
        Err(SessionError::Deserialize { .. })
    ));
}

#[tokio::test]
async fn clear_expired_removes_expired_sessions() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    session.set_expiry(Expiry::Seconds(-10)).await.unwrap();
    session.save().await.unwrap();
    let key = session.session_key().unwrap();
    assert!(session.exists(&key).await.unwrap());
    assert_eq!(session.clear_expired().await.unwrap(), 1);
    assert!(!session.exists(&key).await.unwrap());
}

/// Through a real sessiond. In this workspace serde_json's
/// `arbitrary_precision` and `preserve_order` are on (the server turns them
/// on for every crate), so this would pass with values kept in a
/// `serde_json::Map` too; `client/tests/app_json/` proves it without them
/// (see `untouched_values_are_saved_back_as_the_store_held_them`).
#[tokio::test]
async fn big_integers_and_key_order_survive_a_round_trip() {
    let server = Sessiond::start().await;
    let session = server.session(None);
    let big: Value = serde_json::from_str("123456789012345678901234567890").unwrap();
    session.insert("z", 1).await.unwrap();
    session.insert("big", big.clone()).await.unwrap();
    session.insert("a", 2).await.unwrap();
    session.save().await.unwrap();
    let reread = server.session(session.session_key().as_deref());
    assert_eq!(reread.keys().await.unwrap(), vec!["z", "big", "a"]);
    assert_eq!(reread.get_value("big").await.unwrap(), Some(big));
}

/// Another writer's literals (an integer past u64, a float written `1e16`,
/// `1.50`) and key order come back byte for byte from a whole save, since
/// values the request did not touch are sent as the text the store held;
/// `keys()` and a patch's new keys keep insertion order.
///
/// What this proves: the text goes through a real sessiond (Create, Load,
/// Save, Patch) and back unchanged, and a whole save and a patch keep the
/// order. What it cannot prove: that the client needs no serde_json
/// feature for it. This test runs inside the workspace, where the server
/// turns on `arbitrary_precision` and `preserve_order` for every crate, so
/// the `1.50` literal and the key order would survive with values kept in
/// a `serde_json::Map` too. The feature-free proof is `client/tests/app_json/`
/// (run by `client/tests/app_json.rs`): an app in a workspace of its own,
/// which re-signs a Django session through the same `Data` type the server
/// backend parses sessiond's text into. (It has no sessiond to talk to:
/// depending on the server crate would turn the features back on, and
/// `cargo test -p sessiond-client` does not build the `sessiond` binary.)
#[tokio::test]
async fn untouched_values_are_saved_back_as_the_store_held_them() {
    let server = Sessiond::start().await;
    let stored = r#"{"z":1,"big":1180591620717411303424,"f":1e16,"name":"Zo\u00eb","a":[1.50,{"y":2,"x":3}]}"#;
    let key = server
        .client
        .create(stored, None)
        .await
        .unwrap()
        .session_key;
    let whole = Settings {
        save_mode: SaveMode::Whole,
        ..Settings::default()
    };
    let session = server.session_with(whole, Some(&key));
    assert_eq!(
        session.keys().await.unwrap(),
        ["z", "big", "f", "name", "a"]
    );
    session.insert("added", true).await.unwrap();
    session.save().await.unwrap();
    let saved = server.client.load(&key).await.unwrap().unwrap().data;
    assert_eq!(
        saved,
        format!("{}{}", &stored[..stored.len() - 1], r#","added":true}"#)
    );

    let session = server.session(Some(&key));
    session.insert("m", 1).await.unwrap();
    session.insert("b", 2).await.unwrap();
    session.remove::<Value>("z").await.unwrap();
    session.save().await.unwrap();
    let reread = server.session(Some(&key));
    assert_eq!(
        reread.keys().await.unwrap(),
        ["big", "f", "name", "a", "added", "m", "b"]
    );
    assert_eq!(
        reread.get::<u128>("big").await.unwrap(),
        Some(1_180_591_620_717_411_303_424)
    );
}
