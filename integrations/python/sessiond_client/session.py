"""``Session``: one request's session, a dictionary whose saves are sessiond calls.

It behaves as Django's ``request.session`` (``SessionBase`` on the database
engine) and as the Rust client's ``Session``: ``accessed`` and ``modified``
flags, ``set_expiry`` with ``_session_expiry`` kept in the data as Django
keeps it, ``cycle_key`` in one ``CycleKey`` call, ``flush``, and saves that
send a ``Patch`` of the members changed since load, so that concurrent
requests of one user keep each other's writes.

Each operation that talks to sessiond is written once, as a generator of
:class:`~sessiond_client.calls.Call` s (``_load_steps``, ``_save_steps``,
...): it yields the calls it needs and receives their results, or the
``SessiondError`` they raised. ``save()`` runs it with a :class:`Client`,
``await asave()`` with an :class:`AsyncClient`; the logic is the same code.

With an ``AsyncClient`` nothing is loaded behind the app's back (reading
cannot await): ``await session.aload()`` first, as the ASGI middleware does.
"""

import datetime
import logging
from collections.abc import MutableMapping
from typing import Optional, Union

import grpc

from sessiond_client import calls, response
from sessiond_client.client import AsyncClient, Client
from sessiond_client.data import Snapshot, changes_since, is_valid_key
from sessiond_client.errors import SessiondError, UpdateError
from sessiond_client.settings import SessionSettings

__all__ = ["Session"]

#: The member that holds a session's own expiry, as Django names it.
EXPIRY_KEY = "_session_expiry"

_logger = logging.getLogger("sessiond_client")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _as_datetime(expiry):
    """An expiry date stored as Django stores it (ISO text) as an aware
    datetime; Django writes naive text with ``USE_TZ = False``, read as UTC."""
    moment = datetime.datetime.fromisoformat(expiry) if isinstance(expiry, str) else expiry
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def run(steps, client):
    """Runs an operation's steps with a blocking :class:`Client`."""
    if not isinstance(client, Client):
        raise TypeError(
            "this session talks to sessiond with an AsyncClient: "
            "use the a* methods (await session.asave())"
        )
    try:
        call = next(steps)
        while True:
            try:
                result = client.send(call)
            except SessiondError as error:
                call = steps.throw(error)
            else:
                call = steps.send(result)
    except StopIteration as done:
        return done.value


async def arun(steps, client):
    """Runs an operation's steps with an :class:`AsyncClient`."""
    if not isinstance(client, AsyncClient):
        raise TypeError(
            "this session talks to sessiond with a blocking Client: use save(), not asave()"
        )
    try:
        call = next(steps)
        while True:
            try:
                result = await client.send(call)
            except SessiondError as error:
                call = steps.throw(error)
            else:
                call = steps.send(result)
    except StopIteration as done:
        return done.value


class Session(MutableMapping):
    """The session of one request, under ``session_key`` (the cookie's value).

    A key that sessiond would refuse (not 8 to 40 characters of
    ``[a-z0-9]``) is dropped: the session starts empty, without a call.
    """

    def __init__(
        self,
        client: Union[Client, AsyncClient],
        session_key: Optional[str] = None,
        settings: Optional[SessionSettings] = None,
    ) -> None:
        self.client = client
        self.settings = settings or SessionSettings()
        self._session_key = session_key if is_valid_key(session_key) else None
        # The data in hand (None: not loaded yet), and what sessiond holds
        # as far as this request knows, to send only the difference.
        self._cache: Optional[dict] = None
        self._snapshot: Optional[Snapshot] = None
        #: True once the data was read or written: the response then
        #: varies on the cookie.
        self.accessed = False
        #: True once the data was changed: the end of the request saves it.
        self.modified = False

    @property
    def session_key(self) -> Optional[str]:
        """The key, or ``None`` before the session is first saved."""
        return self._session_key

    @property
    def is_loaded(self) -> bool:
        """Whether the data is in hand (no call is needed to read it)."""
        return self._cache is not None or self._session_key is None

    @property
    def _session(self):
        self.accessed = True
        if self._cache is None:
            if self._session_key is None:
                self._cache = {}
            elif isinstance(self.client, AsyncClient):
                raise RuntimeError("the session is not loaded yet: await session.aload() first")
            else:
                self.load()
        return self._cache

    # The dictionary, as Django's SessionBase.

    def __getitem__(self, key):
        return self._session[key]

    def __setitem__(self, key, value):
        self._session[key] = value
        self.modified = True

    def __delitem__(self, key):
        del self._session[key]
        self.modified = True

    def __contains__(self, key):
        return key in self._session

    def __iter__(self):
        return iter(self._session)

    def __len__(self):
        return len(self._session)

    def keys(self):
        return self._session.keys()

    def values(self):
        return self._session.values()

    def items(self):
        return self._session.items()

    def update(self, *args, **kwargs):
        self._session.update(*args, **kwargs)
        self.modified = True

    def clear(self) -> None:
        """Empties the session; the next save replaces what is stored."""
        self._cache = {}
        self.accessed = True
        self.modified = True

    def is_empty(self) -> bool:
        """No key and no data; reads nothing from sessiond."""
        return self._session_key is None and not self._cache

    # Expiry, as Django's SessionBase.

    def set_expiry(self, value: Union[int, datetime.datetime, datetime.timedelta, None]) -> None:
        """Seconds of inactivity (``int``), a ``datetime`` or ``timedelta``,
        ``0`` for "at browser close", or ``None`` for the app's age."""
        if value is None:
            if EXPIRY_KEY in self:
                del self[EXPIRY_KEY]
            return
        if isinstance(value, datetime.timedelta):
            value = _now() + value
        # A date is kept as Django keeps it: ISO text, which JSON can hold.
        self[EXPIRY_KEY] = value.isoformat() if isinstance(value, datetime.datetime) else value

    def get_expiry_age(self, modification: Optional[datetime.datetime] = None, expiry=None) -> int:
        """Seconds from ``modification`` (now) to the session's expiry."""
        modification = modification or _now()
        expiry = self.get(EXPIRY_KEY) if expiry is None else expiry
        if not expiry:
            return self.settings.age
        if not isinstance(expiry, (datetime.datetime, str)):
            return expiry
        delta = _as_datetime(expiry) - modification
        return delta.days * 86400 + delta.seconds

    def get_expiry_date(
        self, modification: Optional[datetime.datetime] = None, expiry=None
    ) -> datetime.datetime:
        """When the session expires (an aware datetime)."""
        modification = modification or _now()
        expiry = self.get(EXPIRY_KEY) if expiry is None else expiry
        if isinstance(expiry, (datetime.datetime, str)):
            return _as_datetime(expiry)
        return modification + datetime.timedelta(seconds=expiry or self.settings.age)

    def get_expire_at_browser_close(self) -> bool:
        """Whether the cookie lasts until the browser closes."""
        expiry = self.get(EXPIRY_KEY)
        if expiry is None:
            return self.settings.expire_at_browser_close
        return expiry == 0

    # The operations that call sessiond, each written once as steps.

    def _load_steps(self):
        if self._session_key is None:
            self._cache = {}
            return
        found = yield calls.load_with_snapshot(self._session_key)
        if found is None:
            # Missing or expired: never reuse a key the browser chose.
            self._session_key = None
            self._cache, self._snapshot = {}, None
            return
        data, self._snapshot = found
        if data is None:
            # Never the data itself in the log.
            _logger.warning("Session data corrupted")
        self._cache = {} if data is None else data

    def _loaded_steps(self):
        if self._cache is None:
            yield from self._load_steps()

    def _create_steps(self):
        yield from self._loaded_steps()
        data = self._cache
        self._session_key = yield calls.create(data, self.get_expiry_date())
        self._snapshot = Snapshot(data)
        self.modified = True

    def _save_steps(self):
        yield from self._loaded_steps()
        if self._session_key is None:
            yield from self._create_steps()
            return
        data = self._cache
        changed, removed, replace = changes_since(self._snapshot, data)
        try:
            yield calls.patch(self._session_key, changed, removed, replace, self.get_expiry_date())
        except SessiondError as error:
            if error.code == grpc.StatusCode.NOT_FOUND:
                # Deleted meanwhile (a logout elsewhere): never brought back.
                raise UpdateError("Patch") from error
            raise
        self._snapshot = Snapshot(data)

    def _cycle_key_steps(self):
        yield from self._loaded_steps()
        if self._session_key is None:
            yield from self._create_steps()
            return
        data = self._cache
        try:
            new_key = yield calls.cycle_key(self._session_key, data, self.get_expiry_date())
        except SessiondError as error:
            if error.code == grpc.StatusCode.NOT_FOUND:
                raise UpdateError("CycleKey") from error
            raise
        self._session_key = new_key
        self._snapshot = Snapshot(data)
        self.modified = True

    def _flush_steps(self):
        self.clear()
        if self._session_key is not None:
            yield calls.delete(self._session_key)
        self._session_key = None
        self._snapshot = None

    def load(self) -> None:
        """Reads the session from sessiond; a missing or expired one is
        empty and its key forgotten, so the next save issues a fresh key."""
        run(self._load_steps(), self.client)

    def save(self) -> None:
        """Creates the session (no key yet) or sends what changed since it
        was loaded; ``UpdateError`` if it was deleted meanwhile."""
        run(self._save_steps(), self.client)

    def cycle_key(self) -> None:
        """Moves the session to a fresh key in one call (on login, against
        session fixation); the old key is gone."""
        run(self._cycle_key_steps(), self.client)

    def flush(self) -> None:
        """Empties the session, deletes it, and forgets the key (logout)."""
        run(self._flush_steps(), self.client)

    def finish(self, had_cookie: bool, status_code: int) -> response.Finished:
        """The end of the request (:func:`sessiond_client.response.finish_steps`)."""
        return run(response.finish_steps(self, had_cookie, status_code), self.client)

    async def aload(self) -> None:
        """As :meth:`load`."""
        await arun(self._load_steps(), self.client)

    async def asave(self) -> None:
        """As :meth:`save`."""
        await arun(self._save_steps(), self.client)

    async def acycle_key(self) -> None:
        """As :meth:`cycle_key`."""
        await arun(self._cycle_key_steps(), self.client)

    async def aflush(self) -> None:
        """As :meth:`flush`."""
        await arun(self._flush_steps(), self.client)

    async def afinish(self, had_cookie: bool, status_code: int) -> response.Finished:
        """As :meth:`finish`."""
        return await arun(response.finish_steps(self, had_cookie, status_code), self.client)
