//! The Node.js side, `integrations/node`: the npm package `sessiond-client`
//! (client, session handle, Express middleware, express-session store),
//! checked by its own `node --test` suite against the built binary.
//!
//! `npm ci` installs the package's locked dependencies from the npm
//! registry; the suite then starts `sessiond` itself (from `SESSIOND_BIN`)
//! on 127.0.0.1:0 as often as it needs. Without node, npm or the registry
//! the test prints `SKIPPED:` and passes, except under `CI=true`, where it
//! fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use common::node;

/// Writes to the process's stderr, which the test harness does not capture:
/// the counts show in every `cargo test` run, not only in failing ones.
fn report(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn node_package_passes_its_tests() {
    if node::installed_package().await.is_none() {
        return;
    }
    // The reporter is named so that a terminal does not switch node to its
    // `spec` output, which has no summary lines.
    let tests = node::run(node::NODE, &["--test", "--test-reporter=tap"]).await;
    node::assert_succeeded("node --test", &tests);
    let summary: Vec<&str> = tests
        .stdout
        .lines()
        .filter(|line| {
            ["# tests ", "# pass ", "# fail ", "# skipped "]
                .iter()
                .any(|prefix| line.starts_with(prefix))
        })
        .collect();
    assert!(
        summary.iter().any(|line| line.starts_with("# pass ")),
        "node --test printed no summary:\n{}",
        tests.stdout
    );
    report(&format!(
        "node_client: integrations/node `node --test`: {}\n",
        summary.join(", ")
    ));
}
