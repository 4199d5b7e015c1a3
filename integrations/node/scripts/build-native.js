#!/usr/bin/env node
// Builds the native transport (native/, Rust) with cargo and puts it at
// native/sessiond_native.node, where src/native.js loads it. Run by npm when
// the package is installed (`install`) and by `npm run build-native`.
//
// Without cargo the package still works, on @grpc/grpc-js: this says so and
// succeeds. With cargo, a failed build fails the install, as it would hide a
// real problem; SESSIOND_SKIP_NATIVE=1 installs without the addon.
'use strict';

const childProcess = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const nativeDir = path.join(__dirname, '..', 'native');
const manifest = path.join(nativeDir, 'Cargo.toml');
const addon = path.join(nativeDir, 'sessiond_native.node');
/** What cargo names a cdylib `sessiond_native` on each platform. */
const LIBRARY = {
  darwin: 'libsessiond_native.dylib',
  win32: 'sessiond_native.dll',
}[process.platform] ?? 'libsessiond_native.so';

if (process.env.SESSIOND_SKIP_NATIVE === '1') {
  console.error('sessiond-client: SESSIOND_SKIP_NATIVE=1, not building the native transport; calls use @grpc/grpc-js');
  process.exit(0);
}
const cargo = process.env.CARGO || 'cargo';
const build = childProcess.spawnSync(
  cargo,
  ['build', '--release', '--locked', '--manifest-path', manifest, '--message-format=short'],
  { stdio: ['ignore', 'inherit', 'inherit'] },
);
if (build.error && build.error.code === 'ENOENT') {
  console.error(
    `sessiond-client: ${cargo} not found, so the native transport is not built and calls use @grpc/grpc-js ` +
      '(2-3x slower a call); install Rust (https://rustup.rs) and run `npm run build-native` to build it',
  );
  process.exit(0);
}
if (build.error || build.status !== 0) {
  console.error(
    `sessiond-client: building the native transport failed (${build.error?.message ?? `cargo exited with ${build.status}`}); ` +
      'fix the error above, or install with SESSIOND_SKIP_NATIVE=1 to use @grpc/grpc-js instead',
  );
  process.exit(1);
}
const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(process.env.CARGO_TARGET_DIR)
  : path.join(nativeDir, 'target');
// Copied aside and renamed, so that a running process never loads half a file.
const staging = `${addon}.${process.pid}.new`;
fs.copyFileSync(path.join(targetDir, 'release', LIBRARY), staging);
fs.renameSync(staging, addon);
