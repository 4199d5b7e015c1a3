'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { Client, Session, UpdateError } = require('..');
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

test('a new session has no key until it is saved, then creates one', async () => {
  const session = new Session(client);
  assert.equal(session.sessionKey, null);
  assert.equal(session.isEmpty(), true);
  assert.equal(session.accessed, false);
  assert.equal(await session.get('cart'), undefined);
  assert.equal(session.accessed, true);
  assert.equal(session.modified, false);
  await session.set('cart', ['book']);
  assert.equal(session.modified, true);
  await session.save();
  assert.equal(session.sessionKey.length, 32);
  assert.deepEqual((await client.load(session.sessionKey)).data, { cart: ['book'] });
});

test('loads lazily, once, and reads like a dictionary', async () => {
  const { sessionKey } = await client.create({ b: 1, a: { nested: true } });
  const session = new Session(client, sessionKey);
  assert.equal(session.accessed, false);
  assert.equal(session.isEmpty(), false);
  const [b, has] = await Promise.all([session.get('b'), session.has('a')]);
  assert.equal(b, 1);
  assert.equal(has, true);
  assert.deepEqual(await session.keys(), ['b', 'a']);
  assert.deepEqual(await session.values(), [1, { nested: true }]);
  assert.deepEqual(await session.entries(), [['b', 1], ['a', { nested: true }]]);
  assert.equal(await session.delete('missing'), undefined);
  assert.equal(session.modified, false);
  assert.deepEqual(await session.delete('a'), { nested: true });
  assert.equal(session.modified, true);
  await session.update({ c: 3 });
  await session.save();
  assert.deepEqual((await client.load(sessionKey)).data, { b: 1, c: 3 });
});

test('a missing or expired key reads as empty and the save creates a new key', async () => {
  const gone = 'gone' + '0'.repeat(28);
  const session = new Session(client, gone);
  assert.deepEqual(await session.keys(), []);
  assert.equal(session.sessionKey, null);
  await session.set('x', 1);
  await session.save();
  assert.notEqual(session.sessionKey, gone);
  assert.equal(await client.exists(gone), false);
});

test('values that JSON cannot hold are refused', async () => {
  const session = new Session(client);
  await assert.rejects(session.set('f', () => 1), TypeError);
  await assert.rejects(session.set('u', undefined), TypeError);
  assert.equal(session.modified, false);
});

test('values that would not read back as written are a TypeError naming the member', async () => {
  const session = new Session(client);
  const circular = { name: 'loop' };
  circular.self = circular;
  const refused = [
    ['big', 10n, /session member "big": a BigInt/],
    ['deep', { n: [1, 2n] }, /session member "deep" \(at "1"\): a BigInt/],
    ['nan', NaN, /session member "nan": NaN/],
    ['inf', { at: -Infinity }, /session member "inf" \(at "at"\): -Infinity/],
    ['fn', { run() {} }, /session member "fn" \(at "run"\): a function/],
    ['sym', Symbol('s'), /session member "sym": a symbol/],
    ['holes', [1, undefined], /session member "holes" \(at "1"\): undefined in an array/],
    ['map', new Map([['a', 1]]), /session member "map": a Map would read back as \{\}/],
    ['loop', circular, /session member "loop" cannot be stored as JSON: .*circular/i],
  ];
  for (const [name, value, message] of refused) {
    await assert.rejects(session.set(name, value), { name: 'TypeError', message });
  }
  await assert.rejects(session.update({ fine: 1, bad: NaN }), { name: 'TypeError', message: /"bad"/ });
  assert.equal(await session.has('fine'), false, 'update stores nothing when a member is refused');
  assert.equal(session.modified, false);

  // A value changed in place after set() is checked again at save(), by name.
  await session.set('later', {});
  (await session.get('later')).n = 1n;
  await assert.rejects(session.save(), { name: 'TypeError', message: /session member "later" \(at "n"\): a BigInt/ });

  // A Date is stored as its ISO 8601 string; an undefined object member is left out.
  const dated = new Session(client);
  await dated.set('when', new Date(Date.UTC(2030, 0, 2, 3, 4, 5)));
  await dated.set('profile', { name: 'ada', email: undefined });
  await dated.save();
  assert.deepEqual((await client.load(dated.sessionKey)).data, {
    when: '2030-01-02T03:04:05.000Z',
    profile: { name: 'ada' },
  });
});

test('save sends only the changed members, so concurrent writers keep each other', async () => {
  const { sessionKey } = await client.create({ shared: 0, cart: [] });
  const first = new Session(client, sessionKey);
  const second = new Session(client, sessionKey);
  // Both load the same state before either saves, as two requests would.
  await Promise.all([first.keys(), second.keys()]);
  await first.set('theme', 'dark');
  (await first.get('cart')).push('book'); // changed in place, saved by its JSON text
  await second.set('lang', 'fr');
  await second.delete('shared');
  await first.save();
  await second.save();
  assert.deepEqual((await client.load(sessionKey)).data, { cart: ['book'], theme: 'dark', lang: 'fr' });
});

test('clear() replaces what is stored on the next save', async () => {
  const { sessionKey } = await client.create({ a: 1, b: 2 });
  const session = new Session(client, sessionKey);
  session.clear();
  assert.equal(session.modified, true);
  await session.set('c', 3);
  await session.save();
  assert.deepEqual((await client.load(sessionKey)).data, { c: 3 });
});

test('flush deletes the session and starts an empty one', async () => {
  const { sessionKey } = await client.create({ user: 'ada' });
  const session = new Session(client, sessionKey);
  await session.flush();
  assert.equal(session.sessionKey, null);
  assert.equal(session.isEmpty(), true);
  assert.equal(await client.exists(sessionKey), false);
});

test('cycleKey moves the data under a new key in one call', async () => {
  const { sessionKey } = await client.create({ cart: ['book'] });
  const session = new Session(client, sessionKey);
  await session.set('user', 'ada');
  await session.cycleKey();
  assert.notEqual(session.sessionKey, sessionKey);
  assert.equal(await client.exists(sessionKey), false);
  assert.deepEqual((await client.load(session.sessionKey)).data, { cart: ['book'], user: 'ada' });
  // Nothing left to send, but a later change is.
  await session.set('more', 1);
  await session.save();
  assert.deepEqual((await client.load(session.sessionKey)).data, { cart: ['book'], user: 'ada', more: 1 });

  const fresh = new Session(client);
  await fresh.cycleKey();
  assert.equal(fresh.sessionKey.length, 32);
  assert.equal(await client.exists(fresh.sessionKey), true);
});

test('a save of a session deleted meanwhile is an UpdateError and does not resurrect it', async () => {
  const { sessionKey } = await client.create({ user: 'ada' });
  const session = new Session(client, sessionKey);
  await session.set('cart', ['book']);
  await client.delete(sessionKey); // a logout in another tab
  await assert.rejects(session.save(), (error) => {
    assert.ok(error instanceof UpdateError);
    assert.equal(error.codeName, 'NOT_FOUND');
    assert.ok(!error.message.includes(sessionKey));
    return true;
  });
  assert.equal(session.interrupted, true);
  assert.equal(await client.exists(sessionKey), false);
});

test('expiry is stored as Django stores it and sets the server expiry', async () => {
  const session = new Session(client, null, { cookieAge: 1000 });
  assert.equal(await session.getExpiryAge(), 1000);
  assert.equal(await session.getExpireAtBrowserClose(), false);

  await session.setExpiry(300);
  assert.equal(await session.get('_session_expiry'), 300);
  assert.equal(await session.getExpiryAge(), 300);
  await session.save();
  const saved = await client.load(session.sessionKey);
  assert.ok(Math.abs(saved.expireDate - (Date.now() + 300 * 1000)) < 5000);

  await session.setExpiry(0);
  assert.equal(await session.getExpireAtBrowserClose(), true);
  assert.equal(await session.getExpiryAge(), 1000);

  const at = new Date(Date.UTC(2099, 0, 2, 3, 4, 5, 500));
  await session.setExpiry(at);
  assert.equal(await session.get('_session_expiry'), '2099-01-02T03:04:05.500000+00:00');
  assert.equal((await session.getExpiryDate()).getTime(), at.getTime());
  await session.setExpiry(new Date(Date.UTC(2099, 0, 2)));
  assert.equal(await session.get('_session_expiry'), '2099-01-02T00:00:00+00:00');

  await session.setExpiry(null);
  assert.equal(await session.has('_session_expiry'), false);
  assert.equal(await session.getExpiryAge(), 1000);
  assert.equal(await new Session(client, null, { expireAtBrowserClose: true }).getExpireAtBrowserClose(), true);
  await assert.rejects(session.setExpiry('soon'), TypeError);
});

test('expiry strings written by Django read back', async () => {
  const { sessionKey } = await client.create({ _session_expiry: '2099-01-02T02:00:00+02:00' });
  const session = new Session(client, sessionKey);
  assert.equal((await session.getExpiryDate()).toISOString(), '2099-01-02T00:00:00.000Z');
  const naive = new Session(client);
  await naive.set('_session_expiry', '2099-01-02T00:00:00');
  assert.equal((await naive.getExpiryDate()).toISOString(), '2099-01-02T00:00:00.000Z');
  await naive.set('_session_expiry', 'not a date');
  assert.equal(await naive.getExpiryAge(), 1209600);
});
