"""Django's own database session backend, driven from the command line by
the interop tests: one operation per run, the result as JSON on stdout.

Configured by environment: SECRET_KEY, and either SQLITE_PATH or PG_SCHEMA
(a schema in the `test` database on 127.0.0.1:5432).
"""

import json
import os
import sys
from datetime import timedelta

import django
from django.conf import settings

database = (
    {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SQLITE_PATH"]}
    if "SQLITE_PATH" in os.environ
    else {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "test",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "OPTIONS": {"options": f"-c search_path={os.environ['PG_SCHEMA']}"},
    }
)
settings.configure(
    SECRET_KEY=os.environ["SECRET_KEY"],
    DATABASES={"default": database},
    INSTALLED_APPS=["django.contrib.sessions"],
    USE_TZ=True,
    SESSION_ENGINE="django.contrib.sessions.backends.db",
)
django.setup()

from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.contrib.sessions.models import Session  # noqa: E402


def describe(store):
    data = dict(store.items())
    return {"key": store.session_key, "data": data}


def row(key):
    found = Session.objects.filter(session_key=key).first()
    return None if found is None else found.expire_date.isoformat()


def main(command, *args):
    if command == "create":
        store = SessionStore()
        store.update(json.loads(args[0]))
        store.save()
        return {"key": store.session_key, "expire_date": row(store.session_key)}
    if command == "load":
        store = SessionStore(args[0])
        return describe(store)
    if command == "update":
        store = SessionStore(args[0])
        store.update(json.loads(args[1]))
        store.save()
        return describe(store)
    if command == "set_expiry":
        store = SessionStore(args[0])
        store.set_expiry(int(args[1]))
        store.save()
        return {"expire_date": row(args[0])}
    if command == "set_expiry_delta":
        store = SessionStore(args[0])
        store.set_expiry(timedelta(seconds=int(args[1])))
        store.save()
        return {"expire_date": row(args[0]), "data": dict(store.items())}
    if command == "cycle":
        store = SessionStore(args[0])
        store.cycle_key()
        return describe(store)
    if command == "flush":
        store = SessionStore(args[0])
        store.flush()
        return {"exists": SessionStore().exists(args[0])}
    if command == "exists":
        return {"exists": SessionStore().exists(args[0])}
    if command == "clear_expired":
        before = Session.objects.count()
        SessionStore.clear_expired()
        return {"removed": before - Session.objects.count()}
    if command == "expire_date":
        return {"expire_date": row(args[0])}
    raise SystemExit(f"unknown command {command}")


print(json.dumps(main(*sys.argv[1:])))
