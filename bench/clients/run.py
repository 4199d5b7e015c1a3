#!/usr/bin/env python3
"""Compares sessiond's Rust, Node and Python clients against one server.

What: starts ONE sessiond on ``memory://`` (127.0.0.1, a free port), then,
for every round and every (workload, concurrency), runs each client in turn
(rust, node, python, rust, node, python, ...) as a separate process against
that server. Each process creates its own sessions, warms up (--warmup),
measures for --duration and prints one JSON line; this script collects them
and prints, per workload and concurrency, the median over the rounds with
the spread (min-max). The machine is shared and noisy: compare the ratios
within one run, never the best round, and re-run before concluding much.

- rust:   target/release/sessiond-bench --target ... --connections 1 --threads 1
          (the Rust client's Transport in a lean load loop, one channel).
- node:   bench/clients/node_worker.js: integrations/node's ``Client``
          (on the package's native addon, built by ``npm ci``), N async loops
          on one Client (one channel).
- node-grpc-js (optional, --clients): the same ``Client`` on @grpc/grpc-js
          (``SESSIOND_CLIENT_TRANSPORT=grpc-js``).
- python: bench/clients/python_worker.py: ``sessiond_client.Client``
          (blocking, on the package's native module, as a Django/Flask
          worker uses it after ``pip install``) at concurrency 1;
          ``AsyncClient`` (grpc.aio) with N coroutines on one channel above.
- python-grpcio (optional, --clients): the same ``Client`` without the
          native module, on grpcio (as in a checkout where it is not built).
- node-stub, python-stub (optional, --clients): the bare generated stub on
  the same channel settings, without the client's own code; the difference
  to node/python is what the client library itself costs per call.

How to run (from the repository root; Python 3.10+, stdlib only here):

    cargo build --release -p sessiond -p sessiond-bench
    python3 bench/clients/run.py [--rounds 5] [--duration 5] [--concurrency 1,64]
        [--workloads load,save] [--payload-bytes 1024]
        [--clients rust,node,python[,node-grpc-js,python-grpcio,node-stub,python-stub]]
        [--json]

The first run makes a virtualenv under target/bench-venvs/ with the pinned
grpcio, protobuf and grpcio-tools, generates the Python stubs into it (never
into integrations/python), and runs ``npm ci`` in integrations/node when its
node_modules is missing; later runs reuse both. Every run builds the Python
package's native module (cargo, release; a no-op once built) and puts it
beside the stubs, as ``pip install`` does.

How to read the table (one per workload x concurrency):

- ops/s: successful calls per second in the measured window, median of the
  rounds (min-max).
- us/call: 1e6 / ops/s, i.e. the wall time of one call at concurrency 1
  (client + network + server); at higher concurrency it is the inverse
  throughput, not a latency.
- x rust: per round, this client's us/call divided by Rust's in the same
  round (= Rust's ops/s / this client's); median (min-max) of those. The
  issue's bar is x rust <= 2 at concurrency 1.
- p50/p99: per-call latency as the client saw it, median over rounds.
- cli CPU, srv CPU: CPU time (user+system, from /proc/PID/stat) of the
  client process and of sessiond per successful call, sampled over the
  middle of the measured window; median over rounds. "cli CPU" at
  concurrency 1 is what the client library and its gRPC runtime cost.
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import python_native  # noqa: E402 - bench/python_native.py, shared with bench/django
HERE = Path(__file__).resolve().parent
NODE_PACKAGE = REPO / "integrations" / "node"
PYTHON_PACKAGE = REPO / "integrations" / "python"

#: What the Python client runs on, pinned (integrations/python's pins):
#: grpcio-tools fixes the generated code, and so the runtime it needs.
PYTHON_REQUIREMENTS = ("grpcio==1.85.1", "protobuf==7.36.2", "grpcio-tools==1.85.1")
VENV_NAME = "python-grpcio-1.85.1"
VENV_READY = ".sessiond-bench-ready"

CLIENTS = ("rust", "node", "python", "node-grpc-js", "python-grpcio", "node-stub",
           "python-stub")
DEFAULT_CLIENTS = "rust,node,python"

#: Sessions each worker creates before measuring; loads and saves pick
#: among them at random. Small enough that creating them takes well under
#: a second in every language.
DEFAULT_SESSIONS = 1000

#: Room in the memory store for every session of every run of a long
#: session (each run creates its own).
MAX_SESSIONS = 5_000_000

#: The CPU sample covers this share of the measured window, starting when
#: the worker says it is measuring (sessiond-bench says so up to a second
#: late), so that it stays inside the window.
CPU_WINDOW_SHARE = 0.6

#: How long sessiond may take to listen, and a worker beyond its window.
START_TIMEOUT = 30.0
WORKER_GRACE = 120.0

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The run cannot go on; the message says what to do."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python3 bench/clients/run.py",
        description="Compare sessiond's Rust, Node and Python clients against one "
        "sessiond on memory://, interleaved, over several rounds.",
        epilog="Prints median (min-max) over the rounds; see the top of this file.",
    )
    parser.add_argument("--rounds", type=positive_int, default=5, help="rounds (default 5)")
    parser.add_argument(
        "--duration", type=positive_float, default=5.0, help="seconds measured per run (default 5)"
    )
    parser.add_argument(
        "--warmup", type=positive_float, default=1.0, help="seconds of warm-up per run (default 1)"
    )
    parser.add_argument(
        "--concurrency",
        type=int_list,
        default=[1, 64],
        help="comma-separated calls in flight (default 1,64)",
    )
    parser.add_argument(
        "--workloads",
        type=choice_list(("load", "save")),
        default=["load", "save"],
        help="comma-separated, of load,save (default load,save)",
    )
    parser.add_argument(
        "--payload-bytes", type=positive_int, default=1024, help="session data size (default 1024)"
    )
    parser.add_argument(
        "--sessions",
        type=positive_int,
        default=DEFAULT_SESSIONS,
        help=f"sessions each run creates first (default {DEFAULT_SESSIONS})",
    )
    parser.add_argument(
        "--clients",
        type=choice_list(CLIENTS),
        default=DEFAULT_CLIENTS.split(","),
        help=f"comma-separated, in run order, of {','.join(CLIENTS)} (default {DEFAULT_CLIENTS})",
    )
    parser.add_argument(
        "--target-dir",
        type=Path,
        default=Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")),
        help="cargo's target directory (default $CARGO_TARGET_DIR, else target/)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")
    args = parser.parse_args(argv)
    if "rust" not in args.clients:
        parser.error("--clients must include rust: every ratio is to the Rust client")
    return args


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def int_list(text):
    values = [positive_int(part) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give at least one concurrency, e.g. 1,64")
    return values


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


def binaries(target_dir):
    release = target_dir / "release"
    found = {name: release / name for name in ("sessiond", "sessiond-bench")}
    missing = [str(path) for path in found.values() if not os.access(path, os.X_OK)]
    if missing:
        raise BenchError(
            f"missing {', '.join(missing)}: run `cargo build --release -p sessiond "
            "-p sessiond-bench` from the repository root first"
        )
    return found


def python_venv(target_dir, log):
    """The virtualenv with the pinned gRPC packages and the generated stubs;
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
        "install the pinned gRPC packages (needs PyPI or a wheel cache)",
    )
    run_setup(
        [str(python), "-m", "sessiond_client.generate", "--out", str(stubs)],
        "generate the Python stubs",
        env={**os.environ, "PYTHONPATH": str(PYTHON_PACKAGE)},
    )
    ready.write_text(wanted)
    return python, stubs


def node_modules(log):
    if not (NODE_PACKAGE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        log(f"running npm ci in {NODE_PACKAGE}")
        run_setup(["npm", "ci", "--no-audit", "--no-fund"],
                  "install the Node client's dependencies", cwd=NODE_PACKAGE)
    # What `npm ci` ran as the install script; a no-op once built, and the
    # build of an edited native/ otherwise.
    log("building the Node client's native addon (npm run build-native)")
    run_setup(["npm", "run", "--silent", "build-native"],
              "build the Node client's native addon (needs cargo)", cwd=NODE_PACKAGE)


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


def cpu_seconds(pid):
    """utime + stime of a live process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may hold spaces; fields after it
            # start past the last ')'.
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Server:
    """sessiond on memory://, listening on a free port of 127.0.0.1."""

    def __init__(self, sessiond):
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("SESSIOND_") and name != "RUST_LOG"
        }
        env.update(
            SESSIOND_LISTEN="127.0.0.1:0",
            SESSIOND_LOG_FORMAT="json",
            SESSIOND_STORE=f"memory://?max_sessions={MAX_SESSIONS}",
        )
        self.process = subprocess.Popen(
            [str(sessiond), "serve"],
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

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def worker_command(client, workload, concurrency, args, address, tools):
    common = [
        "--workload", workload,
        "--concurrency", str(concurrency),
        "--sessions", str(args.sessions),
        "--payload-bytes", str(args.payload_bytes),
    ]
    if client == "rust":
        return [
            str(tools["sessiond-bench"]), "--target", f"http://{address}", *common,
            "--connections", "1", "--threads", "1",
            "--duration", f"{args.duration}s", "--warmup", f"{args.warmup}s", "--json",
        ], None
    timing = ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    mode = ["--mode", "stub" if client.endswith("-stub") else "client"]
    if client.startswith("node"):
        env = {**os.environ, "SESSIOND_CLIENT_TRANSPORT": "grpc-js"} if client == "node-grpc-js" \
            else None
        return ["node", str(HERE / "node_worker.js"), "--target", address, *common, *timing,
                *mode], env
    path = [str(PYTHON_PACKAGE), str(tools["stubs"])]
    if client == "python":
        path.append(str(tools["native"]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return [str(tools["python"]), str(HERE / "python_worker.py"), "--target", address, *common,
            *timing, *mode], env


def is_measuring(client, line):
    if client == "rust":
        return ": measuring," in line
    return line.strip() == "measuring"


def run_worker(client, workload, concurrency, args, server, tools):
    """One measurement: the worker's figures, plus client and server CPU per
    call over the middle of its window."""
    command, env = worker_command(client, workload, concurrency, args, server.address, tools)
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    samples = {}
    errors = []

    def sample(name):
        samples[name] = (time.monotonic(), cpu_seconds(process.pid), cpu_seconds(server.pid))

    def read_stderr():
        for line in process.stderr:
            errors.append(line)
            if "start" not in samples and is_measuring(client, line):
                sample("start")
                timer = threading.Timer(args.duration * CPU_WINDOW_SHARE, sample, ("end",))
                timer.daemon = True
                timer.start()

    output = []
    readers = [
        threading.Thread(target=read_stderr, daemon=True),
        threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=args.warmup + args.duration + WORKER_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise BenchError(f"{client} did not finish: `{shlex.join(command)}`") from None
    for reader in readers:
        reader.join(5)
    stdout = "".join(output)
    if process.returncode != 0:
        raise BenchError(
            f"{client} failed (exit {process.returncode}): `{shlex.join(command)}`\n"
            f"{''.join(errors)[-2000:]}"
        )
    try:
        figures = parse_figures(client, stdout)
    except (ValueError, KeyError, IndexError) as error:
        raise BenchError(
            f"{client} printed no figures ({error}): `{shlex.join(command)}`\n{stdout[-1000:]}"
        ) from None
    figures["client_cpu_us"] = figures["server_cpu_us"] = None
    if "start" in samples and "end" in samples and figures["ops"] > 0:
        (t0, client0, server0), (t1, client1, server1) = samples["start"], samples["end"]
        calls = figures["ops"] / figures["seconds"] * (t1 - t0)
        if client0 is not None and client1 is not None:
            figures["client_cpu_us"] = (client1 - client0) * 1e6 / calls
        if server0 is not None and server1 is not None:
            figures["server_cpu_us"] = (server1 - server0) * 1e6 / calls
    figures["command"] = shlex.join(command)
    return figures


def parse_figures(client, stdout):
    if client == "rust":
        row = json.loads(stdout)["rows"][0]
        if row["status"] != "ok":
            raise ValueError(f"sessiond-bench row {row['status']}: {row.get('reason')}")
        latency = row["latency_us"] or {}
        return {
            "ops": row["requests"],
            "seconds": row["duration_s"],
            "errors": row["errors"],
            "p50_us": latency.get("p50"),
            "p99_us": latency.get("p99"),
            "mode": "sessiond-bench, one connection, one thread",
        }
    line = [text for text in stdout.splitlines() if text.startswith("{")][-1]
    figures = json.loads(line)
    for field in ("ops", "seconds", "errors"):
        figures[field]  # noqa: B018 - KeyError when missing
    return figures


# --- summary ---------------------------------------------------------------


def spread(values):
    values = [value for value in values if value is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs, args):
    """Per (workload, concurrency, client): median and spread over rounds."""
    summary = []
    for workload in args.workloads:
        for concurrency in args.concurrency:
            by_round = {}
            for run in runs:
                if run["workload"] == workload and run["concurrency"] == concurrency:
                    by_round.setdefault(run["round"], {})[run["client"]] = run
            for client in args.clients:
                mine = [rounds[client] for rounds in by_round.values() if client in rounds]
                ratios = [
                    rounds["rust"]["ops_per_s"] / rounds[client]["ops_per_s"]
                    for rounds in by_round.values()
                    if client in rounds and rounds[client]["ops_per_s"] > 0
                ]
                summary.append({
                    "workload": workload,
                    "concurrency": concurrency,
                    "client": client,
                    "mode": mine[-1]["mode"] if mine else None,
                    "rounds": len(mine),
                    "ops_per_s": spread([run["ops_per_s"] for run in mine]),
                    "us_per_call": spread([1e6 / run["ops_per_s"] for run in mine
                                           if run["ops_per_s"] > 0]),
                    "ratio_to_rust": spread(ratios),
                    "p50_us": spread([run["p50_us"] for run in mine]),
                    "p99_us": spread([run["p99_us"] for run in mine]),
                    "errors": sum(run["errors"] for run in mine),
                    "client_cpu_us_per_call": spread([run["client_cpu_us"] for run in mine]),
                    "server_cpu_us_per_call": spread([run["server_cpu_us"] for run in mine]),
                })
    return summary


def fmt(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def fmt_spread(figure, digits=0):
    if figure is None:
        return "-"
    return (f"{fmt(figure['median'], digits)} "
            f"({fmt(figure['min'], digits)}-{fmt(figure['max'], digits)})")


def median_of(figure, digits=0):
    return "-" if figure is None else fmt(figure["median"], digits)


def print_tables(summary, args, machine, command):
    print(f"command: {command}")
    print(f"machine: {machine['cpus']} CPUs, {machine['cpu_model']}; {machine['versions']}")
    print(f"server:  one sessiond on memory://, {machine['address']}; "
          f"{args.rounds} rounds x {args.duration:g} s (+{args.warmup:g} s warm-up), "
          f"clients interleaved {','.join(args.clients)}; {args.sessions} sessions per run, "
          f"{args.payload_bytes}-byte data")
    print("figures: median (min-max) over the rounds; x rust = this client's time per call "
          "/ Rust's, per round")
    headers = ["client", "ops/s", "us/call", "x rust", "p50 us", "p99 us",
               "cli CPU us", "srv CPU us"]
    for workload in args.workloads:
        for concurrency in args.concurrency:
            rows = [entry for entry in summary
                    if entry["workload"] == workload and entry["concurrency"] == concurrency]
            print()
            print(f"== {workload}, concurrency {concurrency} ==")
            table = [headers]
            for entry in rows:
                table.append([
                    entry["client"],
                    fmt_spread(entry["ops_per_s"]),
                    median_of(entry["us_per_call"], 1),
                    fmt_spread(entry["ratio_to_rust"], 2),
                    median_of(entry["p50_us"]),
                    median_of(entry["p99_us"]),
                    median_of(entry["client_cpu_us_per_call"], 1),
                    median_of(entry["server_cpu_us_per_call"], 1),
                ])
            widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
            for index, row in enumerate(table):
                print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                                for i, cell in enumerate(row)).rstrip())
                if index == 0:
                    print("  ".join("-" * width for width in widths))
            for entry in rows:
                if entry["errors"]:
                    print(f"  {entry['client']}: {entry['errors']} failed calls in all rounds")
            print("  " + "; ".join(f"{entry['client']}: {entry['mode']}" for entry in rows))
    if 1 in args.concurrency:
        print()
        print("at concurrency 1 (the issue's bar: x rust <= 2):")
        for entry in summary:
            if entry["concurrency"] == 1 and entry["client"] != "rust" and entry["ratio_to_rust"]:
                ratio = entry["ratio_to_rust"]
                verdict = "within 2x" if ratio["median"] <= 2 else "OVER 2x"
                print(f"  {entry['workload']:<5} {entry['client']:<12} "
                      f"{fmt_spread(ratio, 2)} x rust  {verdict}")


def machine_facts(address, tools):
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                          if line.startswith("model name")), platform.machine())
    except OSError:
        model = platform.machine()
    versions = [f"python {platform.python_version()} (orchestrator)"]
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        versions.append(f"node {node}")
    except FileNotFoundError:
        pass
    if "python" in tools:
        versions.append("worker python with " + ", ".join(PYTHON_REQUIREMENTS[:2]))
    return {"cpus": os.cpu_count(), "cpu_model": model, "versions": "; ".join(versions),
            "address": address}


def main(argv=None):
    args = parse_args(argv)
    command = shlex.join(["python3", "bench/clients/run.py", *(sys.argv[1:] if argv is None
                                                                 else argv)])
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    server = None
    try:
        tools = binaries(args.target_dir)
        if any(client.startswith("python") for client in args.clients):
            tools["python"], tools["stubs"] = python_venv(args.target_dir, log)
        if "python" in args.clients:
            log("building the Python client's native module (cargo build --release)")
            tools["native"] = python_native.build(args.target_dir)
        if any(client.startswith("node") for client in args.clients):
            node_modules(log)
        server = Server(tools["sessiond"])
        log(f"sessiond on memory:// at {server.address} (pid {server.pid})")
        runs = []
        total = args.rounds * len(args.workloads) * len(args.concurrency) * len(args.clients)
        for round_ in range(1, args.rounds + 1):
            for workload in args.workloads:
                for concurrency in args.concurrency:
                    for client in args.clients:
                        log(f"[{len(runs) + 1}/{total}] round {round_}: {client} {workload} "
                            f"concurrency {concurrency}")
                        figures = run_worker(client, workload, concurrency, args, server, tools)
                        figures.update(round=round_, workload=workload, concurrency=concurrency,
                                       client=client,
                                       ops_per_s=figures["ops"] / figures["seconds"])
                        runs.append(figures)
                        if server.process.poll() is not None:
                            raise BenchError(
                                f"sessiond exited with {server.process.returncode}:\n"
                                f"{''.join(server.log)[-2000:]}"
                            )
        summary = summarize(runs, args)
        machine = machine_facts(server.address, tools)
    except (BenchError, python_native.NativeBuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
    if args.json:
        json.dump({"command": command, "machine": machine, "settings": vars(args) | {
            "target_dir": str(args.target_dir)}, "summary": summary, "runs": runs},
            sys.stdout, indent=2)
        print()
    else:
        print_tables(summary, args, machine, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
