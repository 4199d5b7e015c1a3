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
not survive a fork. While sessiond is down the channel tries to reconnect
every half second or so (not gRPC's default of up to two minutes), so
requests succeed again soon after sessiond is back.
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
    "CHANNEL_OPTIONS",
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


#: After a failed connection attempt gRPC waits before the next one, 1 s
#: at first and 1.6 times longer after each failure, up to 2 minutes: after
#: an outage of a few seconds, requests kept failing for seconds once
#: sessiond was back, because the channel was not trying yet. Waiting at
#: most half a second (gRPC adds up to 20 % jitter) brings requests back
#: within 0.6 s of sessiond, at the cost of two connection attempts a second
#: per process while it is down.
MAX_RECONNECT_BACKOFF_MS = 500

#: The first wait after a failure: a restarted sessiond is often back
#: within a fraction of a second.
INITIAL_RECONNECT_BACKOFF_MS = 100

#: gRPC gives one connection attempt at least this long (its option is
#: named ``min_reconnect_backoff_ms``; the default is 20 s). A second is
#: ample on the loopback or private network sessiond belongs on, and an
#: attempt that hangs (packets dropped while sessiond moves) no longer
#: holds the channel back for 20 s after sessiond answers again.
MIN_CONNECT_TIMEOUT_MS = 1000

#: Options of the one channel per address.
CHANNEL_OPTIONS = (
    # sessiond bounds the data it stores (--max-data-bytes); the client's
    # 4 MiB default would refuse larger configured limits.
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
    ("grpc.min_reconnect_backoff_ms", MIN_CONNECT_TIMEOUT_MS),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
)


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
            channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
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
