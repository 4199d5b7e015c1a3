"""Fixtures of the framework-neutral client's tests and the Flask and ASGI
ones: a real sessiond, named by the environment the Rust driver
(server/tests/python_clients.rs) sets.

``SESSIOND_ADDRESS``, ``SESSIOND_TOKEN``, ``SESSIOND_KEEPALIVE_SECONDS``
    a sessiond that requires that token and pings a connection idle for
    that many seconds (its ``--keepalive``).
``SESSIOND_TLS_ADDRESS``, ``SESSIOND_TLS_CA``, ``SESSIOND_TLS_CERT``, ``SESSIOND_TLS_KEY``
    a sessiond serving TLS with a certificate for ``localhost`` signed by
    that CA, which requires a client certificate (the cert and key given).
"""

import os
import socket
import time

import pytest

from sessiond_client import AsyncClient, Client


def required(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} must be set (server/tests/python_clients.rs sets it)")
    return value


@pytest.fixture
def address():
    return required("SESSIOND_ADDRESS")


@pytest.fixture
def token():
    return required("SESSIOND_TOKEN")


@pytest.fixture
def client(address, token):
    client = Client(address, token=token)
    yield client
    client.close()


@pytest.fixture
def make_async_client(address, token):
    """An ``AsyncClient`` factory: each event loop (``asyncio.run``) needs
    the client made inside it to close it there."""
    return lambda **settings: AsyncClient(address, token=token, **settings)


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Answer:
    """A response over real HTTP: status, every header, body text."""

    def __init__(self, response):
        self.status = response.status
        self.headers = response.getheaders()
        self.text = response.read().decode()

    def all(self, name):
        return [value for header, value in self.headers if header.lower() == name.lower()]

    def cookie(self, name="sessionid"):
        """The value a ``Set-Cookie`` of ``name`` sets, or ``None``."""
        for header in self.all("Set-Cookie"):
            cookie_name, _, rest = header.partition("=")
            if cookie_name == name:
                return rest.split(";", 1)[0]
        return None


def http_get(port, path, cookie=None):
    """``GET path`` on 127.0.0.1:``port`` with the session cookie ``cookie``."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Cookie": f"sessionid={cookie}"} if cookie is not None else {}
        connection.request("GET", path, headers=headers)
        return Answer(connection.getresponse())
    finally:
        connection.close()


def wait_until(condition, what, timeout=5.0):
    """Polls ``condition`` until it holds; fails naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.005)
