//! Django's base62 integers (`django.core.signing.b62_encode`/`b62_decode`),
//! the timestamp field of `session_data`.

/// Django's `BASE62_ALPHABET`: digits, then upper case, then lower case.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A base62 string that Django could not have produced, or that does not fit
/// an `i64`. Messages never repeat the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base62Error {
    /// No digits (an empty string, or a lone `-`).
    #[error("base62 number has no digits")]
    Empty,
    /// A character outside `0-9A-Za-z` after the optional leading `-`.
    #[error("base62 number has a character outside 0-9A-Za-z")]
    InvalidDigit,
    /// The value is outside the range of `i64`.
    #[error("base62 number does not fit a 64-bit signed integer")]
    Overflow,
}

/// Encodes `n` as Django's `b62_encode` does: most significant digit first,
/// `"0"` for zero, a leading `-` for negatives.
///
/// ```
/// assert_eq!(sessiond_signing::base62_encode(1_767_225_600), "1vb66i");
/// assert_eq!(sessiond_signing::base62_encode(-62), "-10");
/// ```
pub fn base62_encode(n: i64) -> String {
    if n == 0 {
        return "0".to_owned();
    }
    let mut rest = n.unsigned_abs();
    let mut digits = Vec::with_capacity(12);
    while rest > 0 {
        // `rest % 62` is below 62, so the index is in bounds and the cast exact.
        digits.push(ALPHABET[(rest % 62) as usize]);
        rest /= 62;
    }
    let mut encoded = String::with_capacity(digits.len() + 1);
    if n < 0 {
        encoded.push('-');
    }
    encoded.extend(digits.iter().rev().map(|&d| char::from(d)));
    encoded
}

/// Decodes a base62 number as Django's `b62_decode` does, with one
/// difference: Django reads a lone `-` as 0, this returns
/// [`Base62Error::Empty`] (Django never writes it). Leading zeros are
/// accepted, as in Django.
///
/// ```
/// assert_eq!(sessiond_signing::base62_decode("1vb66i"), Ok(1_767_225_600));
/// assert!(sessiond_signing::base62_decode("1vb 66i").is_err());
/// ```
pub fn base62_decode(s: &str) -> Result<i64, Base62Error> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if digits.is_empty() {
        return Err(Base62Error::Empty);
    }
    // Accumulate the magnitude in i128 so that i64::MIN's magnitude fits.
    let mut magnitude: i128 = 0;
    for byte in digits.bytes() {
        let digit = digit_value(byte).ok_or(Base62Error::InvalidDigit)?;
        magnitude = magnitude
            .checked_mul(62)
            .and_then(|m| m.checked_add(i128::from(digit)))
            .filter(|&m| m <= i128::from(i64::MAX) + 1)
            .ok_or(Base62Error::Overflow)?;
    }
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| Base62Error::Overflow)
}

fn digit_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'Z' => Some(byte - b'A' + 10),
        b'a'..=b'z' => Some(byte - b'a' + 36),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_extremes() {
        for n in [0, 1, -1, 61, 62, i64::MAX, i64::MIN, i64::MIN + 1] {
            assert_eq!(base62_decode(&base62_encode(n)), Ok(n), "{n}");
        }
    }

    #[test]
    fn accepts_what_django_accepts() {
        assert_eq!(base62_decode("007"), Ok(7));
        assert_eq!(base62_decode("-0"), Ok(0));
        assert_eq!(base62_decode("0"), Ok(0));
    }

    #[test]
    fn rejects_empty_bad_digits_and_overflow() {
        assert_eq!(base62_decode(""), Err(Base62Error::Empty));
        assert_eq!(base62_decode("-"), Err(Base62Error::Empty));
        assert_eq!(base62_decode("--1"), Err(Base62Error::InvalidDigit));
        assert_eq!(base62_decode("+1"), Err(Base62Error::InvalidDigit));
        assert_eq!(base62_decode("1 "), Err(Base62Error::InvalidDigit));
        assert_eq!(base62_decode("é"), Err(Base62Error::InvalidDigit));
        let too_big = format!("{}0", base62_encode(i64::MAX));
        assert_eq!(base62_decode(&too_big), Err(Base62Error::Overflow));
        assert_eq!(base62_decode(&"z".repeat(100)), Err(Base62Error::Overflow));
        // One past i64::MAX: fits the i128 accumulator, not i64.
        assert_eq!(
            base62_decode(&base62_encode(i64::MIN)[1..]),
            Err(Base62Error::Overflow)
        );
    }
}
