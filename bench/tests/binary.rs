//! The built `sessiond-bench`, as a person runs it: it starts the
//! `sessiond` built next to it on memory://, measures for about a second and
//! prints JSON with the figures.
//!
//! Cargo gives a test the path of its own crate's binaries only, so the
//! sessiond binary is found where cargo puts it, beside `sessiond-bench` in
//! the same target directory, exactly as the bench finds it by default.
//! `cargo test --workspace` builds it (the server crate's tests need it);
//! with `cargo test -p sessiond-bench` alone, run `cargo build -p sessiond`
//! first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn sessiond() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_sessiond-bench"));
    let sessiond = bench.with_file_name("sessiond");
    assert!(
        sessiond.is_file(),
        "{} is missing: run `cargo test --workspace`, or `cargo build -p sessiond` first",
        sessiond.display()
    );
    sessiond
}

fn bench(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond-bench"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SESSIOND_") {
            command.env_remove(name);
        }
    }
    command.args(args).stdin(Stdio::null()).output().unwrap()
}

fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sessiond-bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("not JSON ({err}):\n{stdout}"))
}

#[test]
fn a_short_run_on_memory_reports_throughput_latency_and_the_server() {
    let sessiond = sessiond();
    let output = bench(&[
        "--store",
        "memory://",
        "--sessiond",
        sessiond.to_str().unwrap(),
        "--workload",
        "mixed",
        "--sessions",
        "500",
        "--concurrency",
        "8",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--json",
    ]);
    let report = json_of(&output);

    let settings = &report["settings"];
    assert_eq!(settings["workload"], "mixed");
    assert_eq!(settings["load_percent"], 90);
    assert_eq!(settings["payload_bytes"], 1024);
    assert_eq!(settings["concurrency"], 8);

    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    let row = &rows[0];
    assert_eq!(row["name"], "memory");
    assert_eq!(row["status"], "ok", "{row:#}");
    assert!(row["requests"].as_u64().unwrap() > 0, "{row:#}");
    assert!(row["throughput_rps"].as_f64().unwrap() > 0.0, "{row:#}");
    assert_eq!(row["errors"], 0, "{row:#}");
    assert!(row["errors_by_code"].as_object().unwrap().is_empty());
    let latency = &row["latency_us"];
    for field in ["p50", "p99", "p999", "max"] {
        assert!(latency[field].as_u64().unwrap() > 0, "{field}: {row:#}");
    }
    assert!(latency["p50"].as_u64() <= latency["p99"].as_u64());
    assert!(latency["p99"].as_u64() <= latency["max"].as_u64());
    let server = &row["server"];
    assert!(server["rss_bytes"].as_u64().unwrap() > 1 << 20, "{row:#}");
    assert!(server["cpu_seconds"].as_f64().unwrap() > 0.0, "{row:#}");
    assert!(server["cpu_us_per_request"].as_f64().is_some(), "{row:#}");
}

#[test]
fn rounds_report_each_row_once_with_its_spread() {
    let sessiond = sessiond();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("rounds.sqlite3").display());
    let output = bench(&[
        "--store",
        &store,
        "--sessiond",
        sessiond.to_str().unwrap(),
        "--workload",
        "load",
        "--sessions",
        "200",
        "--concurrency",
        "4",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--rounds",
        "3",
        "--json",
    ]);
    let report = json_of(&output);
    assert_eq!(report["settings"]["rounds"], 3);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    let (row, spread) = (&rows[0], &rows[0]["spread"]);
    assert_eq!(spread["rounds"], 3, "{row:#}");
    let rps = row["throughput_rps"].as_f64().unwrap();
    let (min, max) = (
        spread["throughput_rps"]["min"].as_f64().unwrap(),
        spread["throughput_rps"]["max"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= rps && rps <= max, "{row:#}");
}

#[test]
fn key_cycles_replace_the_keys_they_use_without_errors() {
    let sessiond = sessiond();
    let output = bench(&[
        "--store",
        "memory://",
        "--sessiond",
        sessiond.to_str().unwrap(),
        "--workload",
        "cycle",
        "--payload-bytes",
        "200",
        "--sessions",
        "64",
        "--concurrency",
        "4",
        "--connections",
        "2",
        "--duration",
        "500ms",
        "--warmup",
        "100ms",
        "--json",
    ]);
    let report = json_of(&output);
    let row = &report["rows"][0];
    assert_eq!(row["status"], "ok", "{row:#}");
    assert!(row["requests"].as_u64().unwrap() > 0, "{row:#}");
    // A key cycled twice by mistake would answer NOT_FOUND.
    assert_eq!(row["errors"], 0, "{row:#}");
}

#[test]
fn expired_sessions_are_purged_while_measuring_and_counted() {
    let sessiond = sessiond();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("bench.sqlite3").display());
    let output = bench(&[
        "--store",
        &store,
        "--sessiond",
        sessiond.to_str().unwrap(),
        "--workload",
        "load",
        "--sessions",
        "200",
        "--expired",
        "3000",
        "--concurrency",
        "4",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--json",
    ]);
    let report = json_of(&output);
    assert_eq!(report["settings"]["expired"], 3000);
    let row = &report["rows"][0];
    assert_eq!(row["status"], "ok", "{row:#}");
    // Loads of the live sessions all found theirs: the purge took only
    // the expired ones.
    assert_eq!(row["errors"], 0, "{row:#}");
    let purge = &row["purge"];
    assert_eq!(purge["removed"], 3000, "{row:#}");
    assert!(purge["rows_per_s"].as_f64().unwrap() > 0.0, "{row:#}");
}

#[test]
fn idle_connections_past_max_connections_are_closed_and_the_rest_held() {
    let sessiond = sessiond();
    let output = bench(&[
        "--store",
        "memory://",
        "--sessiond",
        sessiond.to_str().unwrap(),
        "--idle-connections",
        "50",
        "--server-arg=--max-connections=20",
        "--duration",
        "1s",
        // The shortest warm-up is not zero (zero is refused): the start-up
        // health check's connection closes as soon as sessiond is SERVING,
        // and sessiond frees its place within milliseconds of that.
        "--warmup",
        "200ms",
        "--json",
    ]);
    let report = json_of(&output);
    assert_eq!(report["mode"], "idle_connections");
    assert_eq!(report["settings"]["requested"], 50);
    let connections = &report["connections"];
    // Exactly the cap: the health check's connection is closed by then, so
    // every one of the 20 places goes to an idle connection.
    assert_eq!(connections["answered"], 20, "{report:#}");
    assert_eq!(connections["closed"], 30, "{report:#}");
    assert_eq!(connections["silent"], 0, "{report:#}");
    assert_eq!(connections["failed"], 0, "{report:#}");
    assert_eq!(connections["closed_while_held"], 0, "{report:#}");
    assert_eq!(connections["held_at_end"], 20, "{report:#}");
    let server = &report["server"];
    for field in [
        "rss_before_bytes",
        "rss_holding_bytes",
        "rss_after_close_bytes",
        "peak_rss_bytes",
    ] {
        assert!(server[field].as_u64().unwrap() > 0, "{field}: {report:#}");
    }
    assert!(server["rss_per_connection_bytes"].is_u64(), "{report:#}");
    assert!(server["cpu_holding_share_of_core"].is_f64(), "{report:#}");
}

#[test]
fn idle_connections_measure_no_workload() {
    let output = bench(&[
        "--store",
        "memory://",
        "--idle-connections",
        "10",
        "--workload",
        "load",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--workload"), "{stderr}");
}

#[test]
fn nothing_to_measure_is_a_usage_error() {
    let output = bench(&[]);
    assert_eq!(output.status.code(), Some(2));
    let output = bench(&[
        "--store",
        "memory://",
        "--workload",
        "cycle",
        "--sessions",
        "1",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--sessions"), "{stderr}");
}
