"""The ASGI middleware's own settings and its ASGI conduct, driven by hand
(no server): cookie attributes from the constructor, no load without a
valid cookie, other scopes passed through."""

import asyncio
import re

from apps import starlette_app
from conftest import closed_port

from sessiond_asgi import SessionMiddleware
from sessiond_client import AsyncClient


def call(app, path, cookie=None):
    """Runs one GET through ``app``; returns the start message and the body."""
    headers = [(b"cookie", f"sessionid={cookie}".encode())] if cookie else []
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": b""}
    scope.update(asgi={"version": "3.0"}, http_version="1.1", scheme="http", root_path="")
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def run():
        await app(scope, receive, send)

    asyncio.run(run())
    start = sent[0]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return start, body.decode()


def header(start, name):
    return [value.decode() for key, value in start["headers"] if key.decode().lower() == name]


def test_cookie_settings_are_the_constructors(make_async_client):
    app = starlette_app(
        None,
        cookie_name="shared",
        age=60,
        domain=".example.com",
        path="/app/",
        secure=True,
        httponly=False,
        samesite=False,
    )
    app.client = make_async_client()
    start, body = call(app, "/visits")
    assert body == "1"
    [cookie] = header(start, "set-cookie")
    assert re.fullmatch(
        r"shared=[a-z0-9]{32}; Domain=.example.com; expires=[^;]+ GMT; Max-Age=60; "
        r"Path=/app/; Secure",
        cookie,
    )


def test_no_call_without_a_cookie_that_can_be_a_key():
    app = starlette_app(AsyncClient(f"127.0.0.1:{closed_port()}", timeout=1))
    for cookie in (None, "bad"):
        start, body = call(app, "/whoami", cookie)
        assert (start["status"], body) == (200, "anonymous")


def test_an_existing_vary_header_is_extended():
    async def reading(scope, receive, send):
        scope["session"].get("seen")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"vary", b"Accept-Encoding")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    app = SessionMiddleware(reading, client=AsyncClient(f"127.0.0.1:{closed_port()}"))
    start, _ = call(app, "/")
    assert header(start, "vary") == ["Accept-Encoding, Cookie"]


def test_other_scopes_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append("session" in scope)

    middleware = SessionMiddleware(app, client=AsyncClient(f"127.0.0.1:{closed_port()}"))
    asyncio.run(middleware({"type": "lifespan"}, None, None))
    assert seen == [False]
