"""Django's SessionStore on the sessiond engine, driven line by line by
server/tests/django_shared_service.rs: one command per line on stdin, one
JSON object per line on stdout. The process lives across commands, so its
gRPC channels do too, as a web worker's would while a replica dies.

Configured by environment, as Django settings: SESSIOND_ADDRESSES (comma
separated), SESSIOND_TIMEOUT (seconds), SESSIOND_TLS_CA, SESSIOND_TLS_CERT,
SESSIOND_TLS_KEY, SESSIOND_TLS_SERVER_NAME (each optional).

Commands (KEY is a session key, JSON a JSON object):
  create JSON      a new session with these members, saved
  load KEY         the members stored under KEY ({} when there is none)
  update KEY JSON  load, set these members, save
  cycle KEY        load, cycle_key (one CycleKey call), save
  delete KEY       delete the session
  exists KEY

Every answer holds ``answered_by``: the address the engine's client last
had an answer from. A failure is an answer too:
``{"error": CLASS, "message": TEXT}``.
"""

import json
import os
import sys

import django
from django.conf import settings

_TLS = ("SESSIOND_TLS_CA", "SESSIOND_TLS_CERT", "SESSIOND_TLS_KEY", "SESSIOND_TLS_SERVER_NAME")

settings.configure(
    SECRET_KEY="shared-service-test",
    INSTALLED_APPS=["django.contrib.sessions"],
    USE_TZ=True,
    SESSION_ENGINE="sessiond_django.session_store",
    SESSIOND_ADDRESSES=os.environ["SESSIOND_ADDRESSES"].split(","),
    SESSIOND_TIMEOUT=float(os.environ["SESSIOND_TIMEOUT"]),
    **{name: os.environ[name] for name in _TLS if name in os.environ},
)
django.setup()

from sessiond_django.client import client  # noqa: E402
from sessiond_django.session_store import SessionStore  # noqa: E402


def run(line):
    command, _, rest = line.strip().partition(" ")
    args = [rest] if command == "create" else rest.split(" ", 1)
    if command == "create":
        store = SessionStore()
        store.update(json.loads(args[0]))
        store.save()
        return {"key": store.session_key}
    if command == "load":
        return {"data": dict(SessionStore(args[0]).items())}
    if command == "update":
        store = SessionStore(args[0])
        store.update(json.loads(args[1]))
        store.save()
        return {"key": store.session_key}
    if command == "cycle":
        store = SessionStore(args[0])
        store.load()
        store.cycle_key()
        store.save()
        return {"key": store.session_key}
    if command == "delete":
        SessionStore(args[0]).delete()
        return {}
    if command == "exists":
        return {"exists": SessionStore().exists(args[0])}
    raise ValueError(f"unknown command {command!r}")


def main():
    for line in sys.stdin:
        try:
            answer = run(line)
        except Exception as error:  # noqa: BLE001 - the driver judges it
            answer = {"error": type(error).__name__, "message": str(error)}
        engine_client = client()
        answer["answered_by"] = engine_client.addresses[engine_client._preferred]
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
