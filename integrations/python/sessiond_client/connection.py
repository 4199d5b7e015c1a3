"""What ``Client`` and ``AsyncClient`` share: their settings' defaults and
checks, the options of their gRPC channels, the order in which addresses
are tried, and the translation of gRPC failures (:class:`_Connection`).
``sessiond_client.client`` re-exports the public names.
"""

import ipaddress
import re
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import grpc

from sessiond_client import transport as _transport
from sessiond_client.errors import SessiondError, SessiondUnavailable

__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT",
    "INITIAL_RECONNECT_BACKOFF_MS",
    "KEEPALIVE_TIME_MS",
    "KEEPALIVE_TIMEOUT_MS",
    "MAX_RECONNECT_BACKOFF_MS",
    "MIN_CONNECT_TIMEOUT_MS",
    "TlsFiles",
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

#: After this long without a frame from sessiond, the client sends an
#: HTTP/2 PING. A replica that died without closing its connections (power
#: lost, killed VM, a firewall that forgets the flow) sends no FIN or RST,
#: and a channel would otherwise go on sending calls into the dead
#: connection until each one timed out. 20 s is a third of sessiond's own
#: ping interval (``--keepalive``, 60 s by default), so the client notices
#: first, and one ping per idle connection every 20 s costs nothing.
#: sessiond (hyper's HTTP/2) answers pings at any rate and never closes a
#: connection for them, unlike a gRPC C-core server, which by default
#: closes a connection pinged more often than every 5 minutes while idle.
KEEPALIVE_TIME_MS = 20_000

#: How long a PING may go unanswered before the connection is dropped and
#: the next call goes to another address (or reconnects). sessiond answers
#: a ping straight from its I/O loop, in well under a millisecond on the
#: networks it belongs on; 5 s leaves room for a stalled host.
KEEPALIVE_TIMEOUT_MS = 5_000

#: Options of every channel.
CHANNEL_OPTIONS = (
    # sessiond bounds the data it stores (--max-data-bytes); the client's
    # 4 MiB default would refuse larger configured limits.
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
    ("grpc.min_reconnect_backoff_ms", MIN_CONNECT_TIMEOUT_MS),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    # Ping idle connections too: a web app's connection to sessiond sits
    # idle between requests, which is exactly when a dead peer goes
    # unnoticed; and keep pinging however long no call is sent (gRPC's
    # default stops after two pings without data).
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


@dataclass(frozen=True)
class TlsFiles:
    """TLS to sessiond (``--tls-cert``/``--tls-key`` on its side).

    ``ca``: PEM file of the CA that signed sessiond's certificate (``None``:
    the public CAs' roots the client bundles, Mozilla's). ``cert`` and
    ``key``: the client's certificate and key, both or neither, for a
    sessiond started with ``--tls-client-ca``.
    ``server_name``: the name to check sessiond's certificate against when
    it is not the host of the address (an address by IP).
    """

    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    server_name: Optional[str] = None

    def pem(self):
        """The contents of ``ca``, ``cert`` and ``key`` (``None`` each when
        unset), read and checked once, when a client is made."""
        if (self.cert is None) != (self.key is None):
            raise ValueError(
                "TLS client certificate and key (SESSIOND_TLS_CERT, SESSIOND_TLS_KEY) "
                "go together: set both or neither"
            )
        return (
            _read(self.ca, "SESSIOND_TLS_CA"),
            _read(self.cert, "SESSIOND_TLS_CERT"),
            _read(self.key, "SESSIOND_TLS_KEY"),
        )


def _read(path, setting):
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ValueError(f"cannot read {setting} ({path}): {error.strerror}") from error


#: A host name or an IPv4 address, then a port: what ``host:port`` may be
#: outside brackets. Anything else (a URL, a gRPC ``dns:``/``unix:`` target)
#: is refused rather than guessed at.
_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})")

#: ``[IPv6]:port``.
_BRACKETED_PORT = re.compile(r"\[(?P<host>[^\]]+)\]:(?P<port>[0-9]{1,5})")


def _is_host_port(address):
    """Whether ``address`` is ``host:port``: a host name, an IPv4 address or
    a bracketed IPv6 one, and a port from 1 to 65535. gRPC would take a bare
    host as port 443, and ``http://...`` only to fail at the first call."""
    match = _HOST_PORT.fullmatch(address)
    if match is None:
        match = _BRACKETED_PORT.fullmatch(address)
        if match is None:
            return False
        try:
            if ipaddress.ip_address(match["host"]).version != 6:
                return False
        except ValueError:
            return False
    return 1 <= int(match["port"]) <= 65535


def _addresses(addresses):
    setting = "SESSIOND_ADDRESS" if isinstance(addresses, str) else "SESSIOND_ADDRESSES"
    if isinstance(addresses, str):
        addresses = [addresses]
    addresses = list(addresses) if isinstance(addresses, (list, tuple)) else None
    if not addresses or not all(isinstance(a, str) and a for a in addresses):
        raise ValueError(
            "addresses (SESSIOND_ADDRESS, SESSIOND_ADDRESSES) must be a gRPC target "
            "such as 127.0.0.1:50051, or a non-empty list of them"
        )
    for address in addresses:
        if not _is_host_port(address):
            raise ValueError(
                f"{setting} holds {address!r}, which is not host:port: give sessiond's "
                "host name or IP and its port, such as 127.0.0.1:50051 or [::1]:50051 "
                "(no scheme such as http://)"
            )
    return tuple(addresses)


def _check_token(token):
    """A token gRPC can send as a header value: printable ASCII, nothing
    blank at either end (a newline read from a file would otherwise fail
    every call with ``INTERNAL: Invalid metadata``). Never echoes it."""
    if token is None or token == "":
        # Empty, as an unset environment variable gives: no token.
        return
    if (
        not isinstance(token, str)
        or not all(" " <= char <= "~" for char in token)
        or token != token.strip()
    ):
        raise ValueError(
            "token (SESSIOND_TOKEN) must be printable ASCII with no space or line break "
            "at either end (strip what was read from a file), or None"
        )


class _Connection:
    """What both clients share: checked settings, the order in which
    addresses are tried, and the translation of gRPC failures."""

    def __init__(
        self,
        addresses: Union[str, Sequence[str]] = DEFAULT_ADDRESS,
        *,
        token: Optional[str] = None,
        tls: Optional[TlsFiles] = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.addresses = _addresses(addresses)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError("timeout (SESSIOND_TIMEOUT) must be a positive number of seconds")
        _check_token(token)
        if tls is not None and not isinstance(tls, TlsFiles):
            raise ValueError("tls (SESSIOND_TLS_*) must be a sessiond_client.TlsFiles, or None")
        self.timeout = float(timeout)
        self._token = token or None
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._pem = tls.pem() if tls else None
        self._server_name = tls.server_name if tls else None
        self._credentials = None
        if self._pem is not None:
            ca, cert, key = self._pem
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=key, certificate_chain=cert
            )
        self._options: tuple[tuple[str, Any], ...] = CHANNEL_OPTIONS
        if tls and tls.server_name:
            self._options += (("grpc.ssl_target_name_override", tls.server_name),)
        # The index of the address that answered last: calls start there.
        self._preferred = 0

    def _order(self):
        start = self._preferred
        return [(start + step) % len(self.addresses) for step in range(len(self.addresses))]

    def _open(self, grpc_module, address):
        """A channel to ``address`` with ``grpc`` or ``grpc.aio``."""
        if self._credentials is None:
            return grpc_module.insecure_channel(address, options=self._options)
        return grpc_module.secure_channel(address, self._credentials, options=self._options)

    def _open_native(self, address):
        """A channel to ``address`` on the native module, with the same
        settings as :meth:`_open`'s."""
        return _transport.open_native(
            address,
            pem=self._pem,
            server_name=self._server_name,
            token=self._token,
            connect_timeout_ms=MIN_CONNECT_TIMEOUT_MS,
            keepalive_time_ms=KEEPALIVE_TIME_MS,
            keepalive_timeout_ms=KEEPALIVE_TIMEOUT_MS,
        )

    def _remaining(self, deadline):
        return max(deadline - time.monotonic(), 0.001)

    def _failed(self, failure, rpc, index):
        """The exception for a failed call, and whether to try the next
        address: only when this one could not be reached (``UNAVAILABLE``),
        never after a timeout, when the call may have been applied."""
        address = self.addresses[index]
        # The server's messages are short and never hold keys or data (its
        # contract); gRPC's own say what failed to connect.
        code = failure.code()
        details = failure.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            # gRPC reports a refused TLS handshake (no client certificate, a
            # CA that does not match) as a closed socket: name the settings.
            tls = (
                ", and that SESSIOND_TLS_CA (and SESSIOND_TLS_CERT, SESSIOND_TLS_KEY when "
                "sessiond asks for a client certificate) match its TLS settings"
                if self._credentials is not None
                else ""
            )
            error = SessiondUnavailable(
                f"sessiond at {address} is unavailable for {rpc} ({details}); check that it "
                f"is running and that SESSIOND_ADDRESS (or SESSIOND_ADDRESSES) points at it{tls}",
                code,
                rpc,
            )
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            error = SessiondUnavailable(
                f"sessiond at {address} did not answer {rpc} within SESSIOND_TIMEOUT "
                f"({self.timeout:g}s)",
                code,
                rpc,
            )
        elif code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            error = SessiondError(
                f"sessiond at {address} refused {rpc} ({code.name}: {details}); "
                "check SESSIOND_TOKEN",
                code,
                rpc,
            )
        else:
            error = SessiondError(f"sessiond {rpc} failed ({code.name}: {details})", code, rpc)
        error.__cause__ = failure
        return error, code == grpc.StatusCode.UNAVAILABLE
