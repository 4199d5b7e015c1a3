"""Build hooks: the wheel carries gRPC stubs generated from the repository's
proto/ and the native transport built from native/ (Rust, by
setuptools-rust with cargo), and the sdist carries that proto and native/,
so a wheel can be built from it.

Everything else about the package is in pyproject.toml. The stubs are
written into the build directory by ``sessiond_client.generate`` (the same
code as ``python -m sessiond_client.generate``), so they always match the
proto the package was built from. The proto is found at
``$SESSIOND_PROTO_DIR``, else at ``proto/`` beside this file (in an
unpacked sdist), else at ``../../proto`` (in a checkout).

The sdist's copy of the proto is written into the sdist's own tree only,
never into the checkout, where a stale copy could outlive an edit of the
real one.
"""

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools_rust import Binding, RustExtension
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist


def _generator():
    # Loaded by path: importing the package itself would need the stubs.
    path = Path(__file__).resolve().parent / "sessiond_client" / "generate.py"
    spec = importlib.util.spec_from_file_location("_sessiond_generate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithStubs(build_py):
    """``build_py`` that also writes ``sessiond/v1/*.py`` into the build."""

    def run(self):
        super().run()
        self._stubs = [] if self.dry_run else _generator().generate(Path(self.build_lib))

    def get_outputs(self, include_bytecode=True):
        stubs = [str(path) for path in getattr(self, "_stubs", [])]
        return super().get_outputs(include_bytecode) + stubs


class SdistWithProto(sdist):
    """``sdist`` whose tree also holds ``proto/sessiond/v1/sessiond.proto``."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        generator = _generator()
        source = generator.default_proto_dir() / generator.PROTO_FILE
        if not source.is_file():
            raise generator.GenerateError(
                f"{source} not found: build the sdist from a sessiond checkout, or set "
                "SESSIOND_PROTO_DIR to its proto/ directory"
            )
        target = Path(base_dir) / generator.BUNDLED_PROTO_DIR / generator.PROTO_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self.dry_run:
            shutil.copyfile(source, target)


setup(
    cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProto},
    # sessiond._native, beside the stubs' sessiond.v1: what the Client
    # sends its calls with (sessiond_client/transport.py). One build for
    # every CPython from 3.10 (pyo3's abi3).
    rust_extensions=[
        RustExtension(
            "sessiond._native",
            path="native/Cargo.toml",
            binding=Binding.PyO3,
            py_limited_api=True,
            # Cargo.lock pins every crate, as the proto pins the stubs.
            args=["--locked"],
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
