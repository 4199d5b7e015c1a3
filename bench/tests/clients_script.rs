//! `bench/clients/run.py`, the comparison of the Rust, Node and Python
//! clients, checked at its front door: its arguments and its first failures
//! (its own unittest module; no measurement, which belongs in a benchmark
//! run, not in a test).

use std::path::Path;
use std::process::Command;

#[test]
fn the_client_comparison_script_checks_its_arguments() {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients");
    let output = Command::new("python3")
        .args(["-m", "unittest", "discover", "-p", "test_*.py", "-v", "-s"])
        .arg(&clients)
        .output()
        .expect("python3 runs the script's tests");
    assert!(
        output.status.success(),
        "bench/clients/test_run.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
