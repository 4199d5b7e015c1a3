#!/usr/bin/env python3
"""The Django engine as its users see it: Django's ``SessionStore`` API on
sessiond, against Django's own ``db`` engine on SQLite and its ``cache``
engine on Redis.

What: starts ONE sessiond on a temporary SQLite file (127.0.0.1, a free
port), then, for every round and every thread count, runs worker processes
(bench/django/worker.py) that configure Django, warm up, and time --ops
creates, then loads of those sessions, then modify+saves of them, and
print one JSON line per engine. At one thread, one worker runs every
engine, the engines taking turns operation by operation (a create on
sessiond, one on db, one on cache, the next on sessiond, ...), so that the
machine's ups and downs fall on all of them alike; at more threads, one
worker per engine in turn (sessiond, db, cache), each spreading its
operations over its threads. This script prints, per engine and thread
count, the median ops/s over the rounds with the spread (min-max). The
machine is shared and noisy: compare engines within one run, never the
best round.

- sessiond: ``SESSION_ENGINE = "sessiond_django.session_store"`` on
            sessiond with ``--store sqlite://`` (a temporary file).
- db:       ``django.contrib.sessions.backends.db`` on an SQLite file in WAL
            mode with synchronous=NORMAL (and transaction_mode IMMEDIATE,
            as Django's docs advise for SQLite under concurrency).
- cache:    ``django.contrib.sessions.backends.cache`` on Django's own
            ``RedisCache`` (redis-py), --redis-url.

The operations, as a view does them (1 KiB of data shaped like a logged-in
session; bench/django/worker.py has the details):

- create:      ``s = SessionStore(); s.update(data); s.save()``
- load:        ``SessionStore(key).load()``
- modify+save: ``s = SessionStore(key); s["visits"] = i; s.save()``
               (the item assignment loads the session first)

How to run (from the repository root; Python 3.10+, stdlib only here; a
Redis on --redis-url):

    cargo build --release -p sessiond
    python3 bench/django/run.py [--ops 5000] [--rounds 3] [--threads 1,8]
        [--engines sessiond,db,cache] [--payload-bytes 1024] [--json]

The first run makes a virtualenv under target/bench-venvs/ with the pinned
Django, redis, grpcio, protobuf and grpcio-tools and generates the Python
stubs into it (never into integrations/python); later runs reuse it. Every
run builds the Python client's native module (bench/python_native.py), which
the engine's blocking client sends its calls through, as after ``pip
install``. The SQLite files live in a temporary directory removed at the end; the Redis
sessions expire an hour after they are written.
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import python_native  # noqa: E402 - bench/python_native.py, shared with bench/clients
HERE = Path(__file__).resolve().parent
PYTHON_PACKAGE = REPO / "integrations" / "python"

#: The Django engine's runtime, pinned: grpcio-tools fixes the generated
#: code and so the grpcio and protobuf it needs (integrations/python's
#: pins); redis is what Django's own RedisCache runs on; asgiref and
#: sqlparse are Django's own dependencies, pinned so that a rerun is the
#: same code.
PYTHON_REQUIREMENTS = (
    "Django==5.2.19",
    "asgiref==3.13.0",
    "sqlparse==0.6.1",
    "redis==8.2.0",
    "grpcio==1.85.1",
    "protobuf==7.36.2",
    "grpcio-tools==1.85.1",
)
VENV_NAME = "django-5.2.19-grpcio-1.85.1"
VENV_READY = ".sessiond-bench-ready"

ENGINES = ("sessiond", "db", "cache")
DEFAULT_ENGINES = "sessiond,db,cache"

#: What the issue's table was measured with (issue 22).
DEFAULT_OPS = 5000
DEFAULT_ROUNDS = 3
DEFAULT_THREADS = "1,8"

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

OPERATIONS = (("create", "create"), ("load", "load"), ("modify", "modify+save"))

#: How long sessiond may take to listen, and one worker to finish.
START_TIMEOUT = 30.0
WORKER_TIMEOUT = 600.0


class BenchError(Exception):
    """The run cannot go on; the message says what to do."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python3 bench/django/run.py",
        description="Time Django's SessionStore API on the sessiond engine (sessiond on "
        "SQLite), Django's db engine (SQLite, WAL) and its cache engine (Redis), "
        "interleaved (op by op at one thread), over several rounds.",
        epilog="Prints median (min-max) ops/s over the rounds; see the top of this file.",
    )
    parser.add_argument("--ops", type=positive_int, default=DEFAULT_OPS,
                        help=f"operations of each kind per run (default {DEFAULT_OPS})")
    parser.add_argument("--rounds", type=positive_int, default=DEFAULT_ROUNDS,
                        help=f"rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument("--threads", type=int_list, default=int_list(DEFAULT_THREADS),
                        help=f"comma-separated thread counts (default {DEFAULT_THREADS})")
    parser.add_argument("--engines", type=choice_list(ENGINES),
                        default=DEFAULT_ENGINES.split(","),
                        help=f"comma-separated, in run order, of {','.join(ENGINES)} "
                        f"(default {DEFAULT_ENGINES})")
    parser.add_argument("--payload-bytes", type=positive_int, default=1024,
                        help="session data size as JSON (default 1024)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help=f"the Redis of the cache engine (default {DEFAULT_REDIS_URL})")
    parser.add_argument(
        "--target-dir",
        type=Path,
        default=Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")),
        help="cargo's target directory (default $CARGO_TARGET_DIR, else target/)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")
    args = parser.parse_args(argv)
    if any(threads > args.ops for threads in args.threads):
        parser.error("--threads: each thread count must be at most --ops")
    return args


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def int_list(text):
    values = [positive_int(part) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give at least one thread count, e.g. 1,8")
    return list(dict.fromkeys(values))


def choice_list(allowed):
    def parse(text):
        values = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [value for value in values if value not in allowed]
        if unknown or not values:
            raise argparse.ArgumentTypeError(
                f"{text!r}: each must be one of {','.join(allowed)}"
            )
        return list(dict.fromkeys(values))

    return parse


# --- setup -----------------------------------------------------------------


def sessiond_binary(target_dir):
    path = target_dir / "release" / "sessiond"
    if not os.access(path, os.X_OK):
        raise BenchError(
            f"missing {path}: run `cargo build --release -p sessiond` from the repository "
            "root first"
        )
    return path


def python_venv(target_dir, log):
    """The virtualenv with the pinned packages and the generated stubs;
    made once, reused while its requirements are the same."""
    venv = target_dir / "bench-venvs" / VENV_NAME
    python = venv / "bin" / "python"
    stubs = venv / "stubs"
    ready = venv / VENV_READY
    wanted = "\n".join(PYTHON_REQUIREMENTS)
    if ready.is_file() and ready.read_text() == wanted and python.exists():
        return python, stubs
    log(f"making the Python virtualenv {venv} ({', '.join(PYTHON_REQUIREMENTS)})")
    run_setup([sys.executable, "-m", "venv", "--clear", str(venv)], "create the virtualenv")
    run_setup(
        [str(python), "-m", "pip", "install", "--quiet", *PYTHON_REQUIREMENTS],
        "install the pinned packages (needs PyPI or a wheel cache)",
    )
    run_setup(
        [str(python), "-m", "sessiond_client.generate", "--out", str(stubs)],
        "generate the Python stubs",
        env={**os.environ, "PYTHONPATH": str(PYTHON_PACKAGE)},
    )
    ready.write_text(wanted)
    return python, stubs


def run_setup(command, what, **kwargs):
    try:
        done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    except FileNotFoundError:
        raise BenchError(f"cannot {what}: {command[0]} is not installed") from None
    if done.returncode != 0:
        raise BenchError(
            f"cannot {what}: `{shlex.join(command)}` exited with {done.returncode}:\n"
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )


# --- processes -------------------------------------------------------------


class Server:
    """sessiond on an SQLite file, listening on a free port of 127.0.0.1."""

    def __init__(self, sessiond, database):
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("SESSIOND_") and name != "RUST_LOG"
        }
        env.update(SESSIOND_LOG_FORMAT="json")
        self.command = [str(sessiond), "serve", "--store", f"sqlite://{database}",
                        "--listen", "127.0.0.1:0"]
        self.process = subprocess.Popen(
            self.command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = []
        listening = threading.Event()
        self.address = None

        def read():
            for line in self.process.stderr:
                self.log.append(line)
                if self.address is None and "sessiond serving" in line:
                    try:
                        self.address = json.loads(line)["listen"]
                    except (ValueError, KeyError):
                        pass
                    listening.set()

        threading.Thread(target=read, daemon=True).start()
        if not listening.wait(START_TIMEOUT) or self.address is None:
            self.stop()
            raise BenchError(
                f"sessiond did not start within {START_TIMEOUT:.0f} s:\n{''.join(self.log)[-2000:]}"
            )

    @property
    def pid(self):
        return self.process.pid

    def check(self):
        if self.process.poll() is not None:
            raise BenchError(
                f"sessiond exited with {self.process.returncode}:\n{''.join(self.log)[-2000:]}"
            )

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def worker_command(engines, threads, args, places):
    command = [
        str(places["python"]), str(HERE / "worker.py"),
        "--engines", ",".join(engines),
        "--ops", str(args.ops),
        "--threads", str(threads),
        "--payload-bytes", str(args.payload_bytes),
    ]
    if "sessiond" in engines:
        command += ["--sessiond", places["address"]]
    if "db" in engines:
        command += ["--sqlite", str(places["django_sqlite"])]
    if "cache" in engines:
        command += ["--redis-url", args.redis_url, "--key-prefix", places["key_prefix"]]
    return command


def run_worker(engines, threads, args, places):
    """One worker process: the figures of each of ``engines``."""
    command = worker_command(engines, threads, args, places)
    named = ",".join(engines)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(PYTHON_PACKAGE), str(places["stubs"]),
                                          str(places["native"])])}
    try:
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{named} took over {WORKER_TIMEOUT:.0f} s: "
                         f"`{shlex.join(command)}`") from None
    if done.returncode != 0:
        raise BenchError(f"{named} exited with {done.returncode}: `{shlex.join(command)}`\n"
                         f"{(done.stderr or done.stdout).strip()[-2000:]}")
    try:
        lines = [json.loads(text) for text in done.stdout.splitlines() if text.startswith("{")]
        runs = {figures["engine"]: figures for figures in lines}
        for figures in runs.values():
            for operation, _ in OPERATIONS:
                seconds = figures[operation]["seconds"]
                figures[operation]["ops_per_s"] = (figures[operation]["ops"] / seconds
                                                   if seconds else 0.0)
            figures["command"] = shlex.join(command)
    except (ValueError, KeyError) as error:
        raise BenchError(f"{named} printed no figures ({error!r}): `{shlex.join(command)}`\n"
                         f"{done.stdout[-1000:]}") from None
    missing = [engine for engine in engines if engine not in runs]
    if missing:
        raise BenchError(f"{named} printed no figures for {','.join(missing)}: "
                         f"`{shlex.join(command)}`\n{done.stdout[-1000:]}")
    return [runs[engine] for engine in engines]


# --- summary ---------------------------------------------------------------


def spread(values):
    values = [value for value in values if value is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs, args):
    """Per (threads, engine): each operation's ops/s over the rounds."""
    summary = []
    for threads in args.threads:
        for engine in args.engines:
            mine = [run for run in runs if run["threads"] == threads and run["engine"] == engine]
            entry = {"threads": threads, "engine": engine, "rounds": len(mine)}
            for operation, _ in OPERATIONS:
                entry[operation] = {
                    "ops_per_s": spread([run[operation]["ops_per_s"] for run in mine]),
                    "p50_us": spread([run[operation]["p50_us"] for run in mine]),
                    "p99_us": spread([run[operation]["p99_us"] for run in mine]),
                    "errors": sum(run[operation]["errors"] for run in mine),
                    "first_error": next((run[operation]["first_error"] for run in mine
                                         if run[operation]["first_error"]), None),
                }
            summary.append(entry)
    return summary


#: Issue 22's targets, single thread: (operation, reference engine, at least).
TARGETS = (
    ("load", "db", 1.0),
    ("modify", "db", 1.0),
    ("load", "cache", 0.75),
)


def targets(runs, args):
    """sessiond's ops/s over the reference's, per round (the engines of one
    round took turns op by op), at one thread."""
    found = []
    if 1 not in args.threads or "sessiond" not in args.engines:
        return found
    for operation, reference, bar in TARGETS:
        if reference not in args.engines:
            continue
        ratios = []
        for round_ in range(1, args.rounds + 1):
            pair = {run["engine"]: run for run in runs
                    if run["round"] == round_ and run["threads"] == 1}
            if "sessiond" in pair and reference in pair and pair[reference][operation]["ops_per_s"]:
                ratios.append(pair["sessiond"][operation]["ops_per_s"]
                              / pair[reference][operation]["ops_per_s"])
        ratio = spread(ratios)
        found.append({"operation": operation, "reference": reference, "at_least": bar,
                      "ratio": ratio, "met": ratio is not None and ratio["median"] >= bar})
    return found


def fmt(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def fmt_spread(figure, digits=0):
    if figure is None:
        return "-"
    return (f"{fmt(figure['median'], digits)} "
            f"({fmt(figure['min'], digits)}-{fmt(figure['max'], digits)})")


ENGINE_NAMES = {
    "sessiond": "sessiond engine",
    "db": "db engine, SQLite WAL",
    "cache": "cache engine, Redis",
}


def print_tables(summary, goals, args, machine, command):
    print(f"command: {command}")
    print(f"machine: {machine['cpus']} CPUs, {machine['cpu_model']}; {machine['versions']}")
    print(f"runs:    {args.rounds} rounds of {','.join(args.engines)}, taking turns op by op "
          "at 1 thread, process by process above; "
          f"{args.ops} ops of each kind per run, {args.payload_bytes}-byte data; "
          f"sessiond on sqlite:// at {machine['address']}")
    print("figures: ops/s, median (min-max) over the rounds")
    print()
    headers = ["threads", "engine"] + [title for _, title in OPERATIONS]
    table = [headers]
    for entry in summary:
        table.append([str(entry["threads"]), ENGINE_NAMES[entry["engine"]]]
                     + [fmt_spread(entry[operation]["ops_per_s"]) for operation, _ in OPERATIONS])
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    for index, row in enumerate(table):
        print("  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
                        for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    for entry in summary:
        for operation, title in OPERATIONS:
            figures = entry[operation]
            if figures["errors"]:
                print(f"  {entry['threads']} thread(s), {entry['engine']} {title}: "
                      f"{figures['errors']} failed in all rounds, first: {figures['first_error']}")
    print()
    print("latency, 1 thread, median over rounds: p50 / p99 us")
    for entry in summary:
        if entry["threads"] != 1:
            continue
        cells = [f"{title} {fmt(entry[operation]['p50_us'] and entry[operation]['p50_us']['median'])}"
                 f" / {fmt(entry[operation]['p99_us'] and entry[operation]['p99_us']['median'])}"
                 for operation, title in OPERATIONS]
        print(f"  {ENGINE_NAMES[entry['engine']]:<22} " + "; ".join(cells))
    if goals:
        print()
        print("issue 22's targets, 1 thread (sessiond / reference, per round):")
        titles = dict(OPERATIONS)
        for goal in goals:
            verdict = "met" if goal["met"] else "NOT met"
            print(f"  {titles[goal['operation']]:<12} vs {goal['reference']:<6} "
                  f"{fmt_spread(goal['ratio'], 2)}  (at least {goal['at_least']:.2f}): {verdict}")


def machine_facts(address, runs):
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                          if line.startswith("model name")), platform.machine())
    except OSError:
        model = platform.machine()
    versions = runs[-1]["versions"] if runs else {}
    text = ", ".join(f"{name} {version}" for name, version in versions.items())
    return {"cpus": os.cpu_count(), "cpu_model": model, "versions": text, "address": address}


def measure_all(args, places, server, log):
    """Every round and thread count. At one thread the engines take turns
    operation by operation in one process; at more, each engine runs in a
    process of its own, one after the other."""
    runs = []
    batches = [[engine] for engine in args.engines]
    total = args.rounds * sum(1 if threads == 1 else len(batches) for threads in args.threads)
    done = 0
    for round_ in range(1, args.rounds + 1):
        for threads in args.threads:
            for engines in [args.engines] if threads == 1 else batches:
                done += 1
                log(f"[{done}/{total}] round {round_}: {','.join(engines)}, {threads} thread(s)")
                for figures in run_worker(engines, threads, args, places):
                    figures["round"] = round_
                    runs.append(figures)
                if server is not None:
                    server.check()
    return runs


def main(argv=None):
    args = parse_args(argv)
    command = shlex.join(["python3", "bench/django/run.py", *(sys.argv[1:] if argv is None
                                                                else argv)])
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="sessiond-bench-django-") as scratch:
            places = {
                "django_sqlite": Path(scratch) / "django.sqlite3",
                "key_prefix": f"sessiond-bench-django-{uuid.uuid4().hex[:12]}",
                "address": None,
            }
            if "sessiond" in args.engines:
                sessiond = sessiond_binary(args.target_dir)
            places["python"], places["stubs"] = python_venv(args.target_dir, log)
            log("building the Python client's native module (cargo build --release)")
            places["native"] = python_native.build(args.target_dir)
            if "sessiond" in args.engines:
                server = Server(sessiond, Path(scratch) / "sessiond.sqlite3")
                places["address"] = server.address
                log(f"sessiond on sqlite:// at {server.address} (pid {server.pid})")
            try:
                runs = measure_all(args, places, server, log)
            finally:
                # Before the temporary directory goes, with sessiond's file.
                if server is not None:
                    server.stop()
            summary = summarize(runs, args)
            goals = targets(runs, args)
            machine = machine_facts(places["address"], runs)
    except (BenchError, python_native.NativeBuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        json.dump({"command": command, "machine": machine,
                   "settings": vars(args) | {"target_dir": str(args.target_dir)},
                   "summary": summary, "targets": goals, "runs": runs},
                  sys.stdout, indent=2)
        print()
    else:
        print_tables(summary, goals, args, machine, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
