"""The gRPC connection to sessiond, configured by Django settings.

Settings (read at every call, so ``override_settings`` works in tests):

``SESSIOND_ADDRESS``
    gRPC target of sessiond, ``host:port`` (default ``127.0.0.1:50051``).
    Plaintext only: keep sessiond on loopback or a private network.
``SESSIOND_TIMEOUT``
    seconds one call may take, connecting included (default 5).
``SESSIOND_TOKEN``
    when set, sent as ``authorization: Bearer <token>`` with every call.

One channel per address and process is shared by all threads; a child
process made by ``fork`` opens its own on first use, since gRPC channels do
not survive a fork.
"""

import os
import threading

import grpc
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

try:
    from sessiond.v1 import sessiond_pb2, sessiond_pb2_grpc
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "the sessiond gRPC stubs (module sessiond.v1.sessiond_pb2) are missing: "
        "install sessiond-django with pip, or run `python -m sessiond_django.generate` "
        "in a checkout and put integrations/python on PYTHONPATH"
    ) from error

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT",
    "SessiondError",
    "SessiondUnavailable",
    "call",
    "sessiond_pb2",
]

#: Where ``sessiond serve`` listens unless told otherwise.
DEFAULT_ADDRESS = "127.0.0.1:50051"

#: The Rust client's default too: long enough for a busy server, short
#: enough that a request fails instead of hanging when sessiond is gone.
DEFAULT_TIMEOUT = 5.0


class SessiondError(Exception):
    """sessiond refused or failed a call.

    ``code`` is the ``grpc.StatusCode``. The message never holds a session
    key or session data.
    """

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class SessiondUnavailable(SessiondError):
    """sessiond could not be reached or did not answer in time.

    The request cannot know its session, so it fails rather than carrying on
    with an empty one (which would log the user out). Retrying later may work.
    """


_lock = threading.Lock()
_stubs = {}


def _stub(address):
    pid = os.getpid()
    with _lock:
        entry = _stubs.get(address)
        if entry is None or entry[0] != pid:
            channel = grpc.insecure_channel(
                address,
                # sessiond bounds the data it stores (--max-data-bytes); the
                # client's 4 MiB default would refuse larger configured limits.
                options=[("grpc.max_receive_message_length", -1)],
            )
            entry = (pid, sessiond_pb2_grpc.SessionServiceStub(channel))
            _stubs[address] = entry
    return entry[1]


def _settings():
    address = getattr(settings, "SESSIOND_ADDRESS", DEFAULT_ADDRESS)
    timeout = getattr(settings, "SESSIOND_TIMEOUT", DEFAULT_TIMEOUT)
    token = getattr(settings, "SESSIOND_TOKEN", None)
    if not isinstance(address, str) or not address:
        raise ImproperlyConfigured("SESSIOND_ADDRESS must be a gRPC target such as 127.0.0.1:50051")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ImproperlyConfigured("SESSIOND_TIMEOUT must be a positive number of seconds")
    if token is not None and (not isinstance(token, str) or not token.isascii()):
        raise ImproperlyConfigured("SESSIOND_TOKEN must be an ASCII string, or None")
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    return address, float(timeout), metadata


def call(method, request):
    """Calls ``SessionService/<method>`` and returns its response.

    Raises ``SessiondUnavailable`` when sessiond cannot be reached or does
    not answer within ``SESSIOND_TIMEOUT``, ``SessiondError`` for any other
    refusal (the caller maps the ones Django has names for).
    """
    address, timeout, metadata = _settings()
    rpc = getattr(_stub(address), method)
    try:
        return rpc(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as error:
        raise _translate(error, method, address, timeout) from error


def _translate(error, method, address, timeout):
    # The server's messages are short and never hold keys or data (its
    # contract); gRPC's own say what failed to connect.
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return SessiondUnavailable(
            f"sessiond at {address} is unavailable ({details}); check that it is "
            "running and that SESSIOND_ADDRESS points at it",
            code,
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return SessiondUnavailable(
            f"sessiond at {address} did not answer {method} within "
            f"SESSIOND_TIMEOUT ({timeout:g}s)",
            code,
        )
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return SessiondError(
            f"sessiond at {address} refused {method} ({code.name}: {details}); "
            "check SESSIOND_TOKEN",
            code,
        )
    return SessiondError(f"sessiond {method} failed ({code.name}: {details})", code)
