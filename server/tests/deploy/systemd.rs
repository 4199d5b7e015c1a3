//! The systemd unit and its environment file: read into settings, checked
//! against the command line, and verified by `systemd-analyze`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use super::cli::{self, Surface};
use super::{
    ENV_EXAMPLE, UNIT, fail_on, listen_addr, on_temporary_sqlite, open, read, shutdown_budget,
};

#[derive(Debug)]
pub struct Setting {
    pub section: String,
    pub key: String,
    pub value: String,
}

#[derive(Debug)]
pub struct Unit {
    pub settings: Vec<Setting>,
}

impl Unit {
    pub fn parse(text: &str) -> Self {
        let mut settings = Vec::new();
        let mut section = String::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            assert!(
                !line.ends_with('\\'),
                "line {}: continuation lines are not read by this test",
                index + 1
            );
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("line {}: not KEY=VALUE: {line}", index + 1));
            settings.push(Setting {
                section: section.clone(),
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            });
        }
        Self { settings }
    }

    /// Every value of `key` in `section`, in order.
    pub fn values(&self, section: &str, key: &str) -> impl Iterator<Item = &str> {
        let (section, key) = (section.to_owned(), key.to_owned());
        self.settings
            .iter()
            .filter(move |setting| setting.section == section && setting.key == key)
            .map(|setting| setting.value.as_str())
    }

    /// The value in force: the last one.
    pub fn value(&self, section: &str, key: &str) -> Option<&str> {
        self.values(section, key).last()
    }

    /// The variables set by `Environment=` lines (unquoted NAME=value words).
    pub fn environment(&self) -> BTreeMap<String, String> {
        self.values("Service", "Environment")
            .flat_map(str::split_whitespace)
            .map(|word| {
                let (name, value) = word
                    .split_once('=')
                    .unwrap_or_else(|| panic!("Environment={word}: not NAME=value"));
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }
}

#[test]
fn the_unit_is_hardened_and_outlasts_the_drain() {
    let surface = Surface::read();
    let unit = Unit::parse(&read(UNIT));
    let service = |key: &str| unit.value("Service", key);

    let exec: Vec<&str> = service("ExecStart").unwrap().split_whitespace().collect();
    assert_eq!(exec[..2], ["/usr/local/bin/sessiond", "serve"]);
    assert!(
        service("ExecReload").is_some_and(|reload| reload.ends_with("kill -HUP $MAINPID")),
        "ExecReload should send SIGHUP, which rereads --tokens-file"
    );
    assert_eq!(service("KillSignal"), Some("SIGTERM"));
    assert_eq!(service("Restart"), Some("on-failure"));
    // sessiond says READY=1 itself (sd_notify), once it listens.
    assert_eq!(service("Type"), Some("notify"));
    assert!(
        matches!(service("NotifyAccess"), None | Some("main")),
        "only sessiond itself sends the notices"
    );
    assert_eq!(
        service("EnvironmentFile"),
        Some("-/etc/sessiond/sessiond.env")
    );

    let env = unit.environment();
    fail_on(
        env.iter()
            .filter_map(|(name, value)| surface.check_value(name, value).err())
            .collect(),
    );
    let stop = cli::parse_seconds(service("TimeoutStopSec").unwrap()).unwrap();
    let budget = shutdown_budget(&surface, &env);
    assert!(
        stop > budget,
        "TimeoutStopSec ({stop:?}) must exceed SESSIOND_SHUTDOWN_DELAY + SESSIOND_DRAIN_TIMEOUT ({budget:?})"
    );

    // The unit sets no token, so it stays on loopback.
    let listen = listen_addr(&env["SESSIOND_LISTEN"], UNIT);
    assert!(
        listen.ip().is_loopback(),
        "{UNIT} should listen on loopback"
    );

    // The SQLite file lives in the state directory systemd makes for it.
    let state = service("StateDirectory").unwrap();
    let store = &env["SESSIOND_STORE"];
    assert!(
        store.starts_with(&format!("sqlite:///var/lib/{state}/")),
        "SESSIOND_STORE={store} is outside StateDirectory={state}"
    );
    assert_eq!(service("WorkingDirectory"), Some("/var/lib/sessiond"));

    let dynamic = service("DynamicUser") == Some("yes");
    let user = service("User");
    assert!(
        dynamic || user.is_some_and(|user| user != "root" && user != "0"),
        "the unit must run as DynamicUser=yes or a dedicated User="
    );
    let mut problems = Vec::new();
    for (key, expected) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        if service(key) != Some(expected) {
            problems.push(format!(
                "{key}={expected} expected, found {:?}",
                service(key)
            ));
        }
    }
    if !unit
        .values("Service", "SystemCallFilter")
        .any(|filter| filter == "@system-service")
    {
        problems.push("SystemCallFilter=@system-service expected".into());
    }
    fail_on(problems);
}

/// The exit code of `sessiond serve` with `env` and nothing else.
fn exit_code_of_serve(env: &[(&str, &str)]) -> Option<i32> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SESSIOND_") || name == "NOTIFY_SOCKET" {
            command.env_remove(name);
        }
    }
    let output = command
        .arg("serve")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    output.status.code()
}

#[test]
fn restarts_stop_at_configuration_errors_only() {
    let unit = Unit::parse(&read(UNIT));
    let prevented: BTreeSet<i32> = unit
        .values("Service", "RestartPreventExitStatus")
        .flat_map(str::split_whitespace)
        .map(|status| {
            status
                .parse()
                .unwrap_or_else(|_| panic!("RestartPreventExitStatus={status}: a number expected"))
        })
        .collect();
    assert!(
        !prevented.is_empty(),
        "{UNIT}: no RestartPreventExitStatus="
    );
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("db.sqlite3").display());
    let unreachable = format!(
        "sqlite://{}",
        dir.path().join("not/yet/mounted.sqlite3").display()
    );
    let mut problems = Vec::new();
    // Settings that will never work: no restart.
    for (what, env) in [
        ("an unknown value", vec![("SESSIOND_LOG_FORMAT", "xml")]),
        (
            "a network address without authentication",
            vec![
                ("SESSIOND_STORE", &*store),
                ("SESSIOND_LISTEN", "0.0.0.0:0"),
            ],
        ),
        (
            "the django codec without its secret",
            vec![("SESSIOND_STORE", &*store), ("SESSIOND_CODEC", "django")],
        ),
    ] {
        let code = exit_code_of_serve(&env);
        if !code.is_some_and(|code| prevented.contains(&code)) {
            problems.push(format!(
                "{what} exits {code:?}, which RestartPreventExitStatus= {prevented:?} does not list"
            ));
        }
    }
    // A store that may come back: restarted.
    let code = exit_code_of_serve(&[("SESSIOND_STORE", &unreachable)]);
    if code.is_none_or(|code| code == 0 || prevented.contains(&code)) {
        problems.push(format!(
            "a store that cannot be opened yet exits {code:?}: systemd would not try again"
        ));
    }
    fail_on(problems);
}

/// What `systemd-analyze verify` says about `unit_text`, installed as
/// sessiond.service in `dir` with ExecStart on the built binary.
fn systemd_verify(unit_text: &str, dir: &Path) -> Vec<String> {
    let binary = env!("CARGO_BIN_EXE_sessiond");
    let text = unit_text.replace(
        "ExecStart=/usr/local/bin/sessiond ",
        &format!("ExecStart={binary} "),
    );
    assert_ne!(text, unit_text, "ExecStart was not rewritten");
    let path = dir.join("sessiond.service");
    std::fs::write(&path, text).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Warnings about other units it loads are not this file's concern.
    let mut problems: Vec<String> = printed
        .lines()
        .filter(|line| line.contains("sessiond.service"))
        .map(str::to_owned)
        .collect();
    if !output.status.success() {
        problems.push(format!("systemd-analyze verify failed: {printed}"));
    }
    problems
}

#[test]
fn analyze_verifies_the_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::skip::skip_or_fail(&format!(
            "systemd-analyze is not installed, so {UNIT} was not verified"
        ));
        return;
    }
    let unit_text = read(UNIT);
    let dir = tempfile::tempdir().unwrap();
    fail_on(systemd_verify(&unit_text, dir.path()));

    // The check itself must see a warning that does not fail the command.
    let broken = unit_text.replace("ProtectSystem=", "ProtectSystm=");
    let dir = tempfile::tempdir().unwrap();
    let problems = systemd_verify(&broken, dir.path());
    assert!(
        problems.iter().any(|line| line.contains("ProtectSystm")),
        "a misspelt key went unnoticed: {problems:?}"
    );
}

#[tokio::test]
async fn the_unit_configuration_opens_a_server() {
    let surface = Surface::read();
    let unit = Unit::parse(&read(UNIT));
    let dir = tempfile::tempdir().unwrap();
    let env = on_temporary_sqlite(&unit.environment(), dir.path());
    open(&surface, &env).await.unwrap();
}

#[test]
fn the_environment_file_documents_every_serve_variable() {
    let surface = Surface::read();
    let text = read(ENV_EXAMPLE);
    let mut documented = BTreeSet::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let place = format!("{ENV_EXAMPLE}:{}", index + 1);
        let line = line.trim();
        let (commented, body) = match line.strip_prefix('#') {
            Some(body) => (true, body.trim_start()),
            None => (false, line),
        };
        let assignment = body.split_once('=').filter(|(name, _)| {
            name.len() > 1
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        let Some((name, value)) = assignment else {
            if !commented && !line.is_empty() {
                problems.push(format!("{place}: neither a comment nor NAME=value"));
            }
            continue;
        };
        if !surface.reads(name) {
            problems.push(format!("{place}: sessiond does not read {name}"));
            continue;
        }
        documented.insert(name.to_owned());
        if !value.is_empty()
            && let Err(err) = surface.check_value(name, value)
        {
            problems.push(format!("{place}: {err}"));
        }
    }
    for name in surface.serve_env.iter().chain([&"RUST_LOG".to_owned()]) {
        if !documented.contains(name) {
            problems.push(format!(
                "{ENV_EXAMPLE}: {name} (a variable of `sessiond serve`) is not documented"
            ));
        }
    }
    fail_on(problems);
}
