'use strict';

// A real Express app with sessionMiddleware over HTTP, against a real
// sessiond: the behaviour of Django's SessionMiddleware on the same cookie.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const express = require('express');

const { Client, Session, sessionMiddleware, sessionOf, INTERRUPTED_BODY } = require('..');
const { startSessiond } = require('../testing/sessiond-process');

let server;
let client;
const calls = [];
/** The client, recording the RPCs the middleware makes. */
let counted;
/** The app every test uses unless it needs other settings. */
let site;

before(async () => {
  server = await startSessiond();
  client = new Client({ addresses: server.address });
  counted = new Proxy(client, {
    get(target, name) {
      const value = target[name];
      if (typeof value !== 'function' || name.startsWith('_')) return value;
      return (...args) => {
        calls.push(name);
        return value.apply(target, args);
      };
    },
  });
  site = await listen(buildApp());
});

after(async () => {
  await site.close();
  client.close();
  await server.stop();
});

/** Requests the test holds until it releases them (for races). */
const gates = new Map();
function gate(name) {
  let release;
  const opened = new Promise((resolve) => {
    release = resolve;
  });
  gates.set(name, { opened, release });
}

function buildApp(options = {}) {
  const app = express();
  app.use(sessionMiddleware({ client: counted, ...options }));
  app.get('/untouched', (req, res) => res.send('hi'));
  app.get('/read', async (req, res) => {
    res.json({ count: (await req.session.get('count')) ?? null });
  });
  app.post('/incr', async (req, res) => {
    const count = ((await req.session.get('count')) ?? 0) + 1;
    await req.session.set('count', count);
    res.json({ count });
  });
  app.post('/set/:name/:value', async (req, res) => {
    await req.session.set(req.params.name, req.params.value);
    res.send('ok');
  });
  app.post('/expiry/:seconds', async (req, res) => {
    await req.session.setExpiry(Number(req.params.seconds));
    res.send('ok');
  });
  app.post('/fail', async (req, res) => {
    await req.session.set('never', true);
    res.status(500).send('boom');
  });
  app.post('/login', async (req, res) => {
    await req.session.cycleKey();
    await req.session.set('_auth_user_id', '42');
    res.send('welcome');
  });
  app.post('/logout', async (req, res) => {
    await req.session.flush();
    res.send('bye');
  });
  app.post('/slow/:name', async (req, res) => {
    await req.session.set(req.params.name, 'late');
    await gates.get(req.params.name).opened;
    res.send('done');
  });
  app.post('/head-cookie', async (req, res) => {
    await sessionOf(req).set('theme', 'dark');
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Set-Cookie': 'theme=dark' });
    res.end('ok');
  });
  app.post('/head-cookies', async (req, res) => {
    await req.session.set('lang', 'fr');
    res.setHeader('Set-Cookie', 'early=1');
    res.writeHead(201, 'Made', ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'X-App', 'yes']);
    res.end('ok');
  });
  app.post('/raw', async (req, res) => {
    await req.session.set('raw', true);
    res.writeHead(201, { 'Content-Type': 'text/plain' });
    res.write('part one, ');
    res.end('part two');
  });
  return app;
}

async function listen(app) {
  const http = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => http.once('listening', resolve));
  const base = `http://127.0.0.1:${http.address().port}`;
  return {
    base,
    close: () => new Promise((resolve) => http.close(resolve)),
  };
}


async function request(path, { method = 'GET', cookie, base = site.base } = {}) {
  const response = await fetch(base + path, { method, headers: cookie ? { cookie } : {} });
  const body = await response.text();
  const setCookies = response.headers.getSetCookie();
  return { status: response.status, body, vary: response.headers.get('vary'), setCookies, response };
}

/** The session key a Set-Cookie header carries. */
function keyOf(setCookie) {
  return /^sessionid=([^;]*)/.exec(setCookie)[1];
}

test('a new session sets Django\'s cookie with its attributes and Vary: Cookie', async () => {
  const before = Date.now();
  const first = await request('/incr', { method: 'POST' });
  assert.equal(first.status, 200);
  assert.equal(first.setCookies.length, 1);
  const setCookie = first.setCookies[0];
  const key = keyOf(setCookie);
  assert.match(key, /^[a-z0-9]{32}$/);
  assert.match(setCookie, /; Max-Age=1209600(;|$)/);
  assert.match(setCookie, /; Path=\/(;|$)/);
  assert.match(setCookie, /; HttpOnly(;|$)/);
  assert.match(setCookie, /; SameSite=Lax(;|$)/);
  assert.doesNotMatch(setCookie, /Secure|Domain/);
  const expires = Date.parse(/; Expires=([^;]*)/.exec(setCookie)[1]);
  assert.ok(Math.abs(expires - (before + 1209600 * 1000)) < 5000);
  assert.equal(first.vary, 'Cookie');

  const second = await request('/incr', { method: 'POST', cookie: `sessionid=${key}` });
  assert.equal(JSON.parse(second.body).count, 2);
  assert.equal(keyOf(second.setCookies[0]), key);
  assert.deepEqual((await client.load(key)).data, { count: 2 });
});

test('reading varies on Cookie without setting it; an untouched session sends neither', async () => {
  const { sessionKey } = await client.create({ count: 7 });
  const read = await request('/read', { cookie: `sessionid=${sessionKey}` });
  assert.equal(JSON.parse(read.body).count, 7);
  assert.equal(read.vary, 'Cookie');
  assert.deepEqual(read.setCookies, []);
  calls.length = 0;
  const untouched = await request('/untouched', { cookie: `sessionid=${sessionKey}` });
  assert.equal(untouched.vary, null);
  assert.deepEqual(untouched.setCookies, []);
  assert.deepEqual(calls, []);
  // The last of two cookies of that name counts, as in Django.
  const twice = await request('/read', { cookie: `sessionid=${'x'.repeat(32)}; other=1; sessionid=${sessionKey}` });
  assert.equal(JSON.parse(twice.body).count, 7);
});

test('a 5xx response saves nothing and sets no cookie', async () => {
  const { sessionKey } = await client.create({ count: 1 });
  const failed = await request('/fail', { method: 'POST', cookie: `sessionid=${sessionKey}` });
  assert.equal(failed.status, 500);
  assert.deepEqual(failed.setCookies, []);
  assert.equal(failed.vary, 'Cookie');
  assert.deepEqual((await client.load(sessionKey)).data, { count: 1 });
});

test('logout (flush) deletes the session and the cookie', async () => {
  const { sessionKey } = await client.create({ _auth_user_id: '42' });
  const out = await request('/logout', { method: 'POST', cookie: `sessionid=${sessionKey}` });
  assert.equal(out.status, 200);
  assert.deepEqual(out.setCookies, [
    'sessionid=""; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; SameSite=Lax',
  ]);
  assert.equal(out.vary, 'Cookie');
  assert.equal(await client.exists(sessionKey), false);
});

test('login cycles the key: a new cookie, the old key gone, the data kept', async () => {
  const { sessionKey } = await client.create({ cart: ['book'] });
  const login = await request('/login', { method: 'POST', cookie: `sessionid=${sessionKey}` });
  const newKey = keyOf(login.setCookies[0]);
  assert.notEqual(newKey, sessionKey);
  assert.equal(await client.exists(sessionKey), false);
  assert.deepEqual((await client.load(newKey)).data, { cart: ['book'], _auth_user_id: '42' });
});

test('a logout in another request makes a concurrent save answer 400 without a cookie', async () => {
  const { sessionKey } = await client.create({ _auth_user_id: '42' });
  gate('race');
  const slow = request('/slow/race', { method: 'POST', cookie: `sessionid=${sessionKey}` });
  // Let the slow request load and change its session before the logout.
  while (!(await client.load(sessionKey))) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  const out = await request('/logout', { method: 'POST', cookie: `sessionid=${sessionKey}` });
  assert.equal(out.status, 200);
  gates.get('race').release();
  const interrupted = await slow;
  assert.equal(interrupted.status, 400);
  assert.equal(interrupted.body, INTERRUPTED_BODY);
  assert.deepEqual(interrupted.setCookies, []);
  assert.equal(await client.exists(sessionKey), false);
});

test('concurrent requests of one user that change different keys both keep their writes', async () => {
  const { sessionKey } = await client.create({});
  gate('left');
  gate('right');
  const left = request('/slow/left', { method: 'POST', cookie: `sessionid=${sessionKey}` });
  const right = request('/slow/right', { method: 'POST', cookie: `sessionid=${sessionKey}` });
  await new Promise((r) => setTimeout(r, 100));
  gates.get('left').release();
  gates.get('right').release();
  assert.equal((await left).status, 200);
  assert.equal((await right).status, 200);
  assert.deepEqual((await client.load(sessionKey)).data, { left: 'late', right: 'late' });
});

test('a cookie that is not a session key starts an empty session without any call', async () => {
  calls.length = 0;
  const odd = await request('/untouched', { cookie: 'sessionid=../../etc/passwd' });
  assert.deepEqual(calls, []);
  // As Django: the cookie came in and the session is empty, so it is deleted.
  assert.match(odd.setCookies[0], /^sessionid=""; Max-Age=0/);
  const fresh = await request('/incr', { method: 'POST', cookie: 'sessionid=SHOUTING' });
  assert.equal(JSON.parse(fresh.body).count, 1);
  assert.deepEqual(calls, ['create']);
  assert.match(keyOf(fresh.setCookies[0]), /^[a-z0-9]{32}$/);
});

test('expiry decides Max-Age: seconds, or none for browser close', async () => {
  const short = await request('/expiry/60', { method: 'POST' });
  assert.match(short.setCookies[0], /; Max-Age=60;/);
  const closing = await request('/expiry/0', { method: 'POST' });
  assert.doesNotMatch(closing.setCookies[0], /Max-Age|Expires/);
  assert.match(closing.setCookies[0], /^sessionid=[a-z0-9]{32}; Path=\/; HttpOnly; SameSite=Lax$/);
});

test('held writeHead and streamed writes go out after the save, with the cookie', async () => {
  const raw = await request('/raw', { method: 'POST' });
  assert.equal(raw.status, 201);
  assert.equal(raw.body, 'part one, part two');
  assert.deepEqual((await client.load(keyOf(raw.setCookies[0]))).data, { raw: true });
});

test('Set-Cookie passed to writeHead keeps the session cookie beside it', async () => {
  const single = await request('/head-cookie', { method: 'POST' });
  assert.equal(single.status, 200);
  assert.equal(single.setCookies.length, 2, single.setCookies.join(' | '));
  assert.equal(single.setCookies[0], 'theme=dark');
  assert.deepEqual((await client.load(keyOf(single.setCookies[1]))).data, { theme: 'dark' });
  assert.equal(single.response.headers.get('content-type'), 'text/plain');

  // A flat array replaces what setHeader set, as node does, and may repeat a name.
  const several = await request('/head-cookies', { method: 'POST' });
  assert.equal(several.status, 201);
  assert.equal(several.response.statusText, 'Made');
  assert.equal(several.response.headers.get('x-app'), 'yes');
  assert.deepEqual(several.setCookies.slice(0, 2), ['a=1', 'b=2']);
  assert.equal(several.setCookies.length, 3);
  assert.deepEqual((await client.load(keyOf(several.setCookies[2]))).data, { lang: 'fr' });
});

test('sessionOf(req) is the Session on req.session, and says when the middleware is missing', () => {
  const session = new Session(client);
  assert.equal(sessionOf({ session }), session);
  assert.throws(() => sessionOf({}), { name: 'TypeError', message: /mount sessionMiddleware/ });
  assert.throws(() => sessionOf({ session: {} }), TypeError);
});

test('cookie settings: name, domain, path, secure, SameSite, HttpOnly, browser close', async () => {
  const custom = await listen(
    buildApp({
      cookieName: 'appsession',
      domain: '.example.com',
      path: '/',
      secure: true,
      httpOnly: false,
      sameSite: 'None',
      expireAtBrowserClose: true,
    }),
  );
  try {
    const made = await request('/incr', { method: 'POST', base: custom.base });
    const setCookie = made.setCookies[0];
    assert.match(setCookie, /^appsession=[a-z0-9]{32}; Domain=\.example\.com; Path=\/; Secure; SameSite=None$/);
    const key = /^appsession=([^;]*)/.exec(setCookie)[1];
    const again = await request('/incr', { method: 'POST', base: custom.base, cookie: `appsession=${key}` });
    assert.equal(JSON.parse(again.body).count, 2);
  } finally {
    await custom.close();
  }
});

test('saveEveryRequest saves an untouched session, and issues a key for an unknown one', async () => {
  const every = await listen(buildApp({ saveEveryRequest: true, cookieAge: 600 }));
  try {
    const { sessionKey } = await client.create({ n: 1 });
    const kept = await request('/untouched', { base: every.base, cookie: `sessionid=${sessionKey}` });
    assert.equal(keyOf(kept.setCookies[0]), sessionKey);
    assert.match(kept.setCookies[0], /; Max-Age=600;/);
    const unknown = 'unknown' + '0'.repeat(25);
    const issued = await request('/untouched', { base: every.base, cookie: `sessionid=${unknown}` });
    const newKey = keyOf(issued.setCookies[0]);
    assert.match(newKey, /^[a-z0-9]{32}$/);
    assert.notEqual(newKey, unknown);
  } finally {
    await every.close();
  }
});

test('sessiond being down turns the response into a 500', async () => {
  const dead = new Client({ addresses: '127.0.0.1:1', timeoutMs: 1000 });
  const errors = [];
  const app = express();
  app.use(sessionMiddleware({ client: dead, onError: (error) => errors.push(error) }));
  app.post('/set', async (req, res) => {
    req.session.clear();
    await req.session.set('a', 1);
    res.send('ok');
  });
  const down = await listen(app);
  try {
    const answer = await request('/set', { method: 'POST', base: down.base });
    assert.equal(answer.status, 500);
    assert.deepEqual(answer.setCookies, []);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].codeName, 'UNAVAILABLE');
  } finally {
    dead.close();
    await down.close();
  }
});
