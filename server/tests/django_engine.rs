//! The Python side, `integrations/python`: the Django session engine on
//! sessiond, checked by Django's own session tests, by the example site's
//! login and logout, and by installing the package as pip would.
//!
//! Each test starts a real sessiond on 127.0.0.1:0 and runs Python from a
//! virtualenv built from PyPI under the target directory (once; later runs
//! reuse it, and Django's sources beside it). Without python3 or PyPI the
//! tests print `SKIPPED:` and pass, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::TestServer;
use common::python::{self, integration_dir};

/// The Python packages of the distribution `sessiond-client`
/// (integrations/python/pyproject.toml); the build adds the stubs.
const PACKAGES: [&str; 4] = [
    "sessiond_client",
    "sessiond_django",
    "flask_sessiond",
    "sessiond_asgi",
];

/// Each Python run takes seconds; the bound is for a wedged one.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(300);

/// Lines of the suite's closing summary (integrations/python/tests/sessiond_tests/runner.py).
const SUMMARY_PREFIX: &str = "sessiond-suite: ";

fn venv() -> Option<PathBuf> {
    python::django_venv()
}

/// Writes to the process's stderr, which the test harness does not capture:
/// the counts show in every `cargo test` run, not only in failing ones.
fn report(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

struct Output {
    stdout: String,
    stderr: String,
}

/// Runs the virtualenv's Python with `args` in `cwd`; panics with its output
/// unless it exits with 0 within [`PYTHON_TIMEOUT`].
async fn run_python(venv: &Path, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(venv.join("bin/python"));
    command
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().copied());
    let finished = python::run_to_end(command, PYTHON_TIMEOUT).await;
    let output = Output {
        stdout: finished.stdout,
        stderr: finished.stderr,
    };
    let outcome = match finished.status {
        Some(status) if status.success() => return output,
        Some(status) => format!("failed with {status}"),
        None => format!("did not finish within {PYTHON_TIMEOUT:?}"),
    };
    panic!(
        "python {args:?} in {} {outcome}\n--- stdout\n{}\n--- stderr\n{}",
        cwd.display(),
        output.stdout,
        output.stderr
    );
}

/// `tests/` of Django's source distribution at the pinned version, which
/// holds `sessions_tests` and `runtests.py`; downloaded once into the target
/// directory. `None` (skipped loudly; a failure under CI=true) without PyPI.
fn django_test_tree(venv: &Path) -> Option<PathBuf> {
    let version = python::DJANGO.trim_start_matches("django==");
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("django-sdist");
    let ready = root.join(format!("django-{version}"));
    if ready.join("tests/runtests.py").is_file() {
        return Some(ready.join("tests"));
    }
    std::fs::create_dir_all(&root).unwrap();
    // Unpacked aside and renamed into place, as the virtualenv is.
    let building = root.join(format!("building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let unpack = "import pathlib, sys, tarfile\n\
                  d = pathlib.Path(sys.argv[1])\n\
                  for p in d.glob('*.tar.gz'):\n    \
                      tarfile.open(p).extractall(d, filter='data')";
    // `python -m pip`, not `bin/pip`: the virtualenv was built under another
    // name, which its scripts' `#!` lines still hold.
    let fetched = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--no-binary", ":all:", "--dest"])
        .arg(&building)
        .arg(python::DJANGO)
        .status()
        .is_ok_and(|status| status.success())
        && Command::new(venv.join("bin/python"))
            .args(["-c", unpack])
            .arg(&building)
            .status()
            .is_ok_and(|status| status.success());
    let unpacked = building.join(format!("django-{version}"));
    if !fetched || !unpacked.join("tests/runtests.py").is_file() {
        let _ = std::fs::remove_dir_all(&building);
        python::skip_or_fail(&format!(
            "cannot download and unpack the source distribution of {} (pip download)",
            python::DJANGO
        ));
        return None;
    }
    if std::fs::rename(&unpacked, &ready).is_err() && !ready.join("tests/runtests.py").is_file() {
        panic!("cannot move Django's sources to {}", ready.display());
    }
    let _ = std::fs::remove_dir_all(&building);
    Some(ready.join("tests"))
}

/// One class's line of the suite's summary.
#[derive(Debug)]
struct ClassOutcome {
    class: String,
    ok: u32,
    skipped: u32,
    expected_failures: u32,
    failed: u32,
}

fn parse_summary(stdout: &str) -> Vec<ClassOutcome> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix(SUMMARY_PREFIX))
        .map(|line| {
            let (class, counts) = line.split_once(": ").unwrap();
            let count = |name: &str| -> u32 {
                counts
                    .split(", ")
                    .find_map(|part| part.strip_prefix(name)?.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no {name:?} in {line:?}"))
            };
            ClassOutcome {
                class: class.to_owned(),
                ok: count("ok"),
                skipped: count("skipped"),
                expected_failures: count("expected failures"),
                failed: count("failed"),
            }
        })
        .collect()
}

/// The bearer token the suite's sessiond requires.
const TOKEN: &str = "django-suite-token-0123456789";

#[tokio::test]
async fn djangos_session_suite_passes_on_sessiond() {
    let Some(venv) = venv() else { return };
    let Some(django_tests) = django_test_tree(&venv) else {
        return;
    };
    // runtests.py runs the apps beside it: link ours in (again, in case the
    // checkout moved).
    let app = django_tests.join("sessiond_tests");
    let _ = std::fs::remove_file(&app);
    std::os::unix::fs::symlink(integration_dir().join("tests/sessiond_tests"), &app)
        .or_else(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(error),
        })
        .unwrap();
    let stubs = tempfile::tempdir().unwrap();
    let engine_path = python::checkout_path(&venv, stubs.path()).await;

    // With a token required, as a shared sessiond runs: every call of the
    // engine must carry it.
    let server = TestServer::start_with(&["--token", TOKEN]).await;
    let address = server.addr.to_string();
    let output = run_python(
        &venv,
        &django_tests,
        &[
            "runtests.py",
            "--settings=sessiond_tests.settings",
            "--parallel=1",
            "--verbosity=2",
            "sessiond_tests",
            // Installs sessions_tests, whose module our tests import (its
            // models need the app installed), without running its tests:
            // this module of it holds none.
            "sessions_tests.no_clear_expired",
        ],
        &[
            ("PYTHONPATH", &engine_path),
            ("SESSIOND_ADDRESS", &address),
            ("SESSIOND_TOKEN", TOKEN),
            // The recovery test stops and restarts a sessiond of its own.
            ("SESSIOND_BIN", env!("CARGO_BIN_EXE_sessiond")),
        ],
    )
    .await;
    server.stop().await;

    let outcomes = parse_summary(&output.stdout);
    let mut text = String::from("Django's session tests on sessiond (integrations/python):\n");
    for outcome in &outcomes {
        text += &format!(
            "  {}: ok {}, skipped {}, expected failures {}, failed {}\n",
            outcome.class, outcome.ok, outcome.skipped, outcome.expected_failures, outcome.failed
        );
    }
    let ran = output
        .stderr
        .lines()
        .find(|line| line.starts_with("Ran "))
        .unwrap_or("no \"Ran N tests\" line");
    text += &format!("  {ran}\n");
    report(&text);

    let stderr = &output.stderr;
    for outcome in &outcomes {
        assert_eq!(outcome.failed, 0, "{outcome:?}\n{stderr}");
        // Nothing is skipped or expected to fail; a change in Django that
        // makes a test so must be looked at and explained.
        assert_eq!(outcome.skipped, 0, "{outcome:?}\n{stderr}");
        assert_eq!(outcome.expected_failures, 0, "{outcome:?}\n{stderr}");
    }
    for class in ["SessiondSessionTests", "SessiondSessionWithTimeZoneTests"] {
        let outcome = outcomes
            .iter()
            .find(|outcome| outcome.class.ends_with(&format!(".{class}")))
            .unwrap_or_else(|| panic!("{class} did not run:\n{stderr}"));
        // SessionTestsMixin holds 65 tests in Django 5.2; two of ours follow.
        assert!(outcome.ok >= 65, "{outcome:?}");
    }
    let middleware = outcomes
        .iter()
        .find(|outcome| outcome.class.ends_with(".SessiondMiddlewareTests"))
        .unwrap_or_else(|| panic!("the middleware tests did not run:\n{stderr}"));
    assert!(middleware.ok >= 12, "{middleware:?}");
}

#[tokio::test]
async fn example_site_logs_in_and_out_with_sessions_on_sessiond() {
    let Some(venv) = venv() else { return };
    let stubs = tempfile::tempdir().unwrap();
    let engine_path = python::checkout_path(&venv, stubs.path()).await;

    let server = TestServer::start().await;
    let address = server.addr.to_string();
    let output = run_python(
        &venv,
        &integration_dir().join("example"),
        &["manage.py", "test", "--verbosity=2", "--noinput"],
        &[("PYTHONPATH", &engine_path), ("SESSIOND_ADDRESS", &address)],
    )
    .await;
    server.stop().await;

    let ran = output
        .stderr
        .lines()
        .find(|line| line.starts_with("Ran "))
        .unwrap_or_else(|| panic!("no \"Ran N tests\" line:\n{}", output.stderr));
    report(&format!(
        "example site (integrations/python/example) on sessiond: {ran}, OK\n"
    ));
    assert!(!ran.starts_with("Ran 0 "), "{}", output.stderr);
}

/// Copies a directory tree, leaving out Python's byte-code caches.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

#[tokio::test]
async fn the_package_installs_with_stubs_generated_from_the_proto() {
    let Some(venv) = venv() else { return };
    // A copy of the checkout's layout (the build hook finds ../../proto), so
    // the build leaves nothing in the worktree.
    let checkout = tempfile::tempdir().unwrap();
    let package = checkout.path().join("integrations/python");
    let repo = integration_dir().join("../..");
    copy_tree(&repo.join("proto"), &checkout.path().join("proto"));
    for module in PACKAGES {
        copy_tree(&integration_dir().join(module), &package.join(module));
    }
    // The native module's crate, without its build output.
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::create_dir_all(package.join("native")).unwrap();
        std::fs::copy(
            integration_dir().join("native").join(file),
            package.join("native").join(file),
        )
        .unwrap();
    }
    copy_tree(
        &integration_dir().join("native/src"),
        &package.join("native/src"),
    );
    for file in ["pyproject.toml", "setup.py", "README.md", "MANIFEST.in"] {
        std::fs::copy(integration_dir().join(file), package.join(file)).unwrap();
    }
    let site = checkout.path().join("site-packages");

    // No index: the build runs on the virtualenv's setuptools,
    // setuptools-rust and grpcio-tools (cargo fetches the native module's
    // crates, or finds them in its cache).
    let pip = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-index",
        "--no-build-isolation",
        "--target",
        site.to_str().unwrap(),
        package.to_str().unwrap(),
    ];
    let target_dir = python::native_install_target_dir();
    run_python(
        &venv,
        checkout.path(),
        &pip,
        &[("CARGO_TARGET_DIR", target_dir.to_str().unwrap())],
    )
    .await;
    for installed in [
        "sessiond_client/session.py",
        "sessiond_client/py.typed",
        "sessiond_django/session_store.py",
        "flask_sessiond/__init__.py",
        "sessiond_asgi/__init__.py",
        "sessiond/v1/sessiond_pb2.py",
        "sessiond/v1/sessiond_pb2_grpc.py",
        "sessiond/_native.abi3.so",
    ] {
        assert!(site.join(installed).is_file(), "{installed} not installed");
    }

    // Only the neutral client: the frameworks of the extras are not
    // installed with --no-deps (Django is, in this virtualenv).
    let import = "import sessiond_client.session as c, sessiond_django.session_store as s\n\
                  import sessiond.v1.sessiond_pb2_grpc as g\n\
                  print(c.__file__)\nprint(s.__file__)\nprint(g.__file__)";
    let output = run_python(
        &venv,
        checkout.path(),
        &["-c", import],
        &[("PYTHONPATH", site.to_str().unwrap())],
    )
    .await;
    for line in output.stdout.lines() {
        assert!(Path::new(line).starts_with(&site), "imported {line}");
    }
}
