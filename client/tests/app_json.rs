//! The client must not change how the app's own JSON parses. serde_json's
//! `arbitrary_precision` and `preserve_order` are global: a library that
//! turns them on turns them on for every crate of the app. Inside this
//! workspace features unify across members (sessiond turns both on), so this
//! test builds `tests/app_json`, an app in a workspace of its own that
//! depends on this crate, and runs that app's tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn an_app_that_depends_on_the_client_parses_its_own_json() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/app_json/Cargo.toml");
    // The cargo running this test, and a target directory of the
    // workspace's that outlives the run, so that the next build is
    // incremental.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("app_json");
    let output = Command::new(cargo)
        .args(["test", "--locked", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        // The panic messages say what failed; backtraces would bury them.
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("cargo starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The app's lock file lists the client's dependencies too.
    let hint = if stderr.contains("--locked") {
        "\nafter a change to sessiond-client's dependencies, refresh the app's lock file \
         with `cargo update -p sessiond-client --manifest-path \
         client/tests/app_json/Cargo.toml` and commit it"
    } else {
        ""
    };
    assert!(
        output.status.success(),
        "`cargo test --locked --manifest-path {}` failed ({}):\n{}\n{stderr}{hint}",
        manifest.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
    );
}
