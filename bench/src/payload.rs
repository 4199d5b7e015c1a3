//! The session data the bench writes: a JSON object shaped like a logged-in
//! Django session, padded to the size asked for.

/// The members Django's `login()` stores, so that small payloads look like
/// real sessions; the padding member comes last.
const LOGGED_IN: &str = concat!(
    r#"{"_auth_user_id":"4217","#,
    r#""_auth_user_backend":"django.contrib.auth.backends.ModelBackend","#,
    r#""_auth_user_hash":"9c1185a5c5e9fc54612808977ee8f548b2258d31e4dfc8d7c2ad1d2a1f2c1a6d","#,
    r#""app":""}"#
);

/// The smallest padded object, for sizes below [`LOGGED_IN`].
const PADDED: &str = r#"{"app":""}"#;

/// A JSON object of exactly `bytes` bytes; below 10 bytes, `{}`.
///
/// The padding is a fixed pseudo-random run of letters and digits rather
/// than one repeated character, so that a codec that compresses (sessiond's
/// `--codec django`) does about as much work as on real data.
pub fn json_object(bytes: usize) -> String {
    let (shape, fixed) = if bytes >= LOGGED_IN.len() {
        (LOGGED_IN, LOGGED_IN.len())
    } else if bytes >= PADDED.len() {
        (PADDED, PADDED.len())
    } else {
        return "{}".to_owned();
    };
    let Some(open) = shape.len().checked_sub(2) else {
        return "{}".to_owned();
    };
    let mut text = String::with_capacity(bytes);
    text.push_str(&shape[..open]);
    text.extend(filler().take(bytes - fixed));
    text.push_str(&shape[open..]);
    text
}

/// Letters and digits from a fixed xorshift sequence.
fn filler() -> impl Iterator<Item = char> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let index = usize::try_from(state % ALPHABET.len() as u64).unwrap_or(0);
        char::from(ALPHABET[index])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_have_the_size_asked_for_and_are_json_objects() {
        for bytes in [10, 11, 150, LOGGED_IN.len(), 200, 1024, 16 * 1024] {
            let text = json_object(bytes);
            assert_eq!(text.len(), bytes, "{text}");
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(value.is_object(), "{text}");
        }
        assert_eq!(json_object(2), "{}");
        assert_eq!(json_object(9), "{}");
    }

    #[test]
    fn a_kilobyte_looks_like_a_logged_in_session() {
        let value: serde_json::Value = serde_json::from_str(&json_object(1024)).unwrap();
        assert_eq!(value["_auth_user_id"], "4217");
        assert_eq!(value["app"].as_str().unwrap().len(), 1024 - LOGGED_IN.len());
    }
}
