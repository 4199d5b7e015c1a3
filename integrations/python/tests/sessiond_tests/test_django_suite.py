"""Django's own session tests (tests/sessions_tests of the Django sdist) on sessiond.

Django's suite names a concrete store in each class, so the engine is
plugged in as Django plugs in its own engines: a class that mixes
``SessionTestsMixin`` into a test case with ``backend`` set (spec §12.1).
Everything the mixin asserts runs unchanged against a real sessiond.

Nothing is skipped or marked as an expected failure. Two of Django's
middleware tests name the database engine's classes in their bodies; they
run with sessiond's classes patched in instead (see
``SessiondMiddlewareTests``).
"""

from unittest import mock

from django.contrib.sessions.middleware import SessionMiddleware
from django.core import management
from django.test import SimpleTestCase, override_settings

# The module, not its classes: a TestCase imported by name into this module
# would be collected and run here a second time, on Django's engines.
from sessions_tests import tests as django_suite

from sessiond_django.session_store import SessionStore

ENGINE = "sessiond_django.session_store"


@override_settings(SESSION_ENGINE=ENGINE)
class SessiondSessionTests(django_suite.SessionTestsMixin, SimpleTestCase):
    """The 65 tests of ``SessionTestsMixin`` with ``USE_TZ = False`` (the
    setting of Django's test settings), so naive expiry datetimes in the
    ``TIME_ZONE`` reach sessiond; plus ``clearsessions``.

    A ``SimpleTestCase``: any query to Django's database fails the test,
    which proves the engine never touches it.
    """

    backend = SessionStore

    # DatabaseSessionTests.test_clearsessions_command counts the rows of the
    # table; sessiond is shared by every test here, so this one asks about
    # its own two sessions instead.
    def test_clearsessions_command(self):
        """``manage.py clearsessions`` removes expired sessions from sessiond."""
        self.session["foo"] = "bar"
        self.session.set_expiry(3600)
        self.session.save()

        other_session = self.backend()
        other_session["foo"] = "bar"
        other_session.set_expiry(-3600)
        other_session.save()
        self.addCleanup(other_session.delete)

        # Both are stored: exists() ignores expiry, as Django's db engine.
        self.assertIs(self.session.exists(self.session.session_key), True)
        self.assertIs(self.session.exists(other_session.session_key), True)
        management.call_command("clearsessions")
        self.assertIs(self.session.exists(self.session.session_key), True)
        self.assertIs(self.session.exists(other_session.session_key), False)

    async def test_aclear_expired(self):
        """Twin of DatabaseSessionTests.test_aclear_expired, by key."""
        await self.session.aset("key", "value")
        await self.session.aset_expiry(3600)
        await self.session.asave()
        other_session = self.backend()
        await other_session.aset("key", "value")
        await other_session.aset_expiry(-3600)
        await other_session.asave()
        self.addCleanup(other_session.delete)

        self.assertIs(await self.session.aexists(other_session.session_key), True)
        await self.session.aclear_expired()
        self.assertIs(await self.session.aexists(self.session.session_key), True)
        self.assertIs(await self.session.aexists(other_session.session_key), False)


@override_settings(USE_TZ=True)
class SessiondSessionWithTimeZoneTests(SessiondSessionTests):
    """The same with aware datetimes, as Django's *WithTimeZoneTests."""


class _SessionRowsOnSessiond:
    """Stands in for Django's ``Session`` model where a Django test reads a
    session back from the table: ``Session.objects.get(session_key=k).get_decoded()``
    reads it from sessiond instead."""

    class objects:  # noqa: N801 - the name the model's manager has
        @staticmethod
        def get(session_key):
            store = SessionStore(session_key)
            data = store.load()
            assert store.session_key is not None, "the session is not in sessiond"
            return mock.Mock(get_decoded=lambda: data)


@override_settings(SESSION_ENGINE=ENGINE)
class SessiondMiddlewareTests(django_suite.SessionMiddlewareTests):
    """Django's ``SessionMiddleware`` tests with ``SESSION_ENGINE`` on sessiond:
    cookies, Vary, no save on 5xx, ``SessionInterrupted`` on a session
    deleted meanwhile, the cookie deleted on flush."""

    def setUp(self):
        super().setUp()
        self.assertIs(SessionMiddleware(lambda request: None).SessionStore, SessionStore)

    def test_session_update_error_redirect(self):
        # Django's test builds a DatabaseSession in its view; here the same
        # view builds a sessiond session, deletes it, and the middleware's
        # save must turn sessiond's NOT_FOUND into SessionInterrupted.
        with mock.patch.object(django_suite, "DatabaseSession", SessionStore):
            super().test_session_update_error_redirect()

    def test_empty_session_saved(self):
        # Django's test reads the saved session back through the Session
        # model (the database engine's table); here it reads it from sessiond.
        with mock.patch.object(django_suite, "Session", _SessionRowsOnSessiond):
            super().test_empty_session_saved()
