"""``SESSION_ENGINE = "sessiond_django.session_store"``: sessions kept in sessiond.

The engine behaves as Django's database engine (``backends.db``), with
sessiond in place of the table:

* ``load`` of a missing or expired session returns ``{}`` and forgets the
  key, so the next save issues a fresh one; it never creates anything.
* ``save(must_create=True)`` inserts or raises ``CreateError``;
  ``save()`` updates or raises ``UpdateError`` when the session was deleted
  meanwhile (a logout in another tab): it never brings it back.
* ``create`` draws keys until an insert succeeds.

Session data travels as the text of a JSON object, exactly what Django's
``JSONSerializer`` writes (so ``SESSION_SERIALIZER`` is not consulted); the
expiry travels as the absolute time ``get_expiry_date()`` gives at save time.
sessiond signs the data itself when it shares a table with Django
(``--codec django``), so Django's ``SECRET_KEY`` is not needed here.

Keys are checked against sessiond's rule (8 to 40 characters of
``[a-z0-9]``, which every key Django draws passes) before any call: a
cookie that cannot be a key gives an empty session without a round trip.

When sessiond cannot be reached every method raises
``sessiond_django.client.SessiondUnavailable`` rather than answering with
an empty session, which would log the user out. Nothing here logs a key or
session data.
"""

import datetime
import json
import logging
from functools import partial

import grpc
from asgiref.sync import sync_to_async
from django.contrib.sessions.backends.base import (
    VALID_KEY_CHARS,
    CreateError,
    SessionBase,
    UpdateError,
)
from django.utils import timezone
from django.utils.crypto import get_random_string
from google.protobuf.timestamp_pb2 import Timestamp

from sessiond_django.client import SessiondError, call, sessiond_pb2

#: sessiond's key rule: at least Django's 8 characters, at most the
#: ``varchar(40)`` of Django's table.
MIN_KEY_LENGTH = 8
MAX_KEY_LENGTH = 40

#: The length of the keys Django draws.
NEW_KEY_LENGTH = 32

#: Django's database engine retries forever; with 32 random characters a
#: single collision is already unheard of, so this many in a row means
#: something else is wrong, and the request fails instead of spinning.
CREATE_ATTEMPTS = 100

_KEY_CHARS = frozenset(VALID_KEY_CHARS)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

# gRPC calls block on the network, not on the ORM: they need not queue on
# the one thread that Django's thread-sensitive sync_to_async work shares.
_in_thread = partial(sync_to_async, thread_sensitive=False)


def is_valid_key(key):
    """Whether sessiond accepts ``key``: 8 to 40 characters of ``[a-z0-9]``."""
    return (
        isinstance(key, str)
        and MIN_KEY_LENGTH <= len(key) <= MAX_KEY_LENGTH
        and _KEY_CHARS.issuperset(key)
    )


def encode_data(session_dict):
    """The session as sessiond stores it: the text of a JSON object,
    byte for byte what Django's ``JSONSerializer`` writes."""
    return json.dumps(session_dict, separators=(",", ":"))


def decode_data(text):
    """The session dictionary from sessiond's JSON text; anything that is not
    a JSON object reads as an empty session, as Django reads corrupted data."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        # Django's own words and logger for corrupted session data; never the data.
        logging.getLogger("django.security.SuspiciousSession").warning("Session data corrupted")
        return {}
    return data


def to_timestamp(moment):
    """A ``Timestamp`` for ``moment``; a naive datetime (``USE_TZ = False``)
    is in ``TIME_ZONE``, as Django's ``timezone.now()`` gives it then."""
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    delta = moment - _EPOCH
    return Timestamp(
        seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000
    )


class SessionStore(SessionBase):
    """Django's ``SessionBase`` on sessiond's ``SessionService``."""

    def _validate_session_key(self, key):
        return is_valid_key(key)

    def _get_new_session_key(self):
        # Django asks exists() first; the insert with must_create is the
        # check that counts (and the only race-free one), so the extra round
        # trip is skipped.
        return get_random_string(NEW_KEY_LENGTH, VALID_KEY_CHARS)

    async def _aget_new_session_key(self):
        return self._get_new_session_key()

    def load(self):
        if self.session_key is None:
            return {}
        response = call("Load", sessiond_pb2.LoadRequest(session_key=self.session_key))
        if not response.found:
            # Never reuse a key the client chose or that expired.
            self._session_key = None
            return {}
        return decode_data(response.data)

    def exists(self, session_key):
        if not is_valid_key(session_key):
            return False
        return call("Exists", sessiond_pb2.ExistsRequest(session_key=session_key)).exists

    def create(self):
        for _ in range(CREATE_ATTEMPTS):
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError(
            f"unable to create a new session key: sessiond reported {CREATE_ATTEMPTS} "
            "fresh random keys in a row as taken"
        )

    def save(self, must_create=False):
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)
        request = sessiond_pb2.SaveRequest(
            session_key=self._get_or_create_session_key(),
            data=encode_data(data),
            expire_date=to_timestamp(self.get_expiry_date()),
            must_create=must_create,
        )
        try:
            call("Save", request)
        except SessiondError as error:
            if must_create and error.code == grpc.StatusCode.ALREADY_EXISTS:
                raise CreateError from error
            if not must_create and error.code == grpc.StatusCode.NOT_FOUND:
                raise UpdateError from error
            raise

    def delete(self, session_key=None):
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        if not is_valid_key(session_key):
            # sessiond holds nothing under a key it would refuse.
            return
        call("Delete", sessiond_pb2.DeleteRequest(session_key=session_key))

    @classmethod
    def clear_expired(cls):
        call("ClearExpired", sessiond_pb2.ClearExpiredRequest())

    # Django 5.1+'s async API. Each call runs the blocking one in a worker
    # thread; the semantics are the sync methods' own.

    async def aload(self):
        return await _in_thread(self.load)()

    async def aexists(self, session_key):
        return await _in_thread(self.exists)(session_key)

    async def acreate(self):
        return await _in_thread(self.create)()

    async def asave(self, must_create=False):
        return await _in_thread(self.save)(must_create)

    async def adelete(self, session_key=None):
        return await _in_thread(self.delete)(session_key)

    @classmethod
    async def aclear_expired(cls):
        return await _in_thread(cls.clear_expired)()
