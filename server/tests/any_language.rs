//! Keeps the README's "Calling sessiond from any language" examples true,
//! without grpcurl installed.
//!
//! The section is a script: pairs of a ```` ```sh ```` block holding one
//! `grpcurl … -d '<json>' … sessiond.v1.SessionService/<Method>` command and
//! the ```` ```json ```` block right after it holding what grpcurl prints.
//! This test starts the built binary on a fresh SQLite file (the default
//! engine a reader starts), reads every pair in order, sends the same
//! request through the generated stubs (the JSON decoded as grpcurl decodes
//! it: proto field names or their camelCase JSON names, unknown fields
//! refused), renders the answer as grpcurl does (proto3 JSON: camelCase
//! names in field order, fields at their default value left out, `uint64`
//! as a string, timestamps in UTC with 0, 3, 6 or 9 fractional digits,
//! two-space indentation) and requires the documented block to be that text.
//! Where an answer is random (a fresh key, a time derived from now), the
//! README shows a placeholder in angle brackets; the test accepts only the
//! placeholders it knows, and checks that the value it stands for has the
//! promised form. A changed answer, a missing or extra field, an unknown
//! placeholder, an RPC of the proto without an example, or a section that
//! no longer parses fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use common::process::{Running, sessiond};
use prost_types::Timestamp;
use serde_json::{Map, Value, json};
use sessiond_client::proto;
use sessiond_client::proto::session_service_client::SessionServiceClient;
use tonic::transport::Channel;

const SECTION: &str = "## Calling sessiond from any language";
const SERVICE: &str = "sessiond.v1.SessionService/";

/// Every RPC of `sessiond.v1.SessionService`; each needs an example.
const METHODS: [&str; 8] = [
    "Load",
    "Exists",
    "Create",
    "Save",
    "Patch",
    "Delete",
    "CycleKey",
    "ClearExpired",
];

/// A call the README documents: the request as grpcurl sends it and the
/// output it shows.
#[derive(Debug)]
struct Example {
    method: String,
    request: Map<String, Value>,
    output: String,
}

fn readme_section() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find(&format!("\n{SECTION}\n"))
        .unwrap_or_else(|| panic!("README.md has no section {SECTION:?}"));
    let body = &readme[start + 1 + SECTION.len()..];
    let end = body.find("\n## ").unwrap_or(body.len());
    body[..end].to_owned()
}

/// The fenced blocks of `text`: (info string, body).
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some("")) => blocks.push(open.take().unwrap()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block in {SECTION:?}");
    blocks
}

/// The method and request of one grpcurl command: `-d '<json>'` (absent
/// means `{}`, as for grpcurl) and `sessiond.v1.SessionService/<Method>`.
fn parse_command(command: &str) -> (String, Map<String, Value>) {
    let line = command.replace("\\\n", " ");
    assert!(
        line.trim_start().starts_with("grpcurl -plaintext "),
        "not a grpcurl call on plaintext: {command}"
    );
    let request = match line.split_once(" -d '") {
        Some((_, rest)) => {
            let (json, _) = rest.split_once('\'').unwrap();
            match serde_json::from_str(json) {
                Ok(Value::Object(map)) => map,
                other => panic!("-d is not a JSON object ({other:?}): {command}"),
            }
        }
        None => Map::new(),
    };
    let method = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix(SERVICE))
        .unwrap_or_else(|| panic!("no {SERVICE}<Method> in: {command}"))
        .to_owned();
    (method, request)
}

fn examples() -> Vec<Example> {
    let blocks = fenced_blocks(&readme_section());
    let mut examples = Vec::new();
    let mut blocks = blocks.into_iter().peekable();
    while let Some((info, body)) = blocks.next() {
        if info != "sh" || !body.contains(SERVICE) {
            continue;
        }
        let (method, request) = parse_command(&body);
        let output = match blocks.next() {
            Some((info, output)) if info == "json" => output.trim_end().to_owned(),
            _ => panic!("the grpcurl call {body:?} is not followed by a ```json block"),
        };
        examples.push(Example {
            method,
            request,
            output,
        });
    }
    examples
}

/// grpcurl's request decoding: a field by its proto name or JSON name.
struct Request {
    method: String,
    fields: Map<String, Value>,
}

impl Request {
    fn new(example: &Example) -> Self {
        Self {
            method: example.method.clone(),
            fields: example.request.clone(),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let camel = camel_case(name);
        let by_name = self.fields.remove(name);
        let by_json_name = self.fields.remove(&camel);
        assert!(
            by_name.is_none() || by_json_name.is_none(),
            "{}: {name} given twice",
            self.method
        );
        by_name.or(by_json_name).filter(|value| !value.is_null())
    }

    fn string(&mut self, name: &str) -> Option<String> {
        self.take(name).map(|value| match value {
            Value::String(text) => text,
            other => panic!("{}: {name} must be a string, got {other}", self.method),
        })
    }

    fn bool(&mut self, name: &str) -> bool {
        self.take(name).is_some_and(|value| match value {
            Value::Bool(flag) => flag,
            other => panic!("{}: {name} must be true or false, got {other}", self.method),
        })
    }

    fn strings(&mut self, name: &str) -> Vec<String> {
        match self.take(name) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => text,
                    other => panic!("{}: {name} holds {other}, not a string", self.method),
                })
                .collect(),
            Some(other) => panic!("{}: {name} must be a list, got {other}", self.method),
        }
    }

    fn timestamp(&mut self, name: &str) -> Option<Timestamp> {
        self.string(name).map(|text| {
            let time = DateTime::parse_from_rfc3339(&text)
                .unwrap_or_else(|err| panic!("{}: {name} {text:?}: {err}", self.method));
            Timestamp {
                seconds: time.timestamp(),
                nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap(),
            }
        })
    }

    /// grpcurl refuses a field the message does not have; so does this.
    fn done(self) {
        assert!(
            self.fields.is_empty(),
            "{}: fields the request message does not have: {:?}",
            self.method,
            self.fields.keys().collect::<Vec<_>>()
        );
    }
}

fn camel_case(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A proto3 JSON object as grpcurl prints it: fields in field-number
/// order, those at their default value left out.
#[derive(Default)]
struct Answer(Map<String, Value>);

impl Answer {
    fn string(mut self, name: &str, value: String) -> Self {
        if !value.is_empty() {
            self.0.insert(name.to_owned(), Value::String(value));
        }
        self
    }

    fn bool(mut self, name: &str, value: bool) -> Self {
        if value {
            self.0.insert(name.to_owned(), Value::Bool(true));
        }
        self
    }

    fn uint64(mut self, name: &str, value: u64) -> Self {
        if value != 0 {
            self.0
                .insert(name.to_owned(), Value::String(value.to_string()));
        }
        self
    }

    fn timestamp(mut self, name: &str, value: Option<Timestamp>) -> Self {
        if let Some(value) = value {
            self.0
                .insert(name.to_owned(), Value::String(timestamp_text(&value)));
        }
        self
    }
}

/// RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as the proto3
/// JSON mapping (and grpcurl) writes a `Timestamp`.
fn timestamp_text(value: &Timestamp) -> String {
    let time = DateTime::<Utc>::from_timestamp(value.seconds, u32::try_from(value.nanos).unwrap())
        .unwrap();
    let digits = match value.nanos {
        0 => SecondsFormat::Secs,
        n if n % 1_000_000 == 0 => SecondsFormat::Millis,
        n if n % 1_000 == 0 => SecondsFormat::Micros,
        _ => SecondsFormat::Nanos,
    };
    time.to_rfc3339_opts(digits, true)
}

/// Sends one documented request; returns the answer as grpcurl renders
/// it, or the status grpcurl would report.
async fn call(client: &mut SessionServiceClient<Channel>, example: &Example) -> Answer {
    let mut request = Request::new(example);
    match example.method.as_str() {
        "Load" => {
            let message = proto::LoadRequest {
                session_key: request.string("session_key").unwrap_or_default(),
            };
            request.done();
            let answer = client.load(message).await.unwrap().into_inner();
            Answer::default()
                .bool("found", answer.found)
                .string("data", answer.data)
                .timestamp("expireDate", answer.expire_date)
        }
        "Exists" => {
            let message = proto::ExistsRequest {
                session_key: request.string("session_key").unwrap_or_default(),
            };
            request.done();
            let answer = client.exists(message).await.unwrap().into_inner();
            Answer::default().bool("exists", answer.exists)
        }
        "Create" => {
            let message = proto::CreateRequest {
                data: request.string("data").unwrap_or_default(),
                expire_date: request.timestamp("expire_date"),
            };
            request.done();
            let answer = client.create(message).await.unwrap().into_inner();
            Answer::default()
                .string("sessionKey", answer.session_key)
                .timestamp("expireDate", answer.expire_date)
        }
        "Save" => {
            let message = proto::SaveRequest {
                session_key: request.string("session_key").unwrap_or_default(),
                data: request.string("data").unwrap_or_default(),
                expire_date: request.timestamp("expire_date"),
                must_create: request.bool("must_create"),
            };
            request.done();
            let answer = client.save(message).await.unwrap().into_inner();
            Answer::default().timestamp("expireDate", answer.expire_date)
        }
        "Patch" => {
            let message = proto::PatchRequest {
                session_key: request.string("session_key").unwrap_or_default(),
                set: request.string("set").unwrap_or_default(),
                remove: request.strings("remove"),
                replace: request.bool("replace"),
                expire_date: request.timestamp("expire_date"),
            };
            request.done();
            let answer = client.patch(message).await.unwrap().into_inner();
            Answer::default().timestamp("expireDate", answer.expire_date)
        }
        "Delete" => {
            let message = proto::DeleteRequest {
                session_key: request.string("session_key").unwrap_or_default(),
            };
            request.done();
            let answer = client.delete(message).await.unwrap().into_inner();
            Answer::default().bool("deleted", answer.deleted)
        }
        "CycleKey" => {
            let message = proto::CycleKeyRequest {
                session_key: request.string("session_key").unwrap_or_default(),
                data: request.string("data"),
                expire_date: request.timestamp("expire_date"),
            };
            request.done();
            let answer = client.cycle_key(message).await.unwrap().into_inner();
            Answer::default()
                .string("sessionKey", answer.session_key)
                .timestamp("expireDate", answer.expire_date)
        }
        "ClearExpired" => {
            request.done();
            let answer = client
                .clear_expired(proto::ClearExpiredRequest {})
                .await
                .unwrap()
                .into_inner();
            Answer::default().uint64("removed", answer.removed)
        }
        other => panic!("{other} is not an RPC of {SERVICE}"),
    }
}

/// A fresh key drawn by the server: 32 characters of `[a-z0-9]`.
fn is_fresh_key(value: &str) -> bool {
    value.len() == 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Now plus the default session age (two weeks), give or take a minute.
fn is_two_weeks_from_now(value: &str) -> bool {
    let Ok(time) = DateTime::parse_from_rfc3339(value) else {
        return false;
    };
    let expected = SystemTime::now() + Duration::from_secs(14 * 24 * 3600);
    let expected = DateTime::<Utc>::from(expected);
    (time.with_timezone(&Utc) - expected).num_seconds().abs() < 60
}

/// Tells whether a random value has the form its placeholder promises.
type Promise = fn(&str) -> bool;

/// The placeholders the README may show for a random value, and what the
/// value must look like.
const PLACEHOLDERS: [(&str, Promise); 2] = [
    ("<new session key>", is_fresh_key),
    ("<now + 2 weeks>", is_two_weeks_from_now),
];

/// Puts the documented placeholders in place of the random values they
/// stand for, once each value is checked to have the promised form.
fn with_placeholders(answer: Answer, documented: &str, method: &str) -> Map<String, Value> {
    let documented: Value = serde_json::from_str(documented)
        .unwrap_or_else(|err| panic!("{method}: the output is not JSON ({err}):\n{documented}"));
    let mut answer = answer.0;
    for (name, value) in documented.as_object().into_iter().flatten() {
        let Some(shown) = value.as_str().filter(|text| text.starts_with('<')) else {
            continue;
        };
        let (_, is_valid) = PLACEHOLDERS
            .iter()
            .find(|(placeholder, _)| *placeholder == shown)
            .unwrap_or_else(|| panic!("{method}: unknown placeholder {shown} for {name}"));
        let actual = answer.get(name).and_then(Value::as_str).unwrap_or_else(|| {
            panic!("{method}: the server answered no {name}, the README shows {shown}")
        });
        assert!(
            is_valid(actual),
            "{method}: {name} is {actual:?}, not what {shown} promises"
        );
        answer.insert(name.clone(), Value::String(shown.to_owned()));
    }
    answer
}

#[tokio::test]
async fn every_documented_grpcurl_call_answers_as_documented() {
    let examples = examples();
    for method in METHODS {
        assert!(
            examples.iter().any(|example| example.method == method),
            "{SECTION:?} has no grpcurl example of {method}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("readme.sqlite3").display());
    let server = Running::start(sessiond().env("SESSIOND_STORE", store));
    let mut client = SessionServiceClient::connect(server.url()).await.unwrap();

    let mut drift = Vec::new();
    for example in &examples {
        let answer = call(&mut client, example).await;
        let answer = with_placeholders(answer, &example.output, &example.method);
        let printed = serde_json::to_string_pretty(&Value::Object(answer)).unwrap();
        if printed != example.output {
            drift.push(format!(
                "{} {}\n  README shows:\n{}\n  sessiond answers:\n{}",
                example.method,
                json!(example.request),
                example.output,
                printed
            ));
        }
    }
    assert!(
        drift.is_empty(),
        "README {SECTION:?} no longer matches the server:\n{}",
        drift.join("\n\n")
    );
}
