//! Virtualenvs from PyPI for the tests that run real Django, made once per
//! set of requirements under the target directory and reused by later runs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Django 5.2 LTS runs on the machine's default Python 3.11; its session
/// format is byte-identical to Django 4.2 through 6.1.
pub const DJANGO: &str = "django==5.2.19";
/// Written last into a finished virtualenv: one without it was cut short.
const INSTALLED: &str = "sessiond-installed.txt";

pub const PSYCOPG: &str = "psycopg[binary]==3.3.9";

/// The gRPC runtime the Python package is tested with; grpcio-tools fixes
/// the grpcio and protobuf that its generated code needs (see
/// integrations/python/pyproject.toml).
pub const GRPCIO: &str = "grpcio==1.85.1";
pub const GRPCIO_TOOLS: &str = "grpcio-tools==1.85.1";
pub const PROTOBUF: &str = "protobuf==7.36.2";
/// The build backend of the package's build hook, pinned as well, and what
/// builds its native module (integrations/python/pyproject.toml).
pub const SETUPTOOLS: &str = "setuptools==84.2.1";
pub const SETUPTOOLS_RUST: &str = "setuptools-rust==1.13.0";

/// What the Django engine's tests run on: Django, the gRPC runtime, the
/// stub generator and the build backend, in one virtualenv they share.
pub fn django_venv() -> Option<PathBuf> {
    venv(&[
        DJANGO,
        GRPCIO,
        GRPCIO_TOOLS,
        PROTOBUF,
        SETUPTOOLS,
        SETUPTOOLS_RUST,
    ])
}

/// The frameworks of the package's `[flask]` and `[asgi]` extras, the ASGI
/// server their tests serve Starlette with, and the test runner.
pub const FLASK: &str = "flask==3.1.3";
pub const STARLETTE: &str = "starlette==1.10.0";
pub const UVICORN: &str = "uvicorn==0.54.0";
pub const PYTEST: &str = "pytest==9.2.0";

/// A virtualenv with `requirements` installed, or `None` (printed loudly;
/// a failure under CI=true) when Python or PyPI is not available.
///
/// Run its tools as `bin/python -m pip`: the virtualenv is built under
/// another name and renamed, and scripts such as `bin/pip` keep the old
/// path in their `#!` line.
pub fn venv(requirements: &[&str]) -> Option<PathBuf> {
    let name = requirements
        .iter()
        .map(|r| r.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "_"))
        .collect::<Vec<_>>()
        .join("-");
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("venvs");
    let ready = root.join(&name);
    if ready.join(INSTALLED).exists() {
        return Some(ready);
    }
    std::fs::create_dir_all(&root).ok()?;
    // Built aside and renamed into place, so concurrent tests never see a
    // half-built one; the loser of a race removes its copy.
    // Tests of one binary build one at a time and then find it ready; other
    // processes build under their own name.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if ready.join(INSTALLED).exists() {
        return Some(ready);
    }
    let building = root.join(format!("{name}.building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&building)
        .status()
        .is_ok_and(|status| status.success())
        && Command::new(building.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(requirements)
            .status()
            .is_ok_and(|status| status.success());
    if !made {
        let _ = std::fs::remove_dir_all(&building);
        skip_or_fail(&format!(
            "cannot build a virtualenv with {requirements:?} (python3 -m venv, pip install)"
        ));
        return None;
    }
    let _ = std::fs::write(building.join(INSTALLED), requirements.join("\n"));
    if ready.exists() && !ready.join(INSTALLED).exists() {
        // A build cut short by an earlier run.
        let _ = std::fs::remove_dir_all(&ready);
    }
    if std::fs::rename(&building, &ready).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    Some(ready)
}

/// Python or PyPI is missing: fails under CI=true, where both must be there;
/// elsewhere reports the skip, so the caller can return.
pub fn skip_or_fail(why: &str) {
    super::skip::skip_or_fail(why);
}

/// Runs `script` with the virtualenv's Python, `args` after it; panics with
/// its output if it fails, returns its standard output.
pub fn run(venv: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python failed:\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// How a child process of [`run_to_end`] ended, and what it said.
pub struct Finished {
    /// `None`: it did not end within the timeout and was killed.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` as every Python step of these tests runs: with no
/// `DJANGO_SETTINGS_MODULE` (steps name their settings on the command
/// line, and a developer's own must not leak in), writing no bytecode, with gRPC's core
/// quiet (it logs connection chatter at INFO on stderr), no stdin, killed
/// after `timeout`. Its output goes to files, not pipes: nothing has to
/// drain them while it runs, and they keep what a wedged child said before
/// it was killed.
pub async fn run_to_end(
    mut command: tokio::process::Command,
    timeout: std::time::Duration,
) -> Finished {
    let logs = tempfile::tempdir().unwrap();
    let stdout_path = logs.path().join("stdout");
    let stderr_path = logs.path().join("stderr");
    let mut child = command
        .env_remove("DJANGO_SETTINGS_MODULE")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("GRPC_VERBOSITY", "ERROR")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(waited) => Some(waited.expect("the child can be waited for")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    Finished {
        status,
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// `integrations/python` of this checkout.
pub fn integration_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../integrations/python")
        .canonicalize()
        .unwrap()
}

/// The package as the README's work-from-checkout path uses it: stubs
/// generated from the proto into a directory of their own (`stubs`, which
/// the caller keeps), and the `PYTHONPATH` that imports the checkout's
/// modules and those stubs, with the native transport built and put beside
/// them (`stubs/native`), as `pip install` does. The virtualenv needs
/// grpcio-tools.
pub async fn checkout_path(venv: &Path, stubs: &Path) -> String {
    let grpcio_only = checkout_path_on_grpcio(venv, stubs).await;
    with_native_module(&grpcio_only, stubs).await
}

/// `grpcio_only` (from [`checkout_path_on_grpcio`] into `stubs`) with the
/// native transport built and put beside the stubs.
pub async fn with_native_module(grpcio_only: &str, stubs: &Path) -> String {
    let native = stubs.join("native");
    build_native_module(&native.join("sessiond")).await;
    format!("{grpcio_only}:{}", native.display())
}

/// Where the tests that `pip install` the package let cargo build its
/// native module: one target directory for all of them, so its crates are
/// compiled once whatever copy of the package is being installed.
pub fn native_install_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-native-target")
}

/// As [`checkout_path`], without the native transport: the blocking client
/// falls back to grpcio.
pub async fn checkout_path_on_grpcio(venv: &Path, stubs: &Path) -> String {
    let dir = integration_dir();
    let mut generate = tokio::process::Command::new(venv.join("bin/python"));
    generate
        .args(["-m", "sessiond_client.generate", "--out"])
        .arg(stubs)
        .current_dir(&dir)
        .env("PYTHONPATH", &dir);
    let generated = run_to_end(generate, std::time::Duration::from_secs(120)).await;
    assert!(
        generated.status.is_some_and(|status| status.success()),
        "generating the stubs failed:\n{}",
        generated.stderr
    );
    format!("{}:{}", dir.display(), stubs.display())
}

/// Builds `integrations/python/native` (release, as setuptools-rust does;
/// later calls find it built) and copies it into `package_dir` as
/// `_native.abi3.so`.
async fn build_native_module(package_dir: &Path) {
    let manifest = integration_dir().join("native/Cargo.toml");
    let mut build = tokio::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    build
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(&manifest)
        // What setuptools-rust sets: leave libpython to the interpreter.
        .env("PYO3_BUILD_EXTENSION_MODULE", "1");
    let built = run_to_end(build, std::time::Duration::from_secs(900)).await;
    assert!(
        built.status.is_some_and(|status| status.success()),
        "building the native module failed:\n{}",
        built.stderr
    );
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| integration_dir().join("native/target"));
    std::fs::create_dir_all(package_dir).unwrap();
    std::fs::copy(
        target_dir.join("release/lib_native.so"),
        package_dir.join("_native.abi3.so"),
    )
    .unwrap();
}
