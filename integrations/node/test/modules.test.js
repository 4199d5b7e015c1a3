'use strict';

// The package loads from CommonJS and from ES modules through its exports
// map, and its TypeScript types check.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const PACKAGE = path.join(__dirname, '..');

test('CommonJS: require("sessiond-client") and its express-session entry', () => {
  const cjs = require('sessiond-client');
  assert.equal(typeof cjs.Client, 'function');
  assert.equal(typeof cjs.sessionMiddleware, 'function');
  assert.equal(typeof require('sessiond-client/express-session').SessiondStore, 'function');
});

test('ES modules: import { Client } from "sessiond-client" shares the CommonJS classes', async () => {
  const esm = await import('sessiond-client');
  const cjs = require('sessiond-client');
  assert.equal(esm.Client, cjs.Client);
  assert.equal(esm.SessiondError, cjs.SessiondError);
  assert.equal(esm.default.Session, cjs.Session);
  const store = await import('sessiond-client/express-session');
  assert.equal(typeof store.SessiondStore, 'function');
  assert.equal(typeof store.genid(), 'string');
  // And from a real .mjs file, as an app would write it.
  const out = execFileSync(process.execPath, [path.join(__dirname, '..', 'examples', 'esm.mjs')], { encoding: 'utf8' });
  assert.equal(out.trim(), 'ok');
});

test('TypeScript: the shipped types check a typed example (tsc --noEmit)', () => {
  const tsc = require.resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '--noEmit', '-p', path.join(PACKAGE, 'examples', 'tsconfig.json')], {
    cwd: PACKAGE,
    encoding: 'utf8',
    stdio: 'pipe',
  });
});
