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
