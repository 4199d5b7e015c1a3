//! A session as the engine keeps it: one hash with the fields
//! `session_data` and `expire_date`, and the key's own expiry; reading the
//! replies Redis sends about it.

use ::redis::Value;
use chrono::{DateTime, Utc};

use crate::session::ExpireDate;
use crate::store::kit::StoreError;

/// The hash fields, named after Django's columns.
pub(super) const DATA_FIELD: &str = "session_data";
pub(super) const EXPIRE_FIELD: &str = "expire_date";

/// A stored session that sessiond cannot read. Never quotes the data.
#[derive(Debug, thiserror::Error)]
#[error("a stored session is malformed: {0}")]
struct Malformed(&'static str);

/// A session as read from its hash.
pub(super) struct Stored {
    pub(super) session_data: String,
    /// The `expire_date` field exactly as stored, for compare-and-set.
    pub(super) expire_text: String,
    pub(super) expire_date: ExpireDate,
}

impl Stored {
    /// Reads the `[session_data, expire_date]` pair of `HMGET` (or of the
    /// patch script); `None` when the session does not exist.
    pub(super) fn from_reply(reply: Value) -> Result<Option<Self>, StoreError> {
        let Value::Array(fields) = reply else {
            return Err(malformed("expected the fields of a session"));
        };
        let mut fields = fields.into_iter();
        let (Some(data), Some(expire), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(malformed("expected two fields"));
        };
        match (text(data)?, text(expire)?) {
            (None, None) => Ok(None),
            (Some(session_data), Some(expire_text)) => Ok(Some(Self {
                expire_date: from_text(&expire_text)?,
                session_data,
                expire_text,
            })),
            _ => Err(malformed(
                "the hash lacks session_data or expire_date; it was not written by sessiond",
            )),
        }
    }
}

pub(super) fn malformed(what: &'static str) -> StoreError {
    StoreError::Corrupt(Box::new(Malformed(what)))
}

/// A string reply, `None` for nil. The error never carries the text, which
/// may be session data.
pub(super) fn text(reply: Value) -> Result<Option<String>, StoreError> {
    match reply {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| malformed("a field is not UTF-8 text")),
        Value::SimpleString(text) => Ok(Some(text)),
        _ => Err(malformed("expected a text field")),
    }
}

pub(super) fn integer(reply: &Value) -> Result<i64, StoreError> {
    match reply {
        Value::Int(number) => Ok(*number),
        _ => Err(malformed("expected an integer reply")),
    }
}

/// The `expire_date` field: RFC 3339, UTC, always six fractional digits.
pub(super) fn to_text(expire_date: ExpireDate) -> String {
    expire_date
        .instant()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

pub(super) fn from_text(text: &str) -> Result<ExpireDate, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|instant| ExpireDate::new(instant.with_timezone(&Utc)).ok())
        .ok_or_else(|| malformed("expire_date is not an RFC 3339 time"))
}

/// The key's `PEXPIREAT`: the expiry in Unix milliseconds, rounded up so
/// that Redis never drops a session before its `expire_date`.
pub(super) fn expire_at_millis(expire_date: ExpireDate) -> i64 {
    let micros = expire_date.instant().timestamp_micros();
    micros.div_euclid(1000) + i64::from(micros.rem_euclid(1000) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(text: &str) -> ExpireDate {
        ExpireDate::new(
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc),
        )
        .unwrap()
    }

    #[test]
    fn expire_dates_are_fixed_width_rfc3339() {
        assert_eq!(
            to_text(instant("2026-01-15T09:30:00Z")),
            "2026-01-15T09:30:00.000000Z"
        );
        assert_eq!(
            to_text(instant("0005-03-04T05:06:07.000001Z")),
            "0005-03-04T05:06:07.000001Z"
        );
        for text in ["2026-01-15T09:30:00.250000Z", "9999-12-31T23:59:59.999999Z"] {
            assert_eq!(to_text(from_text(text).unwrap()), text);
        }
        assert!(from_text("yesterday").is_err());
    }

    #[test]
    fn redis_expiry_never_comes_before_the_expire_date() {
        assert_eq!(expire_at_millis(instant("1970-01-01T00:00:01Z")), 1_000);
        assert_eq!(
            expire_at_millis(instant("1970-01-01T00:00:01.000001Z")),
            1_001
        );
        assert_eq!(expire_at_millis(instant("1969-12-31T23:59:59.999999Z")), 0);
        assert_eq!(expire_at_millis(instant("1969-12-31T23:59:59.998Z")), -2);
    }
}
