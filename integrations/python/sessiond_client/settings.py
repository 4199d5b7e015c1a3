"""How a web app's sessions behave: the cookie and the session's age.

Named and defaulted as Django's ``SESSION_*`` settings, so that a Flask or
ASGI app configured with the defaults sets the very cookie a Django app
sets, and a login made in one is a login in the other.
"""

from dataclasses import dataclass
from typing import Optional, Union

__all__ = [
    "DEFAULT_COOKIE_AGE",
    "DEFAULT_COOKIE_NAME",
    "SessionSettings",
]

#: Django's ``SESSION_COOKIE_NAME``: the name every app sharing a login uses.
DEFAULT_COOKIE_NAME = "sessionid"

#: Django's ``SESSION_COOKIE_AGE``: two weeks, in seconds.
DEFAULT_COOKIE_AGE = 1209600

_SAMESITE = ("lax", "strict", "none")


@dataclass(frozen=True)
class SessionSettings:
    """The cookie and expiry settings of one app, Django's names in lower case.

    ``samesite`` is ``"Lax"``, ``"Strict"``, ``"None"``, or ``False`` to send
    no SameSite attribute. ``age`` is the session's lifetime in seconds when
    the session sets none of its own (``set_expiry``).
    """

    cookie_name: str = DEFAULT_COOKIE_NAME
    age: int = DEFAULT_COOKIE_AGE
    domain: Optional[str] = None
    path: str = "/"
    secure: bool = False
    httponly: bool = True
    samesite: Union[str, bool, None] = "Lax"
    expire_at_browser_close: bool = False
    save_every_request: bool = False

    def __post_init__(self):
        if not isinstance(self.cookie_name, str) or not self.cookie_name:
            raise ValueError("the session cookie name must be a non-empty string")
        if isinstance(self.age, bool) or not isinstance(self.age, int):
            raise ValueError(
                "the session age (SESSION_COOKIE_AGE) must be a whole number of seconds"
            )
        if self.samesite and str(self.samesite).lower() not in _SAMESITE:
            raise ValueError('the SameSite setting must be "Lax", "Strict", "None", or False')
