"""One Python measurement for bench/clients/run.py: creates its sessions,
warms up, measures, and prints one JSON line on stdout:

    {"ops": N, "seconds": S, "errors": E, "p50_us": P, "p99_us": P, "mode": "..."}

and the line ``measuring`` on stderr when the measured window starts (the
orchestrator samples CPU times from then on).

Modes:

``client``
    ``sessiond_client.Client`` (blocking: on the native module when it is on
    PYTHONPATH, else on grpcio) at concurrency 1, as a Django or Flask
    worker thread uses it; ``sessiond_client.AsyncClient`` (grpc.aio) with
    N coroutines on one channel above 1.
``stub``
    The generated stub called directly, on a channel with the client's
    options: what a call costs without the client's own code (blocking at
    concurrency 1, grpc.aio coroutines above).

Run by run.py inside its virtualenv, with integrations/python and the
generated stubs on PYTHONPATH; not meant to be started by hand, though
``--help`` says what it takes.
"""

import argparse
import asyncio
import datetime
import json
import random
import sys
import time

#: What the Rust bench writes (bench/src/payload.rs), so that all three
#: clients send and parse the same bytes.
LOGGED_IN = (
    '{"_auth_user_id":"4217",'
    '"_auth_user_backend":"django.contrib.auth.backends.ModelBackend",'
    '"_auth_user_hash":"9c1185a5c5e9fc54612808977ee8f548b2258d31e4dfc8d7c2ad1d2a1f2c1a6d",'
    '"app":""}'
)

#: Sessions outlive the run by this much, as the Rust bench's do.
EXPIRE_AFTER_RUN = datetime.timedelta(hours=1)


def payload(size):
    """A session dict whose compact JSON is ``size`` bytes (at least the
    logged-in members)."""
    data = json.loads(LOGGED_IN)
    data["app"] = "x" * max(size - len(LOGGED_IN), 0)
    return data


def percentile(sorted_us, q):
    if not sorted_us:
        return None
    return sorted_us[min(int(q * len(sorted_us)), len(sorted_us) - 1)]


def result(ops, seconds, errors, latencies, mode):
    latencies.sort()
    return {
        "ops": ops,
        "seconds": seconds,
        "errors": errors,
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "mode": mode,
    }


class Operations:
    """The call each workload makes, through the client or the bare stub."""

    def __init__(self, args, grpc_async):
        import grpc
        import grpc.aio

        from sessiond_client import AsyncClient, Client
        from sessiond_client.client import CHANNEL_OPTIONS
        from sessiond_client.data import encode_data, to_timestamp
        from sessiond_client.stubs import sessiond_pb2, sessiond_pb2_grpc

        self.data = payload(args.payload_bytes)
        self.expire = (
            datetime.datetime.now(datetime.timezone.utc)
            + datetime.timedelta(seconds=args.warmup + args.duration)
            + EXPIRE_AFTER_RUN
        )
        self.workload = args.workload
        self.pb2 = sessiond_pb2
        self.encode_data = encode_data
        self.timestamp = to_timestamp(self.expire)
        self.timeout = 5.0
        if args.mode == "client":
            self.client = (AsyncClient if grpc_async else Client)(args.target)
            self.stub = None
        else:
            self.client = None
            channel_module = grpc.aio if grpc_async else grpc
            channel = channel_module.insecure_channel(args.target, options=CHANNEL_OPTIONS)
            self.stub = sessiond_pb2_grpc.SessionServiceStub(channel)

    # Blocking.
    def create(self):
        if self.client:
            return self.client.create(self.data, self.expire)
        request = self.pb2.CreateRequest(
            data=self.encode_data(self.data), expire_date=self.timestamp
        )
        return self.stub.Create(request, timeout=self.timeout).session_key

    def call(self, key):
        if self.client:
            if self.workload == "load":
                self.client.load(key)
            else:
                self.client.save(key, self.data, self.expire)
        elif self.workload == "load":
            self.stub.Load(self.pb2.LoadRequest(session_key=key), timeout=self.timeout)
        else:
            request = self.pb2.SaveRequest(
                session_key=key, data=self.encode_data(self.data), expire_date=self.timestamp
            )
            self.stub.Save(request, timeout=self.timeout)

    # grpc.aio.
    async def acreate(self):
        if self.client:
            return await self.client.create(self.data, self.expire)
        request = self.pb2.CreateRequest(
            data=self.encode_data(self.data), expire_date=self.timestamp
        )
        return (await self.stub.Create(request, timeout=self.timeout)).session_key

    async def acall(self, key):
        if self.client:
            if self.workload == "load":
                await self.client.load(key)
            else:
                await self.client.save(key, self.data, self.expire)
        elif self.workload == "load":
            await self.stub.Load(self.pb2.LoadRequest(session_key=key), timeout=self.timeout)
        else:
            request = self.pb2.SaveRequest(
                session_key=key, data=self.encode_data(self.data), expire_date=self.timestamp
            )
            await self.stub.Save(request, timeout=self.timeout)


def run_blocking(args):
    ops_ = Operations(args, grpc_async=False)
    keys = [ops_.create() for _ in range(args.sessions)]
    choice = random.Random(1).choice
    clock = time.perf_counter
    start = clock()
    measure_start = start + args.warmup
    end = measure_start + args.duration
    ops = errors = 0
    latencies = []
    measuring = False
    while True:
        before = clock()
        if before >= end:
            break
        if not measuring and before >= measure_start:
            measuring = True
            print("measuring", file=sys.stderr, flush=True)
        try:
            ops_.call(choice(keys))
        except Exception:  # noqa: BLE001 - counted, as the Rust bench counts failures
            if measuring:
                errors += 1
            continue
        if measuring:
            ops += 1
            latencies.append((clock() - before) * 1e6)
    if args.mode == "client":
        label = f"Client (blocking, {ops_.client.transport})"
    else:
        label = "bare stub (blocking)"
    return result(ops, end - measure_start, errors, latencies, label)


async def run_async(args):
    ops_ = Operations(args, grpc_async=True)
    keys = []
    remaining = args.sessions

    async def creator():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            keys.append(await ops_.acreate())

    await asyncio.gather(*(creator() for _ in range(min(args.concurrency, args.sessions))))
    clock = time.perf_counter
    measure_start = clock() + args.warmup
    end = measure_start + args.duration
    counts = {"ops": 0, "errors": 0}
    latencies = []

    async def marker():
        await asyncio.sleep(max(measure_start - clock(), 0))
        print("measuring", file=sys.stderr, flush=True)

    async def worker(seed):
        choice = random.Random(seed).choice
        while True:
            before = clock()
            if before >= end:
                return
            try:
                await ops_.acall(choice(keys))
            except Exception:  # noqa: BLE001 - counted
                if before >= measure_start:
                    counts["errors"] += 1
                continue
            if before >= measure_start:
                counts["ops"] += 1
                latencies.append((clock() - before) * 1e6)

    await asyncio.gather(marker(), *(worker(seed) for seed in range(args.concurrency)))
    # Calls started before `end` finish after it: the window is until the
    # last one answered, so that ops/seconds is not inflated.
    seconds = clock() - measure_start
    label = (
        f"AsyncClient (grpc.aio), {args.concurrency} coroutines, one channel"
        if args.mode == "client"
        else f"bare grpc.aio stub, {args.concurrency} coroutines"
    )
    return result(counts["ops"], seconds, counts["errors"], latencies, label)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port of sessiond")
    parser.add_argument("--workload", choices=("load", "save"), required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument("--mode", choices=("client", "stub"), default="client")
    args = parser.parse_args(argv)
    if args.concurrency == 1:
        figures = run_blocking(args)
    else:
        figures = asyncio.run(run_async(args))
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
