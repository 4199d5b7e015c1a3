"""Session keys, session data and expiry times as sessiond and Django hold them.

Pure functions, no I/O and no gRPC: the Django engine, the session handle
and the low-level client all encode and compare data here, so that every
Python integration writes what Django writes.
"""

import datetime
import json
import string
from typing import Any, Optional

__all__ = [
    "MAX_KEY_LENGTH",
    "MIN_KEY_LENGTH",
    "Snapshot",
    "decode_data",
    "encode_data",
    "from_timestamp",
    "is_valid_key",
    "to_timestamp",
]

#: sessiond's key rule: at least Django's 8 characters, at most the
#: ``varchar(40)`` of Django's table.
MIN_KEY_LENGTH = 8
MAX_KEY_LENGTH = 40

#: The characters of the keys Django and sessiond draw (Django's
#: ``VALID_KEY_CHARS``), the only ones sessiond accepts.
KEY_CHARS = frozenset(string.ascii_lowercase + string.digits)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def is_valid_key(key: Any) -> bool:
    """Whether sessiond accepts ``key``: 8 to 40 characters of ``[a-z0-9]``.

    A cookie that fails this cannot name a session, so integrations treat it
    as no cookie at all without asking sessiond.
    """
    return (
        isinstance(key, str)
        and MIN_KEY_LENGTH <= len(key) <= MAX_KEY_LENGTH
        and KEY_CHARS.issuperset(key)
    )


def _dumps(value):
    # Strict JSON: sessiond refuses NaN and the infinities, which Python's
    # json (and Django's JSONSerializer) would otherwise write.
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _unencodable(session_dict, error):
    """``error`` (a ``TypeError`` or ``ValueError`` of ``json.dumps``), again,
    naming the first member that JSON cannot hold; never its value."""
    for key, value in session_dict.items():
        try:
            _dumps({key: value})
        except (TypeError, ValueError) as member_error:
            return type(member_error)(
                f"session member {key!r}: {member_error}; session data must be what "
                "JSON holds (str, int, finite float, bool, None, list, dict with str keys)"
            )
    return error


def encode_data(session_dict: dict) -> str:
    """The session as sessiond stores it: the text of a JSON object, byte
    for byte what Django's ``JSONSerializer`` writes (compact, ASCII), so
    that a Django app sharing the table reads the same session.

    A value JSON cannot hold raises, as with Django's serializer, the
    ``TypeError`` (a ``datetime``, a ``set``) or ``ValueError`` (NaN, the
    infinities, a cycle) of ``json.dumps``, naming the member: before any
    call, since every call encodes its request before it is sent.
    """
    try:
        return _dumps(session_dict)
    except (TypeError, ValueError) as error:
        raise _unencodable(session_dict, error) from error


def decode_data(text: str) -> Optional[dict]:
    """The session dictionary from sessiond's JSON text, or ``None`` when the
    text is not a JSON object (corrupted: the caller logs it its own way and
    reads an empty session, as Django does)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def encode_members(session_dict):
    """Each member as the JSON text of its value: text, not values, tells
    what a request changed, so that ``True`` replaced by ``1`` (equal in
    Python) differs, and so does a list changed in place."""
    members = {}
    for key, value in session_dict.items():
        try:
            members[key] = _dumps(value)
        except (TypeError, ValueError) as error:
            raise _unencodable({key: value}, error) from error
    return members


class Snapshot:
    """A session dictionary as it was last loaded from or written to sessiond.

    A save sends what differs from it (sessiond's ``Patch``), so that two
    requests of one user that change different members both keep their
    changes. A dictionary that is not the one snapshotted (``clear()`` makes
    a new one) is written whole, as Django's own engines write it.

    ``text`` is the JSON text ``data`` was decoded from, when there is one:
    the members are then read from it only when a save asks for them, so a
    request that reads its session and never saves it encodes nothing.
    """

    def __init__(self, data, text=None):
        self.data = data
        self._text = text
        self._members = None if text is not None else encode_members(data)

    @property
    def members(self):
        """Each member as the JSON text of its value when snapshotted;
        ``None`` for a stored value that JSON here cannot write again
        (``1e400`` reads as infinity), which then differs from any value."""
        if self._members is None:
            # The text is left as it was loaded, whatever became of the
            # dictionary since (a change in place included).
            self._members = {}
            for key, value in json.loads(self._text).items():
                try:
                    self._members[key] = _dumps(value)
                except (TypeError, ValueError):
                    self._members[key] = None
        return self._members

    def changes(self, data):
        """``(members to set, keys to remove, replace)`` that turn what is
        stored into ``data``; ``replace`` when ``data`` is not the snapshotted
        dictionary."""
        if data is not self.data:
            return data, [], True
        members = encode_members(data)
        stored = self.members
        changed = {key: data[key] for key, text in members.items() if stored.get(key) != text}
        removed = [key for key in stored if key not in members]
        return changed, removed, False


def changes_since(snapshot, data):
    """:meth:`Snapshot.changes`, or a whole replacement without a snapshot."""
    if snapshot is None:
        return data, [], True
    return snapshot.changes(data)


def to_timestamp(moment):
    """A ``google.protobuf.Timestamp`` for an aware ``datetime``.

    A naive one is refused: which zone it is in is the application's
    setting (Django's ``TIME_ZONE``), which this module cannot know.
    """
    from google.protobuf.timestamp_pb2 import Timestamp

    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("expiry times sent to sessiond must be timezone-aware datetimes")
    delta = moment - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def from_timestamp(timestamp):
    """The aware UTC ``datetime`` of a ``Timestamp``."""
    return _EPOCH + datetime.timedelta(
        seconds=timestamp.seconds, microseconds=timestamp.nanos // 1000
    )
