"""The generated gRPC stubs (top-level package ``sessiond.v1``), with a clear
error when they are missing: they are built, never checked in."""

try:
    from sessiond.v1 import sessiond_pb2, sessiond_pb2_grpc
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "the sessiond gRPC stubs (module sessiond.v1.sessiond_pb2) are missing: "
        "install sessiond-client with pip, or run `python -m sessiond_client.generate` "
        "in a checkout and put integrations/python on PYTHONPATH"
    ) from error

__all__ = ["sessiond_pb2", "sessiond_pb2_grpc"]
