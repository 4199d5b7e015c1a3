"""The ``sessiond_client.Client`` that Django's settings describe.

Settings (read at the first call, and again after Django announces a
change to one of them with its ``setting_changed`` signal, as
``override_settings`` does in tests):

``SESSIOND_ADDRESS``
    gRPC target of sessiond, ``host:port`` (default ``127.0.0.1:50051``).
``SESSIOND_ADDRESSES``
    several targets (a list), tried in turn when one cannot be reached;
    takes precedence over ``SESSIOND_ADDRESS``.
``SESSIOND_TIMEOUT``
    seconds one call may take, connecting included (default 5).
``SESSIOND_TOKEN``
    when set, sent as ``authorization: Bearer <token>`` with every call.
``SESSIOND_TLS_CA``, ``SESSIOND_TLS_CERT``, ``SESSIOND_TLS_KEY``
    TLS to sessiond: the CA file that signed its certificate, and for mutual
    TLS the client's certificate and key files. Without any of them the
    connection is plaintext: keep sessiond on loopback or a private network.
``SESSIOND_TLS_SERVER_NAME``
    the name sessiond's certificate is checked against, when the address is
    an IP.

One client per distinct settings and process is kept, so its channels are
shared by all threads (see ``sessiond_client.client``).
"""

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from sessiond_client.client import (
    CHANNEL_OPTIONS,
    DEFAULT_ADDRESS,
    DEFAULT_TIMEOUT,
    Client,
    TlsFiles,
)
from sessiond_client.errors import SessiondError, SessiondUnavailable
from sessiond_client.stubs import sessiond_pb2

__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT",
    "SessiondError",
    "SessiondUnavailable",
    "client",
    "sessiond_pb2",
]

_lock = threading.Lock()
_clients = {}

#: The client for the settings as last read; None until the first call and
#: after a change. Reading eight settings through Django's lazy settings
#: object (a missing one raises and catches an AttributeError) took a tenth
#: to a fifth of a Load's time.
_current = None
#: Counts the changes, so that a client made from settings read before one
#: is not kept as current after it.
_changes = 0


def _forget_current(*, setting, **kwargs):
    global _current, _changes
    if setting.startswith("SESSIOND_"):
        with _lock:
            _changes += 1
            _current = None


setting_changed.connect(_forget_current, dispatch_uid="sessiond_django.client")


def _configured():
    addresses = getattr(settings, "SESSIOND_ADDRESSES", None) or getattr(
        settings, "SESSIOND_ADDRESS", DEFAULT_ADDRESS
    )
    if isinstance(addresses, list):
        addresses = tuple(addresses)
    tls = tuple(
        getattr(settings, name, None)
        for name in (
            "SESSIOND_TLS_CA",
            "SESSIOND_TLS_CERT",
            "SESSIOND_TLS_KEY",
            "SESSIOND_TLS_SERVER_NAME",
        )
    )
    return (
        addresses,
        getattr(settings, "SESSIOND_TOKEN", None),
        getattr(settings, "SESSIOND_TIMEOUT", DEFAULT_TIMEOUT),
        tls,
    )


def client():
    """The client for the current settings; ``ImproperlyConfigured`` names
    the setting that is wrong."""
    global _current
    current = _current
    if current is not None:
        return current
    with _lock:
        changes = _changes
    configured = _configured()
    with _lock:
        found = _clients.get(configured)
        if found is None:
            addresses, token, timeout, tls = configured
            try:
                found = Client(
                    addresses,
                    token=token,
                    timeout=timeout,
                    tls=TlsFiles(*tls) if any(tls) else None,
                )
            except ValueError as error:
                raise ImproperlyConfigured(str(error)) from error
            _clients[configured] = found
        if changes == _changes:
            _current = found
    return found
