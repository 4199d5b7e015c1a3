"""The Python client's native module for the benchmark scripts: built from
integrations/python/native as ``pip install`` builds it (cargo, release;
a no-op once built) and put in a directory of its own as
``sessiond/_native.abi3.so``, to go on PYTHONPATH beside the stubs.

Imported by bench/clients/run.py and bench/django/run.py (stdlib only).
"""

import os
import shlex
import subprocess
from pathlib import Path

PYTHON_PACKAGE = Path(__file__).resolve().parents[1] / "integrations" / "python"
MANIFEST = PYTHON_PACKAGE / "native" / "Cargo.toml"


class NativeBuildError(Exception):
    """cargo is missing or the build failed; the message says which."""


def build(target_dir):
    """The directory to put on PYTHONPATH (under ``target_dir``)."""
    command = ["cargo", "build", "--release", "--locked", "--quiet",
               "--manifest-path", str(MANIFEST)]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "PYO3_BUILD_EXTENSION_MODULE": "1"})
    except FileNotFoundError:
        raise NativeBuildError(
            "cannot build the Python client's native module: cargo is not installed") from None
    if done.returncode != 0:
        raise NativeBuildError(
            f"cannot build the Python client's native module: `{shlex.join(command)}` "
            f"exited with {done.returncode}:\n{done.stderr.strip()[-2000:]}")
    cargo_target = Path(os.environ.get("CARGO_TARGET_DIR") or PYTHON_PACKAGE / "native" / "target")
    built = cargo_target / "release" / "lib_native.so"
    native = Path(target_dir) / "bench-venvs" / "python-native"
    (native / "sessiond").mkdir(parents=True, exist_ok=True)
    # Copied aside and renamed, so that a worker never imports half a file.
    staging = native / "sessiond" / "_native.abi3.so.new"
    staging.write_bytes(built.read_bytes())
    os.replace(staging, native / "sessiond" / "_native.abi3.so")
    return native
