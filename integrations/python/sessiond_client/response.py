"""The end of a request: Django's ``SessionMiddleware.process_response``,
written once for every framework that is not Django.

:func:`finish_steps` decides, from the session and the response's status,
whether to save, which ``Set-Cookie`` to send, and whether the response
varies on the cookie; ``Session.finish()`` (Flask) and ``await
Session.afinish()`` (ASGI) run it. The framework only copies the outcome
onto its response:

- the request had the cookie and the session is empty (logout, or a cookie
  that cannot be a key): the cookie is deleted, ``Vary: Cookie``;
- ``Vary: Cookie`` whenever the session was read or written;
- modified (or ``save_every_request``) and not empty: saved, and the cookie
  set, with ``Max-Age``/``expires`` or as a browser-session cookie, unless
  the status is 5xx: a failed request stores nothing;
- the session was deleted meanwhile (``UpdateError``): nothing is set, and
  the response becomes a 400, as Django's ``SessionInterrupted``.

Cookies are written as Django writes them (Python's ``http.cookies``,
attributes in the same order), so the same settings give the same header.
"""

import email.utils
import time
from http.cookies import SimpleCookie
from typing import NamedTuple

from sessiond_client.errors import UpdateError

__all__ = [
    "INTERRUPTED_MESSAGE",
    "Finished",
    "delete_cookie_header",
    "finish_steps",
    "patch_vary",
    "set_cookie_header",
]

#: The body of the 400 answer, Django's ``SessionInterrupted`` message.
INTERRUPTED_MESSAGE = (
    "The request's session was deleted before the request completed. "
    "The user may have logged out in a concurrent request, for example."
)

#: What Django sends as the expiry of a deleted cookie.
_EPOCH_DATE = "Thu, 01 Jan 1970 00:00:00 GMT"


class Finished(NamedTuple):
    """What the end of the request adds to the response."""

    #: ``Set-Cookie`` header values to add.
    set_cookies: list
    #: Whether ``Vary`` must name ``Cookie``.
    vary_cookie: bool
    #: The session was deleted meanwhile: answer 400 (:data:`INTERRUPTED_MESSAGE`).
    interrupted: bool = False


def _cookie(settings, value, max_age, expires, secure, httponly):
    cookie = SimpleCookie()
    cookie[settings.cookie_name] = value
    morsel = cookie[settings.cookie_name]
    if expires is not None:
        morsel["expires"] = expires
    if max_age is not None:
        morsel["max-age"] = int(max_age)
    if settings.path is not None:
        morsel["path"] = settings.path
    if settings.domain is not None:
        morsel["domain"] = settings.domain
    if secure:
        morsel["secure"] = True
    if httponly:
        morsel["httponly"] = True
    if settings.samesite:
        morsel["samesite"] = settings.samesite
    return morsel.OutputString()


def set_cookie_header(settings, session_key, max_age):
    """The ``Set-Cookie`` value for ``session_key``; ``max_age`` ``None`` makes
    a browser-session cookie (no ``Max-Age``, no ``expires``)."""
    expires = (
        None if max_age is None else email.utils.formatdate(time.time() + max_age, usegmt=True)
    )
    return _cookie(settings, session_key, max_age, expires, settings.secure, settings.httponly)


def delete_cookie_header(settings):
    """The ``Set-Cookie`` value that deletes the session cookie, as Django's
    ``delete_cookie``: ``Secure`` only where a browser demands it."""
    secure = settings.cookie_name.startswith(("__Secure-", "__Host-")) or (
        bool(settings.samesite) and str(settings.samesite).lower() == "none"
    )
    return _cookie(settings, "", 0, _EPOCH_DATE, secure, False)


def patch_vary(value):
    """A ``Vary`` header value that also names ``Cookie`` (none given: just
    ``Cookie``); kept as is when it names it already or is ``*``."""
    fields = [field.strip() for field in (value or "").split(",") if field.strip()]
    if "*" in fields or any(field.lower() == "cookie" for field in fields):
        return ", ".join(fields)
    return ", ".join([*fields, "Cookie"])


def finish_steps(session, had_cookie, status_code):
    """The end of the request as steps (see ``sessiond_client.session``);
    returns :class:`Finished`.

    ``had_cookie``: the request carried a cookie of the session's name
    (whatever its value). ``status_code``: the response's status.
    """
    settings = session.settings
    accessed, modified, empty = session.accessed, session.modified, session.is_empty()
    if had_cookie and empty:
        return Finished([delete_cookie_header(settings)], vary_cookie=True)
    if not (modified or settings.save_every_request) or empty or status_code >= 500:
        return Finished([], vary_cookie=accessed)
    # Read before the save, as Django does; a session saved every request
    # but never read is loaded here, to know its own expiry.
    yield from session._loaded_steps()
    max_age = None if session.get_expire_at_browser_close() else session.get_expiry_age()
    try:
        yield from session._save_steps()
    except UpdateError:
        return Finished([], vary_cookie=accessed, interrupted=True)
    return Finished([set_cookie_header(settings, session.session_key, max_age)], vary_cookie=True)
