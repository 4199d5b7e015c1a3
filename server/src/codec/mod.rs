//! How session data is written into `django_session.session_data`.
//!
//! Pure functions, no I/O. A stored value that fails to decode reads as an
//! empty session and is reported with a warning that names neither the key
//! nor the data, as Django does for corrupted rows.

use crate::session::{SessionData, check_json_object};

/// The encoding of `session_data`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    /// Plain JSON text: readable by any tool, not readable by Django.
    #[default]
    Json,
}

/// A stored `session_data` that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("stored session data is not the text of a JSON object")]
    NotJsonObject(#[source] serde_json::Error),
}

impl Codec {
    /// The text to store for `data`.
    pub fn encode(self, data: SessionData) -> String {
        match self {
            Self::Json => data.into_string(),
        }
    }

    /// The JSON object text of a stored value.
    pub fn decode(self, stored: String) -> Result<String, DecodeError> {
        match self {
            Self::Json => match check_json_object(&stored) {
                Ok(()) => Ok(stored),
                Err(err) => Err(DecodeError::NotJsonObject(err)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_the_text_unchanged() {
        let text = r#"{"b":1,"a":[true,null],"big":123456789012345678901234567890}"#;
        let data = SessionData::parse(text.to_owned(), 1024).unwrap();
        let stored = Codec::Json.encode(data);
        assert_eq!(stored, text);
        assert_eq!(Codec::Json.decode(stored).unwrap(), text);
    }

    #[test]
    fn json_refuses_stored_text_that_is_not_an_object() {
        for stored in [
            "",
            "[]",
            "not json",
            "e30:1vb66i:nyVi4sPcc_wxna3e9VhCys49gX06g66wBr--af42Sfo",
        ] {
            assert!(Codec::Json.decode(stored.to_owned()).is_err(), "{stored}");
        }
    }
}
