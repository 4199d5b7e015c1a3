//! The Node.js side, `integrations/node`: the npm package `sessiond-client`
//! (client, session handle, Express middleware, express-session store),
//! checked by its own `node --test` suite against the built binary.
//!
//! `npm ci` installs the package's locked dependencies from the npm
//! registry and builds its native transport with cargo; the suite runs
//! twice, on the native transport and on grpc-js, and starts `sessiond`
//! itself (from `SESSIOND_BIN`) on 127.0.0.1:0 as often as it needs. Without node, npm or the registry
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
    // The client on the native transport (built by `npm ci`), then on
    // grpc-js; each run checks which one it is on.
    for (transport, env) in [
        ("native", vec![("SESSIOND_EXPECT_TRANSPORT", "native")]),
        (
            "grpc-js",
            vec![
                ("SESSIOND_EXPECT_TRANSPORT", "grpc-js"),
                ("SESSIOND_CLIENT_TRANSPORT", "grpc-js"),
            ],
        ),
    ] {
        // The reporter is named so that a terminal does not switch node to
        // its `spec` output, which has no summary lines.
        let tests = node::run(node::NODE, &["--test", "--test-reporter=tap"], &env).await;
        node::assert_succeeded(&format!("node --test on {transport}"), &tests);
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
        // Nothing may be skipped: a test that cannot run must fail.
        assert!(summary.contains(&"# skipped 0"), "{summary:?}");
        report(&format!(
            "node_client: integrations/node `node --test` on {transport}: {}\n",
            summary.join(", ")
        ));
    }
}
