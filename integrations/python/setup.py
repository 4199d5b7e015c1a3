"""Build hook: the wheel carries gRPC stubs generated from the repository's proto/.

Everything else about the package is in pyproject.toml. The stubs are
written into the build directory by ``sessiond_client.generate`` (the same
code as ``python -m sessiond_client.generate``), so they always match the
proto the package was built from. The proto is found at ``../../proto``
relative to this file, or at ``$SESSIOND_PROTO_DIR``.
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


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


setup(cmdclass={"build_py": BuildPyWithStubs})
