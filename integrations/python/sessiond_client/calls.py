"""The calls of ``sessiond.v1.SessionService``, built once for both clients.

Each function returns a :class:`Call`: the RPC's name, its request, and how
to turn the response into what the client method returns. ``Client`` sends
a call with a blocking stub, ``AsyncClient`` with a ``grpc.aio`` one; what
goes on the wire and what comes back is decided here only.
"""

from typing import Any, Callable, NamedTuple, Optional

from sessiond_client.data import Snapshot, decode_data, encode_data, from_timestamp, to_timestamp
from sessiond_client.stubs import sessiond_pb2

__all__ = ["Call", "Loaded"]


class Call(NamedTuple):
    """One RPC: its name, its request, and the reading of its response."""

    rpc: str
    request: Any
    unpack: Callable[[Any], Any]


class Loaded(NamedTuple):
    """A live session as ``Load`` found it.

    ``data`` is ``None`` when what is stored is not a JSON object
    (corrupted); the caller logs that and reads an empty session, as Django
    does.
    """

    data: Optional[dict]
    expire_date: Any


def _expiry(moment):
    return None if moment is None else to_timestamp(moment)


def _loaded(response):
    if not response.found:
        return None
    return Loaded(decode_data(response.data), from_timestamp(response.expire_date))


def load(session_key):
    return Call("Load", sessiond_pb2.LoadRequest(session_key=session_key), _loaded)


def load_with_snapshot(session_key):
    """:func:`load` for a session handle that saves only what changed:
    ``None`` for a missing or expired session, else ``(data, snapshot)``,
    where ``snapshot`` (:class:`~sessiond_client.data.Snapshot`) keeps the
    text as loaded, and ``data`` is ``None`` (and ``snapshot`` too) when what
    is stored is not a JSON object."""
    return Call(
        "Load", sessiond_pb2.LoadRequest(session_key=session_key), _loaded_with_snapshot
    )


def _loaded_with_snapshot(response):
    if not response.found:
        return None
    data = decode_data(response.data)
    return data, None if data is None else Snapshot(data, response.data)


def exists(session_key):
    return Call("Exists", sessiond_pb2.ExistsRequest(session_key=session_key), lambda r: r.exists)


def create(data, expire_date=None):
    request = sessiond_pb2.CreateRequest(data=encode_data(data), expire_date=_expiry(expire_date))
    return Call("Create", request, lambda r: r.session_key)


def save(session_key, data, expire_date=None, must_create=False):
    request = sessiond_pb2.SaveRequest(
        session_key=session_key,
        data=encode_data(data),
        expire_date=_expiry(expire_date),
        must_create=must_create,
    )
    return Call("Save", request, lambda r: from_timestamp(r.expire_date))


def patch(session_key, set=None, remove=(), replace=False, expire_date=None):  # noqa: A002 - the proto's name
    request = sessiond_pb2.PatchRequest(
        session_key=session_key,
        set=encode_data(set) if set else "",
        remove=list(remove),
        replace=replace,
        expire_date=_expiry(expire_date),
    )
    return Call("Patch", request, lambda r: from_timestamp(r.expire_date))


def delete(session_key):
    return Call("Delete", sessiond_pb2.DeleteRequest(session_key=session_key), lambda r: r.deleted)


def cycle_key(session_key, data=None, expire_date=None):
    request = sessiond_pb2.CycleKeyRequest(
        session_key=session_key,
        data=None if data is None else encode_data(data),
        expire_date=_expiry(expire_date),
    )
    return Call("CycleKey", request, lambda r: r.session_key)


def clear_expired():
    return Call("ClearExpired", sessiond_pb2.ClearExpiredRequest(), lambda r: r.removed)
