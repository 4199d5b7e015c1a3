'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { execFileSync } = require('node:child_process');

const { Client, SessiondError, SessiondUnavailable, isValidKey } = require('..');
const { startSessiond } = require('../testing/sessiond-process');

let server;
let client;

before(async () => {
  server = await startSessiond();
  client = new Client({ addresses: server.address });
});

after(async () => {
  client.close();
  await server.stop();
});

/** A port on 127.0.0.1 that nothing listens on. */
async function deadAddress() {
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return `127.0.0.1:${port}`;
}

test('the client runs on the transport this run expects', (t) => {
  // Set by server/tests/node_client.rs, which runs the suite on the native
  // transport and on grpc-js; by hand, say which one you meant.
  const expected = process.env.SESSIOND_EXPECT_TRANSPORT;
  if (!expected) {
    t.skip('SESSIOND_EXPECT_TRANSPORT is not set');
    return;
  }
  assert.equal(client.transport, expected);
});

test('printing a client never shows its token', () => {
  const token = 'printed-token-0123456789';
  const withToken = new Client({ addresses: '127.0.0.1:1', token });
  assert.ok(!require('node:util').inspect(withToken, { depth: 5 }).includes(token));
  withToken.close();
});

test('a closed client refuses calls', async () => {
  const closing = new Client({ addresses: server.address });
  const { sessionKey } = await closing.create({ a: 1 });
  closing.close();
  // UNAVAILABLE on the native transport; grpc-js's own error on grpc-js.
  await assert.rejects(
    closing.load(sessionKey),
    (error) => closing.transport === 'grpc-js' || error instanceof SessiondUnavailable,
  );
});

test('a transport that does not exist is refused, naming the setting', () => {
  assert.throws(
    () => new Client({ addresses: '127.0.0.1:1', transport: 'http' }),
    (error) => error instanceof TypeError && /`transport` must be "native" or "grpc-js"/.test(error.message),
  );
  const out = execFileSync(
    process.execPath,
    ['-e', 'try { new (require(".").Client)({ addresses: "127.0.0.1:1" }) } catch (e) { console.log(e.message) }'],
    { cwd: path.join(__dirname, '..'), encoding: 'utf8', env: { ...process.env, SESSIOND_CLIENT_TRANSPORT: 'fast' } },
  );
  assert.match(out, /SESSIOND_CLIENT_TRANSPORT must be "native" or "grpc-js", not "fast"/);
  // Chosen explicitly, grpc-js is always there.
  const chosen = new Client({ addresses: '127.0.0.1:1', transport: 'grpc-js' });
  assert.equal(chosen.transport, 'grpc-js');
  chosen.close();
});

test('create, load, exists, save, delete', async () => {
  const expires = new Date(Date.now() + 3600 * 1000);
  const created = await client.create({ user: 'ada', cart: [1, 2] }, expires);
  assert.ok(isValidKey(created.sessionKey));
  assert.equal(created.sessionKey.length, 32);
  assert.ok(Math.abs(created.expireDate - expires) < 1000);

  const loaded = await client.load(created.sessionKey);
  assert.deepEqual(loaded.data, { user: 'ada', cart: [1, 2] });
  assert.ok(loaded.expireDate instanceof Date);
  assert.equal(await client.exists(created.sessionKey), true);

  await client.save(created.sessionKey, { user: 'bob' });
  assert.deepEqual((await client.load(created.sessionKey)).data, { user: 'bob' });

  assert.equal(await client.delete(created.sessionKey), true);
  assert.equal(await client.delete(created.sessionKey), false);
  assert.equal(await client.load(created.sessionKey), null);
  assert.equal(await client.exists(created.sessionKey), false);
});

test('save with mustCreate inserts once; an update never resurrects', async () => {
  const key = 'mustcreate' + 'a'.repeat(22);
  await client.save(key, { n: 1 }, { mustCreate: true });
  await assert.rejects(client.save(key, { n: 2 }, { mustCreate: true }), { codeName: 'ALREADY_EXISTS', rpc: 'Save' });
  await client.delete(key);
  await assert.rejects(client.save(key, { n: 3 }), (error) => {
    assert.ok(error instanceof SessiondError);
    assert.equal(error.codeName, 'NOT_FOUND');
    assert.equal(error.code, 5);
    return true;
  });
  assert.equal(await client.exists(key), false);
});

test('patch sets and removes members on top of what is stored', async () => {
  const { sessionKey } = await client.create({ a: 1, b: 2, c: 3 });
  await client.patch(sessionKey, { set: { d: 4 }, remove: ['a'] });
  assert.deepEqual((await client.load(sessionKey)).data, { b: 2, c: 3, d: 4 });
  await client.patch(sessionKey, { set: { e: 5 }, replace: true });
  assert.deepEqual((await client.load(sessionKey)).data, { e: 5 });
  await client.delete(sessionKey);
  await assert.rejects(client.patch(sessionKey, { set: { f: 6 } }), { codeName: 'NOT_FOUND', rpc: 'Patch' });
});

test('cycleKey moves the session to a new key', async () => {
  const { sessionKey } = await client.create({ cart: ['book'] });
  const moved = await client.cycleKey(sessionKey);
  assert.notEqual(moved.sessionKey, sessionKey);
  assert.equal(await client.exists(sessionKey), false);
  assert.deepEqual((await client.load(moved.sessionKey)).data, { cart: ['book'] });
  const again = await client.cycleKey(moved.sessionKey, { data: { user: 'ada' } });
  assert.deepEqual((await client.load(again.sessionKey)).data, { user: 'ada' });
  await assert.rejects(client.cycleKey(sessionKey), { codeName: 'NOT_FOUND', rpc: 'CycleKey' });
});

test('clearExpired removes expired sessions', async () => {
  const { sessionKey } = await client.create({}, new Date(Date.now() - 60 * 1000));
  assert.equal(await client.load(sessionKey), null);
  assert.equal(await client.exists(sessionKey), true);
  assert.ok((await client.clearExpired()) >= 1);
  assert.equal(await client.exists(sessionKey), false);
});

test('a bad key is INVALID_ARGUMENT naming the RPC, never the key', async () => {
  const badKey = 'BAD-KEY-secret-value';
  await assert.rejects(client.load(badKey), (error) => {
    assert.ok(error instanceof SessiondError);
    assert.ok(!(error instanceof SessiondUnavailable));
    assert.equal(error.rpc, 'Load');
    assert.equal(error.codeName, 'INVALID_ARGUMENT');
    assert.equal(error.code, 3);
    assert.match(error.message, /Load/);
    assert.match(error.message, /INVALID_ARGUMENT/);
    assert.ok(!error.message.includes(badKey));
    return true;
  });
});

test('data that is not an object is refused before the call', async () => {
  await assert.rejects(client.create([1, 2]), TypeError);
  await assert.rejects(client.create(null), TypeError);
});

test('values that would not read back as written are a TypeError naming the member', async () => {
  await assert.rejects(client.create({ big: { n: 1n } }), {
    name: 'TypeError',
    message: /session member "big" \(at "n"\): a BigInt/,
  });
  await assert.rejects(client.save('abcdefgh12345678', { score: NaN }), { message: /session member "score": NaN/ });
  await assert.rejects(client.patch('abcdefgh12345678', { set: { list: [1, undefined] } }), {
    message: /session member "list" \(at "1"\): undefined in an array/,
  });
  // As JSON.stringify: an undefined member is left out (express-session's data may hold one).
  const { sessionKey } = await client.create({ kept: 1, gone: undefined, nested: { gone: undefined } });
  assert.deepEqual((await client.load(sessionKey)).data, { kept: 1, nested: {} });
});

test('addresses must be host:port, checked when the client is made', () => {
  for (const bad of ['localhost', 'http://127.0.0.1:50551', '127.0.0.1:0', '127.0.0.1:65536', '999.1.1.1:50051', '::1:50051', '[nope]:50051', '']) {
    assert.throws(() => new Client({ addresses: ['127.0.0.1:50051', bad] }), (error) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, /`addresses`/);
      assert.ok(error.message.includes(JSON.stringify(bad)), error.message);
      return true;
    });
  }
  for (const good of ['localhost:50051', '10.0.0.7:1', 'sessiond_1.internal:65535', '[::1]:50051']) {
    new Client({ addresses: good }).close();
  }
});

test('a TLS file that cannot be read is an error naming the option and the path', () => {
  const missing = path.join(os.tmpdir(), 'sessiond-node-no-such-dir', 'ca.pem');
  assert.throws(() => new Client({ addresses: '127.0.0.1:50051', tls: { ca: missing } }), (error) => {
    assert.equal(error.message, `sessiond-client: cannot read \`tls.ca\` (${missing}): ${error.cause.message}`);
    assert.equal(error.code, 'ENOENT');
    return true;
  });
  assert.throws(() => new Client({ addresses: '127.0.0.1:50051', tls: { serverName: 'not a name' } }), /tls\.serverName/);
});

test('an unreachable server is SessiondUnavailable naming the address', async () => {
  const address = await deadAddress();
  const lonely = new Client({ addresses: address, timeoutMs: 2000 });
  try {
    await assert.rejects(lonely.load('abcdefgh12345678'), (error) => {
      assert.ok(error instanceof SessiondUnavailable);
      assert.ok(error instanceof SessiondError);
      assert.equal(error.rpc, 'Load');
      assert.equal(error.codeName, 'UNAVAILABLE');
      assert.ok(error.message.includes(address), error.message);
      assert.ok(!error.message.includes('abcdefgh12345678'));
      return true;
    });
  } finally {
    lonely.close();
  }
});

test('calls fail over to the next address when the first is dead', async () => {
  const dead = await deadAddress();
  const failover = new Client({ addresses: [dead, server.address], timeoutMs: 2000 });
  try {
    const { sessionKey } = await failover.create({ via: 'second' });
    assert.deepEqual((await failover.load(sessionKey)).data, { via: 'second' });
    assert.deepEqual((await client.load(sessionKey)).data, { via: 'second' });
  } finally {
    failover.close();
  }
});

test('settings are checked when the client is made', () => {
  assert.throws(() => new Client({}), TypeError);
  assert.throws(() => new Client({ addresses: [] }), TypeError);
  assert.throws(() => new Client({ addresses: 'x:1', timeoutMs: 0 }), TypeError);
  assert.throws(() => new Client({ addresses: 'x:1', token: 'has space' }), TypeError);
  assert.throws(() => new Client({ addresses: 'x:1', tls: { cert: Buffer.from('x') } }), TypeError);
});

test('bearer tokens: the right one passes, a wrong or missing one is UNAUTHENTICATED', async () => {
  const token = 'node-client-token-0123456789abcdef';
  const guarded = await startSessiond({ SESSIOND_TOKEN: token });
  const clients = [];
  const make = (options) => {
    const made = new Client({ addresses: guarded.address, ...options });
    clients.push(made);
    return made;
  };
  try {
    const { sessionKey } = await make({ token }).create({ ok: true });
    assert.equal(sessionKey.length, 32);
    const wrong = 'wrong-token-0123456789abcdefghij';
    await assert.rejects(make({ token: wrong }).load(sessionKey), (error) => {
      assert.equal(error.codeName, 'UNAUTHENTICATED');
      assert.ok(!error.message.includes(wrong));
      assert.ok(!error.message.includes(token));
      return true;
    });
    await assert.rejects(make({}).exists(sessionKey), { codeName: 'UNAUTHENTICATED', rpc: 'Exists' });
  } finally {
    for (const made of clients) made.close();
    await guarded.stop();
  }
});

function haveOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('TLS with a private CA, given as file paths or as PEM buffers', { skip: !haveOpenssl() && 'openssl is not installed' }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sessiond-node-tls-'));
  const file = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=test ca',
    '-keyout', file('ca.key'), '-out', file('ca.pem'));
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
    '-keyout', file('server.key'), '-out', file('server.csr'));
  fs.writeFileSync(file('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'),
    '-CAcreateserial', '-days', '1', '-extfile', file('ext.cnf'), '-out', file('server.pem'));
  // A certificate that names the server only by a name the address does not carry.
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=sessiond.internal',
    '-keyout', file('named.key'), '-out', file('named.csr'));
  fs.writeFileSync(file('named.cnf'), 'subjectAltName=DNS:sessiond.internal\n');
  openssl('x509', '-req', '-in', file('named.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'),
    '-CAcreateserial', '-days', '1', '-extfile', file('named.cnf'), '-out', file('named.pem'));
  const secured = await startSessiond({ SESSIOND_TLS_CERT: file('server.pem'), SESSIOND_TLS_KEY: file('server.key') });
  // By name, as certificates name servers (and TLS's SNI takes no IP address).
  const named = secured.address.replace('127.0.0.1', 'localhost');
  const byPath = new Client({ addresses: named, tls: { ca: file('ca.pem') } });
  const byBuffer = new Client({ addresses: named, tls: { ca: fs.readFileSync(file('ca.pem')) } });
  const plain = new Client({ addresses: secured.address, timeoutMs: 2000 });
  try {
    const { sessionKey } = await byPath.create({ tls: true });
    assert.deepEqual((await byBuffer.load(sessionKey)).data, { tls: true });
    await assert.rejects(plain.load(sessionKey), SessiondUnavailable);

    // tls.serverName: the name to check when the address is an IP address.
    const byName = await startSessiond({ SESSIOND_TLS_CERT: file('named.pem'), SESSIOND_TLS_KEY: file('named.key') });
    const overridden = new Client({ addresses: byName.address, tls: { ca: file('ca.pem'), serverName: 'sessiond.internal' } });
    const unnamed = new Client({
      addresses: byName.address.replace('127.0.0.1', 'localhost'),
      tls: { ca: file('ca.pem') },
      timeoutMs: 2000,
    });
    const warnings = [];
    const onWarning = (warning) => warnings.push(warning.code);
    process.on('warning', onWarning);
    try {
      const created = await overridden.create({ named: true });
      assert.deepEqual((await overridden.load(created.sessionKey)).data, { named: true });
      await assert.rejects(unnamed.load(created.sessionKey), SessiondUnavailable);
      // The name, not the IP address, goes out as SNI: no DEP0123 warning.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings, []);
    } finally {
      process.off('warning', onWarning);
      overridden.close();
      unnamed.close();
      await byName.stop();
    }
  } finally {
    byPath.close();
    byBuffer.close();
    plain.close();
    await secured.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
