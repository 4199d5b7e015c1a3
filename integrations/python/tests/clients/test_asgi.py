"""The ASGI middleware's own settings and its ASGI conduct, driven by hand
(no server): cookie attributes from the constructor, no load without a
valid cookie, other scopes passed through."""

import asyncio
import re
from pathlib import Path

from apps import starlette_app
from conftest import closed_port

from sessiond_asgi import SessionMiddleware
from sessiond_client import AsyncClient, SessiondUnavailable


def exchange(app, path, cookie=None, method="GET", headers=None):
    """Runs one request through ``app``; returns the start message, the
    body, and what the app raised (``None``)."""
    if headers is None:
        headers = [(b"cookie", f"sessionid={cookie}".encode())] if cookie else []
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    scope.update(query_string=b"", asgi={"version": "3.0"}, http_version="1.1")
    scope.update(scheme="http", root_path="")
    sent = []
    raised = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def run():
        try:
            await app(scope, receive, send)
        except Exception as error:  # noqa: BLE001 - returned to the test
            raised.append(error)

    asyncio.run(run())
    start = sent[0]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return start, body.decode(), raised[0] if raised else None


def call(app, path, cookie=None, method="GET", headers=None):
    """Runs one request through ``app``, which must not raise; returns the
    start message and the body."""
    start, body, raised = exchange(app, path, cookie, method, headers)
    if raised is not None:
        raise raised
    return start, body


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


def test_a_cookie_sent_twice_is_the_last_as_django_reads_it(client, make_async_client):
    # Django's parse_cookie and Express keep the last of two cookies of one
    # name (one set for a parent domain, say); every app must read the same.
    logged_in = client.create({"_auth_user_id": "7"})
    other = client.create({})
    for first, last, expected in [(logged_in, other, "anonymous"), (other, logged_in, "7")]:
        for headers in (
            [(b"cookie", f"sessionid={first}; sessionid={last}".encode())],
            # HTTP/2 may send each cookie in a header of its own.
            [(b"cookie", f"sessionid={first}".encode()), (b"cookie", f"sessionid={last}".encode())],
        ):
            app = starlette_app(make_async_client())
            assert call(app, "/whoami", headers=headers)[1] == expected


def test_an_unreachable_sessiond_fails_only_the_routes_that_use_the_session():
    dead = AsyncClient(f"127.0.0.1:{closed_port()}", timeout=1)
    cookie = "k" * 32
    for save_every_request in (False, True):
        app = starlette_app(dead, save_every_request=save_every_request)
        start, body = call(app, "/plain", cookie)
        assert (start["status"], body) == (200, "no session")
        assert header(start, "set-cookie") == [] and header(start, "vary") == []
        for path in ("/whoami", "/visits", "/login", "/logout"):
            start, _, raised = exchange(app, path, cookie)
            assert start["status"] == 500, path
            assert isinstance(raised, SessiondUnavailable), path
            assert header(start, "set-cookie") == [], path


def test_the_unavailable_session_raises_the_loads_error_at_every_use():
    dead = AsyncClient(f"127.0.0.1:{closed_port()}", timeout=1)
    uses = {
        "get": lambda session: session.get("a"),
        "in": lambda session: "a" in session,
        "set": lambda session: session.__setitem__("a", 1),
        "clear": lambda session: session.clear(),
        "set_expiry": lambda session: session.set_expiry(0),
    }
    outcomes = {}

    async def app(scope, receive, send):
        session = scope["session"]
        errors = []
        for name, use in uses.items():
            try:
                use(session)
            except SessiondUnavailable as error:
                errors.append(error)
                outcomes[name] = "raised"
        for name in ("aload", "asave", "acycle_key", "aflush"):
            try:
                await getattr(session, name)()
            except SessiondUnavailable as error:
                errors.append(error)
                outcomes[name] = "raised"
        outcomes["same"] = all(error is errors[0] for error in errors)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"caught"})

    start, body = call(SessionMiddleware(app, client=dead), "/", "k" * 32)
    assert (start["status"], body) == (200, "caught")
    assert outcomes == {
        **{name: "raised" for name in uses},
        **{name: "raised" for name in ("aload", "asave", "acycle_key", "aflush")},
        "same": True,
    }
    # The app read it (or tried): the response varies on the cookie, and
    # nothing is saved or set.
    assert header(start, "vary") == ["Cookie"] and header(start, "set-cookie") == []


def readme_block(heading, language="python"):
    """The first ``language`` code block after the line ``heading`` of the
    package's README."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    _, after = readme.split(f"\n{heading}\n", 1)
    _, block = after.split(f"```{language}\n", 1)
    return block.split("```", 1)[0]


def test_the_readme_starlette_example_runs_as_written(make_async_client):
    namespace = {}
    exec(readme_block("## ASGI: Starlette and FastAPI"), namespace)  # noqa: S102 - the README's own code
    app = namespace["app"]
    # Its client names the default address; this test's sessiond is elsewhere.
    [middleware] = app.user_middleware
    middleware.kwargs["client"] = make_async_client()

    assert call(app, "/whoami")[1] == "anonymous"
    start, body = call(app, "/login", method="POST")
    key = re.match(r"sessionid=([a-z0-9]{32});", header(start, "set-cookie")[0])[1]
    assert body == "ok"
    assert call(app, "/whoami", key)[1] == "7"
    start, body = call(app, "/logout", key, method="POST")
    assert body == "bye" and header(start, "set-cookie")[0].startswith('sessionid="";')
    assert call(app, "/whoami", key)[1] == "anonymous"
