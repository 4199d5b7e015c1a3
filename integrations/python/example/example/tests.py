"""Logging in and out of the example site, with its sessions checked in
sessiond through sessiond's own gRPC API."""

import json

import grpc
from django.conf import settings
from django.contrib.auth.models import User
from django.test import TestCase

from sessiond.v1 import sessiond_pb2, sessiond_pb2_grpc

PASSWORD = "correct horse battery staple"


class SessiondApi:
    """sessiond as any other client sees it, without the Django engine."""

    def __init__(self, test):
        channel = grpc.insecure_channel(settings.SESSIOND_ADDRESS)
        test.addCleanup(channel.close)
        self.stub = sessiond_pb2_grpc.SessionServiceStub(channel)

    def load(self, key):
        return self.stub.Load(sessiond_pb2.LoadRequest(session_key=key), timeout=10)

    def exists(self, key):
        return self.stub.Exists(sessiond_pb2.ExistsRequest(session_key=key), timeout=10).exists


class LoginTests(TestCase):
    def setUp(self):
        self.user = User.objects.create_user("ada", password=PASSWORD)
        self.sessiond = SessiondApi(self)

    def session_key(self):
        return self.client.cookies[settings.SESSION_COOKIE_NAME].value

    def test_login_stores_the_session_in_sessiond_and_logout_removes_it(self):
        response = self.client.post("/login/", {"username": "ada", "password": PASSWORD})
        self.assertRedirects(response, "/", fetch_redirect_response=False)
        key = self.session_key()

        stored = self.sessiond.load(key)
        self.assertIs(stored.found, True)
        data = json.loads(stored.data)
        self.assertEqual(data["_auth_user_id"], str(self.user.pk))
        self.assertEqual(data["_auth_user_backend"], "django.contrib.auth.backends.ModelBackend")
        self.assertContains(self.client.get("/"), "Hello, ada.")

        response = self.client.post("/logout/")
        self.assertRedirects(response, "/", fetch_redirect_response=False)
        self.assertIs(self.sessiond.load(key).found, False)
        self.assertIs(self.sessiond.exists(key), False)
        self.assertContains(self.client.get("/"), "Not logged in.")

    def test_login_moves_the_session_to_a_new_key(self):
        # A session from before the login (here: a visit counted anonymously).
        self.assertContains(self.client.get("/visits/"), "visits: 1")
        anonymous_key = self.session_key()
        self.assertIs(self.sessiond.load(anonymous_key).found, True)

        self.client.post("/login/", {"username": "ada", "password": PASSWORD})
        logged_in_key = self.session_key()

        # Against session fixation, login() cycles the key: the old one is gone
        # from sessiond, the data moved along.
        self.assertNotEqual(logged_in_key, anonymous_key)
        self.assertIs(self.sessiond.exists(anonymous_key), False)
        self.assertContains(self.client.get("/visits/"), "visits: 2")

    def test_a_wrong_password_stores_no_login(self):
        response = self.client.post("/login/", {"username": "ada", "password": "wrong"})
        self.assertEqual(response.status_code, 200)
        # The session was never touched, so none was stored or sent.
        self.assertNotIn(settings.SESSION_COOKIE_NAME, self.client.cookies)

    def test_a_session_deleted_in_sessiond_logs_the_user_out(self):
        self.client.post("/login/", {"username": "ada", "password": PASSWORD})
        self.sessiond.stub.Delete(sessiond_pb2.DeleteRequest(session_key=self.session_key()), timeout=10)
        self.assertContains(self.client.get("/"), "Not logged in.")


class AsyncViewTests(TestCase):
    async def test_the_async_session_api_counts_visits(self):
        for expected in (1, 2, 3):
            response = await self.async_client.get("/visits/")
            self.assertEqual(response.content.decode(), f"visits: {expected}")
        key = self.async_client.cookies[settings.SESSION_COOKIE_NAME].value
        stored = SessiondApi(self).load(key)
        self.assertIs(stored.found, True)
        self.assertIn('"visits":3', stored.data)
