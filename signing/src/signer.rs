//! `Signer`: Django's `signing.dumps(obj, salt=…, compress=True)` and
//! `signing.loads(data, salt=…, max_age=…)` for one secret key, its
//! fallbacks and one salt.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::base62::{Base62Error, base62_decode, base62_encode};
use crate::compression::{self, InflateError};
use crate::json::{django_json, django_json_from_str};

type HmacSha256 = Hmac<Sha256>;

/// The salt of Django's db, cached_db, cache and file session stores:
/// `"django.contrib.sessions." + SessionStore.__qualname__`. A project whose
/// `SESSION_ENGINE` class has another name needs that name instead.
pub const DEFAULT_SALT: &str = "django.contrib.sessions.SessionStore";

/// The salt Django's `signed_cookies` engine signs its cookie value with
/// (hard-coded there, whatever the class is called).
pub const SIGNED_COOKIES_SALT: &str = "django.contrib.sessions.backends.signed_cookies";

/// The most bytes a compressed payload may inflate to: 16 MiB.
///
/// Django sets no limit and relies on the MAC: only a key holder can make a
/// payload that gets inflated at all. This crate still caps it so that one
/// value signed with a leaked key (current or fallback) cannot make a
/// server shared by every session allocate gigabytes (zlib inflates up to
/// about 1000:1). Sessions are small (browsers cap the signed-cookie engine
/// at about 4 KiB), so 16 MiB leaves room for anything a database row
/// sensibly holds.
pub const MAX_DECOMPRESSED_LEN: usize = 16 * 1024 * 1024;

/// Reads payloads as leniently as Python's `urlsafe_b64decode` after
/// Django's re-padding: padding optional, non-zero trailing bits accepted.
const PAYLOAD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Django's `salted_hmac` key for a `Signer`: `SHA256(salt + "signer" +
/// secret)`, both strings as UTF-8. Exposed so that a deployment can check
/// its configuration against Django's (the value is as secret as the key).
pub fn derive_key(salt: &str, secret: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(b"signer")
        .chain_update(secret.as_bytes())
        .finalize()
        .into()
}

/// A configuration Django itself would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Django raises `ImproperlyConfigured` for an empty `SECRET_KEY`.
    #[error("the secret key is empty; set it to the Django project's SECRET_KEY")]
    EmptySecretKey,
    /// Django would silently substitute its own class path for an empty
    /// salt, which is never what a session store means.
    #[error("the salt is empty; use the session store's salt, e.g. {DEFAULT_SALT}")]
    EmptySalt,
}

/// Why [`Signer::loads`] or [`Signer::loads_json`] refused a value.
/// Messages never contain the key, the signed value or the session data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// No `:` separator, or the signature matches neither the secret key nor
    /// any fallback key under this salt: tampered data, another key, another
    /// salt, or not Django's format at all (including the pre-3.1 legacy
    /// format). Django logs these as "Session data corrupted" on
    /// `django.security.SuspiciousSession`.
    #[error(
        "session data signature does not match the secret key or any fallback key; \
         check secret_key, fallback_keys and salt"
    )]
    BadSignature,
    /// The signature is valid but older than the `max_age` given to
    /// [`Signer::loads`] (Django's `SignatureExpired`).
    #[error("session data signature expired: signed {age_seconds}s ago, max age {max_age:?}")]
    Expired {
        /// Seconds between the signature's timestamp and `now`.
        age_seconds: i64,
        /// The age limit that was exceeded.
        max_age: Duration,
    },
    /// The signature is valid but what it covers does not decode. Django
    /// returns `{}` for these without logging.
    #[error("signed session data is malformed")]
    Malformed(#[source] MalformedError),
    /// The signature is valid and the JSON parses, but its top level is not
    /// an object (Django would return the list or scalar as is).
    #[error("signed session data is a JSON {found}, not an object")]
    NotAnObject {
        /// `"array"`, `"string"`, `"number"`, `"boolean"` or `"null"`.
        found: &'static str,
    },
}

/// Which step of decoding a validly signed value failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedError {
    /// The signed value has no `payload:timestamp` separator.
    #[error("no timestamp before the signature")]
    MissingTimestamp,
    /// The timestamp is not a base62 `i64`.
    #[error("timestamp is not a base62 integer")]
    Timestamp(#[source] Base62Error),
    /// The payload is not URL-safe base64. (The base64 crate's error would
    /// quote a payload character, so it is not kept as the source.)
    #[error("payload is not URL-safe base64")]
    Base64,
    /// The payload has the `.` compression flag but does not inflate, or
    /// inflates past [`MAX_DECOMPRESSED_LEN`].
    #[error("payload does not decompress")]
    Compression(#[source] InflateError),
    /// The payload is not JSON that `serde_json` accepts. This includes two
    /// things Python's `json.loads` accepts and Django could have written:
    /// `NaN`/`Infinity`/`-Infinity`, and lone UTF-16 surrogate escapes such
    /// as `"\ud800"`, neither of which a `serde_json::Value` can hold.
    #[error("payload is not valid JSON")]
    Json(#[source] serde_json::Error),
}

impl From<MalformedError> for SigningError {
    fn from(error: MalformedError) -> Self {
        SigningError::Malformed(error)
    }
}

/// Signs and verifies `session_data` exactly as Django's `TimestampSigner`
/// does for sessions (`signing.dumps`/`signing.loads` with sha256).
///
/// Keys are turned into keyed HMAC states once, here; the `Debug` output
/// shows only the salt and how many fallback keys there are.
///
/// ```
/// use sessiond_signing::{DEFAULT_SALT, Signer};
///
/// let signer = Signer::new("sessiond-test-secret", DEFAULT_SALT)?;
/// let session_data = signer.dumps_json(r#"{"a": 1}"#, 1_767_225_600)?;
/// assert_eq!(session_data, "eyJhIjoxfQ:1vb66i:yKlbcqlZEw966dn0fIruQmeVMxnnx8mwkT7_wP7Aq5M");
/// assert_eq!(signer.loads_json(&session_data, None, 1_767_225_600)?, r#"{"a":1}"#);
///
/// let serde_json::Value::Object(data) = serde_json::json!({"a": 1}) else { unreachable!() };
/// assert_eq!(signer.dumps(&data, 1_767_225_600), session_data);
/// assert_eq!(signer.loads(&session_data, None, 1_767_225_600)?, data);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Signer {
    salt: String,
    /// The secret key's HMAC state, used to sign and tried first to verify.
    primary: HmacSha256,
    /// `SECRET_KEY_FALLBACKS`, tried in order after the primary key.
    fallbacks: Vec<HmacSha256>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("salt", &self.salt)
            .field("fallback_keys", &self.fallbacks.len())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `secret_key` (Django's `SECRET_KEY`) under `salt` (see
    /// [`DEFAULT_SALT`] and [`SIGNED_COOKIES_SALT`]), with no fallback keys.
    pub fn new(secret_key: &str, salt: &str) -> Result<Self, ConfigError> {
        if secret_key.is_empty() {
            return Err(ConfigError::EmptySecretKey);
        }
        if salt.is_empty() {
            return Err(ConfigError::EmptySalt);
        }
        Ok(Signer {
            salt: salt.to_owned(),
            primary: keyed_mac(salt, secret_key),
            fallbacks: Vec::new(),
        })
    }

    /// Replaces the fallback keys (Django's `SECRET_KEY_FALLBACKS`): values
    /// signed with any of them still load; new values are always signed with
    /// the secret key. They are tried in the given order. An empty string is
    /// skipped: Django reads it as the secret key itself, which is tried
    /// first anyway.
    pub fn with_fallback_keys<I, K>(mut self, fallback_keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        self.fallbacks = fallback_keys
            .into_iter()
            .filter(|key| !key.as_ref().is_empty())
            .map(|key| keyed_mac(&self.salt, key.as_ref()))
            .collect();
        self
    }

    /// The salt this signer was made with.
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// Django's `Signer.signature(value)` with the secret key: URL-safe
    /// base64, without padding, of `HMAC-SHA256(derive_key(salt, secret),
    /// value)`; always 43 characters.
    pub fn signature(&self, value: &str) -> String {
        signature_with(&self.primary, value)
    }

    /// `signing.dumps(object, salt=salt, compress=True)` at `now_unix_seconds`,
    /// byte for byte: `[.]payload:timestamp:signature`, where the payload is
    /// [`django_json`] (zlib-compressed and flagged with `.` only when that
    /// saves at least two bytes), in URL-safe base64 without padding, and the
    /// timestamp is base62.
    ///
    /// Byte-identical to Django only where the map keeps insertion order and
    /// number literals, that is with serde_json's `preserve_order` and
    /// `arbitrary_precision` (feature `exact-json`); [`Signer::dumps_json`]
    /// needs neither.
    pub fn dumps(&self, object: &Map<String, Value>, now_unix_seconds: i64) -> String {
        self.sign_payload(&django_json(object), now_unix_seconds)
    }

    /// [`Signer::dumps`] for the JSON text of the session dictionary: the
    /// payload is [`django_json_from_str`]`(json)`, so keys keep the order
    /// of the text and integers their digits whatever serde_json's features
    /// are. An error if `json` is not JSON (or holds a lone surrogate escape,
    /// which Django could sign but serde_json cannot read).
    pub fn dumps_json(
        &self,
        json: &str,
        now_unix_seconds: i64,
    ) -> Result<String, serde_json::Error> {
        Ok(self.sign_payload(&django_json_from_str(json)?, now_unix_seconds))
    }

    fn sign_payload(&self, json: &str, now_unix_seconds: i64) -> String {
        let mut signed = String::with_capacity(json.len() * 4 / 3 + 64);
        match compression::compress(json.as_bytes()) {
            // Django: `if len(compressed) < (len(data) - 1)`.
            Some(compressed) if compressed.len() + 1 < json.len() => {
                signed.push('.');
                URL_SAFE_NO_PAD.encode_string(&compressed, &mut signed);
            }
            _ => URL_SAFE_NO_PAD.encode_string(json.as_bytes(), &mut signed),
        }
        signed.push(':');
        signed.push_str(&base62_encode(now_unix_seconds));
        let signature = signature_with(&self.primary, &signed);
        signed.push(':');
        signed.push_str(&signature);
        signed
    }

    /// `signing.loads(signed, salt=salt, max_age=max_age)` at
    /// `now_unix_seconds`, returning the session dictionary.
    ///
    /// In Django's order: the signature is checked first (secret key, then
    /// each fallback key, in constant time), then the age if `max_age` is
    /// given (expired when `now - timestamp > max_age`, so an age equal to
    /// `max_age` passes), then the payload is decoded. Session stores other
    /// than `signed_cookies` pass `None`: their expiry lives in the table.
    ///
    /// Differences from Django, all for values that carry a valid signature
    /// (so only a key holder could make them): the JSON must be an object
    /// ([`SigningError::NotAnObject`]); `NaN`, `Infinity` and lone surrogate
    /// escapes are refused ([`MalformedError::Json`]); decompression stops
    /// at [`MAX_DECOMPRESSED_LEN`]; the payload must use the URL-safe base64
    /// alphabet only. JSON bytes are read as Latin-1, as Django does, so raw
    /// UTF-8 from a foreign writer decodes to the same mojibake as in Django.
    ///
    /// The map keeps the payload's key order and number literals only with
    /// serde_json's `preserve_order` and `arbitrary_precision` (feature
    /// `exact-json`); [`Signer::loads_json`] needs neither.
    pub fn loads(
        &self,
        signed: &str,
        max_age: Option<Duration>,
        now_unix_seconds: i64,
    ) -> Result<Map<String, Value>, SigningError> {
        let text = self.verified_payload(signed, max_age, now_unix_seconds)?;
        match serde_json::from_str(&text).map_err(MalformedError::Json)? {
            Value::Object(object) => Ok(object),
            other => Err(SigningError::NotAnObject {
                found: json_kind(&other),
            }),
        }
    }

    /// [`Signer::loads`] returning the session dictionary as JSON text, the
    /// text Django would write for it ([`django_json_from_str`] of the
    /// payload): exactly the payload for a value Django signed, with its key
    /// order and every digit, whatever serde_json's features are; and text
    /// that [`Signer::dumps_json`] signs back to the same payload.
    pub fn loads_json(
        &self,
        signed: &str,
        max_age: Option<Duration>,
        now_unix_seconds: i64,
    ) -> Result<String, SigningError> {
        let text = self.verified_payload(signed, max_age, now_unix_seconds)?;
        let json = django_json_from_str(&text).map_err(MalformedError::Json)?;
        match text_kind(&json) {
            "object" => Ok(json),
            found => Err(SigningError::NotAnObject { found }),
        }
    }

    /// The JSON text of a signed value, after the checks of
    /// [`Signer::loads`] that come before the JSON.
    fn verified_payload(
        &self,
        signed: &str,
        max_age: Option<Duration>,
        now_unix_seconds: i64,
    ) -> Result<String, SigningError> {
        let (value, signature) = signed.rsplit_once(':').ok_or(SigningError::BadSignature)?;
        let trusted = std::iter::once(&self.primary)
            .chain(&self.fallbacks)
            .any(|mac| {
                let expected = signature_with(mac, value);
                bool::from(expected.as_bytes().ct_eq(signature.as_bytes()))
            });
        if !trusted {
            return Err(SigningError::BadSignature);
        }

        let (payload, timestamp) = value
            .rsplit_once(':')
            .ok_or(MalformedError::MissingTimestamp)?;
        let timestamp = base62_decode(timestamp).map_err(MalformedError::Timestamp)?;
        if let Some(max_age) = max_age {
            check_age(now_unix_seconds, timestamp, max_age)?;
        }

        let (compressed, payload) = match payload.strip_prefix('.') {
            Some(rest) => (true, rest),
            None => (false, payload),
        };
        let mut bytes = PAYLOAD_BASE64
            .decode(payload)
            .map_err(|_| MalformedError::Base64)?;
        if compressed {
            bytes = compression::decompress(&bytes, MAX_DECOMPRESSED_LEN)
                .map_err(MalformedError::Compression)?;
        }
        // Django decodes the JSON bytes as Latin-1: one char per byte.
        Ok(bytes.iter().map(|&b| char::from(b)).collect())
    }
}

fn keyed_mac(salt: &str, secret: &str) -> HmacSha256 {
    // HMAC zero-pads a key shorter than the hash's 64-byte block (RFC 2104
    // §2), so the padded block is the same key, and needs no fallible
    // `new_from_slice`.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(&derive_key(salt, secret));
    HmacSha256::new(&block.into())
}

fn signature_with(mac: &HmacSha256, value: &str) -> String {
    let mut mac = mac.clone();
    mac.update(value.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn check_age(now: i64, timestamp: i64, max_age: Duration) -> Result<(), SigningError> {
    let age = i128::from(now) - i128::from(timestamp);
    let expired = u64::try_from(age).is_ok_and(|age| Duration::from_secs(age) > max_age);
    if expired {
        return Err(SigningError::Expired {
            age_seconds: i64::try_from(age).unwrap_or(i64::MAX),
            max_age,
        });
    }
    Ok(())
}

/// The kind of JSON value `json` is, from its first character: `json` is
/// what [`django_json_from_str`] wrote, so it has no leading whitespace.
fn text_kind(json: &str) -> &'static str {
    match json.as_bytes().first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "sessiond-test-secret";
    const TS: i64 = 1_767_225_600;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn signer() -> Signer {
        Signer::new(SECRET, DEFAULT_SALT).unwrap()
    }

    /// Signs an arbitrary payload string the way Django would, to build
    /// values that pass the signature check but fail later.
    fn sign_raw(signer: &Signer, payload: &str, timestamp: &str) -> String {
        let value = format!("{payload}:{timestamp}");
        format!("{value}:{}", signer.signature(&value))
    }

    #[test]
    fn debug_never_shows_keys() {
        let signer = Signer::new("top-secret-key", "my.salt")
            .unwrap()
            .with_fallback_keys(["old-secret-key"]);
        let debug = format!("{signer:?}");
        assert_eq!(debug, r#"Signer { salt: "my.salt", fallback_keys: 1, .. }"#);
        let key_hex: String = derive_key("my.salt", "top-secret-key")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!debug.contains(&key_hex[..8]));
    }

    #[test]
    fn refuses_empty_secret_or_salt() {
        assert_eq!(
            Signer::new("", DEFAULT_SALT).unwrap_err(),
            ConfigError::EmptySecretKey
        );
        assert_eq!(Signer::new(SECRET, "").unwrap_err(), ConfigError::EmptySalt);
    }

    #[test]
    fn empty_fallback_keys_are_skipped() {
        let signer = signer().with_fallback_keys(["", "old"]);
        assert_eq!(format!("{signer:?}").matches("fallback_keys: 1").count(), 1);
    }

    #[test]
    fn fallback_keys_are_tried_in_order_and_never_used_to_sign() {
        let old = Signer::new("old-1", DEFAULT_SALT).unwrap();
        let older = Signer::new("old-2", DEFAULT_SALT).unwrap();
        let data = object(json!({"a": 1}));
        let rotated = signer().with_fallback_keys(["old-1", "old-2"]);
        for signed in [old.dumps(&data, TS), older.dumps(&data, TS)] {
            assert_eq!(rotated.loads(&signed, None, TS).unwrap(), data);
            assert!(matches!(
                signer().loads(&signed, None, TS),
                Err(SigningError::BadSignature)
            ));
        }
        assert_eq!(rotated.dumps(&data, TS), signer().dumps(&data, TS));
    }

    #[test]
    fn json_text_signs_and_loads_as_the_map_does() {
        for value in [
            json!({}),
            json!({"z": 1, "a": [1.5, "Zo\u{eb}"], "big": 123456789012345678901234567890_u128}),
            json!({"app": "x".repeat(200)}),
        ] {
            let map = object(value);
            let text = serde_json::to_string(&map).unwrap();
            let signed = signer().dumps(&map, TS);
            assert_eq!(signer().dumps_json(&text, TS).unwrap(), signed);
            assert_eq!(
                signer().loads_json(&signed, None, TS).unwrap(),
                django_json(&map)
            );
        }
        assert!(signer().dumps_json("{", TS).is_err());
    }

    #[test]
    fn loads_json_gives_back_the_payload_django_wrote() {
        // Written by Django 5.2 (signed_cookies, SECRET_KEY
        // sessiond-test-secret, at 2026-01-01T00:00:00Z).
        let cookie = ".eJwNydEKgkAQheF3ObeNMWfd1ZpHKbtQmiIwA3OhEt-9vfrh-1f8YBQMj3spD5qObIK2bCNZax1DFNzK8h0bwdQ_HYbTq8uqPqCIvxe_wlZ8YWfukwShV5ougg9syuO4CXrYMmff_hBfHa4:1vb66i:M4l2m_XO-Bk7FCMty2NEUWVtVHSPJdwlNeO_uoyTEzk";
        let json = r#"{"z":1,"big":1180591620717411303424,"f":1e+16,"name":"Zo\u00eb","nested":{"y":[1.5,2,1e-05],"x":null},"a":true}"#;
        let signer = Signer::new(SECRET, SIGNED_COOKIES_SALT).unwrap();
        assert_eq!(signer.loads_json(cookie, None, TS).unwrap(), json);
        assert_eq!(signer.dumps_json(json, TS).unwrap(), cookie);
    }

    #[test]
    fn max_age_is_strictly_greater() {
        let signed = signer().dumps(&object(json!({"a": 1})), TS);
        let day = Duration::from_secs(86_400);
        assert!(signer().loads(&signed, Some(day), TS + 86_400).is_ok());
        let err = signer().loads(&signed, Some(day), TS + 86_401).unwrap_err();
        assert!(matches!(
            err,
            SigningError::Expired {
                age_seconds: 86_401,
                ..
            }
        ));
        // A timestamp in the future is not expired.
        assert!(signer().loads(&signed, Some(day), TS - 10).is_ok());
        assert!(signer().loads(&signed, Some(Duration::ZERO), TS).is_ok());
        // Sub-second max ages compare against whole seconds of age.
        let half = Duration::from_millis(500);
        assert!(signer().loads(&signed, Some(half), TS + 1).is_err());
        // No max_age: any age loads.
        assert!(signer().loads(&signed, None, i64::MAX).is_ok());
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let data = object(json!({}));
        for ts in [i64::MIN, -1, 0, i64::MAX] {
            let signed = signer().dumps(&data, ts);
            assert_eq!(signer().loads(&signed, None, ts).unwrap(), data);
            for now in [i64::MIN, 0, i64::MAX] {
                let _ = signer().loads(&signed, Some(Duration::MAX), now);
                let _ = signer().loads(&signed, Some(Duration::ZERO), now);
            }
        }
        let signed = signer().dumps(&data, i64::MIN);
        let err = signer()
            .loads(&signed, Some(Duration::ZERO), i64::MAX)
            .unwrap_err();
        assert!(matches!(
            err,
            SigningError::Expired {
                age_seconds: i64::MAX,
                ..
            }
        ));
    }

    #[test]
    fn malformed_but_signed_values_are_errors() {
        let s = signer();
        let cases = [
            (sign_raw(&s, "e30", ""), "timestamp"),
            (sign_raw(&s, "e30", "1vb 6"), "timestamp"),
            (
                {
                    let value = "e30";
                    format!("{value}:{}", s.signature(value))
                },
                "missing timestamp",
            ),
            (sign_raw(&s, "e3!0", "1vb66i"), "base64"),
            (sign_raw(&s, "e", "1vb66i"), "base64"),
            (sign_raw(&s, ".e30", "1vb66i"), "compression"),
            (sign_raw(&s, "", "1vb66i"), "json"),
            (sign_raw(&s, "WzEsMl0", "1vb66i"), "not an object"),
        ];
        let both = cases.into_iter().flat_map(|(signed, why)| {
            [
                (s.loads(&signed, None, TS).unwrap_err(), why),
                (s.loads_json(&signed, None, TS).unwrap_err(), why),
            ]
        });
        for (err, why) in both {
            let ok = match why {
                "timestamp" => matches!(err, SigningError::Malformed(MalformedError::Timestamp(_))),
                "missing timestamp" => matches!(
                    err,
                    SigningError::Malformed(MalformedError::MissingTimestamp)
                ),
                "base64" => matches!(err, SigningError::Malformed(MalformedError::Base64)),
                "compression" => {
                    matches!(err, SigningError::Malformed(MalformedError::Compression(_)))
                }
                "json" => matches!(err, SigningError::Malformed(MalformedError::Json(_))),
                _ => matches!(err, SigningError::NotAnObject { found: "array" }),
            };
            assert!(ok, "{why}: {err:?}");
        }
    }

    #[test]
    fn nan_infinity_and_lone_surrogates_are_refused() {
        let s = signer();
        for json in [
            r#"{"a":NaN}"#,
            r#"{"a":Infinity}"#,
            r#"{"a":-Infinity}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
        ] {
            let signed = sign_raw(&s, &URL_SAFE_NO_PAD.encode(json), "1vb66i");
            for err in [
                s.loads(&signed, None, TS).unwrap_err(),
                s.loads_json(&signed, None, TS).unwrap_err(),
            ] {
                assert!(
                    matches!(err, SigningError::Malformed(MalformedError::Json(_))),
                    "{json}: {err:?}"
                );
            }
        }
        // A well-formed pair combines.
        let payload = URL_SAFE_NO_PAD.encode(r#"{"a":"\ud83c\udf89"}"#);
        let loaded = s
            .loads(&sign_raw(&s, &payload, "1vb66i"), None, TS)
            .unwrap();
        assert_eq!(loaded["a"], "🎉");
    }

    #[test]
    fn padded_payloads_and_trailing_bits_load_like_python() {
        let s = signer();
        assert_eq!(
            s.loads(&sign_raw(&s, "e30=", "1vb66i"), None, TS).unwrap(),
            Map::new()
        );
        // "e31" has non-zero trailing bits; Python still reads "{}".
        assert_eq!(
            s.loads(&sign_raw(&s, "e31", "1vb66i"), None, TS).unwrap(),
            Map::new()
        );
    }

    #[test]
    fn compressed_payload_past_the_limit_is_refused() {
        let s = signer();
        let json = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_DECOMPRESSED_LEN));
        let compressed = compression::compress(json.as_bytes()).unwrap();
        let payload = format!(".{}", URL_SAFE_NO_PAD.encode(compressed));
        let err = s
            .loads(&sign_raw(&s, &payload, "1vb66i"), None, TS)
            .unwrap_err();
        assert!(matches!(
            err,
            SigningError::Malformed(MalformedError::Compression(InflateError::TooLarge {
                limit: MAX_DECOMPRESSED_LEN
            }))
        ));
    }

    #[test]
    fn error_messages_never_contain_keys_or_data() {
        let s = Signer::new("hunter2-secret", DEFAULT_SALT).unwrap();
        let payload = URL_SAFE_NO_PAD.encode(r#"["private-data"]"#);
        let signed = sign_raw(&s, &payload, "1vb66i");
        let errors = [
            s.loads("private-data", None, TS).unwrap_err(),
            s.loads(&signed, None, TS).unwrap_err(),
            s.loads(
                &sign_raw(&s, &URL_SAFE_NO_PAD.encode("private-data"), "1vb66i"),
                None,
                TS,
            )
            .unwrap_err(),
            s.loads(&sign_raw(&s, "private-data!", "1vb66i"), None, TS)
                .unwrap_err(),
        ];
        for err in errors {
            let mut chain = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                chain.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            assert!(!chain.contains("hunter2"), "{chain}");
            assert!(!chain.contains("private"), "{chain}");
            assert!(!chain.contains(&payload), "{chain}");
            assert!(chain.starts_with(char::is_lowercase), "{chain}");
        }
    }
}
