//! Malformed requests get INVALID_ARGUMENT naming the field, and leave the
//! stored data exactly as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestServer, code, row_count, stored_row};
use sessiond_client::proto;
use tonic::Code;

const KEY: &str = "goodkey0000000000000000000000000";
const DATA: &str = r#"{"keep":"me"}"#;

/// A server holding one session under `KEY`, and its row as stored.
async fn server_with_one_session(args: &[&str]) -> (TestServer, (String, String)) {
    let server = TestServer::start_with(args).await;
    server.client.save(KEY, DATA, None, true).await.unwrap();
    let row = stored_row(&server.db(), KEY).unwrap();
    (server, row)
}

fn assert_invalid(result: Result<impl std::fmt::Debug, sessiond_client::Error>, field: &str) {
    let err = result.unwrap_err();
    let sessiond_client::Error::Status { status, .. } = &err else {
        panic!("expected a status, got {err:?}");
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{field}:")),
        "message should name {field}: {:?}",
        status.message()
    );
}

const BAD_KEYS: &[&str] = &[
    "",
    "short",
    "1234567",
    "this-key-is-long-enough",
    "UPPERCASEKEY",
    "key with spaces",
    "../../etc/passwd",
    "ключключключ",
    "abcdefgh\0ijkl",
    "abcdefghijabcdefghijabcdefghijabcdefghijk", // 41 characters
];

#[tokio::test]
async fn malformed_keys_are_refused_by_every_rpc_and_change_nothing() {
    let (server, row) = server_with_one_session(&[]).await;
    let c = &server.client;
    for &key in BAD_KEYS {
        assert_invalid(c.load(key).await, "session_key");
        assert_invalid(c.exists(key).await, "session_key");
        assert_invalid(c.save(key, DATA, None, true).await, "session_key");
        assert_invalid(c.save(key, DATA, None, false).await, "session_key");
        assert_invalid(c.delete(key).await, "session_key");
        assert_invalid(c.cycle_key(key, None, None).await, "session_key");
    }
    assert_eq!(row_count(&server.db()), 1);
    assert_eq!(stored_row(&server.db(), KEY).unwrap(), row);
    server.stop().await;
}

#[tokio::test]
async fn the_key_length_error_says_what_is_allowed() {
    let server = TestServer::start().await;
    let err = server.client.load("1234567").await.unwrap_err();
    let sessiond_client::Error::Status { status, .. } = err else {
        panic!()
    };
    assert_eq!(
        status.message(),
        "session_key: must be 8 to 40 characters long, got 7 characters"
    );
    server.stop().await;
}

#[tokio::test]
async fn keys_of_8_and_40_characters_are_accepted() {
    let server = TestServer::start().await;
    for key in ["abcdefgh", "abcdefghijabcdefghijabcdefghijabcdefghij"] {
        server.client.save(key, "{}", None, true).await.unwrap();
        assert!(server.client.load(key).await.unwrap().is_some());
    }
    server.stop().await;
}

const BAD_DATA: &[&str] = &[
    "",
    "not json",
    "[]",
    "[1,2]",
    "42",
    "\"a string\"",
    "null",
    "true",
    "{",
    "{\"a\":1",
    "{\"a\":1}}",
    "{\"a\":1} trailing",
    "{'single':'quotes'}",
    "{\"a\":NaN}",
    "{\"a\":Infinity}",
    "{a:1}",
];

#[tokio::test]
async fn data_that_is_not_a_json_object_is_refused_and_changes_nothing() {
    let (server, row) = server_with_one_session(&[]).await;
    let c = &server.client;
    for &data in BAD_DATA {
        assert_invalid(c.create(data, None).await, "data");
        assert_invalid(c.save(KEY, data, None, false).await, "data");
        assert_invalid(c.save("otherkey0000", data, None, true).await, "data");
        assert_invalid(c.cycle_key(KEY, Some(data), None).await, "data");
    }
    assert_eq!(row_count(&server.db()), 1);
    assert_eq!(stored_row(&server.db(), KEY).unwrap(), row);
    server.stop().await;
}

#[tokio::test]
async fn data_over_the_limit_is_refused_and_changes_nothing() {
    let (server, row) = server_with_one_session(&["--max-data-bytes", "1000"]).await;
    let c = &server.client;
    let at_limit = format!(r#"{{"x":"{}"}}"#, "a".repeat(1000 - 8));
    assert_eq!(at_limit.len(), 1000);
    let over_limit = format!(r#"{{"x":"{}"}}"#, "a".repeat(1000 - 7));

    c.save("atlimit00", &at_limit, None, true).await.unwrap();
    assert_invalid(c.create(&over_limit, None).await, "data");
    assert_invalid(c.save(KEY, &over_limit, None, false).await, "data");
    assert_invalid(c.cycle_key(KEY, Some(&over_limit), None).await, "data");

    let err = c.save(KEY, &over_limit, None, false).await.unwrap_err();
    assert!(err.to_string().contains("--max-data-bytes"), "{err}");
    assert_eq!(stored_row(&server.db(), KEY).unwrap(), row);
    assert_eq!(row_count(&server.db()), 2);
    server.stop().await;
}

#[tokio::test]
async fn data_over_the_default_limit_of_one_mib_is_refused() {
    let (server, row) = server_with_one_session(&[]).await;
    let one_mib = 1 << 20;
    let at_limit = format!(r#"{{"x":"{}"}}"#, "a".repeat(one_mib - 8));
    let over_limit = format!(r#"{{"x":"{}"}}"#, "a".repeat(one_mib - 7));
    server
        .client
        .save("atlimit00", &at_limit, None, true)
        .await
        .unwrap();
    assert_eq!(
        server.client.load("atlimit00").await.unwrap().unwrap().data,
        at_limit
    );
    assert_invalid(
        server.client.save(KEY, &over_limit, None, false).await,
        "data",
    );

    // Far beyond the limit the transport refuses the message itself.
    let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(8 * one_mib));
    let err = server
        .client
        .save(KEY, &huge, None, false)
        .await
        .unwrap_err();
    assert!(matches!(
        code(err),
        Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange
    ),);
    assert_eq!(stored_row(&server.db(), KEY).unwrap(), row);
    server.stop().await;
}

fn timestamp(seconds: i64, nanos: i32) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos }
}

#[tokio::test]
async fn timestamps_out_of_range_are_refused_and_change_nothing() {
    let (server, row) = server_with_one_session(&[]).await;
    let mut raw = server.client.raw();
    let bad_times = [
        timestamp(253_402_300_800, 0), // 10000-01-01
        timestamp(-62_135_596_801, 0), // the year 0
        timestamp(i64::MAX, 0),
        timestamp(i64::MIN, 0),
        timestamp(1_767_225_600, -1),
        timestamp(1_767_225_600, 1_000_000_000),
    ];
    for ts in bad_times {
        let save = raw
            .save(proto::SaveRequest {
                session_key: KEY.into(),
                data: DATA.into(),
                expire_date: Some(ts),
                must_create: false,
            })
            .await
            .unwrap_err();
        assert_eq!(save.code(), Code::InvalidArgument, "{ts:?}");
        assert!(
            save.message().starts_with("expire_date:"),
            "{}",
            save.message()
        );

        let create = raw
            .create(proto::CreateRequest {
                data: DATA.into(),
                expire_date: Some(ts),
            })
            .await
            .unwrap_err();
        assert_eq!(create.code(), Code::InvalidArgument);

        let cycle = raw
            .cycle_key(proto::CycleKeyRequest {
                session_key: KEY.into(),
                data: None,
                expire_date: Some(ts),
            })
            .await
            .unwrap_err();
        assert_eq!(cycle.code(), Code::InvalidArgument);
    }
    assert_eq!(row_count(&server.db()), 1);
    assert_eq!(stored_row(&server.db(), KEY).unwrap(), row);
    server.stop().await;
}

#[tokio::test]
async fn the_extremes_of_the_range_are_accepted() {
    let server = TestServer::start().await;
    let mut raw = server.client.raw();
    for (key, ts, text) in [
        (
            "lastsecond",
            timestamp(253_402_300_799, 999_999_000),
            "9999-12-31 23:59:59.999999",
        ),
        (
            "firstsecond",
            timestamp(-62_135_596_800, 0),
            "0001-01-01 00:00:00",
        ),
    ] {
        raw.save(proto::SaveRequest {
            session_key: key.into(),
            data: "{}".into(),
            expire_date: Some(ts),
            must_create: true,
        })
        .await
        .unwrap();
        assert_eq!(stored_row(&server.db(), key).unwrap().1, text);
    }
    assert!(server.client.load("lastsecond").await.unwrap().is_some());
    assert!(server.client.load("firstsecond").await.unwrap().is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_corrupted_row_reads_as_an_empty_session() {
    let server = TestServer::start().await;
    server.client.save(KEY, DATA, None, true).await.unwrap();
    server
        .db()
        .execute(
            "UPDATE django_session SET session_data = 'not json at all' WHERE session_key = ?1",
            [KEY],
        )
        .unwrap();
    let loaded = server.client.load(KEY).await.unwrap().unwrap();
    assert_eq!(loaded.data, "{}");
    // The row is kept: a later save overwrites it, as in Django.
    server
        .client
        .save(KEY, r#"{"fresh":1}"#, None, false)
        .await
        .unwrap();
    assert_eq!(
        server.client.load(KEY).await.unwrap().unwrap().data,
        r#"{"fresh":1}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_patches_are_refused_and_change_nothing() {
    let (server, row) = server_with_one_session(&["--max-data-bytes", "100"]).await;
    let c = &server.client;
    for set in ["[]", "1", "not json", "{", "null"] {
        assert_invalid(c.patch(KEY, set, &[], false, None).await, "set");
    }
    for &key in BAD_KEYS {
        assert_invalid(c.patch(key, "{}", &[], false, None).await, "session_key");
    }
    // The patch itself fits, the result would not.
    let big = format!(r#"{{"big":"{}"}}"#, "x".repeat(90));
    assert_invalid(c.patch(KEY, &big, &[], false, None).await, "data");
    assert_eq!(stored_row(&server.db(), KEY).unwrap(), row);
    server.stop().await;
}
