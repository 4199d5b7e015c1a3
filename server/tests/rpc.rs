//! Every RPC through the real server and the real client, normal and edge
//! paths, with the stored rows checked in the SQLite file itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestServer, code, hours_from_now, row_count, stored_row};
use tonic::Code;

const KEY: &str = "abcdefgh12345678abcdefgh12345678";

#[tokio::test]
async fn create_then_load_returns_the_data_and_expiry() {
    let server = TestServer::start().await;
    let expire = UNIX_EPOCH + Duration::new(4_102_444_800, 123_456_000); // 2100-01-01
    let data = r#"{"user":"ada","cart":[1,2,{"x":null}],"big":123456789012345678901234567890}"#;

    let created = server.client.create(data, Some(expire)).await.unwrap();
    assert_eq!(created.session_key.len(), 32);
    assert!(
        created
            .session_key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert_eq!(created.expire_date, expire);

    let loaded = server
        .client
        .load(&created.session_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.data, data);
    assert_eq!(loaded.expire_date, expire);

    let (stored_data, stored_expiry) = stored_row(&server.db(), &created.session_key).unwrap();
    assert_eq!(stored_data, data);
    assert_eq!(stored_expiry, "2100-01-01 00:00:00.123456");
    server.stop().await;
}

#[tokio::test]
async fn expiry_is_stored_in_djangos_text_form() {
    let server = TestServer::start().await;
    let whole_second = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
    server
        .client
        .save(KEY, "{}", Some(whole_second), true)
        .await
        .unwrap();
    let (_, text) = stored_row(&server.db(), KEY).unwrap();
    assert_eq!(text, "2026-01-01 00:00:00");
    let typ: String = server
        .db()
        .query_row(
            "SELECT typeof(expire_date) FROM django_session WHERE session_key = ?1",
            [KEY],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(typ, "text");
    server.stop().await;
}

#[tokio::test]
async fn absent_expiry_means_now_plus_the_session_age() {
    let server = TestServer::start_with(&["--session-age", "3600"]).await;
    let before = SystemTime::now();
    let created = server.client.create("{}", None).await.unwrap();
    let after = SystemTime::now();
    assert!(created.expire_date >= before + Duration::from_secs(3600) - Duration::from_millis(1));
    assert!(created.expire_date <= after + Duration::from_secs(3600));

    let saved = server.client.save(KEY, "{}", None, true).await.unwrap();
    assert!(saved >= before + Duration::from_secs(3599));
    server.stop().await;
}

#[tokio::test]
async fn the_default_session_age_is_two_weeks() {
    let server = TestServer::start().await;
    let created = server.client.create("{}", None).await.unwrap();
    let age = created
        .expire_date
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(age > Duration::from_secs(1_209_600 - 60) && age <= Duration::from_secs(1_209_600));
    server.stop().await;
}

#[tokio::test]
async fn load_of_a_missing_session_is_not_found_and_creates_nothing() {
    let server = TestServer::start().await;
    assert_eq!(server.client.load(KEY).await.unwrap(), None);
    assert_eq!(row_count(&server.db()), 0);
    server.stop().await;
}

#[tokio::test]
async fn expired_rows_are_invisible_to_load_but_visible_to_exists() {
    let server = TestServer::start().await;
    server
        .client
        .save(KEY, r#"{"a":1}"#, Some(hours_from_now(-1)), true)
        .await
        .unwrap();
    assert_eq!(server.client.load(KEY).await.unwrap(), None);
    assert!(server.client.exists(KEY).await.unwrap());
    assert!(!server.client.exists("zzzzzzzzzzzzzzzz").await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn save_without_must_create_updates_and_never_inserts() {
    let server = TestServer::start().await;
    let err = server
        .client
        .save(KEY, r#"{"a":1}"#, None, false)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    assert!(!server.client.exists(KEY).await.unwrap());

    server
        .client
        .save(KEY, r#"{"a":1}"#, None, true)
        .await
        .unwrap();
    let later = hours_from_now(48);
    server
        .client
        .save(KEY, r#"{"a":2}"#, Some(later), false)
        .await
        .unwrap();
    let loaded = server.client.load(KEY).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"a":2}"#);
    server.stop().await;
}

#[tokio::test]
async fn save_may_revive_an_expired_row_that_still_exists() {
    // As Django: an UPDATE matches the row regardless of its expiry.
    let server = TestServer::start().await;
    server
        .client
        .save(KEY, "{}", Some(hours_from_now(-1)), true)
        .await
        .unwrap();
    server
        .client
        .save(KEY, r#"{"b":1}"#, Some(hours_from_now(1)), false)
        .await
        .unwrap();
    assert_eq!(
        server.client.load(KEY).await.unwrap().unwrap().data,
        r#"{"b":1}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn must_create_on_a_taken_key_is_already_exists_and_changes_nothing() {
    let server = TestServer::start().await;
    server
        .client
        .save(KEY, r#"{"first":true}"#, None, true)
        .await
        .unwrap();
    let err = server
        .client
        .save(KEY, r#"{"second":true}"#, None, true)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::AlreadyExists);
    assert_eq!(
        server.client.load(KEY).await.unwrap().unwrap().data,
        r#"{"first":true}"#
    );

    // An expired row still holds its key, as in Django.
    server
        .client
        .save("expiredkey1", "{}", Some(hours_from_now(-1)), true)
        .await
        .unwrap();
    let err = server
        .client
        .save("expiredkey1", "{}", None, true)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::AlreadyExists);
    server.stop().await;
}

#[tokio::test]
async fn a_concurrent_delete_makes_a_later_save_fail_with_not_found() {
    let server = TestServer::start().await;
    let other = sessiond_client::Client::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let created = server.client.create(r#"{"n":1}"#, None).await.unwrap();
    let key = created.session_key;

    // Request A has loaded the session; request B logs out meanwhile.
    let loaded = server.client.load(&key).await.unwrap().unwrap();
    assert!(other.delete(&key).await.unwrap());

    let err = server
        .client
        .save(&key, &loaded.data, None, false)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    assert!(
        !server.client.exists(&key).await.unwrap(),
        "the deleted session came back"
    );
    server.stop().await;
}

#[tokio::test]
async fn of_concurrent_must_create_saves_of_one_key_exactly_one_wins() {
    let server = TestServer::start().await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let client = sessiond_client::Client::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let data = format!(r#"{{"writer":{n}}}"#);
            (data.clone(), client.save(KEY, &data, None, true).await)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (data, result) = task.await.unwrap();
        match result {
            Ok(_) => winners.push(data),
            Err(err) => assert_eq!(code(err), Code::AlreadyExists),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(
        server.client.load(KEY).await.unwrap().unwrap().data,
        winners[0]
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrent_creates_all_get_distinct_keys() {
    let server = TestServer::start().await;
    let mut tasks = Vec::new();
    for n in 0..64 {
        let client = server.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .create(&format!(r#"{{"n":{n}}}"#), None)
                .await
                .unwrap()
                .session_key
        }));
    }
    let mut keys = std::collections::HashSet::new();
    for task in tasks {
        assert!(keys.insert(task.await.unwrap()));
    }
    assert_eq!(row_count(&server.db()), 64);
    server.stop().await;
}

#[tokio::test]
async fn delete_is_idempotent() {
    let server = TestServer::start().await;
    server.client.save(KEY, "{}", None, true).await.unwrap();
    assert!(server.client.delete(KEY).await.unwrap());
    assert!(!server.client.delete(KEY).await.unwrap());
    assert!(!server.client.delete("neverexisted").await.unwrap());
    assert!(!server.client.exists(KEY).await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn cycle_key_keeps_the_data_and_removes_the_old_key() {
    let server = TestServer::start().await;
    let data = r#"{"_auth_user_id":"42","cart":[1,2]}"#;
    server.client.save(KEY, data, None, true).await.unwrap();

    let expire = hours_from_now(5);
    let cycled = server
        .client
        .cycle_key(KEY, None, Some(expire))
        .await
        .unwrap();
    assert_ne!(cycled.session_key, KEY);
    assert_eq!(cycled.session_key.len(), 32);
    assert!(!server.client.exists(KEY).await.unwrap());
    let loaded = server
        .client
        .load(&cycled.session_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.data, data);
    assert_eq!(row_count(&server.db()), 1);
    server.stop().await;
}

#[tokio::test]
async fn cycle_key_with_data_replaces_it_even_for_an_unknown_old_key() {
    // Django's cycle_key() saves the in-memory data under a new key and
    // deletes the old one if it is there.
    let server = TestServer::start().await;
    server
        .client
        .save(KEY, r#"{"old":1}"#, None, true)
        .await
        .unwrap();
    let cycled = server
        .client
        .cycle_key(KEY, Some(r#"{"new":1}"#), None)
        .await
        .unwrap();
    assert_eq!(
        server
            .client
            .load(&cycled.session_key)
            .await
            .unwrap()
            .unwrap()
            .data,
        r#"{"new":1}"#
    );
    assert!(!server.client.exists(KEY).await.unwrap());

    let fresh = server
        .client
        .cycle_key("unknownkey", Some(r#"{"x":1}"#), None)
        .await
        .unwrap();
    assert!(server.client.exists(&fresh.session_key).await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn cycle_key_without_data_of_a_missing_or_expired_session_is_not_found() {
    let server = TestServer::start().await;
    let err = server.client.cycle_key(KEY, None, None).await.unwrap_err();
    assert_eq!(code(err), Code::NotFound);

    server
        .client
        .save(KEY, r#"{"a":1}"#, Some(hours_from_now(-1)), true)
        .await
        .unwrap();
    let err = server.client.cycle_key(KEY, None, None).await.unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    // Nothing changed: the expired row is still there, and nothing was added.
    assert!(server.client.exists(KEY).await.unwrap());
    assert_eq!(row_count(&server.db()), 1);
    server.stop().await;
}

/// Saves `count` sessions that expired an hour ago.
async fn save_expired(server: &TestServer, count: usize) {
    for n in 0..count {
        let key = format!("expired{n:04}");
        server
            .client
            .save(&key, "{}", Some(hours_from_now(-1)), true)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn clear_expired_removes_expired_rows_only() {
    let server = TestServer::start_with(&["--purge-batch-size", "7"]).await;
    save_expired(&server, 50).await;
    for n in 0..20 {
        let key = format!("livekey{n:04}");
        server
            .client
            .save(&key, "{}", Some(hours_from_now(1)), true)
            .await
            .unwrap();
    }
    assert_eq!(server.client.clear_expired().await.unwrap(), 50);
    assert_eq!(row_count(&server.db()), 20);
    assert_eq!(server.client.clear_expired().await.unwrap(), 0);
    assert!(server.client.load("livekey0000").await.unwrap().is_some());
    server.stop().await;
}

/// A purge that pauses between batches for the Loads coming in meanwhile
/// still removes every expired row, and the Loads are answered throughout.
#[tokio::test]
async fn clear_expired_among_other_calls_removes_every_expired_row() {
    let server = TestServer::start_with(&["--purge-batch-size", "5"]).await;
    save_expired(&server, 100).await;
    server
        .client
        .save(KEY, "{\"live\":1}", Some(hours_from_now(1)), true)
        .await
        .unwrap();
    let purge = tokio::spawn({
        let client = server.client.clone();
        async move { client.clear_expired().await }
    });
    while !purge.is_finished() {
        let loaded = server.client.load(KEY).await.unwrap().unwrap();
        assert_eq!(loaded.data, "{\"live\":1}");
    }
    assert_eq!(purge.await.unwrap().unwrap(), 100);
    assert_eq!(row_count(&server.db()), 1);
    server.stop().await;
}

#[tokio::test]
async fn the_background_purge_removes_expired_rows_by_itself() {
    let server = TestServer::start_with(&["--purge-interval", "200ms"]).await;
    server
        .client
        .save(KEY, "{}", Some(hours_from_now(-1)), true)
        .await
        .unwrap();
    server
        .client
        .save("livekey00", "{}", Some(hours_from_now(1)), true)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.client.exists(KEY).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the purge never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.client.exists("livekey00").await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let server = TestServer::start().await;
    let created = server
        .client
        .create(r#"{"kept":true}"#, None)
        .await
        .unwrap();
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, &[]).await;
    let loaded = server
        .client
        .load(&created.session_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.data, r#"{"kept":true}"#);
    server.stop().await;
}

#[tokio::test]
async fn many_concurrent_writes_are_all_committed() {
    let server = TestServer::start().await;
    let mut tasks = Vec::new();
    for n in 0..200 {
        let client = server.client.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("concurrent{n:05}");
            client
                .save(&key, &format!(r#"{{"n":{n}}}"#), None, true)
                .await
                .unwrap();
            client
                .save(&key, &format!(r#"{{"n":{n},"again":true}}"#), None, false)
                .await
                .unwrap();
            key
        }));
    }
    for (n, task) in tasks.into_iter().enumerate() {
        let key = task.await.unwrap();
        let loaded = server.client.load(&key).await.unwrap().unwrap();
        assert_eq!(loaded.data, format!(r#"{{"n":{n},"again":true}}"#));
    }
    server.stop().await;
}

#[tokio::test]
async fn patch_sets_and_removes_keys_on_top_of_the_stored_data() {
    let server = TestServer::start().await;
    server
        .client
        .save(KEY, r#"{"a":1,"b":2,"c":3}"#, None, true)
        .await
        .unwrap();
    let expire = hours_from_now(3);
    let stored_expiry = server
        .client
        .patch(
            KEY,
            r#"{"b":20,"d":{"x":[1]}}"#,
            &["a".into(), "nope".into()],
            false,
            Some(expire),
        )
        .await
        .unwrap();
    assert_eq!(
        stored_expiry
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
        expire.duration_since(UNIX_EPOCH).unwrap().as_micros()
    );
    let loaded = server.client.load(KEY).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"b":20,"c":3,"d":{"x":[1]}}"#);

    // An empty patch only moves the expiry.
    server
        .client
        .patch(KEY, "", &[], false, None)
        .await
        .unwrap();
    assert_eq!(
        server.client.load(KEY).await.unwrap().unwrap().data,
        loaded.data
    );

    // After clear(): everything is replaced.
    server
        .client
        .patch(KEY, r#"{"fresh":true}"#, &[], true, None)
        .await
        .unwrap();
    assert_eq!(
        server.client.load(KEY).await.unwrap().unwrap().data,
        r#"{"fresh":true}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrent_patches_of_different_keys_all_survive() {
    let server = TestServer::start().await;
    server
        .client
        .save(KEY, r#"{"base":0}"#, None, true)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..40 {
        let client = server.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .patch(KEY, &format!(r#"{{"k{n}":{n}}}"#), &[], false, None)
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let loaded = server.client.load(KEY).await.unwrap().unwrap();
    let data: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&loaded.data).unwrap();
    assert_eq!(data.len(), 41, "{}", loaded.data);
    for n in 0..40 {
        assert_eq!(data[&format!("k{n}")], n);
    }
    server.stop().await;
}

#[tokio::test]
async fn patch_of_a_deleted_session_is_not_found_and_does_not_resurrect_it() {
    let server = TestServer::start().await;
    server
        .client
        .save(KEY, r#"{"a":1}"#, None, true)
        .await
        .unwrap();
    server.client.delete(KEY).await.unwrap();
    let err = server
        .client
        .patch(KEY, r#"{"b":2}"#, &[], false, None)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    assert!(!server.client.exists(KEY).await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn patch_of_an_expired_session_starts_from_an_empty_one() {
    let server = TestServer::start().await;
    server
        .client
        .save(KEY, r#"{"stale":1}"#, Some(hours_from_now(-1)), true)
        .await
        .unwrap();
    server
        .client
        .patch(KEY, r#"{"new":1}"#, &[], false, None)
        .await
        .unwrap();
    assert_eq!(
        server.client.load(KEY).await.unwrap().unwrap().data,
        r#"{"new":1}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn cycle_key_without_data_or_expiry_keeps_the_sessions_expiry() {
    let server = TestServer::start().await;
    let short = UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100-01-01
    server
        .client
        .save(KEY, r#"{"_session_expiry":300}"#, Some(short), true)
        .await
        .unwrap();
    let cycled = server.client.cycle_key(KEY, None, None).await.unwrap();
    assert_eq!(cycled.expire_date, short);
    assert_eq!(
        server
            .client
            .load(&cycled.session_key)
            .await
            .unwrap()
            .unwrap()
            .expire_date,
        short
    );

    // With data, the caller owns the expiry: absent means the default age.
    let again = server
        .client
        .cycle_key(&cycled.session_key, Some("{}"), None)
        .await
        .unwrap();
    assert_ne!(again.expire_date, short);
    server.stop().await;
}
