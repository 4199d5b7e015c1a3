#!/usr/bin/env node
// Copies the wire contract from the repository's proto/ into this package,
// so that the published package carries it and the repository keeps one copy
// (the copy is git-ignored). Run by `prepare` (npm install / npm ci in the
// checkout) and `prepack` (npm pack / npm publish).
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const RELATIVE = path.join('sessiond', 'v1', 'sessiond.proto');
const source = path.join(__dirname, '..', '..', '..', 'proto', RELATIVE);
const target = path.join(__dirname, '..', 'proto', RELATIVE);

if (!fs.existsSync(source)) {
  // Installed from a tarball: the proto is already inside the package.
  if (!fs.existsSync(target)) {
    console.error(`sessiond-client: neither ${source} nor ${target} exists`);
    process.exit(1);
  }
  process.exit(0);
}
fs.mkdirSync(path.dirname(target), { recursive: true });
fs.copyFileSync(source, target);
