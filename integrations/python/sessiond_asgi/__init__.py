"""Sessions kept in sessiond for ASGI apps (Starlette, FastAPI): a pure ASGI middleware.

    app = Starlette(routes=...)
    app = SessionMiddleware(app, client=AsyncClient("127.0.0.1:50051"))

or ``Starlette(middleware=[Middleware(SessionMiddleware, client=...)])``
and FastAPI's ``app.add_middleware(SessionMiddleware, client=...)``.

Before the app runs, the session named by the cookie is loaded (one
``Load``, only when the cookie holds a possible key) and put in
``scope["session"]``, where Starlette's ``request.session`` finds it: the
dictionary-like ``sessiond_client.Session``, so reading it never awaits.
``await request.session.acycle_key()`` on login and ``await
request.session.aflush()`` on logout call sessiond. When the app starts its
response, Django's end-of-request rules run (``sessiond_client.response``):
the session is saved, asynchronously, before the headers go out, and the
cookie set or deleted as Django would; a session deleted meanwhile turns
the response into a 400. When sessiond cannot be reached for the load, the
app still runs: the session raises ``SessiondUnavailable`` when the app
first reads or writes it (a 500, as any other outage), so the routes that
never touch it keep working.

The cookie settings are Django's, with Django's defaults, so a login made
by a Django app on the same sessiond is a login here.
"""

from sessiond_client.client import AsyncClient
from sessiond_client.errors import SessiondUnavailable
from sessiond_client.response import INTERRUPTED_MESSAGE, Finished, patch_vary
from sessiond_client.session import Session
from sessiond_client.settings import DEFAULT_COOKIE_AGE, DEFAULT_COOKIE_NAME, SessionSettings

__all__ = ["SessionMiddleware", "UnavailableSession"]


def request_cookie(scope, name):
    """``(present, value)`` of the cookie ``name`` in the request's ``Cookie``
    headers, parsed leniently as Django's ``parse_cookie`` does (one odd
    cookie of another app must not hide the session's). A cookie sent twice
    (one set for a parent domain or path, say) is the last one, as Django
    and Express read it, so that every app on the sessiond sees the same
    session."""
    present, found = False, None
    for header, value in scope.get("headers", ()):
        if header != b"cookie":
            continue
        for chunk in value.decode("latin-1").split(";"):
            key, _, val = chunk.partition("=")
            if key.strip() == name:
                val = val.strip()
                if len(val) >= 2 and val[0] == val[-1] == '"':
                    val = val[1:-1]
                present, found = True, val
    return present, found


class UnavailableSession(Session):
    """The session of a request whose load found sessiond unavailable.

    The middleware loads before the app runs, so that reading never
    awaits; an outage must not fail the routes that never touch the
    session. This handle raises the load's ``SessiondUnavailable`` at the
    first read or write (and at every one after), as the load itself would
    have, and the end of the request neither saves it nor touches the
    cookie.
    """

    def __init__(self, client, session_key, settings, error):
        super().__init__(client, session_key, settings)
        #: What the load raised.
        self.error = error

    @property
    def _session(self):
        self.accessed = True
        raise self.error

    def clear(self):
        self.accessed = True
        raise self.error

    def _load_steps(self):
        raise self.error
        yield  # a generator, as the steps it replaces


class SessionMiddleware:
    """``scope["session"]``, kept in sessiond.

    ``client``: a ``sessiond_client.AsyncClient`` (default: one for
    ``127.0.0.1:50051``). The rest are Django's session settings, in lower
    case: ``cookie_name``, ``age`` (seconds), ``domain``, ``path``,
    ``secure``, ``httponly``, ``samesite`` (``"Lax"``, ``"Strict"``,
    ``"None"`` or ``False``), ``expire_at_browser_close``,
    ``save_every_request``.
    """

    def __init__(
        self,
        app,
        client=None,
        *,
        cookie_name=DEFAULT_COOKIE_NAME,
        age=DEFAULT_COOKIE_AGE,
        domain=None,
        path="/",
        secure=False,
        httponly=True,
        samesite="Lax",
        expire_at_browser_close=False,
        save_every_request=False,
    ):
        self.app = app
        self.client = client or AsyncClient()
        self.settings = SessionSettings(
            cookie_name=cookie_name,
            age=age,
            domain=domain,
            path=path,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            expire_at_browser_close=expire_at_browser_close,
            save_every_request=save_every_request,
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        had_cookie, key = request_cookie(scope, self.settings.cookie_name)
        session = Session(self.client, key, self.settings)
        if session.session_key is not None:
            try:
                await session.aload()
            except SessiondUnavailable as error:
                session = UnavailableSession(self.client, key, self.settings, error)
        scope["session"] = session
        if scope["type"] == "websocket":
            # A websocket has no response to carry a cookie: it reads only.
            await self.app(scope, receive, send)
            return

        interrupted = False

        async def send_with_session(message):
            nonlocal interrupted
            if message["type"] == "http.response.start":
                if isinstance(session, UnavailableSession):
                    # Nothing was read, so nothing to save or to set.
                    finished = Finished([], vary_cookie=session.accessed)
                else:
                    finished = await session.afinish(had_cookie, message["status"])
                interrupted = finished.interrupted
                message = _with_session(message, finished)
            elif message["type"] == "http.response.body" and interrupted:
                # The app's body belongs to the answer it meant to give.
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": INTERRUPTED_MESSAGE.encode()}
            await send(message)

        await self.app(scope, receive, send_with_session)


def _with_session(start, finished):
    """The ``http.response.start`` message with the session's headers."""
    if finished.interrupted:
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        start = {**start, "status": 400}
    else:
        headers = [
            (name, value) for name, value in start.get("headers", ()) if name.lower() != b"vary"
        ]
    vary = None
    for name, value in start.get("headers", ()):
        if name.lower() == b"vary":
            vary = value.decode("latin-1") if vary is None else f"{vary}, {value.decode('latin-1')}"
    if finished.vary_cookie:
        vary = patch_vary(vary)
    if vary is not None:
        headers.append((b"vary", vary.encode("latin-1")))
    headers.extend((b"set-cookie", cookie.encode("latin-1")) for cookie in finished.set_cookies)
    return {**start, "headers": headers}
