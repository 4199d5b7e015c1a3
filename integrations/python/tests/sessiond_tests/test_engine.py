"""What the sessiond engine must get right beyond Django's own tests: what
travels on the wire, keys sessiond would refuse, saves of concurrent
requests, cycle_key in one call, and a sessiond that is down, slow, comes
back, or asks for a token."""

import json
import os
import socket
import subprocess
import threading
import time
from concurrent import futures
from datetime import datetime, timedelta, timezone as dt_timezone

import grpc
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.test import SimpleTestCase, override_settings
from django.utils import timezone

from sessiond.v1 import sessiond_pb2_grpc
from sessiond_django import session_store
from sessiond_django.client import SessiondError, SessiondUnavailable, sessiond_pb2
from sessiond_django.session_store import SessionStore

#: A well-formed key that no test stores.
UNKNOWN_KEY = "k" * 32

#: The key FakeSessiond's CycleKey hands out.
CYCLED_KEY = "c" * 32


def _closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _load_raw(key):
    """The session as sessiond's Load answers it, bypassing the engine."""
    from django.conf import settings

    token = getattr(settings, "SESSIOND_TOKEN", None)
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    with grpc.insecure_channel(settings.SESSIOND_ADDRESS) as channel:
        stub = sessiond_pb2_grpc.SessionServiceStub(channel)
        return stub.Load(
            sessiond_pb2.LoadRequest(session_key=key), timeout=10, metadata=metadata
        )


class FakeSessiond(sessiond_pb2_grpc.SessionServiceServicer):
    """A stand-in sessiond on 127.0.0.1:0 whose answers a test scripts, and
    which records the metadata of each call."""

    def __init__(self, test, load=None, save=None):
        self.metadata = []
        self.calls = []
        self.requests = []
        self._load = load
        self._save = save
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        sessiond_pb2_grpc.add_SessionServiceServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        self.server.start()
        test.addCleanup(lambda: self.server.stop(grace=None).wait(5))

    def _record(self, method, context, request=None):
        with self._lock:
            self.calls.append(method)
            self.requests.append(request)
            self.metadata.append(dict(context.invocation_metadata()))

    def Load(self, request, context):  # noqa: N802 - the RPC's name
        self._record("Load", context)
        if self._load:
            return self._load(request, context)
        return sessiond_pb2.LoadResponse(found=False)

    def Save(self, request, context):  # noqa: N802
        self._record("Save", context, request)
        if self._save:
            return self._save(request, context)
        return sessiond_pb2.SaveResponse()

    def Patch(self, request, context):  # noqa: N802
        self._record("Patch", context, request)
        return sessiond_pb2.PatchResponse(expire_date=request.expire_date)

    def CycleKey(self, request, context):  # noqa: N802
        self._record("CycleKey", context, request)
        return sessiond_pb2.CycleKeyResponse(
            session_key=CYCLED_KEY, expire_date=request.expire_date
        )

    def Delete(self, request, context):  # noqa: N802
        self._record("Delete", context, request)
        return sessiond_pb2.DeleteResponse(deleted=True)


def _assert_about(test, timestamp, moment):
    """``timestamp`` is ``moment`` (aware, or naive in ``TIME_ZONE``) give or
    take a second: a session without ``_session_expiry`` expires "now plus
    SESSION_COOKIE_AGE", which moves between two reads."""
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    got = timestamp.ToDatetime(tzinfo=dt_timezone.utc)
    test.assertLess(abs(got - moment.astimezone(dt_timezone.utc)), timedelta(seconds=1))


def _stored_as(data):
    """A Load handler for FakeSessiond that finds ``data``."""

    def load(request, context):
        return sessiond_pb2.LoadResponse(found=True, data=json.dumps(data))

    return load



class TokenTests(SimpleTestCase):
    """The real sessiond these tests run against requires a bearer token."""

    def test_the_configured_token_is_accepted_and_others_refused(self):
        from django.conf import settings

        self.assertTrue(
            settings.SESSIOND_TOKEN, "the suite must run against a sessiond with a token"
        )
        session = SessionStore()
        session["user"] = 7
        session.save()
        self.addCleanup(session.delete)
        self.assertEqual(SessionStore(session.session_key).load(), {"user": 7})
        for token in (None, "not-the-token-0123456789"):
            with self.subTest(token=token), override_settings(SESSIOND_TOKEN=token):
                with self.assertRaisesMessage(SessiondError, "UNAUTHENTICATED"):
                    SessionStore(session.session_key).load()


class WireTests(SimpleTestCase):
    """What the engine sends: JSON text and the expiry Django computes."""

    def test_data_travels_as_django_json_and_expiry_as_get_expiry_date(self):
        session = SessionStore()
        self.addCleanup(session.delete)
        session["user"] = "Zoë"
        session["cart"] = [1, 2]
        moment = timezone.now() + timedelta(hours=3, microseconds=250)
        session.set_expiry(moment)
        session.save()

        stored = _load_raw(session.session_key)
        self.assertIs(stored.found, True)
        # JSONSerializer's text: compact and ASCII.
        self.assertEqual(
            stored.data,
            json.dumps(dict(session.items()), separators=(",", ":")),
        )
        self.assertTrue(stored.data.isascii())
        self.assertEqual(json.loads(stored.data)["user"], "Zoë")
        self.assertEqual(
            stored.expire_date.ToDatetime(tzinfo=dt_timezone.utc),
            session.get_expiry_date().astimezone(dt_timezone.utc),
        )

    @override_settings(USE_TZ=False, TIME_ZONE="Asia/Kolkata")
    def test_naive_expiry_is_read_in_time_zone(self):
        session = SessionStore()
        self.addCleanup(session.delete)
        session.set_expiry(3600)
        session.save()
        stored = _load_raw(session.session_key).expire_date.ToDatetime(tzinfo=dt_timezone.utc)
        expected = datetime.now(dt_timezone.utc) + timedelta(hours=1)
        self.assertLess(abs(stored - expected), timedelta(minutes=1))

    def test_a_session_written_by_another_client_is_read(self):
        session = SessionStore()
        session["n"] = 1
        session.save()
        self.addCleanup(session.delete)
        reread = SessionStore(session.session_key)
        self.assertEqual(reread["n"], 1)
        self.assertEqual(reread.session_key, session.session_key)

    def test_too_much_data_is_an_error_not_a_lost_session(self):
        # sessiond refuses data over --max-data-bytes (1 MiB by default).
        session = SessionStore()
        self.addCleanup(session.delete)
        session["blob"] = "x" * (1024 * 1024 + 1)
        with self.assertRaises(SessiondError) as raised:
            session.save()
        self.assertNotIsInstance(raised.exception, SessiondUnavailable)
        self.assertIn(raised.exception.code, (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE))
        self.assertNotIn("xxxxxxxx", str(raised.exception))

    def test_a_value_json_cannot_hold_fails_the_save_naming_it_before_any_call(self):
        # Django's JSONSerializer raises TypeError for a datetime at save;
        # so does this engine, naming the member. NaN, which sessiond
        # refuses, is a ValueError here rather than its INVALID_ARGUMENT.
        # Nothing listens there: a call would raise SessiondUnavailable.
        with override_settings(SESSIOND_ADDRESS=f"127.0.0.1:{_closed_port()}"):
            for value, error in [
                (timezone.now(), TypeError),
                ({1, 2}, TypeError),
                (float("nan"), ValueError),
                (float("inf"), ValueError),
            ]:
                with self.subTest(value=value):
                    session = SessionStore()
                    session["fine"] = 1
                    session["when"] = value
                    with self.assertRaisesMessage(error, "session member 'when'"):
                        session.save()
        # A loaded session: the Patch of the changed member is refused too,
        # and what is stored stays as it was.
        key = SessionStore()
        key["n"] = 1
        key.save()
        self.addCleanup(key.delete)
        session = SessionStore(key.session_key)
        session["n"] = float("nan")
        with self.assertRaisesMessage(ValueError, "session member 'n'"):
            session.save()
        self.assertEqual(json.loads(_load_raw(key.session_key).data), {"n": 1})


class KeyTests(SimpleTestCase):
    """Keys sessiond would refuse never leave the process."""

    def test_keys_sessiond_refuses_are_dropped_without_a_call(self):
        # Nothing listens there: a call would raise SessiondUnavailable.
        with override_settings(SESSIOND_ADDRESS=f"127.0.0.1:{_closed_port()}"):
            for key in ["ABCDEFGHIJ", "abc_defgh", "a" * 41, "short", "ab/../cdefgh", 12345678]:
                with self.subTest(key=key):
                    session = SessionStore(key)
                    self.assertIsNone(session.session_key)
                    self.assertEqual(session.load(), {})
                    self.assertIs(session.exists(key), False)
                    session.delete(key)

    def test_django_keys_are_valid(self):
        for _ in range(20):
            self.assertTrue(session_store.is_valid_key(SessionStore()._get_new_session_key()))
        self.assertTrue(session_store.is_valid_key("12345678"))
        self.assertTrue(session_store.is_valid_key("a" * 40))

    def test_an_overlong_key_loads_as_empty(self):
        # As CacheDBSessionTests.test_load_overlong_key.
        session = SessionStore()
        session._session_key = "abcdefghij0123456789" * 20
        self.assertEqual(session.load(), {})


class OutageTests(SimpleTestCase):
    """sessiond down or slow is an error, never an empty session."""

    def test_unreachable_sessiond_raises_a_clear_error(self):
        port = _closed_port()
        with override_settings(SESSIOND_ADDRESS=f"127.0.0.1:{port}", SESSIOND_TIMEOUT=5):
            session = SessionStore(UNKNOWN_KEY)
            with self.assertRaises(SessiondUnavailable) as raised:
                session.load()
            message = str(raised.exception)
            self.assertIn(f"127.0.0.1:{port}", message)
            self.assertIn("SESSIOND_ADDRESS", message)
            self.assertNotIn(UNKNOWN_KEY, message)
            self.assertEqual(raised.exception.code, grpc.StatusCode.UNAVAILABLE)
            # The key is kept: the session is unknown, not gone.
            self.assertEqual(session.session_key, UNKNOWN_KEY)

            fresh = SessionStore()
            fresh["a"] = 1
            with self.assertRaises(SessiondUnavailable):
                fresh.save()
            with self.assertRaises(SessiondUnavailable):
                SessionStore.clear_expired()

    async def test_unreachable_sessiond_raises_in_async_code_too(self):
        with override_settings(SESSIOND_ADDRESS=f"127.0.0.1:{_closed_port()}"):
            session = SessionStore(UNKNOWN_KEY)
            with self.assertRaises(SessiondUnavailable):
                await session.aget("anything")
            with self.assertRaises(SessiondUnavailable):
                await session.aexists(UNKNOWN_KEY)

    def test_a_slow_sessiond_times_out(self):
        def slow_load(request, context):
            time.sleep(1.0)
            return sessiond_pb2.LoadResponse(found=False)

        fake = FakeSessiond(self, load=slow_load)
        # Without the deadline the call would wait for the answer, which
        # says "not found", and raise nothing.
        with override_settings(SESSIOND_ADDRESS=fake.address, SESSIOND_TIMEOUT=0.2):
            with self.assertRaises(SessiondUnavailable) as raised:
                SessionStore(UNKNOWN_KEY).load()
        self.assertEqual(raised.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertIn("SESSIOND_TIMEOUT", str(raised.exception))

    def test_sessiond_addresses_fail_over_to_the_next(self):
        from django.conf import settings

        dead = f"127.0.0.1:{_closed_port()}"
        with override_settings(SESSIOND_ADDRESSES=[dead, settings.SESSIOND_ADDRESS]):
            session = SessionStore()
            session["n"] = 1
            session.save()
            self.addCleanup(session.delete)
            self.assertEqual(SessionStore(session.session_key).load(), {"n": 1})

    def test_bad_settings_are_named(self):
        from django.core.exceptions import ImproperlyConfigured

        for overrides in [
            {"SESSIOND_TIMEOUT": 0},
            {"SESSIOND_TIMEOUT": "5"},
            {"SESSIOND_ADDRESS": ""},
            {"SESSIOND_ADDRESS": "localhost"},
            {"SESSIOND_ADDRESSES": ["localhost:50051", "http://127.0.0.1:50051"]},
            {"SESSIOND_TOKEN": "t0ken\n"},
            {"SESSIOND_TLS_CA": "/nonexistent/ca.pem"},
        ]:
            with self.subTest(**overrides), override_settings(**overrides):
                with self.assertRaisesMessage(ImproperlyConfigured, next(iter(overrides))):
                    SessionStore(UNKNOWN_KEY).load()


class FakeServerTests(SimpleTestCase):
    """Behaviour that a real sessiond cannot be made to show on demand."""

    def test_token_is_sent_as_bearer_metadata(self):
        fake = FakeSessiond(self)
        with override_settings(SESSIOND_ADDRESS=fake.address, SESSIOND_TOKEN="s3cret-t0ken"):
            SessionStore(UNKNOWN_KEY).load()
        with override_settings(SESSIOND_ADDRESS=fake.address, SESSIOND_TOKEN=None):
            SessionStore(UNKNOWN_KEY).load()
        self.assertEqual(fake.metadata[0].get("authorization"), "Bearer s3cret-t0ken")
        self.assertNotIn("authorization", fake.metadata[1])

    def test_refused_token_names_the_setting(self):
        def refuse(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        fake = FakeSessiond(self, load=refuse)
        with override_settings(SESSIOND_ADDRESS=fake.address, SESSIOND_TOKEN="wrong"):
            with self.assertRaisesMessage(SessiondError, "SESSIOND_TOKEN"):
                SessionStore(UNKNOWN_KEY).load()

    def test_create_draws_again_while_keys_are_taken(self):
        refusals = iter(range(2))

        def taken_twice(request, context):
            assert request.must_create
            if next(refusals, None) is not None:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "session_key: taken")
            return sessiond_pb2.SaveResponse()

        fake = FakeSessiond(self, save=taken_twice)
        with override_settings(SESSIOND_ADDRESS=fake.address):
            session = SessionStore()
            session.create()
        self.assertEqual(fake.calls, ["Save"] * 3)
        self.assertIs(session.modified, True)
        self.assertTrue(session_store.is_valid_key(session.session_key))

    def test_create_gives_up_when_every_key_is_taken(self):
        def always_taken(request, context):
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "session_key: taken")

        fake = FakeSessiond(self, save=always_taken)
        with override_settings(SESSIOND_ADDRESS=fake.address):
            with self.assertRaisesMessage(RuntimeError, "unable to create a new session key"):
                SessionStore().create()
        self.assertEqual(len(fake.calls), session_store.CREATE_ATTEMPTS)

    def test_must_create_conflict_is_create_error(self):
        def taken(request, context):
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "session_key: taken")

        fake = FakeSessiond(self, save=taken)
        with override_settings(SESSIOND_ADDRESS=fake.address):
            with self.assertRaises(CreateError):
                SessionStore(UNKNOWN_KEY).save(must_create=True)

    def test_corrupted_data_reads_as_empty_and_logs_no_data(self):
        def corrupted(request, context):
            return sessiond_pb2.LoadResponse(found=True, data='["not", "an", "object"]')

        fake = FakeSessiond(self, load=corrupted)
        with override_settings(SESSIOND_ADDRESS=fake.address):
            session = SessionStore(UNKNOWN_KEY)
            with self.assertLogs("django.security.SuspiciousSession", "WARNING") as logs:
                self.assertEqual(session.load(), {})
        self.assertEqual([r.getMessage() for r in logs.records], ["Session data corrupted"])
        self.assertEqual(session.session_key, UNKNOWN_KEY)


class ConcurrentSaveTests(SimpleTestCase):
    """A save sends what its request changed (sessiond's Patch), so that two
    requests of one user that overlap keep each other's writes."""

    def _saved(self, data):
        session = SessionStore()
        session.update(data)
        session.save()
        self.addCleanup(session.delete)
        return session.session_key

    def _stored(self, key):
        return json.loads(_load_raw(key).data)

    def test_two_requests_keep_each_others_members(self):
        key = self._saved({"visits": 1})
        first, second = SessionStore(key), SessionStore(key)
        # Both load before either saves, as two requests in flight do.
        self.assertEqual((first["visits"], second["visits"]), (1, 1))
        first["cart"] = ["book"]
        second["theme"] = "dark"
        first.save()
        second.save()
        self.assertEqual(self._stored(key), {"visits": 1, "cart": ["book"], "theme": "dark"})

    def test_a_removal_and_a_set_of_other_members_both_stay(self):
        key = self._saved({"flash": "hello", "cart": []})
        first, second = SessionStore(key), SessionStore(key)
        self.assertEqual(first.pop("flash"), "hello")
        second["cart"] = ["pen"]
        first.save()
        second.save()
        # The second request never wrote the member it did not change: the
        # first one's removal stands.
        self.assertEqual(self._stored(key), {"cart": ["pen"]})

    def test_a_member_changed_in_place_is_saved(self):
        key = self._saved({"cart": ["book"], "n": True})
        session = SessionStore(key)
        session["cart"].append("pen")
        session["n"] = 1  # equal to True in Python, not in JSON
        session.modified = True
        session.save()
        self.assertEqual(self._stored(key), {"cart": ["book", "pen"], "n": 1})
        # A second save of the same store sends only what changed since the first.
        other = SessionStore(key)
        other["seen"] = True
        other.save()
        session["cart"].append("ink")
        session.save()
        self.assertEqual(
            self._stored(key), {"cart": ["book", "pen", "ink"], "n": 1, "seen": True}
        )

    def test_clear_replaces_the_stored_session(self):
        key = self._saved({"a": 1, "b": 2})
        session = SessionStore(key)
        session.clear()
        session["c"] = 3
        session.save()
        self.assertEqual(self._stored(key), {"c": 3})

    def test_an_expiry_change_is_saved_without_other_changes(self):
        with override_settings(SESSION_COOKIE_AGE=3600):
            key = self._saved({"a": 1})
        with override_settings(SESSION_COOKIE_AGE=7200):
            session = SessionStore(key)
            session.save()
            expected = session.get_expiry_date()
        _assert_about(self, _load_raw(key).expire_date, expected)
        self.assertEqual(self._stored(key), {"a": 1})

    def test_a_session_deleted_meanwhile_is_not_brought_back(self):
        key = self._saved({"a": 1})
        session = SessionStore(key)
        session["b"] = 2
        SessionStore(key).flush()
        with self.assertRaises(UpdateError):
            session.save()
        self.assertIs(_load_raw(key).found, False)

    def test_save_sends_only_the_members_changed_since_load(self):
        fake = FakeSessiond(self, load=_stored_as({"a": 1, "b": 2, "c": [1], "d": 0}))
        with override_settings(SESSIOND_ADDRESS=fake.address):
            session = SessionStore(UNKNOWN_KEY)
            del session["a"]
            session["b"] = 3
            session["c"].append(2)
            session["e"] = True
            session.save()
        self.assertEqual(fake.calls, ["Load", "Patch"])
        request = fake.requests[-1]
        self.assertEqual(request.session_key, UNKNOWN_KEY)
        self.assertEqual(request.set, '{"b":3,"c":[1,2],"e":true}')
        self.assertEqual(list(request.remove), ["a"])
        self.assertIs(request.replace, False)
        _assert_about(self, request.expire_date, session.get_expiry_date())


class CycleKeyTests(SimpleTestCase):
    """``cycle_key`` (``login()``) is one CycleKey call: the old key gone and
    the data kept, atomically in sessiond."""

    def test_cycle_key_is_one_call_with_the_data_in_hand(self):
        fake = FakeSessiond(self, load=_stored_as({"cart": [1]}))
        with override_settings(SESSIOND_ADDRESS=fake.address):
            session = SessionStore(UNKNOWN_KEY)
            session["user"] = 7
            session.cycle_key()
        self.assertEqual(fake.calls, ["Load", "CycleKey"])
        request = fake.requests[-1]
        self.assertEqual(request.session_key, UNKNOWN_KEY)
        self.assertEqual(json.loads(request.data), {"cart": [1], "user": 7})
        _assert_about(self, request.expire_date, session.get_expiry_date())
        self.assertEqual(session.session_key, CYCLED_KEY)
        self.assertEqual(dict(session.items()), {"cart": [1], "user": 7})
        self.assertIs(session.modified, True)

    async def test_acycle_key_is_one_call_too(self):
        fake = FakeSessiond(self, load=_stored_as({"cart": [1]}))
        with override_settings(SESSIOND_ADDRESS=fake.address):
            session = SessionStore(UNKNOWN_KEY)
            await session.aset("user", 7)
            await session.acycle_key()
        self.assertEqual(fake.calls, ["Load", "CycleKey"])
        self.assertEqual(session.session_key, CYCLED_KEY)

    def test_cycle_key_moves_the_session_and_later_saves_patch_the_new_key(self):
        session = SessionStore()
        session["cart"] = ["book"]
        session.set_expiry(3600)
        session.save()
        old_key = session.session_key
        self.addCleanup(session.delete)
        session.cycle_key()
        self.assertNotEqual(session.session_key, old_key)
        self.assertIs(session.exists(old_key), False)
        stored = _load_raw(session.session_key)
        self.assertEqual(json.loads(stored.data), {"cart": ["book"], "_session_expiry": 3600})
        # login() sets the user after cycling: a save patches the new key.
        other = SessionStore(session.session_key)
        other["theme"] = "dark"
        other.save()
        session["user"] = 7
        session.save()
        self.assertEqual(
            json.loads(_load_raw(session.session_key).data),
            {"cart": ["book"], "_session_expiry": 3600, "theme": "dark", "user": 7},
        )


def _without_sessiond_settings():
    """This process's environment without the suite's SESSIOND_* variables,
    which sessiond would read as its own settings (SESSIOND_TOKEN)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("SESSIOND_")}


class RecoveryTests(SimpleTestCase):
    """sessiond stopped for a while, then started again on the same address:
    requests succeed again as soon as it answers, not after gRPC's
    reconnect backoff has grown to seconds."""

    #: With gRPC's default backoff (1 s, x1.6, 20 % jitter) the channel's
    #: attempts fall near 1, 2.6 and 5.2 s after sessiond stops, and the
    #: next not before 7.4 s: a sessiond back after 6 s would wait for it.
    DOWN_FOR = 6.0

    def _binary(self):
        binary = os.environ.get("SESSIOND_BIN")
        if not binary:
            self.fail("SESSIOND_BIN must name the sessiond binary (the Rust test sets it)")
        return binary

    def _start(self, binary, address):
        server = subprocess.Popen(
            [binary, "serve", "--store", "memory://", "--listen", address],
            env=_without_sessiond_settings(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.addCleanup(lambda: server.poll() is None and (server.kill(), server.wait()))
        return server

    def _wait_until_healthy(self, binary, address):
        """The moment sessiond's health check first answers SERVING."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            check = subprocess.run(
                [binary, "healthcheck", "--listen", address, "--timeout", "1s"],
                env=_without_sessiond_settings(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if check.returncode == 0:
                return time.monotonic()
            time.sleep(0.01)
        self.fail(f"sessiond on {address} did not become healthy within 20 s")

    def test_a_request_succeeds_within_a_second_of_sessiond_answering_again(self):
        binary = self._binary()
        address = f"127.0.0.1:{_closed_port()}"
        with override_settings(SESSIOND_ADDRESS=address, SESSIOND_TOKEN=None):
            server = self._start(binary, address)
            self._wait_until_healthy(binary, address)
            SessionStore(UNKNOWN_KEY).load()

            server.terminate()
            self.assertEqual(server.wait(10), 0)
            # The engine keeps trying while sessiond is down, and fails fast.
            down_until = time.monotonic() + self.DOWN_FOR
            while time.monotonic() < down_until:
                with self.assertRaises(SessiondUnavailable):
                    SessionStore(UNKNOWN_KEY).load()
                time.sleep(0.05)

            self._start(binary, address)
            answering = self._wait_until_healthy(binary, address)
            while True:
                try:
                    SessionStore(UNKNOWN_KEY).load()
                    break
                except SessiondUnavailable:
                    if time.monotonic() - answering > 30:
                        raise
                    time.sleep(0.01)
            late = time.monotonic() - answering
        self.assertLess(
            late, 1.0, f"the first request succeeded {late:.2f}s after sessiond answered"
        )
