//! Properties of the edge of the server on generated input: key and data
//! validation and both `session_data` codecs never panic, accept exactly
//! what their rules say, and what they accept comes back unchanged.
//!
//! The reference for "a JSON object" is `serde_json::Value`, which is what
//! every patch and every client reads the data back with.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value};
use sessiond::codec::{Codec, CodecKind, DecodeError, DjangoConfig};
use sessiond::session::{InvalidInput, SessionData, SessionKey, SessionKeyError, SessionPatch};
use sessiond_signing::{DEFAULT_SALT, Signer, SigningError, django_json};

/// Enough cases to reach the edges of every generator, few enough that the
/// file runs in seconds in a debug build.
const CASES: u32 = 256;

/// The deepest nesting `serde_json` reads (its recursion limit of 128,
/// counting the outer object), and so the deepest data the server accepts.
const MAX_NESTING: usize = 127;

const SECRET: &str = "sessiond-property-secret";
const FALLBACK: &str = "sessiond-property-old-secret";
const NOW: i64 = 1_767_225_600;

/// Failing cases are kept beside this file and tried first on every run.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/properties.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- keys

fn in_key_alphabet(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Arbitrary text, and text near the rule: the right alphabet at every
/// length around the bounds, lookalike alphabets, and non-ASCII characters
/// whose UTF-8 is longer than the key may be.
fn key_candidates() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,64}",
        "[a-z0-9]{0,64}",
        "[a-zA-Z0-9_./ -]{0,64}",
        "[a-z0-9é\u{0}ключ🎉]{0,64}",
        "[а-я]{4,40}",
        ("[a-z0-9]{8,40}", any::<Index>(), any::<char>()).prop_map(|(key, at, c)| {
            let mut chars: Vec<char> = key.chars().collect();
            let at = at.index(chars.len());
            chars[at] = c;
            chars.into_iter().collect()
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn keys_are_accepted_exactly_at_8_to_40_characters_of_a_to_z_and_0_to_9(
        text in key_candidates()
    ) {
        let chars = text.chars().count();
        let length_ok = (8..=40).contains(&chars);
        let alphabet_ok = text.chars().all(in_key_alphabet);
        match SessionKey::parse(&text) {
            Ok(key) => {
                prop_assert!(length_ok && alphabet_ok, "accepted {text:?}");
                prop_assert_eq!(key.as_str(), text.as_str());
                let shown = format!("{key:?}");
                prop_assert!(!shown.contains(&text), "Debug shows the key: {}", shown);
            }
            Err(SessionKeyError::Length(reported)) => {
                prop_assert!(!length_ok, "refused {text:?} for its length");
                prop_assert_eq!(reported, chars, "the message must count characters");
            }
            Err(SessionKeyError::Characters) => {
                prop_assert!(!alphabet_ok, "refused {text:?} for its characters");
                prop_assert!(length_ok, "{text:?}: a key of the wrong length must say so");
            }
        }
    }
}

// ---------------------------------------------------------------- JSON

/// Numbers beyond `f64` and `u64`: hundreds of digits, long fractions,
/// exponents far past any float.
fn huge_number() -> impl Strategy<Value = serde_json::Number> {
    "-?(0|[1-9][0-9]{0,400})(\\.[0-9]{1,60})?([eE][+-]?[0-9]{1,6})?"
        .prop_map(|text| text.parse().expect("a JSON number"))
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        huge_number().prop_map(Value::Number),
        // Quotes, backslashes, controls, non-ASCII, astral characters.
        any::<String>().prop_map(Value::String),
        "[\"\\\\/\u{0}-\u{1f}\u{7f}é🎉]{0,8}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((any::<String>(), json_value()), 0..8)
        .prop_map(|members| members.into_iter().collect())
}

/// `{"a":[{"a":[…1…]}]}`, `depth` levels deep counting the outer object.
fn nested(depth: usize, objects: &[bool]) -> String {
    let mut open = String::from("{\"a\":");
    let mut close = String::from("}");
    for level in 1..depth {
        if objects[level % objects.len()] {
            open.push_str("{\"a\":");
            close.insert(0, '}');
        } else {
            open.push('[');
            close.insert(0, ']');
        }
    }
    format!("{open}1{close}")
}

/// Text built from pieces that are tricky inside a JSON string: every
/// escape, surrogate pairs, lone and reversed surrogates, broken escapes,
/// raw control characters.
fn escaped_object_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "a",
        "é",
        "🎉",
        "\\\"",
        "\\\\",
        "\\/",
        "\\b\\f\\n\\r\\t",
        "\\u0000",
        "\\u00e9",
        "\\ud83c\\udf89",
        "\\ud800",
        "\\udc00",
        "\\udf89\\ud83c",
        "\\ud83c",
        "\\u12",
        "\\x41",
        "\\",
        "\u{1}",
        "\n",
        "\"",
    ]);
    (
        prop::collection::vec(piece.clone(), 0..8),
        prop::collection::vec(piece, 0..8),
    )
        .prop_map(|(key, value)| format!("{{\"{}\":\"{}\"}}", key.concat(), value.concat()))
}

/// The text of a JSON object with one character inserted, removed or
/// replaced: mostly broken JSON, sometimes still valid.
fn mutated_object_text() -> impl Strategy<Value = String> {
    let text = json_object().prop_map(|object| Value::Object(object).to_string());
    let edit_char = prop::sample::select(vec![
        '{', '}', '[', ']', '"', ':', ',', '\\', ' ', '0', '-', 'e', '.', 'a', 'é', '\u{0}',
    ]);
    (text, any::<Index>(), 0..3u8, edit_char)
        .prop_map(|(text, at, edit, c)| one_char_changed(&text, at, edit, c))
}

fn data_candidates() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[{}\\[\\]\":, 0-9a-z\\\\]{0,40}",
        json_value().prop_map(|value| value.to_string()),
        json_object().prop_map(|object| Value::Object(object).to_string()),
        json_object().prop_map(|object| serde_json::to_string_pretty(&object).unwrap()),
        escaped_object_text(),
        mutated_object_text(),
        (1..300usize, prop::collection::vec(any::<bool>(), 1..4))
            .prop_map(|(depth, objects)| nested(depth, &objects)),
    ]
}

/// What the reference reader makes of `text`: `Some` if it is one JSON object.
fn reference_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// A size limit near `len`, on either side of it.
fn limit_near(len: usize, offset: i64) -> usize {
    len.saturating_add_signed(offset as isize)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn data_is_accepted_exactly_when_it_is_a_json_object_within_the_limit(
        text in data_candidates(),
        offset in -4i64..4,
    ) {
        let limit = limit_near(text.len(), offset);
        let object = reference_object(&text);
        match SessionData::parse(text.clone(), limit) {
            Ok(data) => {
                prop_assert!(text.len() <= limit);
                prop_assert!(object.is_some(), "accepted {text:?}");
                prop_assert_eq!(data.as_str(), text.as_str());
                // What a patch writes back is accepted again.
                let rewritten = Value::Object(object.unwrap()).to_string();
                prop_assert!(SessionData::parse(rewritten, usize::MAX).is_ok());
                prop_assert_eq!(data.into_string(), text);
            }
            Err(InvalidInput::DataTooLarge { size, limit: reported }) => {
                prop_assert_eq!(size, text.len());
                prop_assert_eq!(reported, limit);
                prop_assert!(size > limit);
            }
            Err(InvalidInput::DataNotObject(_)) => {
                prop_assert!(text.len() <= limit);
                prop_assert!(object.is_none(), "refused {text:?}");
            }
            Err(other) => prop_assert!(false, "{text:?}: unexpected {other:?}"),
        }
    }

    #[test]
    fn generated_values_are_accepted_only_as_objects(value in json_value()) {
        let text = value.to_string();
        let accepted = SessionData::parse(text.clone(), usize::MAX).is_ok();
        prop_assert_eq!(accepted, value.is_object(), "{}", text);
    }

    #[test]
    fn nesting_is_accepted_up_to_the_limit_of_the_reader(
        depth in prop_oneof![1..400usize, MAX_NESTING - 2..MAX_NESTING + 3],
        objects in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        let text = nested(depth, &objects);
        let accepted = SessionData::parse(text, usize::MAX).is_ok();
        prop_assert_eq!(accepted, depth <= MAX_NESTING, "depth {}", depth);
    }

    #[test]
    fn patch_sets_are_accepted_exactly_when_empty_or_a_json_object_within_the_limit(
        set in prop_oneof![Just(String::new()), data_candidates()],
        offset in -4i64..4,
    ) {
        let limit = limit_near(set.len(), offset);
        match SessionPatch::parse(&set, Vec::new(), false, limit) {
            Ok(_) => {
                prop_assert!(set.len() <= limit);
                prop_assert!(set.is_empty() || reference_object(&set).is_some(), "accepted {set:?}");
            }
            Err(InvalidInput::DataTooLarge { size, .. }) => {
                prop_assert!(size > limit);
            }
            Err(InvalidInput::SetNotObject(_)) => {
                prop_assert!(!set.is_empty() && reference_object(&set).is_none(), "refused {set:?}");
            }
            Err(other) => prop_assert!(false, "{set:?}: unexpected {other:?}"),
        }
    }

    #[test]
    fn a_patch_sets_and_removes_exactly_its_keys_and_keeps_the_others(
        stored in json_object(),
        set in json_object(),
        removed_stored in prop::collection::vec(any::<Index>(), 0..4),
        removed_other in prop::collection::vec(any::<String>(), 0..3),
        replace in any::<bool>(),
        garbage in prop::option::of(any::<String>()),
    ) {
        let mut remove: Vec<String> = removed_other;
        if !stored.is_empty() {
            remove.extend(removed_stored.iter().map(|at| {
                stored.keys().nth(at.index(stored.len())).unwrap().clone()
            }));
        }
        let set_text = Value::Object(set.clone()).to_string();
        let patch = SessionPatch::parse(&set_text, remove.clone(), replace, usize::MAX).unwrap();
        // Stored text that is not JSON at all is built on as an empty session.
        let (stored_text, base) = match garbage {
            Some(text) if reference_object(&text).is_none() => (text, Map::new()),
            _ => (Value::Object(stored.clone()).to_string(), stored),
        };

        let patched = patch.apply(Some(&stored_text), usize::MAX).unwrap();
        let result = reference_object(patched.as_str()).expect("the patched data is an object");
        for (key, value) in &set {
            prop_assert_eq!(result.get(key), Some(value));
        }
        for key in remove.iter().filter(|key| !set.contains_key(*key)) {
            prop_assert!(!result.contains_key(key));
        }
        for (key, value) in &base {
            if replace || remove.contains(key) || set.contains_key(key) {
                continue;
            }
            prop_assert_eq!(result.get(key), Some(value));
        }
        for key in result.keys() {
            let from_base = !replace && base.contains_key(key) && !remove.contains(key);
            prop_assert!(set.contains_key(key) || from_base, "{key:?} came from nowhere");
        }
        // Kept keys stay in the stored order, ahead of new ones.
        let kept: Vec<&String> = result.keys().filter(|key| !set.contains_key(*key)).collect();
        let kept_in_base_order: Vec<&String> =
            base.keys().filter(|key| kept.contains(key)).collect();
        prop_assert_eq!(kept, kept_in_base_order);

        // The same patch under a limit just below its result is refused,
        // and at the limit accepted.
        let len = patched.as_str().len();
        prop_assert!(patch.apply(Some(&stored_text), len).is_ok());
        if len > 0 {
            let refused = patch.apply(Some(&stored_text), len - 1);
            prop_assert!(
                matches!(refused, Err(InvalidInput::PatchedTooLarge { size, .. }) if size == len),
                "{refused:?}"
            );
        }
    }
}

// ---------------------------------------------------------------- codecs

fn django() -> Codec {
    let config = DjangoConfig {
        secret_key: Some(SECRET.into()),
        fallback_keys: vec![FALLBACK.into()],
        salt: DEFAULT_SALT.into(),
    };
    CodecKind::Django.build(&config).unwrap()
}

/// Signs `payload:timestamp` as Django would with the codec's key: values
/// that pass the signature check and must then fail, or succeed, cleanly.
fn sign(payload: &str, timestamp: &str) -> String {
    let signer = Signer::new(SECRET, DEFAULT_SALT).unwrap();
    let value = format!("{payload}:{timestamp}");
    let signature = signer.signature(&value);
    format!("{value}:{signature}")
}

/// Whether two JSON values are the same session data: the same members in
/// the same order, and numbers equal as numbers (Django writes every float
/// as Python's `repr`, so `1.50` comes back as `1.5`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => {
            let integer = |n: &serde_json::Number| {
                let text = n.to_string();
                // Python has no negative integer zero.
                (!text.contains(['.', 'e', 'E']))
                    .then(|| if text == "-0" { "0".into() } else { text })
            };
            match (integer(a), integer(b)) {
                (Some(a), Some(b)) => a == b,
                _ => a.as_f64() == b.as_f64(),
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
        }
        _ => a == b,
    }
}

/// Text shaped like Django's `session_data`: `[.]payload:timestamp:signature`
/// with random base64, base62 and signature characters.
fn django_shaped() -> impl Strategy<Value = String> {
    "\\.?[A-Za-z0-9_=-]{0,200}:-?[0-9A-Za-z]{0,12}:[A-Za-z0-9_-]{0,44}"
}

/// A payload that verifies but may not decode: random base64, random bytes
/// flagged as compressed, broken zlib streams, JSON that is not an object.
fn signed_payload() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\.?[A-Za-z0-9_=-]{0,120}",
        "[^:]{0,40}",
        prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| format!(".{}", URL_SAFE_NO_PAD.encode(bytes))),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|bytes| URL_SAFE_NO_PAD.encode(bytes)),
        data_candidates().prop_map(|text| URL_SAFE_NO_PAD.encode(text)),
        broken_zlib_payload(),
    ]
}

/// The compressed payload of a real session with a few bytes of its zlib
/// stream changed, cut short or extended.
fn broken_zlib_payload() -> impl Strategy<Value = String> {
    let compressible = json_object().prop_map(|mut object| {
        object.insert("filler".into(), Value::String("abc".repeat(100)));
        object
    });
    (
        compressible,
        prop::collection::vec((any::<Index>(), any::<u8>()), 0..4),
        prop::option::of(any::<Index>()),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(object, flips, cut, tail)| {
            let signer = Signer::new(SECRET, DEFAULT_SALT).unwrap();
            let stored = signer.dumps(&object, NOW);
            let payload = stored.split(':').next().unwrap();
            let compressed = payload.strip_prefix('.').expect("a compressed payload");
            let mut bytes = URL_SAFE_NO_PAD.decode(compressed).unwrap();
            for (at, xor) in flips {
                let at = at.index(bytes.len());
                bytes[at] ^= xor;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            bytes.extend(tail);
            format!(".{}", URL_SAFE_NO_PAD.encode(bytes))
        })
}

/// One character of `text` inserted, removed or replaced, never leaving it
/// as it was.
fn one_char_changed(text: &str, at: Index, edit: u8, c: char) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = at.index(chars.len());
    match edit {
        0 => chars.insert(at, c),
        1 => {
            chars.remove(at);
        }
        _ if chars[at] == c => chars[at] = if c == 'A' { 'B' } else { 'A' },
        _ => chars[at] = c,
    }
    chars.into_iter().collect()
}

fn signed_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_:.=+/"
                .chars()
                .collect::<Vec<_>>()
        ),
        any::<char>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_codec_decodes_exactly_json_objects_and_round_trips(text in data_candidates()) {
        match Codec::Json.decode(text.clone(), NOW) {
            Ok(decoded) => {
                prop_assert!(reference_object(&text).is_some(), "decoded {text:?}");
                prop_assert_eq!(&decoded, &text);
                let data = SessionData::parse(decoded, usize::MAX).unwrap();
                prop_assert_eq!(Codec::Json.encode(data, NOW), text);
            }
            Err(DecodeError::NotJsonObject(_)) => {
                prop_assert!(reference_object(&text).is_none(), "refused {text:?}");
            }
            Err(other) => prop_assert!(false, "{text:?}: unexpected {other:?}"),
        }
    }

    #[test]
    fn django_codec_never_verifies_unsigned_text(
        text in prop_oneof![any::<String>(), django_shaped(), data_candidates()]
    ) {
        let decoded = django().decode(text.clone(), NOW);
        prop_assert!(
            matches!(decoded, Err(DecodeError::Signing(SigningError::BadSignature))),
            "{text:?}: {decoded:?}"
        );
    }

    #[test]
    fn django_codec_decodes_signed_garbage_cleanly_and_only_to_objects(
        payload in signed_payload(),
        timestamp in prop_oneof!["-?[0-9A-Za-z]{0,14}", "[^:]{0,6}", Just("1vb66i".to_owned())],
    ) {
        match django().decode(sign(&payload, &timestamp), NOW) {
            Ok(decoded) => prop_assert!(reference_object(&decoded).is_some(), "{decoded:?}"),
            Err(DecodeError::Signing(SigningError::BadSignature)) => {
                prop_assert!(false, "a value signed with the key must verify");
            }
            Err(_) => {}
        }
    }

    #[test]
    fn django_codec_reads_any_signed_uncompressed_object(object in json_object()) {
        // Escaped to ASCII as Python writes it: Django reads the bytes as Latin-1.
        let text = django_json(&object);
        let decoded = django().decode(sign(&URL_SAFE_NO_PAD.encode(&text), "1vb66i"), NOW);
        let decoded = decoded.unwrap();
        prop_assert!(same_json(&Value::Object(object), &serde_json::from_str(&decoded).unwrap()));
    }

    #[test]
    fn django_codec_round_trips_any_json_object(
        object in json_object(),
        now in prop_oneof![Just(NOW), any::<i64>()],
    ) {
        let text = Value::Object(object.clone()).to_string();
        let data = SessionData::parse(text, usize::MAX).unwrap();
        let stored = django().encode(data, now);
        prop_assert!(stored.is_ascii());

        let decoded = django().decode(stored.clone(), NOW).unwrap();
        let value: Value = serde_json::from_str(&decoded).unwrap();
        prop_assert!(same_json(&Value::Object(object), &value), "{decoded}");
        // Django's encoding is canonical: what was read back encodes to the
        // same stored text.
        let again = SessionData::parse(decoded, usize::MAX).unwrap();
        prop_assert_eq!(django().encode(again, now), stored);
    }

    #[test]
    fn a_one_character_change_never_verifies(
        object in json_object(),
        compressible in any::<bool>(),
        at in any::<Index>(),
        edit in 0..3u8,
        c in signed_char(),
    ) {
        let mut object = object;
        if compressible {
            object.insert("filler".into(), Value::String("abc".repeat(100)));
        }
        let data = SessionData::parse(Value::Object(object).to_string(), usize::MAX).unwrap();
        let stored = django().encode(data, NOW);
        prop_assert!(django().decode(stored.clone(), NOW).is_ok());

        let tampered = one_char_changed(&stored, at, edit, c);
        prop_assert_ne!(&tampered, &stored);
        let decoded = django().decode(tampered.clone(), NOW);
        prop_assert!(
            matches!(decoded, Err(DecodeError::Signing(SigningError::BadSignature))),
            "{tampered:?} from {stored:?}: {decoded:?}"
        );
    }
}
