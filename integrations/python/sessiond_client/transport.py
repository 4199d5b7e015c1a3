"""How :class:`~sessiond_client.Client` sends a call: on the package's
native module (``sessiond._native``, a tonic channel built from Rust when
the package is installed) when it is there, else on a blocking grpcio stub.

The native module carries serialized messages only; requests are built and
answers read here with the generated protobuf classes, the same as grpcio
does, so both transports put the same bytes on the wire. A call costs
under half of grpcio's client CPU on the native module (see the
README's Benchmarks). A failure on either transport reaches the client as
a ``grpc.RpcError`` with ``code()`` and ``details()``, which it words in
one place.

``SESSIOND_CLIENT_TRANSPORT`` (``native``, ``grpcio``) or a client's
``transport`` argument chooses; asking for ``native`` when the module is
not there is an error that says why. ``AsyncClient`` stays on ``grpc.aio``.
"""

import os

import grpc

from sessiond_client.stubs import sessiond_pb2, sessiond_pb2_grpc

try:
    from sessiond import _native
except ImportError as error:  # pragma: no cover - a checkout without the built module
    _native = None
    _LOAD_ERROR = error

__all__ = ["NATIVE", "TRANSPORTS", "choose", "open_native", "open_stub", "send_native", "send_stub"]

#: Whether the native module is there.
NATIVE = _native is not None

#: What a blocking ``Client`` can send its calls with.
TRANSPORTS = ("native", "grpcio")


def choose(requested=None):
    """The transport of a new ``Client``: ``requested``, else
    ``$SESSIOND_CLIENT_TRANSPORT``, else ``native`` when the module is there."""
    setting = requested or os.environ.get("SESSIOND_CLIENT_TRANSPORT") or None
    name = "transport" if requested else "SESSIOND_CLIENT_TRANSPORT"
    if setting is None:
        return "native" if NATIVE else "grpcio"
    if setting not in TRANSPORTS:
        raise ValueError(f"{name} must be 'native' or 'grpcio', not {setting!r}")
    if setting == "native" and not NATIVE:
        raise ValueError(
            f"{name} asks for the native transport, which is not installed ({_LOAD_ERROR}): "
            "install the package with pip (it builds sessiond._native with cargo)"
        )
    return setting


_SERVICE = "/sessiond.v1.SessionService/"

#: The answer's message class of each RPC, by the RPC's name.
_ANSWERS = {
    method.name: getattr(sessiond_pb2, method.output_type.name)
    for method in sessiond_pb2.DESCRIPTOR.services_by_name["SessionService"].methods
}

_STATUS_CODES = {status.value[0]: status for status in grpc.StatusCode}


class NativeFailure(grpc.RpcError):
    """A failed call on the native module, read as grpcio's errors are."""

    def __init__(self, code, details):
        super().__init__(code, details)
        self._code = _STATUS_CODES.get(code, grpc.StatusCode.UNKNOWN)
        self._details = details

    def code(self):
        return self._code

    def details(self):
        return self._details


def open_native(
    address, *, pem, server_name, token, connect_timeout_ms, keepalive_time_ms, keepalive_timeout_ms
):
    """A native channel to ``address``; ``pem`` is ``None`` for plaintext,
    else ``(ca, cert, key)`` as PEM bytes or ``None`` each."""
    ca, cert, key = pem if pem is not None else (None, None, None)
    return _native.Channel(
        address,
        tls=pem is not None,
        ca=ca,
        cert=cert,
        key=key,
        server_name=server_name,
        token=token,
        connect_timeout=connect_timeout_ms / 1000,
        keepalive_time=keepalive_time_ms / 1000,
        keepalive_timeout=keepalive_timeout_ms / 1000,
    )


def send_native(channel, call, timeout):
    """The unpacked answer to ``call``; raises :class:`NativeFailure`."""
    try:
        answer = channel.call(_SERVICE + call.rpc, call.request.SerializeToString(), timeout)
    except _native.RpcFailure as failure:
        raise NativeFailure(*failure.args) from None
    return call.unpack(_ANSWERS[call.rpc].FromString(answer))


def open_stub(channel):
    """A grpcio stub (blocking or ``grpc.aio``) on ``channel``."""
    return sessiond_pb2_grpc.SessionServiceStub(channel)


def send_stub(stub, call, timeout, metadata):
    """The answer to ``call`` on a blocking stub; raises ``grpc.RpcError``."""
    return call.unpack(getattr(stub, call.rpc)(call.request, timeout=timeout, metadata=metadata))
