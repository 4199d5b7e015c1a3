//! The two ways into the Python package (with its Django engine) that
//! `integrations/python/README.md` documents, each taken from a fresh virtualenv by running its code block
//! as written: installing the package (`## Install`), and working from the
//! checkout without installing it (`### Working on it without installing`).
//! Each then runs the example site's tests against a real sessiond. A
//! third test builds the sdist and installs it away from the checkout: it
//! must carry the proto its build generates the stubs from, and the native
//! module's crate with its Cargo.lock.
//!
//! The blocks run with `sh -e` at the root of a copy of the checkout (so
//! pip's in-tree build and the generated stubs stay out of the worktree),
//! with the virtualenv's `bin` first on `PATH`; pip's cache is shared, so
//! later runs download nothing. Without python3 or PyPI the tests print
//! `SKIPPED:` and pass, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{TestServer, python};
use tempfile::TempDir;

/// A virtualenv, a pip install with its isolated build and the example's
/// tests take a minute at most with pip's cache; the bound is for a wedged
/// one.
const STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// The build frontend the sdist is made with, as a publisher would make it.
const BUILD: &str = "build==1.6.1";

/// The modules of the package, each of which ships `py.typed`.
const MODULES: [&str; 4] = [
    "sessiond_client",
    "sessiond_django",
    "flask_sessiond",
    "sessiond_asgi",
];

const INSTALL_HEADING: &str = "## Install";
const CHECKOUT_HEADING: &str = "### Working on it without installing";
const ROOT_HEADING: &str = "## Python apps: Django, Flask, FastAPI";

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The first ```sh block after the line `heading` of `readme`.
fn sh_block(readme: &str, heading: &str) -> String {
    let (_, after) = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading:?} heading"));
    let (_, block) = after
        .split_once("```sh\n")
        .unwrap_or_else(|| panic!("no sh block after {heading:?}"));
    let (block, _) = block.split_once("```").unwrap();
    block.to_owned()
}

fn package_readme() -> String {
    std::fs::read_to_string(repo_dir().join("integrations/python/README.md")).unwrap()
}

/// A copy of what a fresh checkout holds of the proto and the Python
/// package: without stubs generated in place, builds, or byte code.
fn checkout_copy() -> TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let name_str = name.to_string_lossy();
            let generated = ["__pycache__", "build", "db.sqlite3", "target"].contains(&&*name_str)
                || name_str.ends_with(".egg-info")
                || (from.ends_with("integrations/python") && name_str == "sessiond");
            if generated {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(&name));
            } else {
                std::fs::copy(entry.path(), to.join(&name)).unwrap();
            }
        }
    }
    let checkout = tempfile::tempdir().unwrap();
    let repo = repo_dir();
    copy(&repo.join("proto"), &checkout.path().join("proto"));
    copy(
        &repo.join("integrations/python"),
        &checkout.path().join("integrations/python"),
    );
    checkout
}

/// A new, empty virtualenv under the target directory, or `None` (printed
/// loudly; a failure under CI=true) without python3 or PyPI.
async fn fresh_venv() -> Option<TempDir> {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fresh-venvs");
    std::fs::create_dir_all(&root).unwrap();
    let venv = tempfile::tempdir_in(&root).unwrap();
    let made = tokio::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv.path())
        .status()
        .await
        .is_ok_and(|status| status.success());
    if !made {
        python::skip_or_fail("cannot make a virtualenv (python3 -m venv)");
        return None;
    }
    // PyPI answers (and pip's cache holds the build requirement); otherwise
    // a failing block would say nothing about the README.
    let scratch = tempfile::tempdir().unwrap();
    let reachable = tokio::process::Command::new(venv.path().join("bin/python"))
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--dest"])
        .arg(scratch.path())
        .arg("grpcio-tools==1.85.1")
        .stdout(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success());
    if !reachable {
        python::skip_or_fail("PyPI is not reachable (pip download grpcio-tools)");
        return None;
    }
    Some(venv)
}

struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `script` with `sh -e` in `cwd`, as a user of the virtualenv `venv`
/// would (its `bin` first on `PATH`), within [`STEP_TIMEOUT`].
async fn sh(venv: &Path, cwd: &Path, script: &str, env: &[(&str, &str)]) -> Outcome {
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = tokio::process::Command::new("sh");
    command
        .args(["-e", "-c", script])
        .current_dir(cwd)
        .env("PATH", path)
        .env("VIRTUAL_ENV", venv)
        // setuptools-rust asks cargo where the target directory is.
        .env("CARGO_TARGET_DIR", python::native_install_target_dir())
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .envs(env.iter().copied());
    let finished = python::run_to_end(command, STEP_TIMEOUT).await;
    let Some(status) = finished.status else {
        panic!(
            "{script:?} in {} did not finish within {STEP_TIMEOUT:?}\n--- stdout\n{}\n--- stderr\n{}",
            cwd.display(),
            finished.stdout,
            finished.stderr
        );
    };
    Outcome {
        success: status.success(),
        stdout: finished.stdout,
        stderr: finished.stderr,
    }
}

/// [`sh`], which must succeed.
async fn sh_ok(venv: &Path, cwd: &Path, script: &str, env: &[(&str, &str)]) -> Outcome {
    let outcome = sh(venv, cwd, script, env).await;
    assert!(
        outcome.success,
        "{script:?} in {} failed\n--- stdout\n{}\n--- stderr\n{}",
        cwd.display(),
        outcome.stdout,
        outcome.stderr
    );
    outcome
}

/// The example site's tests (login, logout, the async session API) on the
/// engine, against a sessiond of their own.
async fn example_site_passes(venv: &Path, checkout: &Path, env: &[(&str, &str)]) {
    let server = TestServer::start().await;
    let address = server.addr.to_string();
    let mut env = env.to_vec();
    env.push(("SESSIOND_ADDRESS", &address));
    let outcome = sh_ok(
        venv,
        &checkout.join("integrations/python/example"),
        "python manage.py test --noinput --verbosity=2",
        &env,
    )
    .await;
    server.stop().await;
    let ran = outcome.stderr.lines().find(|line| line.starts_with("Ran "));
    assert!(
        ran.is_some_and(|ran| !ran.starts_with("Ran 0 ")),
        "{}",
        outcome.stderr
    );
}

#[test]
fn the_root_readme_shows_the_same_install_step() {
    let install = sh_block(&package_readme(), INSTALL_HEADING);
    // The top-level README shows the same way in, and no step after it.
    let root = std::fs::read_to_string(repo_dir().join("README.md")).unwrap();
    assert_eq!(sh_block(&root, ROOT_HEADING), install);
    let (_, django_section) = root.split_once(&format!("\n{ROOT_HEADING}\n")).unwrap();
    let django_section = django_section.split("\n## ").next().unwrap();
    assert!(
        !django_section.contains(".generate"),
        "the Django section of README.md asks for a generate step after the install"
    );
}

#[tokio::test]
async fn the_install_steps_of_the_readme_are_all_it_takes() {
    let install = sh_block(&package_readme(), INSTALL_HEADING);
    let Some(venv) = fresh_venv().await else {
        return;
    };
    let checkout = checkout_copy();
    sh_ok(venv.path(), checkout.path(), &install, &[]).await;

    // Imported from the virtualenv, stubs and native module included:
    // nothing of the checkout is on the path of a script run from elsewhere,
    // and the blocking client runs on the native module.
    let elsewhere = tempfile::tempdir().unwrap();
    let imported = sh_ok(
        venv.path(),
        elsewhere.path(),
        "python -c 'import sessiond_client.session as c, sessiond_django.session_store as s, sessiond.v1.sessiond_pb2_grpc as g, sessiond._native as n, sessiond_client.transport as t; assert t.NATIVE; print(c.__file__); print(s.__file__); print(g.__file__); print(n.__file__)'",
        &[],
    )
    .await;
    for line in imported.stdout.lines() {
        assert!(
            Path::new(line).starts_with(venv.path()),
            "imported {line}, not from the virtualenv"
        );
    }
    example_site_passes(venv.path(), checkout.path(), &[]).await;

    // The generator, which an installed package does not need, says what
    // it lacks instead of a bare ModuleNotFoundError.
    let generate = sh(
        venv.path(),
        &checkout.path().join("integrations/python"),
        "python -m sessiond_client.generate",
        &[],
    )
    .await;
    assert!(!generate.success, "{}", generate.stdout);
    for expected in ["pip install grpcio-tools==", "needs no generate step"] {
        assert!(
            generate.stderr.contains(expected),
            "no {expected:?} in:\n{}",
            generate.stderr
        );
    }
    assert!(
        !generate.stderr.contains("Traceback"),
        "{}",
        generate.stderr
    );
}

#[tokio::test]
async fn the_checkout_steps_of_the_readme_are_all_it_takes() {
    let steps = sh_block(&package_readme(), CHECKOUT_HEADING);
    let Some(venv) = fresh_venv().await else {
        return;
    };
    let checkout = checkout_copy();
    sh_ok(venv.path(), checkout.path(), &steps, &[]).await;

    let package = checkout.path().join("integrations/python");
    let package = package.to_str().unwrap();
    example_site_passes(venv.path(), checkout.path(), &[("PYTHONPATH", package)]).await;
}

#[tokio::test]
async fn the_sdist_carries_the_proto_and_installs_away_from_the_checkout() {
    let Some(venv) = fresh_venv().await else {
        return;
    };
    let checkout = checkout_copy();
    let dist = tempfile::tempdir().unwrap();
    let dist_dir = dist.path().to_str().unwrap();
    sh_ok(
        venv.path(),
        &checkout.path().join("integrations/python"),
        &format!(
            "python -m pip install --quiet --disable-pip-version-check {BUILD}\n\
             python -m build --sdist --outdir {dist_dir} ."
        ),
        &[],
    )
    .await;
    // Nothing of the checkout is left to find a proto in.
    drop(checkout);
    let sdist = std::fs::read_dir(dist.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().ends_with(".tar.gz"))
        .expect("python -m build --sdist wrote no .tar.gz");
    let elsewhere = tempfile::tempdir().unwrap();
    sh_ok(
        venv.path(),
        elsewhere.path(),
        &format!(
            "python -m pip install --quiet --disable-pip-version-check {}",
            sdist.display()
        ),
        &[],
    )
    .await;

    // The stubs were generated from the sdist's proto, and every module
    // says it is typed (found, not imported: the frameworks are extras).
    let script = format!(
        "import importlib.util, pathlib, sessiond.v1.sessiond_pb2_grpc as g, sessiond._native as n\n\
         print(g.__file__)\n\
         print(n.__file__)\n\
         for module in {MODULES:?}:\n    \
         origin = pathlib.Path(importlib.util.find_spec(module).origin)\n    \
         print(module, (origin.parent / 'py.typed').is_file())"
    );
    std::fs::write(elsewhere.path().join("check.py"), script).unwrap();
    let imported = sh_ok(venv.path(), elsewhere.path(), "python check.py", &[]).await;
    let mut lines = imported.stdout.lines();
    for built in [lines.next(), lines.next()] {
        let built = built.unwrap_or_default();
        assert!(
            Path::new(built).starts_with(venv.path()),
            "imported {built}, not from the virtualenv"
        );
    }
    let typed: Vec<&str> = lines.collect();
    let expected: Vec<String> = MODULES
        .iter()
        .map(|module| format!("{module} True"))
        .collect();
    assert_eq!(typed, expected);
}
