"""The Flask site of the shared-login test (server/tests/shared_login.rs):
``flask_sessiond`` on Django's ``sessionid`` cookie, served over HTTP by
werkzeug. It answers ``GET /session``, ``POST /session/<name>`` and
``POST /logout`` as every site of the test does (see django_site.py).

Environment: ``SESSIOND_ADDRESS``. Prints ``listening on <port>`` once it
serves on 127.0.0.1.
"""

import logging
import os

from flask import Flask, jsonify, request, session
from flask_sessiond import Sessiond
from werkzeug.serving import make_server

app = Flask(__name__)
app.config["SESSIOND_ADDRESS"] = os.environ["SESSIOND_ADDRESS"]
Sessiond(app)


@app.get("/session")
def show_session():
    return jsonify(data=dict(session.items()))


@app.post("/session/<name>")
def set_member(name):
    session[name] = request.get_json()
    return jsonify(ok=True)


@app.post("/logout")
def log_out():
    session.flush()
    return jsonify(ok=True)


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()
