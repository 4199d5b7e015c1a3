//! Keeps `deploy/` from rotting. Every `SESSIOND_*` variable, subcommand and
//! flag that the systemd unit, its environment file, the Dockerfile, the
//! Kubernetes manifests and the compose file use must exist in sessiond's
//! command line, read from `sessiond::cli::Cli` itself, and every value
//! they set must parse as sessiond parses it. Each file's own promises are
//! checked too: non-root, probes that reach the server, shutdown budgets
//! that cover the drain, selectors that pick the pods. The unit goes
//! through `systemd-analyze verify`; the configurations that need no
//! database server are opened with `Server::open`. The example alert rules
//! read only metrics a real server exports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "deploy/alerts.rs"]
mod alerts;
#[path = "deploy/cli.rs"]
mod cli;
#[path = "deploy/compose.rs"]
mod compose;
#[path = "deploy/image.rs"]
mod image;
#[path = "deploy/kube.rs"]
mod kube;
#[path = "deploy/kubernetes.rs"]
mod kubernetes;
#[path = "common/skip.rs"]
mod skip;
#[path = "deploy/systemd.rs"]
mod systemd;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cli::Surface;
use sessiond::Server;
use sessiond::cli::Command as Subcommand;

const UNIT: &str = "deploy/systemd/sessiond.service";
const ENV_EXAMPLE: &str = "deploy/systemd/sessiond.env.example";
const DOCKERFILE: &str = "deploy/Dockerfile";
const DOCKERIGNORE: &str = ".dockerignore";
const SIDECAR: &str = "deploy/kubernetes/sidecar.yaml";
const SHARED: &str = "deploy/kubernetes/shared-service.yaml";
const COMPOSE: &str = "deploy/compose.yaml";
const ALERTS: &str = "deploy/prometheus/alerts.yaml";

/// Every deployment file; each has a module of tests of its own.
const FILES: [&str; 8] = [
    UNIT,
    ENV_EXAMPLE,
    DOCKERFILE,
    DOCKERIGNORE,
    SIDECAR,
    SHARED,
    COMPOSE,
    ALERTS,
];

/// Where the Django integration reads its settings: names apps may set.
const CLIENT_SETTINGS_DIR: &str = "integrations/python/sessiond_django";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read(file: &str) -> String {
    std::fs::read_to_string(repo().join(file))
        .unwrap_or_else(|err| panic!("cannot read {file}: {err}"))
}

fn fail_on(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

fn listen_addr(value: &str, what: &str) -> SocketAddr {
    value
        .parse()
        .unwrap_or_else(|err| panic!("{what}: {value} is not IP:PORT: {err}"))
}

/// What sessiond needs in time to stop: the delay, then the drain.
fn shutdown_budget(surface: &Surface, env: &BTreeMap<String, String>) -> Duration {
    surface.duration(env, "SESSIOND_SHUTDOWN_DELAY")
        + surface.duration(env, "SESSIOND_DRAIN_TIMEOUT")
}

/// The same configuration on an SQLite file of a fresh temporary directory.
fn on_temporary_sqlite(env: &BTreeMap<String, String>, dir: &Path) -> BTreeMap<String, String> {
    let mut env = env.clone();
    let file = dir.join("sessions.sqlite3");
    env.insert(
        "SESSIOND_STORE".into(),
        format!("sqlite://{}", file.display()),
    );
    env
}

/// Opens (without listening) the server `env` configures.
async fn open(surface: &Surface, env: &BTreeMap<String, String>) -> Result<Server, String> {
    let cli = surface.parse("serve", env)?;
    let Subcommand::Serve(config) = cli.command else {
        panic!("not a serve configuration");
    };
    Server::open(config.into_config())
        .await
        .map_err(|err| format!("{:#}", anyhow::Error::new(err)))
}

#[test]
fn every_deploy_file_is_checked_and_in_the_readme() {
    let readme = read("README.md");
    let mut present = BTreeSet::new();
    let mut pending = vec![repo().join("deploy")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(repo()).unwrap();
                present.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut problems = Vec::new();
    for file in &present {
        if !FILES.contains(&file.as_str()) {
            problems.push(format!(
                "{file}: no checks for it; add them to server/tests/deploy.rs"
            ));
        }
    }
    for file in FILES {
        if !repo().join(file).is_file() {
            problems.push(format!("{file} is missing"));
        }
        if !readme.contains(file) {
            problems.push(format!("{file} is not mentioned in README.md"));
        }
    }
    fail_on(problems);
}

#[test]
fn every_variable_named_in_deploy_is_read_by_sessiond() {
    let surface = Surface::read();
    let mut client_settings = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join(CLIENT_SETTINGS_DIR)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "py") {
            client_settings.extend(cli::env_names(&std::fs::read_to_string(path).unwrap()));
        }
    }
    assert!(
        client_settings.contains("SESSIOND_ADDRESS"),
        "{CLIENT_SETTINGS_DIR} no longer reads SESSIOND_ADDRESS"
    );
    let mut problems = Vec::new();
    for file in FILES {
        for name in cli::env_names(&read(file)) {
            if !surface.reads(&name) && !client_settings.contains(&name) {
                problems.push(format!(
                    "{file}: {name} is neither a variable of `sessiond` nor a setting of {CLIENT_SETTINGS_DIR}"
                ));
            }
        }
    }
    fail_on(problems);
}

#[test]
fn every_sessiond_command_in_deploy_exists() {
    let surface = Surface::read();
    let mut problems = Vec::new();
    for file in FILES {
        let text = read(file);
        problems.extend(surface.check_invocations(file, &text));
        let found = text.lines().flat_map(cli::invocations).count();
        if [UNIT, DOCKERFILE, SIDECAR, SHARED].contains(&file) && found == 0 {
            problems.push(format!("{file}: no `sessiond` command found in it"));
        }
    }
    fail_on(problems);
}
