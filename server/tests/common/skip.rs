//! Tests that need something this machine may lack (PostgreSQL, Redis,
//! Python and PyPI, a program such as `systemd-analyze`) are never skipped
//! silently. Under `CI=true`, where everything must be there, they fail.
//! Elsewhere they print one `SKIPPED:` line, naming the test and what is
//! missing, to the process's real standard error, and the caller returns:
//! the test harness captures `eprintln!` of passing tests, which would hide
//! the skip, but not what is written to the stream itself.

use std::io::Write;

/// Fails under `CI=true`; otherwise reports the skip of the running test.
/// `missing` says what was not found, e.g. "PostgreSQL is not reachable at
/// 127.0.0.1:5432".
pub fn skip_or_fail(missing: &str) {
    let current = std::thread::current();
    // The harness names each test's thread after the test.
    let test = current.name().unwrap_or("a test");
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{missing}, and CI=true requires it (see .ci/run)");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: {missing}; this test did not run"
    );
}
