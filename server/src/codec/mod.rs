//! How session data is written into `django_session.session_data`.
//!
//! Pure functions, no I/O. A stored value that fails to decode reads as an
//! empty session and is reported with a warning that names neither the key
//! nor the data, as Django does for corrupted rows.

pub mod django;

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use sessiond_signing::Signer;

use crate::session::{SessionData, check_json_object};

pub use django::DjangoConfig;

/// Which encoding `--codec` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CodecKind {
    /// Plain JSON text: readable by any tool, not readable by Django.
    #[default]
    Json,
    /// Django's signed format (`signing.dumps(…, compress=True)`), byte for
    /// byte: Django apps with the same SECRET_KEY share the sessions. Needs
    /// --secret-key.
    Django,
}

/// The encoding of `session_data`, ready to use.
#[derive(Clone, Default)]
pub enum Codec {
    /// The JSON text as the client sent it.
    #[default]
    Json,
    /// Signed as Django signs it.
    Django(Arc<Signer>),
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json => f.write_str("json"),
            Self::Django(signer) => write!(f, "django (salt {})", signer.salt()),
        }
    }
}

/// A stored `session_data` that could not be decoded. Messages never quote
/// the data.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("stored session data is not the text of a JSON object")]
    NotJsonObject(#[source] serde_json::Error),
    #[error("stored session data does not verify with Django's signing")]
    Signing(#[source] sessiond_signing::SigningError),
}

impl Codec {
    /// The text to store for `data`, signed at `now_unix_seconds` where the
    /// encoding is timestamped.
    pub fn encode(&self, data: SessionData, now_unix_seconds: i64) -> String {
        match self {
            Self::Json => data.into_string(),
            Self::Django(signer) => {
                // SessionData is a validated JSON object, so this never
                // falls back.
                let object: Map<String, Value> =
                    serde_json::from_str(data.as_str()).unwrap_or_default();
                signer.dumps(&object, now_unix_seconds)
            }
        }
    }

    /// The JSON object text of a stored value.
    pub fn decode(&self, stored: String, now_unix_seconds: i64) -> Result<String, DecodeError> {
        match self {
            Self::Json => match check_json_object(&stored) {
                Ok(()) => Ok(stored),
                Err(err) => Err(DecodeError::NotJsonObject(err)),
            },
            // No age limit: Django's database stores never pass max_age;
            // expiry is the row's expire_date.
            Self::Django(signer) => signer
                .loads(&stored, None, now_unix_seconds)
                .map(|object| Value::Object(object).to_string())
                .map_err(DecodeError::Signing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600;

    #[test]
    fn json_round_trips_the_text_unchanged() {
        let text = r#"{"b":1,"a":[true,null],"big":123456789012345678901234567890}"#;
        let data = SessionData::parse(text.to_owned(), 1024).unwrap();
        let stored = Codec::Json.encode(data, NOW);
        assert_eq!(stored, text);
        assert_eq!(Codec::Json.decode(stored, NOW).unwrap(), text);
    }

    fn django() -> Codec {
        let config = DjangoConfig {
            secret_key: Some("sessiond-test-secret".into()),
            fallback_keys: vec!["an-old-secret".into()],
            salt: "django.contrib.sessions.SessionStore".into(),
        };
        CodecKind::Django.build(&config).unwrap()
    }

    // Vectors made by Django 6.1 (shared/reference/django-vectors.json).
    #[test]
    fn django_encodes_byte_for_byte_as_django() {
        let data = SessionData::parse(r#"{"a":1}"#.into(), 1024).unwrap();
        assert_eq!(
            django().encode(data, NOW),
            "eyJhIjoxfQ:1vb66i:yKlbcqlZEw966dn0fIruQmeVMxnnx8mwkT7_wP7Aq5M"
        );
        let data =
            SessionData::parse(r#"{"_session_expiry":3600,"user":"bob"}"#.into(), 1024).unwrap();
        assert_eq!(
            django().encode(data, NOW),
            "eyJfc2Vzc2lvbl9leHBpcnkiOjM2MDAsInVzZXIiOiJib2IifQ:1vb66i:U9E-qJ5mk4tjx7MloC5MKrH6_5XZyVZctVwlTvH26v4"
        );
    }

    #[test]
    fn django_decodes_what_django_wrote_at_any_age() {
        let stored = ".eJyrVopPLC3JiC8tTi2Kz0xRslIyVNJBFktKTM5OzQNJpGQl5qXn6yXn55UUZSbpgZToQWWL9XzzU1JznKBqUQzISCzOAOo2SDNKNE4ySTZNMUs1T7MwsDRMNEoyTjZJMU01SzM3sDC0xC-vVAsA7BU4AQ:1vb66i:GexBOMnRGcMbYz0Po3NYh1uRjkv10HTJjabExPkThAU";
        let decoded = django()
            .decode(stored.into(), NOW + 10 * 365 * 86_400)
            .unwrap();
        let object: Map<String, Value> = serde_json::from_str(&decoded).unwrap();
        assert!(object.contains_key("_auth_user_id"), "{decoded}");
    }

    #[test]
    fn django_refuses_tampered_or_foreign_data() {
        for stored in [
            "eyJhIjoxfQ:1vb66i:yKlbcqlZEw966dn0fIruQmeVMxnnx8mwkT7_wP7Aq5N",
            "eyJhIjoyfQ:1vb66i:yKlbcqlZEw966dn0fIruQmeVMxnnx8mwkT7_wP7Aq5M",
            r#"{"a":1}"#,
            "",
        ] {
            assert!(django().decode(stored.into(), NOW).is_err(), "{stored}");
        }
    }

    #[test]
    fn django_needs_a_secret() {
        let err = CodecKind::Django
            .build(&DjangoConfig::default())
            .unwrap_err();
        assert!(err.to_string().contains("SESSIOND_SECRET_KEY"), "{err}");
    }

    #[test]
    fn json_refuses_stored_text_that_is_not_an_object() {
        for stored in [
            "",
            "[]",
            "not json",
            "e30:1vb66i:nyVi4sPcc_wxna3e9VhCys49gX06g66wBr--af42Sfo",
        ] {
            assert!(
                Codec::Json.decode(stored.to_owned(), NOW).is_err(),
                "{stored}"
            );
        }
    }
}
