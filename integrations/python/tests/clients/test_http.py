"""Django's end-of-request rules over real HTTP, for the Flask extension
(werkzeug's server) and the ASGI middleware (Starlette on uvicorn) alike:
cookie attributes, Vary, no save on 5xx, logout, cycle_key, a session
deleted by another request, a cookie that cannot be a key."""

import re
import threading

import pytest
import uvicorn
from apps import flask_app, starlette_app
from conftest import http_get, wait_until
from werkzeug.serving import make_server

from sessiond_client import AsyncClient, is_valid_key

#: Django's cookie with its default settings (spec §6), the key aside.
DEFAULT_COOKIE = re.compile(
    r"^sessionid=([a-z0-9]{32}); expires=\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT; "
    r"HttpOnly; Max-Age=1209600; Path=/; SameSite=Lax$"
)
DELETED_COOKIE = (
    'sessionid=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=Lax'
)


def serve_flask(address, token):
    server = make_server("127.0.0.1", 0, flask_app(address, token), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        thread.join(10)

    return server.server_port, stop


def serve_starlette(address, token):
    app = starlette_app(AsyncClient(address, token=token))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "uvicorn's start", timeout=10)
    port = server.servers[0].sockets[0].getsockname()[1]

    def stop():
        server.should_exit = True
        thread.join(10)

    return port, stop


@pytest.fixture(params=["flask", "starlette"])
def port(request, address, token):
    serve = {"flask": serve_flask, "starlette": serve_starlette}[request.param]
    port, stop = serve(address, token)
    yield port
    stop()


def test_a_new_session_sets_djangos_cookie_and_varies(port, client):
    answer = http_get(port, "/visits")
    assert (answer.status, answer.text) == (200, "1")
    [cookie] = answer.all("Set-Cookie")
    key = DEFAULT_COOKIE.match(cookie).group(1)
    assert answer.all("Vary") == ["Cookie"]
    assert client.load(key).data == {"visits": 1}
    again = http_get(port, "/visits", key)
    assert again.text == "2" and again.cookie() == key


def test_reading_varies_without_a_cookie(port):
    answer = http_get(port, "/whoami")
    assert answer.text == "anonymous"
    assert answer.all("Set-Cookie") == [] and answer.all("Vary") == ["Cookie"]
    untouched = http_get(port, "/plain")
    assert untouched.all("Set-Cookie") == [] and untouched.all("Vary") == []


def test_nothing_is_saved_on_a_5xx(port, client):
    answer = http_get(port, "/fail")
    assert answer.status == 500
    assert answer.all("Set-Cookie") == [] and answer.all("Vary") == ["Cookie"]
    key = http_get(port, "/visits").cookie()
    http_get(port, "/fail", key)
    assert client.load(key).data == {"visits": 1}


def test_login_cycles_the_key_and_logout_deletes_the_cookie(port, client):
    anonymous = http_get(port, "/visits").cookie()
    login = http_get(port, "/login", anonymous)
    key = login.cookie()
    assert is_valid_key(key) and key != anonymous
    assert client.exists(anonymous) is False
    assert client.load(key).data == {"visits": 1, "_auth_user_id": "7"}
    assert http_get(port, "/whoami", key).text == "7"

    logout = http_get(port, "/logout", key)
    assert logout.all("Set-Cookie") == [DELETED_COOKIE]
    assert logout.all("Vary") == ["Cookie"]
    assert client.exists(key) is False
    assert http_get(port, "/whoami", key).text == "anonymous"


def test_a_logout_during_the_request_answers_400(port, client):
    key = http_get(port, "/visits").cookie()
    answer = http_get(port, "/logout-elsewhere", key)
    assert answer.status == 400
    assert "deleted before the request completed" in answer.text
    assert answer.all("Set-Cookie") == []
    assert client.exists(key) is False  # never brought back


def test_a_cookie_that_cannot_be_a_key_is_a_fresh_session(port):
    for bad in ["abc", "NOT-A-SESSION-KEY-AT-ALL", "k" * 32]:
        answer = http_get(port, "/visits", bad)
        assert answer.text == "1"
        assert answer.cookie() not in (None, bad)
    # An untouched session under a cookie too short to be a key: Django
    # deletes the cookie.
    assert http_get(port, "/plain", "abc").all("Set-Cookie") == [DELETED_COOKIE]


def test_a_browser_session_cookie_has_no_max_age(port):
    answer = http_get(port, "/browser-close")
    [cookie] = answer.all("Set-Cookie")
    assert re.fullmatch(r"sessionid=[a-z0-9]{32}; HttpOnly; Path=/; SameSite=Lax", cookie)


def test_a_login_is_shared_between_the_frameworks(address, token, client):
    """A Flask login is a Starlette login: the same cookie, the same session."""
    flask_port, stop_flask = serve_flask(address, token)
    starlette_port, stop_starlette = serve_starlette(address, token)
    try:
        key = http_get(flask_port, "/login").cookie()
        assert http_get(starlette_port, "/whoami", key).text == "7"
        assert http_get(starlette_port, "/visits", key).text == "1"
        assert http_get(flask_port, "/visits", key).text == "2"
        http_get(starlette_port, "/logout", key)
        assert http_get(flask_port, "/whoami", key).text == "anonymous"
    finally:
        stop_flask()
        stop_starlette()
