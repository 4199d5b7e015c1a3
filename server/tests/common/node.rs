//! The npm package in `integrations/node`, its locked dependencies
//! installed with `npm ci` from the npm registry, once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::python::{self, Finished};
use super::skip;

/// A whole suite takes seconds, and `npm ci` a minute or two when it builds
/// the native transport from nothing; the bound is for a wedged run.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(600);

/// What npm says when it cannot reach the registry (as opposed to a broken
/// lockfile, which must fail the test).
const NETWORK_ERRORS: &[&str] = &[
    "ENOTFOUND",
    "EAI_AGAIN",
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "ENETUNREACH",
    "EHOSTUNREACH",
    "network request",
];

/// The Node.js program the tests run.
pub const NODE: &str = "node";

pub fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../integrations/node")
        .canonicalize()
        .unwrap()
}

/// Whether `program --version` runs.
fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs `program args` in the package directory to its end, with
/// `SESSIOND_BIN` naming the built sessiond, and `env`.
pub async fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(package_dir())
        .env("SESSIOND_BIN", env!("CARGO_BIN_EXE_sessiond"))
        // Plain output whose summary lines a report can pick out.
        .env("NO_COLOR", "1")
        .env_remove("NODE_OPTIONS");
    python::run_to_end(command, NODE_TIMEOUT).await
}

/// Panics with `what`'s output unless it succeeded.
pub fn assert_succeeded(what: &str, finished: &Finished) {
    let outcome = match finished.status {
        Some(status) if status.success() => return,
        Some(status) => format!("failed with {status}"),
        None => format!("did not finish within {NODE_TIMEOUT:?}"),
    };
    panic!(
        "{what} in integrations/node {outcome}:\n--- stdout\n{}\n--- stderr\n{}",
        finished.stdout, finished.stderr
    );
}

/// The package directory with its dependencies installed, or `None`
/// (reported as a skip; a failure under CI=true) without node, npm or the
/// registry. Installs once per test process.
pub async fn installed_package() -> Option<PathBuf> {
    static INSTALLED: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    let installed = *INSTALLED.get_or_init(install).await;
    installed.then(package_dir)
}

async fn install() -> bool {
    for program in [NODE, "npm"] {
        if !found(program) {
            skip::skip_or_fail(&format!("`{program}` is not installed"));
            return false;
        }
    }
    // Its install script builds the native transport with cargo (release,
    // into native/target, where later runs find it built).
    let install = run("npm", &["ci", "--no-audit", "--no-fund"], &[]).await;
    if !install.status.is_some_and(|status| status.success()) {
        let said = format!("{}{}", install.stdout, install.stderr);
        if NETWORK_ERRORS.iter().any(|error| said.contains(error)) {
            skip::skip_or_fail("the npm registry is not reachable (npm ci in integrations/node)");
            return false;
        }
        assert_succeeded("npm ci", &install);
    }
    true
}
