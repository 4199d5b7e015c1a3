//! The benchmark scripts in Python, checked at their front door: their
//! arguments and their first failures (each script's own unittest module;
//! no measurement, which belongs in a benchmark run, not in a test).
//! `bench/clients/run.py` compares the Rust, Node and Python clients;
//! `bench/django/run.py` compares Django's SessionStore on sessiond with
//! Django's own engines.

#![allow(clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn unittests_pass(dir: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let output = Command::new("python3")
        .args(["-m", "unittest", "discover", "-p", "test_*.py", "-v", "-s"])
        .arg(&dir)
        .output()
        .expect("python3 runs the script's tests");
    assert!(
        output.status.success(),
        "the tests in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_client_comparison_script_checks_its_arguments() {
    unittests_pass("clients");
}

#[test]
fn the_django_comparison_script_checks_its_arguments() {
    unittests_pass("django");
}
