"""Flask sessions kept in sessiond: ``Sessiond(app)`` or ``Sessiond().init_app(app)``.

``flask.session`` becomes a :class:`SessiondSession`, the dictionary-like
handle of ``sessiond_client`` (loaded from sessiond on first use, saved as
a ``Patch`` of what changed); the end of each request follows Django's
``SessionMiddleware`` (``sessiond_client.response``), so a login made by a
Django app sharing the sessiond is a login here, and the other way round.

Configuration, from ``app.config`` (the ``SESSIOND_*`` connection settings
when ``init_app`` runs, the cookie settings at every request):

``SESSIOND_ADDRESSES`` / ``SESSIOND_ADDRESS``
    one ``host:port`` or a list (default ``127.0.0.1:50051``).
``SESSIOND_TOKEN``, ``SESSIOND_TIMEOUT``
    the bearer token (default none) and seconds per call (default 5).
``SESSIOND_TLS_CA``, ``SESSIOND_TLS_CERT``, ``SESSIOND_TLS_KEY``, ``SESSIOND_TLS_SERVER_NAME``
    TLS to sessiond (default: plaintext).
``SESSIOND_COOKIE_NAME``
    the cookie's name, default ``sessionid`` as Django's. Flask's own
    ``SESSION_COOKIE_NAME`` is not read: Flask always sets it (to
    ``session``), so it cannot tell a choice from its default, and a login
    shared with Django needs Django's name.
``SESSIOND_COOKIE_AGE``
    the session's age in seconds, default 1209600 (two weeks, Django's
    ``SESSION_COOKIE_AGE``), not Flask's ``PERMANENT_SESSION_LIFETIME``:
    the age is the session's, shared by every app.
``SESSIOND_EXPIRE_AT_BROWSER_CLOSE``, ``SESSIOND_SAVE_EVERY_REQUEST``
    Django's ``SESSION_EXPIRE_AT_BROWSER_CLOSE`` and
    ``SESSION_SAVE_EVERY_REQUEST`` (default ``False``).
``SESSION_COOKIE_DOMAIN``, ``_PATH``, ``_SECURE``, ``_HTTPONLY``, ``_SAMESITE``
    Flask's own cookie attributes, read as Flask reads them. Flask's
    default SameSite is none at all; set ``"Lax"`` for Django's attribute.

``session.permanent`` is Django's expiry seen from Flask: ``False`` means
the cookie lasts until the browser closes (``set_expiry(0)``), ``True``
the session's age.
"""

from flask.sessions import SessionInterface, SessionMixin

from sessiond_client.client import DEFAULT_ADDRESS, DEFAULT_TIMEOUT, Client, TlsFiles
from sessiond_client.response import INTERRUPTED_MESSAGE
from sessiond_client.session import Session
from sessiond_client.settings import DEFAULT_COOKIE_AGE, DEFAULT_COOKIE_NAME, SessionSettings

__all__ = ["Sessiond", "SessiondSession", "SessiondSessionInterface", "client_from_config"]


class SessiondSession(Session, SessionMixin):
    """``flask.session``: the ``sessiond_client.Session`` handle, with
    Flask's ``permanent`` and ``new``."""

    #: Whether the request carried a cookie of the session's name.
    had_cookie = False

    @property
    def new(self):
        """True while the session has no key in sessiond."""
        return self.session_key is None

    @property
    def permanent(self):
        """``False``: the cookie lasts until the browser closes."""
        return not self.get_expire_at_browser_close()

    @permanent.setter
    def permanent(self, value):
        if not value:
            self.set_expiry(0)
        elif self.settings.expire_at_browser_close:
            self.set_expiry(self.settings.age)
        else:
            self.set_expiry(None)


def client_from_config(config):
    """The ``sessiond_client.Client`` that ``SESSIOND_*`` of ``config`` describe."""
    tls = [config.get(f"SESSIOND_TLS_{part}") for part in ("CA", "CERT", "KEY", "SERVER_NAME")]
    return Client(
        config.get("SESSIOND_ADDRESSES") or config.get("SESSIOND_ADDRESS", DEFAULT_ADDRESS),
        token=config.get("SESSIOND_TOKEN"),
        timeout=config.get("SESSIOND_TIMEOUT", DEFAULT_TIMEOUT),
        tls=TlsFiles(*tls) if any(tls) else None,
    )


class SessiondSessionInterface(SessionInterface):
    """Opens ``flask.session`` from the cookie and finishes it as Django's
    middleware does."""

    session_class = SessiondSession

    def __init__(self, client):
        self.client = client

    def settings(self, app):
        """The cookie and expiry settings of ``app`` (read per request, so
        that tests may change ``app.config``)."""
        config = app.config
        return SessionSettings(
            cookie_name=config.get("SESSIOND_COOKIE_NAME", DEFAULT_COOKIE_NAME),
            age=config.get("SESSIOND_COOKIE_AGE", DEFAULT_COOKIE_AGE),
            domain=self.get_cookie_domain(app),
            path=self.get_cookie_path(app),
            secure=self.get_cookie_secure(app),
            httponly=self.get_cookie_httponly(app),
            samesite=self.get_cookie_samesite(app) or False,
            expire_at_browser_close=config.get("SESSIOND_EXPIRE_AT_BROWSER_CLOSE", False),
            save_every_request=config.get("SESSIOND_SAVE_EVERY_REQUEST", False),
        )

    def open_session(self, app, request):
        settings = self.settings(app)
        # A cookie sent twice (one set for a parent domain or path, say):
        # the last one, as Django's parse_cookie and Express read it, so
        # that every app on the sessiond sees the same session.
        keys = request.cookies.getlist(settings.cookie_name)
        session = self.session_class(self.client, keys[-1] if keys else None, settings)
        session.had_cookie = bool(keys)
        return session

    def save_session(self, app, session, response):
        finished = session.finish(session.had_cookie, response.status_code)
        if finished.interrupted:
            # Flask runs this after the view, where raising gives a 500;
            # Django answers a session deleted meanwhile with a 400.
            response.status_code = 400
            response.set_data(INTERRUPTED_MESSAGE)
            response.mimetype = "text/plain"
            response.headers.pop("Location", None)
        for cookie in finished.set_cookies:
            response.headers.add("Set-Cookie", cookie)
        if finished.vary_cookie:
            response.vary.add("Cookie")


class Sessiond:
    """The Flask extension: ``Sessiond(app)``, or ``ext = Sessiond()`` then
    ``ext.init_app(app)`` in an app factory. ``client``: a
    ``sessiond_client.Client`` to use instead of one from ``app.config``."""

    def __init__(self, app=None, client=None):
        self.client = client
        if app is not None:
            self.init_app(app)

    def init_app(self, app):
        client = self.client or client_from_config(app.config)
        app.extensions["sessiond"] = client
        app.session_interface = SessiondSessionInterface(client)
