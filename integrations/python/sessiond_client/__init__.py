"""A Python client of sessiond, for any framework.

- :class:`Client` / :class:`AsyncClient`: the gRPC calls (``load``,
  ``exists``, ``create``, ``save``, ``patch``, ``delete``, ``cycle_key``,
  ``clear_expired``), blocking or on ``grpc.aio``, with failover between
  addresses, a bearer token, TLS and a timeout.
- :class:`Session`: one request's session as a dictionary, with Django's
  behaviour (flags, expiry, ``cycle_key``, ``flush``, saves that patch only
  what changed).
- :class:`SessionSettings` and ``Session.finish()`` / ``afinish()``: the
  cookie and Django's end-of-request rules, for the Flask and ASGI
  integrations (``flask_sessiond``, ``sessiond_asgi``).

No web framework is imported here. The names below are loaded on first use,
so that ``python -m sessiond_client.generate`` runs before the gRPC stubs it
writes exist.
"""

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "AsyncClient": "sessiond_client.client",
    "Client": "sessiond_client.client",
    "TlsFiles": "sessiond_client.client",
    "DEFAULT_ADDRESS": "sessiond_client.client",
    "DEFAULT_TIMEOUT": "sessiond_client.client",
    "SessiondError": "sessiond_client.errors",
    "SessiondUnavailable": "sessiond_client.errors",
    "UpdateError": "sessiond_client.errors",
    "Session": "sessiond_client.session",
    "SessionSettings": "sessiond_client.settings",
    "is_valid_key": "sessiond_client.data",
    "encode_data": "sessiond_client.data",
    "decode_data": "sessiond_client.data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sessiond_client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted([*globals(), *_EXPORTS])
