'use strict';

// SessiondStore behind a real express-session app over HTTP.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const express = require('express');
const session = require('express-session');

const { Client, isValidKey } = require('..');
const { SessiondStore, genid } = require('sessiond-client/express-session');
const { startSessiond } = require('../testing/sessiond-process');

let server;
let client;
let store;
let http;
let base;

before(async () => {
  server = await startSessiond();
  client = new Client({ addresses: server.address });
  store = new SessiondStore({ client });
  const app = express();
  app.use(
    session({
      store,
      genid,
      secret: 'express-session test secret',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 60 * 1000 },
    }),
  );
  app.post('/incr', (req, res) => {
    req.session.count = (req.session.count ?? 0) + 1;
    res.json({ count: req.session.count, id: req.sessionID });
  });
  app.get('/read', (req, res) => res.json({ count: req.session.count ?? null }));
  app.post('/logout', (req, res, next) => {
    req.session.destroy((error) => (error ? next(error) : res.send('bye')));
  });
  http = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => http.once('listening', resolve));
  base = `http://127.0.0.1:${http.address().port}`;
});

after(async () => {
  await new Promise((resolve) => http.close(resolve));
  client.close();
  await server.stop();
});

async function call(path, method = 'GET', cookie) {
  const response = await fetch(base + path, { method, headers: cookie ? { cookie } : {} });
  return { body: await response.json().catch(() => null), setCookie: response.headers.getSetCookie()[0] };
}

test('genid draws keys sessiond accepts', () => {
  const keys = new Set(Array.from({ length: 100 }, genid));
  assert.equal(keys.size, 100);
  for (const key of keys) {
    assert.ok(isValidKey(key));
    assert.equal(key.length, 32);
  }
});

test('sessions are created, updated, touched and destroyed in sessiond', async () => {
  const first = await call('/incr', 'POST');
  assert.equal(first.body.count, 1);
  const sid = first.body.id;
  assert.ok(isValidKey(sid));
  const cookie = first.setCookie.split(';')[0];
  assert.match(cookie, /^connect\.sid=s%3A/);

  const stored = await client.load(sid);
  assert.equal(stored.data.count, 1);
  assert.ok(stored.data.cookie, 'express-session keeps its cookie in the session');
  assert.ok(Math.abs(stored.expireDate - (Date.now() + 60 * 1000)) < 5000);

  assert.equal((await call('/incr', 'POST', cookie)).body.count, 2);
  assert.equal((await client.load(sid)).data.count, 2);

  // An unchanged session is touched: only its expiry (and cookie) move.
  const before = (await client.load(sid)).expireDate;
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal((await call('/read', 'GET', cookie)).body.count, 2);
  const touched = await client.load(sid);
  assert.ok(touched.expireDate > before);
  assert.equal(touched.data.count, 2);

  await call('/logout', 'POST', cookie);
  assert.equal(await client.exists(sid), false);
  assert.equal((await call('/read', 'GET', cookie)).body.count, null);
});

/** A connect.sid cookie as express-session signs it (cookie-signature's format). */
function signedCookie(sid, secret) {
  const signature = crypto.createHmac('sha256', secret).update(sid).digest('base64').replace(/=+$/, '');
  return `connect.sid=${encodeURIComponent(`s:${sid}.${signature}`)}`;
}

test('an id from express-session\'s default genid (before sessiond) starts a new session', async () => {
  // uid-safe ids have - and _, which sessiond keys cannot.
  const old = 'Qm3x-_AbCdEfGhIjKlMnOpQrStUvWxYz';
  const cookie = signedCookie(old, 'express-session test secret');
  const read = await call('/read', 'GET', cookie);
  assert.deepEqual(read.body, { count: null });
  const fresh = await call('/incr', 'POST', cookie);
  assert.equal(fresh.body.count, 1);
  assert.ok(isValidKey(fresh.body.id));

  const callback = (method, ...args) => new Promise((resolve) => store[method](old, ...args, (...result) => resolve(result)));
  assert.deepEqual(await callback('get'), [null, null]);
  assert.deepEqual(await callback('destroy'), [null]);
  assert.deepEqual(await callback('touch', { cookie: { expires: new Date(Date.now() + 1000) } }), [null]);
  const [error] = await callback('set', { cookie: {} });
  assert.match(error.message, /set genid: require\('sessiond-client\/express-session'\)\.genid/);
});

test('touch never brings back a deleted session', async () => {
  const sid = genid();
  await new Promise((resolve, reject) => store.touch(sid, { cookie: { expires: new Date(Date.now() + 1000) } }, (e) => (e ? reject(e) : resolve())));
  assert.equal(await client.exists(sid), false);
});

test('a session express-session did not write reads as none', async () => {
  const { sessionKey } = await client.create({ _auth_user_id: '42' });
  const found = await new Promise((resolve, reject) => store.get(sessionKey, (e, s) => (e ? reject(e) : resolve(s))));
  assert.equal(found, null);
});

test('listing is not supported, with an error that says so', async () => {
  for (const method of ['all', 'length', 'clear']) {
    const error = await new Promise((resolve) => store[method](resolve));
    assert.match(error.message, /sessiond has no RPC that lists or counts sessions/);
  }
});

test('store errors reach express-session', async () => {
  const dead = new Client({ addresses: '127.0.0.1:1', timeoutMs: 1000 });
  const deadStore = new SessiondStore({ client: dead });
  try {
    const error = await new Promise((resolve) => deadStore.get(genid(), resolve));
    assert.equal(error.codeName, 'UNAVAILABLE');
  } finally {
    dead.close();
  }
});
