"""``SESSION_ENGINE = "sessiond_django.session_store"``: sessions kept in sessiond.

The engine behaves as Django's database engine (``backends.db``), with
sessiond in place of the table:

* ``load`` of a missing or expired session returns ``{}`` and forgets the
  key, so the next save issues a fresh one; it never creates anything.
* ``save(must_create=True)`` inserts or raises ``CreateError``;
  ``save()`` sends only what changed since the session was loaded (members
  set and members removed, with sessiond's ``Patch``), so two requests of
  one user that change different members both keep their changes; it
  raises ``UpdateError`` when the session was deleted meanwhile (a logout
  in another tab): it never brings it back.
* ``create`` draws keys until an insert succeeds.
* ``cycle_key`` moves the session to a key sessiond draws, in one call
  (``CycleKey``): the old key is gone and the data kept, atomically.

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

The calls, the JSON encoding, the diff of a save and the errors are
``sessiond_client``'s; this module is what Django's ``SessionBase`` adds:
its key drawing (so ``create`` inserts with ``must_create``), its settings
and its exceptions.
"""

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

from sessiond_client import calls
from sessiond_client.data import (
    MAX_KEY_LENGTH,
    MIN_KEY_LENGTH,
    Snapshot,
    changes_since,
    encode_data,
    is_valid_key,
)
from sessiond_client.errors import SessiondError
from sessiond_django.client import client

__all__ = ["MAX_KEY_LENGTH", "MIN_KEY_LENGTH", "SessionStore", "encode_data", "is_valid_key"]

#: The length of the keys Django draws.
NEW_KEY_LENGTH = 32

#: Django's database engine retries forever; with 32 random characters a
#: single collision is already unheard of, so this many in a row means
#: something else is wrong, and the request fails instead of spinning.
CREATE_ATTEMPTS = 100

# gRPC calls block on the network, not on the ORM: they need not queue on
# the one thread that Django's thread-sensitive sync_to_async work shares.
_in_thread = partial(sync_to_async, thread_sensitive=False)


def _aware(moment):
    """``moment`` as an aware datetime; a naive one (``USE_TZ = False``) is
    in ``TIME_ZONE``, as Django's ``timezone.now()`` gives it then."""
    if timezone.is_naive(moment):
        return timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


class SessionStore(SessionBase):
    """Django's ``SessionBase`` on sessiond's ``SessionService``."""

    #: The dictionary last loaded from or written to sessiond
    #: (``sessiond_client.data.Snapshot``): a save sends what differs from
    #: it; a session dictionary that is not this one (``clear()`` makes a
    #: new one) is written whole.
    _stored = None

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
        found = client().send(calls.load_with_snapshot(self.session_key))
        if found is None:
            # Never reuse a key the client chose or that expired.
            self._session_key = None
            self._stored = None
            return {}
        data, self._stored = found
        if data is None:
            # Django's own words and logger for corrupted session data; never
            # the data. The next save writes the session whole.
            logging.getLogger("django.security.SuspiciousSession").warning("Session data corrupted")
            return {}
        return data

    def exists(self, session_key):
        if not is_valid_key(session_key):
            return False
        return client().exists(session_key)

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
        if must_create:
            self._insert(data)
        else:
            self._patch(data)

    def _insert(self, data):
        try:
            client().save(
                self._get_or_create_session_key(),
                data,
                _aware(self.get_expiry_date()),
                must_create=True,
            )
        except SessiondError as error:
            if error.code == grpc.StatusCode.ALREADY_EXISTS:
                raise CreateError from error
            raise
        self._stored = Snapshot(data)

    def _patch(self, data):
        # What this request changed, applied on top of what is stored now,
        # so that the changes of concurrent requests of the same user stay.
        changed, removed, replace = changes_since(self._stored, data)
        try:
            client().patch(
                self._get_or_create_session_key(),
                changed,
                removed,
                replace,
                _aware(self.get_expiry_date()),
            )
        except SessiondError as error:
            if error.code == grpc.StatusCode.NOT_FOUND:
                # Deleted meanwhile (a logout elsewhere): never brought back.
                raise UpdateError from error
            raise
        self._stored = Snapshot(data)

    def cycle_key(self):
        """Moves the session to a new key that sessiond draws, with the data
        in hand and its expiry, and removes the old key, in one call."""
        data = self._session
        key = self.session_key
        if key is None:
            # Nothing stored yet: Django's cycle_key creates the session.
            self.create()
            return
        self._session_key = client().cycle_key(key, data, _aware(self.get_expiry_date()))
        self._stored = Snapshot(data)
        self.modified = True

    def delete(self, session_key=None):
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        if not is_valid_key(session_key):
            # sessiond holds nothing under a key it would refuse.
            return
        client().delete(session_key)

    @classmethod
    def clear_expired(cls):
        client().clear_expired()

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

    async def acycle_key(self):
        return await _in_thread(self.cycle_key)()

    async def adelete(self, session_key=None):
        return await _in_thread(self.delete)(session_key)

    @classmethod
    async def aclear_expired(cls):
        return await _in_thread(cls.clear_expired)()
