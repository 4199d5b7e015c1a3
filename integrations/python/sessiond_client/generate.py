"""Generates the Python gRPC stubs of ``sessiond.v1`` from the repository's proto/.

    python -m sessiond_client.generate [--out DIR] [--proto DIR]

writes ``DIR/sessiond/v1/sessiond_pb2.py``, ``sessiond_pb2_grpc.py`` and
``sessiond_pb2.pyi`` with grpcio-tools. ``DIR`` defaults to the directory
that holds ``sessiond_client``, so that a checkout with that directory on
``PYTHONPATH`` imports them. The package's build hook (``setup.py``) calls
``generate`` too, so an installed package carries its stubs and needs no
generate step; the stubs are never checked in, so they cannot drift from
the proto. Only this generator needs grpcio-tools; the client does not.
The proto is read from ``--proto``, ``$SESSIOND_PROTO_DIR``, the
``proto/`` an unpacked sdist carries, or the checkout's ``proto/``.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

#: The proto file, relative to the proto directory; the generated modules
#: import each other by this path (``from sessiond.v1 import sessiond_pb2``).
PROTO_FILE = "sessiond/v1/sessiond.proto"

#: What to install to run the generator in a checkout: the build requirement
#: of pyproject.toml, whose version fixes the grpcio and protobuf the
#: generated code needs.
GRPCIO_TOOLS = "grpcio-tools==1.85.1"


class GenerateError(Exception):
    """The stubs could not be generated."""


#: Where the sdist carries the proto, relative to the package's root (the
#: directory of ``setup.py``); a checkout has no such directory.
BUNDLED_PROTO_DIR = "proto"


def default_proto_dir():
    """``SESSIOND_PROTO_DIR``; else the ``proto/`` an unpacked sdist carries;
    else the ``proto/`` of the checkout this file is in."""
    configured = os.environ.get("SESSIOND_PROTO_DIR")
    if configured:
        return Path(configured)
    here = Path(__file__).resolve()
    bundled = here.parents[1] / BUNDLED_PROTO_DIR
    if (bundled / PROTO_FILE).is_file():
        return bundled
    # integrations/python/sessiond_client/generate.py -> the repository root.
    return here.parents[3] / "proto"


def default_out_dir():
    return Path(__file__).resolve().parents[1]


def generate(out, proto_dir=None):
    """Writes the stubs under ``out`` and returns the paths written."""
    from importlib.resources import files

    # Imported here so that --help works without grpcio-tools, which only
    # builds need: an installed package already carries its stubs.
    try:
        from grpc_tools import protoc
    except ImportError as error:
        raise GenerateError(
            f"grpcio-tools is not installed (no module {error.name!r}): run "
            f"`pip install {GRPCIO_TOOLS}` to generate the stubs in a checkout; "
            "a package installed with `pip install ./integrations/python` "
            "already carries them and needs no generate step"
        ) from error

    proto_dir = Path(proto_dir) if proto_dir else default_proto_dir()
    source = proto_dir / PROTO_FILE
    if not source.is_file():
        raise GenerateError(
            f"{source} not found: run from a sessiond checkout, or set "
            "SESSIOND_PROTO_DIR (or --proto) to its proto/ directory"
        )
    # google/protobuf/timestamp.proto ships inside grpcio-tools.
    well_known = files("grpc_tools") / "_proto"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Generated aside, then each file moved into place with one rename, so
    # that a concurrent reader (or generator) never sees half a module.
    with tempfile.TemporaryDirectory(dir=out, prefix=".sessiond-stubs-") as staging:
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={proto_dir}",
                f"--proto_path={well_known}",
                f"--python_out={staging}",
                f"--grpc_python_out={staging}",
                f"--pyi_out={staging}",
                PROTO_FILE,
            ]
        )
        if status != 0:
            raise GenerateError(f"grpc_tools.protoc failed with status {status} on {source}")
        written = []
        for generated in sorted(Path(staging).rglob("*.py*")):
            target = out / generated.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(generated, target)
            written.append(target)
    if not written:
        raise GenerateError(f"grpc_tools.protoc wrote nothing for {source}")
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m sessiond_client.generate",
        description="Generate the sessiond.v1 gRPC stubs with grpcio-tools.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=default_out_dir(),
        help="directory to write sessiond/v1/*.py into (default: %(default)s)",
    )
    parser.add_argument(
        "--proto",
        type=Path,
        default=None,
        help="the proto/ directory holding sessiond/v1/sessiond.proto "
        "(default: $SESSIOND_PROTO_DIR, else the checkout's proto/)",
    )
    args = parser.parse_args(argv)
    try:
        written = generate(args.out, args.proto)
    except GenerateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
