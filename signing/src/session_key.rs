//! [`SessionKey`]: the `session_key` column of Django's session table, with
//! the one rule sessiond, its clients and its tools check it by.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// What a session key may consist of: the alphabet Django draws its keys
/// from (`VALID_KEY_CHARS`).
///
/// Django itself only demands a length of at least 8; the stricter alphabet
/// keeps keys safe as file names, cache keys and cookie values, and every key
/// Django generates passes.
pub const KEY_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Django's lower bound on a key's length (`_validate_session_key`).
pub const MIN_KEY_LEN: usize = 8;

/// The width of `django_session.session_key` (`varchar(40)`).
pub const MAX_KEY_LEN: usize = 40;

/// The length of a generated key, as Django generates them (about 165 bits).
pub const GENERATED_KEY_LEN: usize = 32;

/// Text that is not a session key. Messages name the `session_key` field,
/// as a client sent it, and never quote the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    /// Fewer than [`MIN_KEY_LEN`] or more than [`MAX_KEY_LEN`] characters.
    #[error(
        "session_key: must be {MIN_KEY_LEN} to {MAX_KEY_LEN} characters long, got {0} characters"
    )]
    Length(usize),
    /// A character outside [`KEY_ALPHABET`].
    #[error("session_key: may only contain the characters a-z and 0-9")]
    Characters,
}

/// A session key that passed validation: [`MIN_KEY_LEN`] to [`MAX_KEY_LEN`]
/// characters of [`KEY_ALPHABET`].
///
/// Its `Debug` form is a short fingerprint, so keys can be correlated in logs
/// without ever being written there; it has no `Display` for the same reason.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(String);

/// Whether `byte` is in [`KEY_ALPHABET`]: compared by range, since a
/// search of the alphabet for each byte of each key of each call was a few
/// per cent of a Load's CPU.
fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit()
}

impl SessionKey {
    /// Checks a key taken from a request, a cookie or a file name.
    pub fn parse(text: &str) -> Result<Self, SessionKeyError> {
        // The rule and its message count characters; bytes count them only
        // in ASCII text (which every valid key is).
        let length = if text.is_ascii() {
            text.len()
        } else {
            text.chars().count()
        };
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&length) {
            return Err(SessionKeyError::Length(length));
        }
        if !text.bytes().all(is_key_byte) {
            return Err(SessionKeyError::Characters);
        }
        Ok(Self(text.to_owned()))
    }

    /// Whether `text` is a valid key, without keeping it.
    pub fn is_valid(text: &str) -> bool {
        text.is_ascii()
            && (MIN_KEY_LEN..=MAX_KEY_LEN).contains(&text.len())
            && text.bytes().all(is_key_byte)
    }

    /// Draws a fresh key of [`GENERATED_KEY_LEN`] characters from the
    /// operating system's CSPRNG, as Django's
    /// `get_random_string(32, VALID_KEY_CHARS)` does. Needs the `generate`
    /// feature.
    #[cfg(feature = "generate")]
    pub fn generate() -> Self {
        use rand::RngExt;
        let mut rng = rand::rng();
        let key = (0..GENERATED_KEY_LEN)
            .map(|_| char::from(KEY_ALPHABET[rng.random_range(0..KEY_ALPHABET.len())]))
            .collect();
        Self(key)
    }

    /// The key itself, to send or store; never to log.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key itself, to send or store; never to log.
    pub fn into_string(self) -> String {
        self.0
    }

    /// A short, non-reversible tag for logs, stable within one process.
    pub fn fingerprint(&self) -> String {
        let mut hasher = std::hash::DefaultHasher::new();
        self.0.hash(&mut hasher);
        format!("{:08x}", hasher.finish() as u32)
    }
}

impl FromStr for SessionKey {
    type Err = SessionKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_check_is_the_alphabet() {
        for byte in 0..=u8::MAX {
            assert_eq!(is_key_byte(byte), KEY_ALPHABET.contains(&byte), "{byte}");
        }
    }

    #[test]
    fn keys_follow_the_length_and_alphabet_rules() {
        assert!(SessionKey::parse("abcdefgh").is_ok());
        assert!(SessionKey::parse(&"a".repeat(40)).is_ok());
        assert!(SessionKey::parse("0123456789abcdefghijklmnopqrstuv").is_ok());
        assert_eq!(
            SessionKey::parse("abcdefg"),
            Err(SessionKeyError::Length(7))
        );
        assert_eq!(
            SessionKey::parse(&"a".repeat(41)),
            Err(SessionKeyError::Length(41))
        );
        assert_eq!(SessionKey::parse(""), Err(SessionKeyError::Length(0)));
        // Characters, not bytes: 30 of them are a fine length, 41 are not.
        assert_eq!(
            SessionKey::parse(&"é".repeat(30)),
            Err(SessionKeyError::Characters)
        );
        assert_eq!(
            SessionKey::parse(&"é".repeat(41)),
            Err(SessionKeyError::Length(41))
        );
        for bad in [
            "ABCDEFGHIJ",
            "abcd-efgh",
            "abcd efgh",
            "abcd/../h",
            "abcdéfghi",
            "abcdefgh\0",
        ] {
            assert!(SessionKey::parse(bad).is_err(), "{bad:?} must be refused");
            assert!(!SessionKey::is_valid(bad), "{bad:?} must be refused");
        }
        assert!(SessionKey::is_valid("abcdefgh"));
        assert!(!SessionKey::is_valid(&"é".repeat(20)));
    }

    #[cfg(feature = "generate")]
    #[test]
    fn generated_keys_are_32_valid_characters_and_differ() {
        let a = SessionKey::generate();
        let b = SessionKey::generate();
        assert_eq!(a.as_str().len(), GENERATED_KEY_LEN);
        assert!(SessionKey::is_valid(a.as_str()));
        assert_ne!(a, b);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = SessionKey::parse("secretsecretsecret").unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(shown, format!("{:?}", key.clone()));
    }
}
