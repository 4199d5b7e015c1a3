//! A `Patch` that removes many keys: the result on sessions as large as the
//! default limit allows, and on generated patches against a straightforward
//! model of what a patch means (remove every named key, then set each key,
//! a new one last, as in a Python dict).
//!
//! How the cost grows with the number of keys is a figure, not an assertion:
//! `cargo bench -p sessiond --bench patch`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use sessiond::session::SessionPatch;

/// The server's default `--max-data-bytes`: the large sessions here are
/// ones a default server accepts.
const MAX_BYTES: usize = 1 << 20;

/// The removals of issue 16: one patch taking 40 000 keys out of a session.
const REMOVED: usize = 40_000;

fn name(i: usize) -> String {
    format!("key{i:06}")
}

/// The text of a session holding `keys` (each key's value is its number),
/// in that order.
fn object(keys: impl IntoIterator<Item = usize>) -> String {
    let entries: Vec<String> = keys
        .into_iter()
        .map(|i| format!("\"{}\":{i}", name(i)))
        .collect();
    format!("{{{}}}", entries.join(","))
}

fn apply(stored: &str, set: &str, remove: Vec<String>) -> String {
    SessionPatch::parse(set, remove, false, MAX_BYTES)
        .expect("the patch is valid")
        .apply(Some(stored), MAX_BYTES)
        .expect("the result is within the limit")
        .into_string()
}

#[test]
fn removing_40_000_keys_keeps_the_others_in_order() {
    // Four keys in five go, spread through the session, so every survivor
    // has removed keys on both sides of it.
    let stored = object(0..50_000);
    let remove: Vec<String> = (0..50_000).filter(|i| i % 5 != 0).map(name).collect();
    assert_eq!(remove.len(), REMOVED);
    assert!(stored.len() <= MAX_BYTES);

    let patched = apply(&stored, "", remove);
    assert_eq!(patched, object((0..50_000).step_by(5)));
}

#[test]
fn removing_every_key_of_a_40_000_key_session_leaves_it_empty() {
    let remove: Vec<String> = (0..REMOVED).rev().map(name).collect();
    assert_eq!(apply(&object(0..REMOVED), "", remove), "{}");
}

#[test]
fn keys_both_removed_and_set_move_to_the_end_in_the_order_of_set() {
    let stored = object(0..REMOVED);
    let remove: Vec<String> = (0..REMOVED).filter(|i| i % 2 == 0).map(name).collect();
    // Two removed keys come back, and an odd key that stayed is only
    // changed: it keeps its place.
    let set = format!(
        "{{\"{}\":\"b\",\"{}\":\"a\",\"{}\":\"kept\",\"new\":1}}",
        name(10),
        name(4),
        name(7)
    );

    let patched: Map<String, Value> = serde_json::from_str(&apply(&stored, &set, remove)).unwrap();
    let odd_keys: Vec<String> = (0..REMOVED).filter(|i| i % 2 == 1).map(name).collect();
    let mut expected: Vec<&str> = odd_keys.iter().map(String::as_str).collect();
    let (key_10, key_4) = (name(10), name(4));
    expected.extend([key_10.as_str(), key_4.as_str(), "new"]);
    assert_eq!(patched.keys().collect::<Vec<_>>(), expected);
    assert_eq!(patched[&name(7)], "kept");
    assert_eq!(patched[&name(10)], "b");
    assert_eq!(patched[&name(4)], "a");
    assert_eq!(patched[&name(9)], 9);
}

#[test]
fn a_key_named_many_times_in_remove_is_removed_once() {
    let stored = object(0..REMOVED);
    let once: Vec<String> = (0..REMOVED / 2).map(name).collect();
    // Each name three times over, last first.
    let thrice: Vec<String> = once
        .iter()
        .rev()
        .flat_map(|key| [key.clone(), key.clone(), key.clone()])
        .collect();
    let patched = apply(&stored, "", thrice);
    assert_eq!(patched, apply(&stored, "", once));
    assert_eq!(patched, object(REMOVED / 2..REMOVED));
}

#[test]
fn removing_missing_keys_changes_nothing_else() {
    let stored = object(0..1_000);
    // 40 000 names the session does not hold, and one it does.
    let mut remove: Vec<String> = (1_000..1_000 + REMOVED).map(name).collect();
    remove.push(name(500));
    let patched = apply(&stored, "", remove);
    assert_eq!(patched, object((0..1_000).filter(|i| *i != 500)));
    // And on a session with no data at all.
    let empty = SessionPatch::parse("", (0..REMOVED).map(name).collect(), false, MAX_BYTES)
        .unwrap()
        .apply(None, MAX_BYTES)
        .unwrap();
    assert_eq!(empty.as_str(), "{}");
}

// ---------------------------------------------------------------- model

/// What a patch means, written the slow, obvious way: a list of entries,
/// each named key taken out of it in turn, then each key of `set` replaced
/// in place or pushed at the end.
fn model(
    stored: &Map<String, Value>,
    set: &Map<String, Value>,
    remove: &[String],
    replace: bool,
) -> String {
    let mut entries: Vec<(String, Value)> = if replace {
        Vec::new()
    } else {
        stored.clone().into_iter().collect()
    };
    for key in remove {
        entries.retain(|(name, _)| name != key);
    }
    for (key, value) in set {
        match entries.iter_mut().find(|(name, _)| name == key) {
            Some(entry) => entry.1 = value.clone(),
            None => entries.push((key.clone(), value.clone())),
        }
    }
    let text: Vec<String> = entries
        .iter()
        .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
        .collect();
    format!("{{{}}}", text.join(","))
}

/// Few names, so that stored, removed and set keys often coincide.
fn key() -> impl Strategy<Value = String> {
    "[a-f]{1,2}"
}

fn entries() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(), any::<i32>()), 0..40).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(key, value)| (key, Value::from(value)))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_patch_does_what_the_model_does(
        stored in entries(),
        set in entries(),
        remove in prop::collection::vec(key(), 0..40),
        replace in any::<bool>(),
    ) {
        let stored_text = Value::Object(stored.clone()).to_string();
        let set_text = if set.is_empty() {
            String::new()
        } else {
            Value::Object(set.clone()).to_string()
        };
        let patch = SessionPatch::parse(&set_text, remove.clone(), replace, MAX_BYTES).unwrap();
        let patched = patch.apply(Some(&stored_text), MAX_BYTES).unwrap();
        prop_assert_eq!(patched.as_str(), model(&stored, &set, &remove, replace));
        // Applying the same patch again (an engine retrying after a lost
        // race) gives the same result.
        let again = patch.apply(Some(&stored_text), MAX_BYTES).unwrap();
        prop_assert_eq!(again.as_str(), patched.as_str());
    }
}
