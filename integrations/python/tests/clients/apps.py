"""The same small site as a Flask app and as a Starlette app, each on
sessiond, for the tests that check both against Django's rules."""

from flask import Flask, session
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from flask_sessiond import Sessiond
from sessiond_asgi import SessionMiddleware


def flask_app(address, token, **config):
    app = Flask(__name__)
    app.config.update(
        {
            "SESSIOND_ADDRESS": address,
            "SESSIOND_TOKEN": token,
            # Django's SameSite, which Flask does not set by default.
            "SESSION_COOKIE_SAMESITE": "Lax",
            **config,
        }
    )
    Sessiond(app)
    sessiond = app.extensions["sessiond"]

    @app.get("/visits")
    def visits():
        session["visits"] = session.get("visits", 0) + 1
        return str(session["visits"])

    @app.get("/whoami")
    def whoami():
        return session.get("_auth_user_id", "anonymous")

    @app.get("/login")
    def login():
        session.cycle_key()
        session["_auth_user_id"] = "7"
        return "logged in"

    @app.get("/logout")
    def logout():
        session.flush()
        return "logged out"

    @app.get("/fail")
    def fail():
        session["x"] = 1
        return "failed", 500

    @app.get("/plain")
    def plain():
        return "no session"

    @app.get("/browser-close")
    def browser_close():
        session.set_expiry(0)
        session["b"] = 1
        return "until the browser closes"

    @app.get("/logout-elsewhere")
    def logout_elsewhere():
        session["n"] = 1
        # Another request of this user logs out while this one runs.
        sessiond.delete(session.session_key)
        return "saved?"

    return app


def starlette_app(client, **settings):
    async def visits(request):
        request.session["visits"] = request.session.get("visits", 0) + 1
        return PlainTextResponse(str(request.session["visits"]))

    async def whoami(request):
        return PlainTextResponse(request.session.get("_auth_user_id", "anonymous"))

    async def login(request):
        await request.session.acycle_key()
        request.session["_auth_user_id"] = "7"
        return PlainTextResponse("logged in")

    async def logout(request):
        await request.session.aflush()
        return PlainTextResponse("logged out")

    async def fail(request):
        request.session["x"] = 1
        return PlainTextResponse("failed", status_code=500)

    async def plain(request):
        return PlainTextResponse("no session")

    async def browser_close(request):
        request.session.set_expiry(0)
        request.session["b"] = 1
        return PlainTextResponse("until the browser closes")

    async def logout_elsewhere(request):
        request.session["n"] = 1
        await client.delete(request.session.session_key)
        return PlainTextResponse("saved?")

    routes = [
        Route("/visits", visits),
        Route("/whoami", whoami),
        Route("/login", login),
        Route("/logout", logout),
        Route("/fail", fail),
        Route("/plain", plain),
        Route("/browser-close", browser_close),
        Route("/logout-elsewhere", logout_elsewhere),
    ]
    return SessionMiddleware(Starlette(routes=routes), client=client, **settings)
