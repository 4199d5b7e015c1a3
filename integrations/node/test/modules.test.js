'use strict';

// The package loads from CommonJS and from ES modules through its exports
// map, and its TypeScript types check.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
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

/** Runs `tsc --noEmit -p project`, failing with tsc's own output. */
function typecheck(project) {
  const tsc = require.resolve('typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '--noEmit', '-p', path.join(PACKAGE, project)], {
      cwd: PACKAGE,
      encoding: 'utf8',
      stdio: 'pipe',
    });
  } catch (error) {
    assert.fail(`tsc -p ${project}:\n${error.stdout}${error.stderr}`);
  }
}

test('TypeScript: the shipped types check a typed example (tsc --noEmit)', () => {
  typecheck(path.join('examples', 'tsconfig.json'));
});

test('TypeScript: sessionOf(req) compiles with only @types/express (no express-session types)', () => {
  typecheck(path.join('examples', 'express-only', 'tsconfig.json'));
});

test('package.json: no peer range on Express (the code never loads it), so Express 4 apps can install', () => {
  // A peer range of ">=5" makes `npm install` fail with ERESOLVE in an
  // Express 4 app, even one that only uses Client or the express-session
  // store; the README says that the middleware's async handlers need Express 5.
  const manifest = require('../package.json');
  assert.equal(manifest.peerDependencies.express, undefined);
  const readme = fs.readFileSync(path.join(PACKAGE, 'README.md'), 'utf8');
  assert.match(readme, /Express 5/);
  assert.match(readme, /Express 4/);
});

test('package.json: the only install-time script builds the native transport; the checkout reads the repository\'s proto', () => {
  const manifest = require('../package.json');
  assert.equal(manifest.scripts.prepare, undefined);
  assert.equal(manifest.scripts.install, 'node scripts/build-native.js');
  assert.equal(manifest.scripts.postinstall, undefined);
  // The tarball carries what the install script builds from, never a build.
  for (const file of ['native/Cargo.toml', 'native/Cargo.lock', 'native/build.rs', 'native/src/', 'scripts/build-native.js']) {
    assert.ok(manifest.files.includes(file), `${file} is not in package.json's files`);
  }
  assert.ok(!manifest.files.some((file) => file === 'native/' || file.startsWith('native/target')));
  // In a checkout nothing copies the proto: src/client.js finds ../../proto.
  const copy = path.join(PACKAGE, 'proto', 'sessiond', 'v1', 'sessiond.proto');
  const checkout = path.join(PACKAGE, '..', '..', 'proto', 'sessiond', 'v1', 'sessiond.proto');
  if (fs.existsSync(checkout)) {
    const out = execFileSync(
      process.execPath,
      ['-e', 'new (require(".").Client)({ addresses: "127.0.0.1:1" }).close(); console.log("ok")'],
      { cwd: PACKAGE, encoding: 'utf8', env: { ...process.env, SESSIOND_PROTO_DIR: '' } },
    );
    assert.equal(out.trim(), 'ok');
    assert.ok(!fs.existsSync(copy) || fs.readFileSync(copy, 'utf8') === fs.readFileSync(checkout, 'utf8'), 'stale proto copy');
  }
});
