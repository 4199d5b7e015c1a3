//! The example Prometheus alert rules: each rule says how long the
//! condition must hold, how severe it is and what it means, and every
//! metric its expression reads is one a real sessiond exports.
//! PromQL syntax needs Prometheus's own parser: run `promtool check rules
//! deploy/prometheus/alerts.yaml` where Prometheus is installed (it passes);
//! the tests do not assume it is.

use std::collections::BTreeSet;

use clap::Parser as _;
use sessiond::Server;
use sessiond::cli::ServeArgs;
use sessiond_client::Client;
use yaml_rust2::Yaml;

use super::cli::parse_seconds;
use super::kube::{list, load, string, string_map};
use super::{ALERTS, fail_on, read};

#[path = "../common/scrape.rs"]
#[allow(dead_code)]
mod scrape;

const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

/// Every rule of every group, with where it is.
fn rules() -> Vec<(String, Yaml)> {
    let docs = load(ALERTS, &read(ALERTS));
    assert_eq!(docs.len(), 1, "{ALERTS}: one document expected");
    let mut rules = Vec::new();
    for group in list(&docs[0]["groups"], "groups") {
        let name = string(&group["name"], "a group's name");
        for (index, rule) in list(&group["rules"], "rules").iter().enumerate() {
            rules.push((
                format!("{ALERTS}: group {name}, rule {index}"),
                rule.clone(),
            ));
        }
    }
    assert!(!rules.is_empty(), "{ALERTS} holds no rules");
    rules
}

/// What is missing from one rule.
fn rule_problems(place: &str, rule: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let text = |key: &str| rule[key].as_str().filter(|value| !value.trim().is_empty());
    if text("alert").is_none() {
        problems.push(format!(
            "{place}: no `alert` name (recording rules do not belong here)"
        ));
    }
    if text("expr").is_none() {
        problems.push(format!("{place}: no `expr`"));
    }
    match text("for") {
        None => problems.push(format!(
            "{place}: no `for`: one bad scrape would page someone"
        )),
        Some(duration) => {
            if let Err(err) = parse_seconds(duration) {
                problems.push(format!(
                    "{place}: `for: {duration}` is not a duration: {err}"
                ));
            }
        }
    }
    let labels = string_map(&rule["labels"], &format!("{place}: labels"));
    match labels.get("severity") {
        Some(severity) if SEVERITIES.contains(&severity.as_str()) => {}
        other => problems.push(format!(
            "{place}: labels.severity is {other:?}, not one of {SEVERITIES:?}"
        )),
    }
    let annotations = string_map(&rule["annotations"], &format!("{place}: annotations"));
    for key in ["summary", "description"] {
        if annotations
            .get(key)
            .is_none_or(|value| value.trim().is_empty())
        {
            problems.push(format!("{place}: no annotations.{key}"));
        }
    }
    problems
}

/// The metric names a PromQL expression reads: identifiers that are not
/// functions, aggregations, keywords or label names. Strings, label
/// matchers (`{…}`), ranges (`[…]`) and grouping lists (`by (…)`) are
/// skipped whole.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 6] = ["and", "or", "unless", "bool", "offset", "atan2"];
    // Aggregations may take their grouping before the parenthesis:
    // `sum by (job) (…)`.
    const AGGREGATIONS: [&str; 13] = [
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let skip_to = |from: usize, close: char| {
        chars[from + 1..]
            .iter()
            .position(|&c| c == close)
            .map_or(chars.len(), |at| from + 1 + at + 1)
    };
    let mut names = BTreeSet::new();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        match c {
            '"' | '\'' | '`' => at = skip_to(at, c),
            '{' => at = skip_to(at, '}'),
            '[' => at = skip_to(at, ']'),
            '#' => at = skip_to(at, '\n'),
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers and durations: 0.25, 1e3, 5m.
                while at < chars.len() && (chars[at].is_ascii_alphanumeric() || chars[at] == '.') {
                    at += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = at;
                while at < chars.len()
                    && (chars[at].is_ascii_alphanumeric() || chars[at] == '_' || chars[at] == ':')
                {
                    at += 1;
                }
                let word: String = chars[start..at].iter().collect();
                let mut next = at;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let called = chars.get(next) == Some(&'(');
                if GROUPING.contains(&word.as_str()) {
                    if called {
                        at = skip_to(next, ')');
                    }
                } else if !called
                    && !KEYWORDS.contains(&word.as_str())
                    && !AGGREGATIONS.contains(&word.as_str())
                {
                    names.insert(word);
                }
            }
            _ => at += 1,
        }
    }
    names
}

/// The series names in an OpenMetrics scrape (an HTTP response):
/// `sessiond_calls_total`, `sessiond_call_duration_seconds_bucket`, … as
/// Prometheus stores them.
fn exported_names(response: &str) -> BTreeSet<String> {
    let (_, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_alert_rule_has_a_duration_a_severity_and_a_summary() {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (place, rule) in rules() {
        problems.extend(rule_problems(&place, &rule));
        if let Some(name) = rule["alert"].as_str()
            && !names.insert(name.to_owned())
        {
            problems.push(format!("{place}: a second alert named {name}"));
        }
    }
    fail_on(problems);
}

#[tokio::test]
async fn alert_rules_read_only_metrics_sessiond_exports() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("sessions.sqlite3").display());
    let args = [
        "serve",
        "--store",
        &store,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let server = Server::open(ServeArgs::try_parse_from(args).unwrap().into_config())
        .await
        .unwrap();
    let metrics = server.metrics_addr().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    // A few calls, so that the families with labels have series: an
    // answer, an error, a purge.
    let client = Client::connect(format!("http://{addr}")).await.unwrap();
    let created = client.create("{\"a\": 1}", None).await.unwrap();
    client.load(&created.session_key).await.unwrap();
    assert!(client.load("bad key!").await.is_err());
    client.clear_expired().await.unwrap();
    let exported = exported_names(&scrape::metrics_text(metrics).await);

    let mut problems = Vec::new();
    for (place, rule) in rules() {
        let Some(expr) = rule["expr"].as_str() else {
            continue;
        };
        for name in metric_names(expr) {
            if !exported.contains(&name) {
                problems.push(format!(
                    "{place}: `{name}` is not a metric sessiond exports (it exports {exported:?})"
                ));
            }
        }
    }
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    fail_on(problems);
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let expr = "histogram_quantile(0.99, sum by (job, le) \
                (rate(sessiond_call_duration_seconds_bucket{method!=\"ClearExpired\"}[5m]))) \
                > 0.25 and on (job, instance) sessiond_build_info \
                or time() - (sessiond_purge_last_success_timestamp_seconds or process_start_time_seconds) \
                > 256 * 1024 * 1e3 unless x:recorded:rate5m offset 5m";
    let expected = [
        "process_start_time_seconds",
        "sessiond_build_info",
        "sessiond_call_duration_seconds_bucket",
        "sessiond_purge_last_success_timestamp_seconds",
        "x:recorded:rate5m",
    ];
    assert_eq!(
        metric_names(expr),
        expected.into_iter().map(str::to_owned).collect()
    );
}
