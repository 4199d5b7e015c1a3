"""What can go wrong talking to sessiond, as exceptions every integration shares.

No message here ever holds a session key, session data or a token: they end
up in logs and error pages.
"""

import grpc

__all__ = ["SessiondError", "SessiondUnavailable", "UpdateError"]


class SessiondError(Exception):
    """sessiond refused or failed a call.

    ``code`` is the ``grpc.StatusCode`` and ``rpc`` the name of the call
    (``"Load"``, ``"Patch"``, ...), so that a caller can act on the ones it
    has a meaning for (``ALREADY_EXISTS`` on an insert, ``NOT_FOUND`` on an
    update) and a log line says which call failed.
    """

    def __init__(self, message, code, rpc):
        super().__init__(message)
        self.code = code
        self.rpc = rpc


class SessiondUnavailable(SessiondError):
    """sessiond could not be reached or did not answer in time.

    The request cannot know its session, so it fails rather than carrying on
    with an empty one (which would log the user out). Retrying later may work.
    """


class UpdateError(SessiondError):
    """A save found the session deleted meanwhile (a logout in another tab).

    Django's ``UpdateError``: the session is never brought back; the end of
    the request answers 400, as Django's ``SessionInterrupted`` does.
    """

    def __init__(self, rpc):
        super().__init__(
            "the session was deleted before the request completed; the user may "
            "have logged out in a concurrent request",
            grpc.StatusCode.NOT_FOUND,
            rpc,
        )
