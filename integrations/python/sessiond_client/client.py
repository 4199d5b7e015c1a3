"""The gRPC connection to sessiond: ``Client`` (blocking) and ``AsyncClient``
(``grpc.aio``, for ASGI apps), with the same settings and methods.

Settings, named alike in every sessiond client:

``addresses``
    one ``host:port`` (a host name, an IPv4 address or ``[IPv6]``) or a
    list of them (several sessiond
    replicas sharing a store). Calls go to the first that answers; when one
    cannot be reached, the call is tried on the next, and later calls start
    from the one that answered.
``token``
    when set, sent as ``authorization: Bearer <token>`` with every call.
``tls``
    ``None`` for plaintext (sessiond on loopback or a private network), or a
    :class:`TlsFiles` naming the CA to trust and, for mutual TLS, the
    client's certificate and key.
``timeout``
    seconds one call may take, failover and connecting included (default 5).

Both clients build their requests and read their answers in
``sessiond_client.calls``, and translate failures in one place
(:meth:`_Connection._failed`, in ``sessiond_client.connection`` with the
settings' checks); they differ only in how a call is sent.

A ``Client`` keeps one channel per address and process, shared by all
threads; a child process made by ``fork`` opens its own on first use, since
gRPC channels do not survive a fork (on grpcio, whose own state may not
survive it either, fork before the first call). An ``AsyncClient`` keeps one per
address and event loop, since ``grpc.aio`` channels belong to the loop that
made them.
"""

import asyncio
import os
import threading
import time
from datetime import datetime
from typing import Any, Optional, Sequence, Union

import grpc

from sessiond_client import calls
from sessiond_client import transport as _transport
from sessiond_client.connection import (
    CHANNEL_OPTIONS,
    DEFAULT_ADDRESS,
    DEFAULT_TIMEOUT,
    KEEPALIVE_TIME_MS,
    KEEPALIVE_TIMEOUT_MS,
    TlsFiles,
    _Connection,
)

__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT",
    "KEEPALIVE_TIME_MS",
    "KEEPALIVE_TIMEOUT_MS",
    "AsyncClient",
    "Client",
    "TlsFiles",
]


class Client(_Connection):
    """A blocking client of sessiond (WSGI apps, Django, scripts).

    Calls go through the package's native module when it is installed,
    else through grpcio, with the same behaviour; ``transport`` (or
    ``SESSIOND_CLIENT_TRANSPORT``: ``native``, ``grpcio``) chooses, and the
    attribute ``transport`` says which one is used.

    >>> client = Client(["10.0.0.5:50051", "10.0.0.6:50051"], token="…")  # doctest: +SKIP
    >>> key = client.create({"visits": 1})                                  # doctest: +SKIP
    """

    def __init__(
        self,
        addresses: Union[str, Sequence[str]] = DEFAULT_ADDRESS,
        *,
        token: Optional[str] = None,
        tls: Optional[TlsFiles] = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: Optional[str] = None,
    ) -> None:
        super().__init__(addresses, token=token, tls=tls, timeout=timeout)
        #: What sends the calls: ``"native"`` (the package's module) or ``"grpcio"``.
        self.transport = _transport.choose(transport)
        self._native = self.transport == "native"
        self._lock = threading.Lock()
        self._stubs: tuple[Optional[int], dict[int, tuple[Any, Any]]] = (None, {})

    def _stub(self, index):
        """The channel to address ``index`` and what sends on it: a native
        channel (twice), or a grpcio channel and its stub."""
        pid = os.getpid()
        with self._lock:
            if self._stubs[0] != pid:
                self._stubs = (pid, {})
            stubs = self._stubs[1]
            if index not in stubs:
                address = self.addresses[index]
                if self._native:
                    channel = self._open_native(address)
                    stubs[index] = (channel, channel)
                else:
                    channel = self._open(grpc, address)
                    stubs[index] = (channel, _transport.open_stub(channel))
            return stubs[index][1]

    def _send_once(self, index, call, timeout):
        if self._native:
            return _transport.send_native(self._stub(index), call, timeout)
        return _transport.send_stub(self._stub(index), call, timeout, self._metadata)

    def send(self, call: calls.Call) -> Any:
        """Sends a :class:`~sessiond_client.calls.Call` and returns its result.

        Raises ``SessiondUnavailable`` when no address answers within the
        timeout, ``SessiondError`` for any other refusal.
        """
        deadline = time.monotonic() + self.timeout
        for index in self._order():
            try:
                result = self._send_once(index, call, self._remaining(deadline))
            except grpc.RpcError as failure:
                error, try_next = self._failed(failure, call.rpc, index)
                if try_next:
                    continue
                raise error from failure
            self._preferred = index
            return result
        raise error

    def load(self, session_key: str) -> Optional[calls.Loaded]:
        """The live session under ``session_key`` as :class:`~sessiond_client.calls.Loaded`,
        or ``None`` when it is missing or expired."""
        return self.send(calls.load(session_key))

    def exists(self, session_key: str) -> bool:
        """Whether a session row exists, expired or not."""
        return self.send(calls.exists(session_key))

    def create(self, data: dict, expire_date: Optional[datetime] = None) -> str:
        """Stores ``data`` (a dict) under a fresh key that sessiond draws,
        and returns the key. ``expire_date``: an aware datetime, or ``None``
        for sessiond's session age."""
        return self.send(calls.create(data, expire_date))

    def save(
        self,
        session_key: str,
        data: dict,
        expire_date: Optional[datetime] = None,
        must_create: bool = False,
    ) -> datetime:
        """Writes the whole session; returns the expiry as stored. ``NOT_FOUND``
        (update of a deleted session) and ``ALREADY_EXISTS`` (``must_create``
        on a taken key) are ``SessiondError`` with that ``code``."""
        return self.send(calls.save(session_key, data, expire_date, must_create))

    def patch(
        self,
        session_key: str,
        set: Optional[dict] = None,  # noqa: A002 - the proto's name
        remove: Sequence[str] = (),
        replace: bool = False,
        expire_date: Optional[datetime] = None,
    ) -> datetime:
        """Sets the members of the dict ``set`` and removes the keys in
        ``remove`` on top of what is stored now (on an empty session with
        ``replace``); returns the expiry as stored."""
        return self.send(calls.patch(session_key, set, remove, replace, expire_date))

    def delete(self, session_key: str) -> bool:
        """Deletes the session; whether a row was removed."""
        return self.send(calls.delete(session_key))

    def cycle_key(
        self, session_key: str, data: Optional[dict] = None, expire_date: Optional[datetime] = None
    ) -> str:
        """Moves the session to a fresh key in one call and returns it; with
        ``data`` the new key carries it, else what is stored now."""
        return self.send(calls.cycle_key(session_key, data, expire_date))

    def clear_expired(self) -> int:
        """Removes expired sessions; how many."""
        return self.send(calls.clear_expired())

    def close(self) -> None:
        """Closes this process's channels; later calls open new ones."""
        with self._lock:
            pid, stubs = self._stubs
            self._stubs = (None, {})
        if pid == os.getpid() and not self._native:
            for channel, _ in stubs.values():
                channel.close()


class AsyncClient(_Connection):
    """The same client on ``grpc.aio``, for asyncio apps (ASGI): every method
    of :class:`Client`, as a coroutine."""

    def __init__(
        self,
        addresses: Union[str, Sequence[str]] = DEFAULT_ADDRESS,
        *,
        token: Optional[str] = None,
        tls: Optional[TlsFiles] = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(addresses, token=token, tls=tls, timeout=timeout)
        self._per_loop: dict[asyncio.AbstractEventLoop, dict[int, tuple[Any, Any]]] = {}

    def _stub(self, index):
        loop = asyncio.get_running_loop()
        if loop not in self._per_loop:
            # The channels of a loop that has ended can never be used again.
            self._per_loop = {
                other: stubs for other, stubs in self._per_loop.items() if not other.is_closed()
            }
        stubs = self._per_loop.setdefault(loop, {})
        if index not in stubs:
            channel = self._open(grpc.aio, self.addresses[index])
            stubs[index] = (channel, _transport.open_stub(channel))
        return stubs[index][1]

    async def send(self, call: calls.Call) -> Any:
        """As :meth:`Client.send`."""
        deadline = time.monotonic() + self.timeout
        for index in self._order():
            try:
                response = await getattr(self._stub(index), call.rpc)(
                    call.request, timeout=self._remaining(deadline), metadata=self._metadata
                )
            except grpc.RpcError as failure:
                error, try_next = self._failed(failure, call.rpc, index)
                if try_next:
                    continue
                raise error from failure
            self._preferred = index
            return call.unpack(response)
        raise error

    async def load(self, session_key: str) -> Optional[calls.Loaded]:
        """As :meth:`Client.load`."""
        return await self.send(calls.load(session_key))

    async def exists(self, session_key: str) -> bool:
        """As :meth:`Client.exists`."""
        return await self.send(calls.exists(session_key))

    async def create(self, data: dict, expire_date: Optional[datetime] = None) -> str:
        """As :meth:`Client.create`."""
        return await self.send(calls.create(data, expire_date))

    async def save(
        self,
        session_key: str,
        data: dict,
        expire_date: Optional[datetime] = None,
        must_create: bool = False,
    ) -> datetime:
        """As :meth:`Client.save`."""
        return await self.send(calls.save(session_key, data, expire_date, must_create))

    async def patch(
        self,
        session_key: str,
        set: Optional[dict] = None,  # noqa: A002 - the proto's name
        remove: Sequence[str] = (),
        replace: bool = False,
        expire_date: Optional[datetime] = None,
    ) -> datetime:
        """As :meth:`Client.patch`."""
        return await self.send(calls.patch(session_key, set, remove, replace, expire_date))

    async def delete(self, session_key: str) -> bool:
        """As :meth:`Client.delete`."""
        return await self.send(calls.delete(session_key))

    async def cycle_key(
        self, session_key: str, data: Optional[dict] = None, expire_date: Optional[datetime] = None
    ) -> str:
        """As :meth:`Client.cycle_key`."""
        return await self.send(calls.cycle_key(session_key, data, expire_date))

    async def clear_expired(self) -> int:
        """As :meth:`Client.clear_expired`."""
        return await self.send(calls.clear_expired())

    async def aclose(self) -> None:
        """Closes the channels of the running event loop."""
        stubs = self._per_loop.pop(asyncio.get_running_loop(), {})
        for channel, _ in stubs.values():
            await channel.close()
