//! The domain types every request is turned into at the edge: a validated
//! [`SessionKey`] (the rule every part of sessiond shares, from
//! `sessiond-signing`), [`SessionData`] that is known to be a JSON object
//! within the size limit, and an [`ExpireDate`] that every engine can store.
//!
//! Engines only ever see these types, never raw request fields.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
pub use sessiond_signing::{SessionKey, SessionKeyError};

use crate::error::{Classified, ErrorKind};

/// A request field that failed validation. Each message names the field and
/// says what it must be.
#[derive(Debug, thiserror::Error)]
pub enum InvalidInput {
    #[error(transparent)]
    Key(#[from] SessionKeyError),
    #[error("data: must be the text of a JSON object, such as {{}}")]
    DataNotObject(#[source] serde_json::Error),
    #[error("data: is {size} bytes, over the server's limit of {limit} bytes (--max-data-bytes)")]
    DataTooLarge { size: usize, limit: usize },
    #[error("expire_date: must be a valid time between the years 1 and 9999 UTC")]
    ExpireDateOutOfRange,
    #[error(
        "expire_date: the store keeps expiry as a file time, and its file system cannot hold this one; choose a date nearer to now"
    )]
    ExpireDateNotStorable,
    #[error("set: must be empty or the text of a JSON object, such as {{\"cart\":[1,2]}}")]
    SetNotObject(#[source] serde_json::Error),
    #[error(
        "data: the patched session would be {size} bytes, over the server's limit of {limit} bytes (--max-data-bytes)"
    )]
    PatchedTooLarge { size: usize, limit: usize },
}

impl Classified for InvalidInput {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }

    /// serde_json's messages can quote a string of the data.
    fn causes_quote_input(&self) -> bool {
        true
    }
}

/// Session data that is the text of a JSON object within the size limit.
///
/// The text is kept as the client sent it: key order, number spelling and
/// big integers survive untouched.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionData(String);

impl SessionData {
    /// Checks data taken from a request against the size limit and the JSON
    /// object rule.
    pub fn parse(text: String, max_bytes: usize) -> Result<Self, InvalidInput> {
        if text.len() > max_bytes {
            return Err(InvalidInput::DataTooLarge {
                size: text.len(),
                limit: max_bytes,
            });
        }
        if let Err(err) = check_json_object(&text) {
            return Err(InvalidInput::DataNotObject(err));
        }
        Ok(Self(text))
    }

    /// The data of an empty session.
    pub fn empty() -> Self {
        Self("{}".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionData({} bytes)", self.0.len())
    }
}

/// A change to some keys of a session's data, applied by `Patch` on top of
/// whatever is stored at that moment.
#[derive(Clone)]
pub struct SessionPatch {
    set: serde_json::Map<String, serde_json::Value>,
    remove: HashSet<String>,
    replace: bool,
}

impl SessionPatch {
    /// Checks a patch taken from a request: `set` must be empty or a JSON
    /// object within the size limit.
    pub fn parse(
        set: &str,
        remove: Vec<String>,
        replace: bool,
        max_bytes: usize,
    ) -> Result<Self, InvalidInput> {
        if set.len() > max_bytes {
            return Err(InvalidInput::DataTooLarge {
                size: set.len(),
                limit: max_bytes,
            });
        }
        let set = if set.is_empty() {
            serde_json::Map::new()
        } else {
            serde_json::from_str(set).map_err(InvalidInput::SetNotObject)?
        };
        Ok(Self {
            set,
            remove: remove.into_iter().collect(),
            replace,
        })
    }

    /// The session data after the patch, from the stored data (`None` when
    /// there is no live data to build on). Keys keep their order; new keys
    /// go last, as in a Python dict. Removal comes first, so a key both
    /// removed and set is set, and goes last. Takes `&self` because an
    /// engine may apply the same patch again after losing a race with
    /// another write.
    pub fn apply(
        &self,
        stored: Option<&str>,
        max_bytes: usize,
    ) -> Result<SessionData, InvalidInput> {
        let mut data = match stored {
            Some(text) if !self.replace => {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                    .unwrap_or_default()
            }
            _ => serde_json::Map::new(),
        };
        // One pass over the data, not one `shift_remove` per name: each
        // moves every key behind it, which made a large removal quadratic
        // while the engine held its write lock.
        data.retain(|key, _| !self.remove.contains(key));
        data.extend(
            self.set
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        let text = serde_json::Value::Object(data).to_string();
        if text.len() > max_bytes {
            return Err(InvalidInput::PatchedTooLarge {
                size: text.len(),
                limit: max_bytes,
            });
        }
        Ok(SessionData(text))
    }
}

impl fmt::Debug for SessionPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionPatch")
            .field("set", &self.set.len())
            .field("remove", &self.remove.len())
            .field("replace", &self.replace)
            .finish()
    }
}

/// Validates that `text` is one JSON object without building it in memory.
///
/// It accepts exactly what `serde_json::Value` (and so every patch and every
/// client) can read back: at most 128 levels of nesting, valid escapes, no
/// lone surrogates. Data accepted here can always be loaded and patched.
pub fn check_json_object(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<JsonObject>(text).map(|_| ())
}

/// Accepts any JSON object and nothing else.
struct JsonObject;

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(JsonObjectVisitor)
    }
}

struct JsonObjectVisitor;

impl<'de> Visitor<'de> for JsonObjectVisitor {
    type Value = JsonObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
        while map.next_entry::<JsonValue, JsonValue>()?.is_some() {}
        Ok(JsonObject)
    }
}

/// Accepts any JSON value, reading every part of it (so strings are
/// unescaped and checked) but keeping nothing. Nesting goes through
/// `deserialize_any`, which carries serde_json's recursion limit.
struct JsonValue;

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonValueVisitor)
    }
}

struct JsonValueVisitor;

impl<'de> Visitor<'de> for JsonValueVisitor {
    type Value = JsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<JsonValue, E> {
        Ok(JsonValue)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<JsonValue, E> {
        Ok(JsonValue)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<JsonValue, E> {
        Ok(JsonValue)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<JsonValue, E> {
        Ok(JsonValue)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<JsonValue, E> {
        Ok(JsonValue)
    }

    fn visit_unit<E: de::Error>(self) -> Result<JsonValue, E> {
        Ok(JsonValue)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
        while seq.next_element::<JsonValue>()?.is_some() {}
        Ok(JsonValue)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
        while map.next_entry::<JsonValue, JsonValue>()?.is_some() {}
        Ok(JsonValue)
    }
}

/// When a session expires: a UTC instant with microsecond precision between
/// the years 1 and 9999, which is what Django's `expire_date` column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpireDate(DateTime<Utc>);

impl ExpireDate {
    /// Checks an instant, dropping sub-microsecond digits as Django does.
    pub fn new(instant: DateTime<Utc>) -> Result<Self, InvalidInput> {
        if !(1..=9999).contains(&instant.year()) {
            return Err(InvalidInput::ExpireDateOutOfRange);
        }
        let micros = instant.timestamp_subsec_micros();
        let truncated = instant
            .with_nanosecond(micros * 1000)
            .ok_or(InvalidInput::ExpireDateOutOfRange)?;
        Ok(Self(truncated))
    }

    /// Converts a protobuf timestamp from a request.
    pub fn from_timestamp(ts: &prost_types::Timestamp) -> Result<Self, InvalidInput> {
        let nanos = u32::try_from(ts.nanos)
            .ok()
            .filter(|nanos| *nanos < 1_000_000_000)
            .ok_or(InvalidInput::ExpireDateOutOfRange)?;
        let instant = DateTime::from_timestamp(ts.seconds, nanos)
            .ok_or(InvalidInput::ExpireDateOutOfRange)?;
        Self::new(instant)
    }

    /// `now + age`, the expiry of a session saved now without an explicit one.
    pub fn after(now: DateTime<Utc>, age: TimeDelta) -> Result<Self, InvalidInput> {
        let instant = now
            .checked_add_signed(age)
            .ok_or(InvalidInput::ExpireDateOutOfRange)?;
        Self::new(instant)
    }

    pub fn instant(&self) -> DateTime<Utc> {
        self.0
    }

    pub fn to_timestamp(self) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.0.timestamp(),
            nanos: self.0.timestamp_subsec_nanos() as i32,
        }
    }
}

/// A session as an engine stores it: the encoded `session_data` text and its
/// expiry.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    pub session_data: String,
    pub expire_date: ExpireDate,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field(
                "session_data",
                &format_args!("{} bytes", self.session_data.len()),
            )
            .field("expire_date", &self.expire_date)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_accepted_only_if_it_can_be_read_back() {
        let nested =
            |depth: usize| format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        assert!(SessionData::parse(nested(100), 1 << 20).is_ok());
        assert!(SessionData::parse(nested(100_000), 1 << 20).is_err());
        serde_json::from_str::<serde_json::Value>(&nested(100)).unwrap();
        assert!(SessionData::parse(r#"{"a":"\ud800"}"#.into(), 100).is_err());
        assert!(SessionData::parse(r#"{"a":"\ud83c\udf89"}"#.into(), 100).is_ok());
        assert!(
            SessionData::parse(
                r#"{"n":1e400,"m":-0.0,"b":123456789012345678901234567890}"#.into(),
                100
            )
            .is_ok()
        );
    }

    #[test]
    fn data_must_be_a_json_object_within_the_limit() {
        assert!(SessionData::parse("{}".into(), 100).is_ok());
        assert!(
            SessionData::parse(
                r#"{"a":[1,{"b":null}],"n":123456789012345678901234567890}"#.into(),
                100
            )
            .is_ok()
        );
        for bad in [
            "",
            "[]",
            "1",
            "\"x\"",
            "null",
            "{",
            "{\"a\":}",
            "{} {}",
            "{'a':1}",
            "{\"a\":NaN}",
        ] {
            assert!(
                matches!(
                    SessionData::parse(bad.into(), 100),
                    Err(InvalidInput::DataNotObject(_))
                ),
                "{bad:?} must be refused"
            );
        }
        assert!(matches!(
            SessionData::parse(format!("{{\"a\":\"{}\"}}", "x".repeat(100)), 100),
            Err(InvalidInput::DataTooLarge { limit: 100, .. })
        ));
    }

    fn patch(set: &str, remove: &[&str], replace: bool) -> SessionPatch {
        let remove = remove.iter().map(|key| (*key).to_owned()).collect();
        SessionPatch::parse(set, remove, replace, 1000).unwrap()
    }

    #[test]
    fn patches_set_and_remove_keys_keeping_the_order() {
        let stored = r#"{"a":1,"b":2,"c":3}"#;
        let patched = patch(r#"{"b":20,"d":4}"#, &["a", "missing"], false)
            .apply(Some(stored), 1000)
            .unwrap();
        assert_eq!(patched.as_str(), r#"{"b":20,"c":3,"d":4}"#);
    }

    #[test]
    fn a_key_both_removed_and_set_goes_last() {
        let stored = r#"{"a":1,"b":2,"c":3}"#;
        let patched = patch(r#"{"a":10,"c":30}"#, &["a", "b", "a", "a"], false)
            .apply(Some(stored), 1000)
            .unwrap();
        // `c` is only set, so it keeps its place; `a` was removed first.
        assert_eq!(patched.as_str(), r#"{"c":30,"a":10}"#);
    }

    #[test]
    fn a_replacing_patch_ignores_the_stored_data() {
        let patched = patch(r#"{"x":1}"#, &[], true)
            .apply(Some(r#"{"a":1}"#), 1000)
            .unwrap();
        assert_eq!(patched.as_str(), r#"{"x":1}"#);
    }

    #[test]
    fn a_patch_without_stored_data_starts_empty() {
        let patched = patch("", &["a"], false).apply(None, 1000).unwrap();
        assert_eq!(patched.as_str(), "{}");
        let patched = patch(r#"{"n":12345678901234567890123}"#, &[], false)
            .apply(Some("not json"), 1000)
            .unwrap();
        assert_eq!(patched.as_str(), r#"{"n":12345678901234567890123}"#);
    }

    #[test]
    fn patches_are_validated() {
        for bad in ["[]", "1", "{", "null"] {
            assert!(matches!(
                SessionPatch::parse(bad, vec![], false, 100),
                Err(InvalidInput::SetNotObject(_))
            ));
        }
        assert!(matches!(
            SessionPatch::parse(
                &format!(r#"{{"x":"{}"}}"#, "a".repeat(100)),
                vec![],
                false,
                100
            ),
            Err(InvalidInput::DataTooLarge { .. })
        ));
        let stored = format!(r#"{{"x":"{}"}}"#, "a".repeat(80));
        let grown = SessionPatch::parse(
            r#"{"y":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}"#,
            vec![],
            false,
            100,
        )
        .unwrap()
        .apply(Some(&stored), 100);
        assert!(matches!(
            grown,
            Err(InvalidInput::PatchedTooLarge { limit: 100, .. })
        ));
    }

    #[test]
    fn expire_dates_keep_microseconds_and_stay_in_range() {
        let ts = prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 123_456_789,
        };
        let date = ExpireDate::from_timestamp(&ts).unwrap();
        assert_eq!(date.to_timestamp().nanos, 123_456_000);

        let year_10000 = prost_types::Timestamp {
            seconds: 253_402_300_800,
            nanos: 0,
        };
        assert!(ExpireDate::from_timestamp(&year_10000).is_err());
        let negative_nanos = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(ExpireDate::from_timestamp(&negative_nanos).is_err());
        let too_many_nanos = prost_types::Timestamp {
            seconds: 0,
            nanos: 1_000_000_000,
        };
        assert!(ExpireDate::from_timestamp(&too_many_nanos).is_err());
        let year_0 = prost_types::Timestamp {
            seconds: -62_135_596_801,
            nanos: 0,
        };
        assert!(ExpireDate::from_timestamp(&year_0).is_err());
    }
}
