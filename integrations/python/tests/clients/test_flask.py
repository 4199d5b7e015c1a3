"""The Flask extension in Flask's conventions, with Flask's test client:
``init_app``, ``app.config``, ``session.permanent``, cookie attributes."""

import re

from apps import flask_app
from conftest import closed_port
from flask import Flask, session

from flask_sessiond import Sessiond, SessiondSession
from sessiond_client import Client


def test_init_app_in_an_app_factory(address, token):
    extension = Sessiond()

    def create_app():
        app = Flask(__name__)
        app.config.update(
            SESSIOND_ADDRESSES=[f"127.0.0.1:{closed_port()}", address], SESSIOND_TOKEN=token
        )
        extension.init_app(app)

        @app.get("/")
        def index():
            assert isinstance(session._get_current_object(), SessiondSession)
            session["n"] = session.get("n", 0) + 1
            return str(session["n"])

        return app

    app = create_app()
    assert isinstance(app.extensions["sessiond"], Client)
    with app.test_client() as browser:
        assert browser.get("/").text == "1"
        assert browser.get("/").text == "2"  # through the second address
        assert re.fullmatch(r"[a-z0-9]{32}", browser.get_cookie("sessionid").value)


def test_cookie_settings_come_from_flasks_config(address, token):
    app = flask_app(
        address,
        token,
        SESSIOND_COOKIE_NAME="shared",
        SESSIOND_COOKIE_AGE=60,
        SESSION_COOKIE_DOMAIN=".example.com",
        SESSION_COOKIE_PATH="/app/",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SAMESITE="None",
    )
    response = app.test_client().get("/visits")
    [cookie] = response.headers.getlist("Set-Cookie")
    assert re.fullmatch(
        r"shared=[a-z0-9]{32}; Domain=.example.com; expires=[^;]+ GMT; Max-Age=60; "
        r"Path=/app/; SameSite=None; Secure",
        cookie,
    ), cookie


def test_flasks_default_samesite_sends_none(address, token):
    app = flask_app(address, token)
    app.config["SESSION_COOKIE_SAMESITE"] = None
    [cookie] = app.test_client().get("/visits").headers.getlist("Set-Cookie")
    assert "SameSite" not in cookie and cookie.startswith("sessionid=")


def test_permanent_is_djangos_browser_close(address, token, client):
    app = flask_app(address, token)

    @app.get("/session-only")
    def session_only():
        assert session.permanent and session.new
        session.permanent = False
        session["k"] = 1
        return "ok"

    @app.get("/permanent")
    def permanent():
        session.permanent = True
        return str(session.permanent)

    browser = app.test_client()
    [cookie] = browser.get("/session-only").headers.getlist("Set-Cookie")
    assert "Max-Age" not in cookie and "expires" not in cookie
    key = browser.get_cookie("sessionid").value
    assert client.load(key).data == {"_session_expiry": 0, "k": 1}
    assert browser.get("/permanent").text == "True"
    assert client.load(key).data == {"k": 1}


def test_save_every_request_refreshes_an_unchanged_session(address, token):
    app = flask_app(address, token, SESSIOND_SAVE_EVERY_REQUEST=True)
    browser = app.test_client()
    browser.get("/visits")
    response = browser.get("/whoami")
    assert response.headers.getlist("Set-Cookie"), (
        "an unchanged session is saved and its cookie renewed"
    )


def test_a_cookie_that_cannot_be_a_key_costs_no_call(token):
    # Nothing listens there: a call would fail the request.
    app = flask_app(f"127.0.0.1:{closed_port()}", token)
    browser = app.test_client()
    browser.set_cookie("sessionid", "bad")
    response = browser.get("/whoami")
    assert (response.status_code, response.text) == (200, "anonymous")


def test_a_cookie_sent_twice_is_the_last_as_django_reads_it(address, token, client):
    # Django's parse_cookie and Express keep the last of two cookies of one
    # name (one set for a parent domain, say); every app must read the same.
    logged_in = client.create({"_auth_user_id": "7"})
    other = client.create({})
    app = flask_app(address, token)
    for first, last, expected in [(logged_in, other, "anonymous"), (other, logged_in, "7")]:
        # Without its cookie jar, which would replace the header.
        browser = app.test_client(use_cookies=False)
        response = browser.get("/whoami", headers={"Cookie": f"sessionid={first}; sessionid={last}"})
        assert response.text == expected
