"""One Django measurement for bench/django/run.py: configures Django for
one session engine or several, then creates sessions, loads them, and
modifies and saves them through Django's ``SessionStore`` API, and prints
one JSON line per engine on stdout:

    {"engine": "...", "threads": N, "create": {...}, "load": {...},
     "modify": {...}, "versions": {...}}

where each operation is ``{"ops": N, "seconds": S, "errors": E,
"first_error": "...", "p50_us": P, "p99_us": P}``.

The operations, as a Django view sees them:

``create``
    ``s = SessionStore(); s.update(data); s.save()``: what
    ``SessionMiddleware`` does for a new session (``save()`` without a key
    is ``create()``).
``load``
    ``SessionStore(key).load()`` of a session this thread created.
``modify``
    ``s = SessionStore(key); s["visits"] = i; s.save()``: the load that
    the item assignment triggers, then the save.

One engine, on N threads: every thread warms up first (its own connection
to the store, sessions not counted), then all threads start each operation
together; an operation's time runs from that start until the last thread
is done.

Several engines (one thread): the engines take turns operation by
operation (the first create of each engine, then the second of each, ...),
so that a machine that slows down or speeds up meanwhile does so for all
of them alike; an operation's time is the sum of that engine's own
operations.

Run by run.py inside its virtualenv, with integrations/python and the
generated stubs on PYTHONPATH; not meant to be started by hand, though
``--help`` says what it takes.
"""

import argparse
import json
import sys
import threading
import time

ENGINES = ("sessiond", "db", "cache")

#: The option that names each engine's store.
STORE_OPTIONS = {"sessiond": "sessiond", "db": "sqlite", "cache": "redis_url"}

OPERATIONS = ("create", "load", "modify")

#: The members Django's ``login()`` stores (bench/src/payload.rs), so that
#: the data is shaped like a logged-in session; "app" pads it.
LOGGED_IN = {
    "_auth_user_id": "4217",
    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
    "_auth_user_hash": "9c1185a5c5e9fc54612808977ee8f548b2258d31e4dfc8d7c2ad1d2a1f2c1a6d",
    "app": "",
}

#: Sessions expire this long after they are written, as sessiond-bench's
#: do: what the bench leaves in a shared Redis goes away by itself.
SESSION_AGE_SECONDS = 3600

#: Per thread, sessions created, loaded and saved before measuring.
DEFAULT_WARMUP = 50


def filler(count):
    """Letters and digits from the fixed xorshift sequence of
    bench/src/payload.rs: padding that compresses about as real data does
    (Django's ``db`` engine zlib-compresses what it signs)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    state = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    out = []
    for _ in range(count):
        state ^= (state << 13) & mask
        state ^= state >> 7
        state ^= (state << 17) & mask
        out.append(alphabet[state % len(alphabet)])
    return "".join(out)


def payload(size):
    """A session dict whose compact JSON is ``size`` bytes (at least the
    logged-in members)."""
    data = dict(LOGGED_IN)
    fixed = len(json.dumps(data, separators=(",", ":")))
    data["app"] = filler(max(size - fixed, 0))
    return data


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="bench/django/worker.py",
        description="One measurement of a Django session engine (run by run.py).",
    )
    parser.add_argument("--engines", type=engine_list, required=True,
                        help=f"comma-separated, of {','.join(ENGINES)}; several take turns "
                        "on one thread")
    parser.add_argument("--ops", type=int, required=True,
                        help="operations of each kind, in all (for each engine)")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help=f"sessions per thread before measuring (default {DEFAULT_WARMUP})")
    parser.add_argument("--sessiond", metavar="HOST:PORT", help="for the sessiond engine")
    parser.add_argument("--sqlite", metavar="PATH", help="for the db engine: the database file")
    parser.add_argument("--redis-url", help="for the cache engine")
    parser.add_argument("--key-prefix", default="sessiond-bench-django",
                        help="for the cache engine: the cache's KEY_PREFIX")
    args = parser.parse_args(argv)
    for engine in args.engines:
        needed = STORE_OPTIONS[engine]
        if getattr(args, needed) is None:
            parser.error(f"the {engine} engine needs --{needed.replace('_', '-')}")
    if len(args.engines) > 1 and args.threads != 1:
        parser.error("several --engines take turns on one thread: give --threads 1")
    return args


def engine_list(text):
    engines = [part.strip() for part in text.split(",") if part.strip()]
    if not engines or any(engine not in ENGINES for engine in engines):
        raise argparse.ArgumentTypeError(f"{text!r}: each must be one of {','.join(ENGINES)}")
    return list(dict.fromkeys(engines))


#: Each engine's ``SessionStore`` module.
STORE_MODULES = {
    "sessiond": "sessiond_django.session_store",
    "db": "django.contrib.sessions.backends.db",
    "cache": "django.contrib.sessions.backends.cache",
}


def configure(args):
    """Django's settings for every engine asked for: each one's
    ``SessionStore`` is imported by its module, so ``SESSION_ENGINE`` is
    only the first."""
    from django.conf import settings

    extra = {}
    if "sessiond" in args.engines:
        extra["SESSIOND_ADDRESS"] = args.sessiond
    if "db" in args.engines:
        extra["DATABASES"] = {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": args.sqlite,
                "OPTIONS": {
                    # What Django's docs advise for SQLite under concurrency
                    # (5.1+): WAL, NORMAL, and writes that take the lock
                    # when they begin, so that threads wait for it instead
                    # of failing "database is locked" on an upgrade.
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                    "transaction_mode": "IMMEDIATE",
                    "timeout": 20,
                },
            }
        }
    if "cache" in args.engines:
        extra["CACHES"] = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": args.redis_url,
                "KEY_PREFIX": args.key_prefix,
            }
        }
    settings.configure(
        SECRET_KEY="sessiond-bench-django-not-a-secret",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.sessions"],
        SESSION_COOKIE_AGE=SESSION_AGE_SECONDS,
        SESSION_SERIALIZER="django.contrib.sessions.serializers.JSONSerializer",
        SESSION_ENGINE=STORE_MODULES[args.engines[0]],
        **extra,
    )
    import django

    django.setup()
    if "db" in args.engines:
        from django.contrib.sessions.models import Session
        from django.db import connection

        with connection.cursor() as cursor:
            tables = connection.introspection.table_names(cursor)
        if Session._meta.db_table not in tables:
            with connection.schema_editor() as editor:
                editor.create_model(Session)
        connection.close()


def percentile(sorted_us, q):
    if not sorted_us:
        return None
    return sorted_us[min(int(q * len(sorted_us)), len(sorted_us) - 1)]


class Thread:
    """One thread's share of the operations, and what it saw."""

    def __init__(self, ops, data, store_class):
        self.ops = ops
        self.data = data
        self.SessionStore = store_class
        self.keys = []
        self.latencies = {operation: [] for operation in OPERATIONS}
        #: Seconds spent in each kind of operation, failed ones included.
        self.busy = dict.fromkeys(OPERATIONS, 0.0)
        self.errors = dict.fromkeys(OPERATIONS, 0)
        self.first_error = {}

    def create(self):
        session = self.SessionStore()
        session.update(self.data)
        session.save()
        return session.session_key

    def load(self, key):
        loaded = self.SessionStore(key).load()
        if loaded.get("_auth_user_id") != "4217":
            raise LookupError("load found no session")

    def modify(self, key, value):
        session = self.SessionStore(key)
        if session.get("_auth_user_id") != "4217":
            raise LookupError("modify found no session")
        session["visits"] = value
        session.save()

    def warm_up(self, count):
        keys = [self.create() for _ in range(count)]
        for index, key in enumerate(keys):
            self.load(key)
            self.modify(key, index)

    def step(self, operation, index):
        """One operation, timed: a create, or a load or modify of the
        ``index``-th session created."""
        started = time.perf_counter()
        try:
            if operation == "create":
                self.keys.append(self.create())
            elif operation == "load":
                self.load(self.keys[index])
            else:
                self.modify(self.keys[index], index)
        except Exception as error:  # noqa: BLE001 - counted and reported
            self.failed(operation, error)
        else:
            self.latencies[operation].append(time.perf_counter() - started)
        self.busy[operation] += time.perf_counter() - started

    def steps(self, operation):
        """How many ``operation``s this thread makes: a load or modify for
        each session its creates made."""
        return self.ops if operation == "create" else len(self.keys)

    def run(self, operation):
        for index in range(self.steps(operation)):
            self.step(operation, index)

    def failed(self, operation, error):
        self.errors[operation] += 1
        self.first_error.setdefault(operation, f"{type(error).__name__}: {error}")


def store_class(engine):
    from django.utils.module_loading import import_string

    return import_string(STORE_MODULES[engine] + ".SessionStore")


def measure(args):
    """One engine on ``--threads`` threads: its figures per operation."""
    (engine,) = args.engines
    data = payload(args.payload_bytes)
    shares = [args.ops // args.threads + (1 if i < args.ops % args.threads else 0)
              for i in range(args.threads)]
    workers = [Thread(share, data, store_class(engine)) for share in shares]
    # Main thread and workers meet before and after each operation.
    barrier = threading.Barrier(args.threads + 1)
    failures = []

    def body(worker):
        try:
            worker.warm_up(args.warmup)
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            failures.append(f"warm-up: {type(error).__name__}: {error}")
        barrier.wait()
        for operation in OPERATIONS:
            barrier.wait()
            worker.run(operation)
            barrier.wait()
        if engine == "db":
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=body, args=(worker,), daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    barrier.wait()
    if failures:
        raise SystemExit(f"error: {failures[0]}")
    figures = {}
    for operation in OPERATIONS:
        barrier.wait()
        started = time.perf_counter()
        barrier.wait()
        figures[operation] = summary(workers, operation, time.perf_counter() - started)
    for thread in threads:
        thread.join()
    return {engine: figures}


def measure_in_turns(args):
    """Several engines on this thread, taking turns operation by operation:
    each engine's figures per operation, its time the sum of its own
    (failed ones included)."""
    data = payload(args.payload_bytes)
    workers = {engine: Thread(args.ops, data, store_class(engine)) for engine in args.engines}
    for engine, worker in workers.items():
        try:
            worker.warm_up(args.warmup)
        except Exception as error:  # noqa: BLE001 - the run cannot go on
            raise SystemExit(f"error: warm-up of {engine}: {type(error).__name__}: {error}")
    for operation in OPERATIONS:
        for index in range(args.ops):
            for worker in workers.values():
                if index < worker.steps(operation):
                    worker.step(operation, index)
    return {
        engine: {
            operation: summary([worker], operation, worker.busy[operation])
            for operation in OPERATIONS
        }
        for engine, worker in workers.items()
    }


def summary(workers, operation, seconds):
    latencies = sorted(us * 1e6 for worker in workers for us in worker.latencies[operation])
    first = [worker.first_error[operation] for worker in workers
             if operation in worker.first_error]
    return {
        "ops": len(latencies),
        "seconds": seconds,
        "errors": sum(worker.errors[operation] for worker in workers),
        "first_error": first[0] if first else None,
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
    }


def versions():
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in ("Django", "grpcio", "protobuf", "redis"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def main(argv=None):
    args = parse_args(argv)
    configure(args)
    by_engine = measure(args) if len(args.engines) == 1 else measure_in_turns(args)
    found = versions()
    for engine, figures in by_engine.items():
        print(json.dumps({"engine": engine, "threads": args.threads, **figures,
                          "versions": found}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
