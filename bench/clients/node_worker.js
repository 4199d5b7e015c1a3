'use strict';

// One Node measurement for bench/clients/run.py: creates its sessions, warms
// up, measures, and prints one JSON line on stdout:
//
//   {"ops": N, "seconds": S, "errors": E, "p50_us": P, "p99_us": P, "mode": "..."}
//
// and the line `measuring` on stderr when the measured window starts (the
// orchestrator samples CPU times from then on).
//
// Modes: `client` is sessiond-client's `Client` (required by path from
// integrations/node), concurrency N being N async loops on one Client, so
// one channel; `stub` calls the @grpc/grpc-js stub that the package itself
// builds (same proto, same loader options) without the Client around it.
//
//   node bench/clients/node_worker.js --target 127.0.0.1:50051 --workload load \
//     [--concurrency 1] [--duration 5] [--warmup 1] [--sessions 1000] \
//     [--payload-bytes 1024] [--mode client|stub]

const path = require('node:path');
const { createRequire } = require('node:module');
const { parseArgs } = require('node:util');

const PACKAGE_DIR = path.resolve(__dirname, '..', '..', 'integrations', 'node');

// What the Rust bench writes (bench/src/payload.rs), so that all three
// clients send and parse the same bytes.
const LOGGED_IN =
  '{"_auth_user_id":"4217",' +
  '"_auth_user_backend":"django.contrib.auth.backends.ModelBackend",' +
  '"_auth_user_hash":"9c1185a5c5e9fc54612808977ee8f548b2258d31e4dfc8d7c2ad1d2a1f2c1a6d",' +
  '"app":""}';

// Sessions outlive the run by this much, as the Rust bench's do.
const EXPIRE_AFTER_RUN_MS = 3600 * 1000;
const TIMEOUT_MS = 5000;

function options() {
  const { values } = parseArgs({
    options: {
      target: { type: 'string' },
      workload: { type: 'string' },
      concurrency: { type: 'string', default: '1' },
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      sessions: { type: 'string', default: '1000' },
      'payload-bytes': { type: 'string', default: '1024' },
      mode: { type: 'string', default: 'client' },
    },
  });
  if (!values.target || !['load', 'save'].includes(values.workload) || !['client', 'stub'].includes(values.mode)) {
    throw new Error('node_worker: needs --target HOST:PORT, --workload load|save, --mode client|stub');
  }
  return {
    target: values.target,
    workload: values.workload,
    concurrency: Number(values.concurrency),
    durationMs: Number(values.duration) * 1000,
    warmupMs: Number(values.warmup) * 1000,
    sessions: Number(values.sessions),
    payloadBytes: Number(values['payload-bytes']),
    mode: values.mode,
  };
}

function payload(size) {
  const data = JSON.parse(LOGGED_IN);
  data.app = 'x'.repeat(Math.max(size - LOGGED_IN.length, 0));
  return data;
}

/** The three operations, through the Client or the bare stub. */
function operations(opts, expireDate) {
  const data = payload(opts.payloadBytes);
  if (opts.mode === 'client') {
    const { Client } = require(PACKAGE_DIR);
    const client = new Client({ addresses: [opts.target], timeoutMs: TIMEOUT_MS });
    return {
      transport: client.transport,
      create: async () => (await client.create(data, expireDate)).sessionKey,
      load: (key) => client.load(key),
      save: (key) => client.save(key, data, { expireDate }),
      close: () => client.close(),
    };
  }
  const packageRequire = createRequire(path.join(PACKAGE_DIR, 'package.json'));
  const grpc = packageRequire('@grpc/grpc-js');
  const protoLoader = packageRequire('@grpc/proto-loader');
  const definition = protoLoader.loadSync(path.join('sessiond', 'v1', 'sessiond.proto'), {
    includeDirs: [path.join(PACKAGE_DIR, 'proto'), path.resolve(PACKAGE_DIR, '..', '..', 'proto')],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const Service = grpc.loadPackageDefinition(definition).sessiond.v1.SessionService;
  const stub = new Service(opts.target, grpc.credentials.createInsecure());
  const seconds = Math.floor(expireDate.getTime() / 1000);
  const expire_date = { seconds, nanos: 0 };
  const call = (method, request) =>
    new Promise((resolve, reject) => {
      stub[method](request, { deadline: new Date(Date.now() + TIMEOUT_MS) }, (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });
  return {
    create: async () => (await call('create', { data: JSON.stringify(data), expire_date })).session_key,
    load: (key) => call('load', { session_key: key }),
    save: (key) => call('save', { session_key: key, data: JSON.stringify(data), expire_date }),
    close: () => stub.close(),
  };
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(Math.floor(q * sorted.length), sorted.length - 1)];
}

async function main() {
  const opts = options();
  const expireDate = new Date(Date.now() + opts.warmupMs + opts.durationMs + EXPIRE_AFTER_RUN_MS);
  const ops = operations(opts, expireDate);
  const op = opts.workload === 'load' ? ops.load : ops.save;

  const keys = [];
  let remaining = opts.sessions;
  const creator = async () => {
    while (remaining > 0) {
      remaining -= 1;
      keys.push(await ops.create());
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.sessions) }, creator));

  const clock = () => performance.now();
  const measureStart = clock() + opts.warmupMs;
  const end = measureStart + opts.durationMs;
  let done = 0;
  let errors = 0;
  const latencies = [];
  let marked = false;

  const loop = async () => {
    for (;;) {
      const before = clock();
      if (before >= end) return;
      const measuring = before >= measureStart;
      if (measuring && !marked) {
        marked = true;
        process.stderr.write('measuring\n');
      }
      const key = keys[Math.floor(Math.random() * keys.length)];
      try {
        await op(key);
      } catch (error) {
        if (measuring) errors += 1;
        continue;
      }
      if (measuring) {
        done += 1;
        latencies.push((clock() - before) * 1000);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, loop));
  // Calls started before `end` finish after it: the window lasts until the
  // last one answered, so that ops/seconds is not inflated.
  const seconds = opts.concurrency === 1 ? opts.durationMs / 1000 : (clock() - measureStart) / 1000;
  ops.close();
  latencies.sort((a, b) => a - b);
  const mode =
    opts.mode === 'client'
      ? `Client (${ops.transport}), ${opts.concurrency} async loop${opts.concurrency === 1 ? '' : 's'}, one channel`
      : `bare grpc-js stub, ${opts.concurrency} async loop${opts.concurrency === 1 ? '' : 's'}`;
  process.stdout.write(
    `${JSON.stringify({
      ops: done,
      seconds,
      errors,
      p50_us: percentile(latencies, 0.5),
      p99_us: percentile(latencies, 0.99),
      mode,
    })}\n`,
  );
}

main().catch((error) => {
  process.stderr.write(`node_worker: ${error.stack || error}\n`);
  process.exitCode = 1;
});
