#!/usr/bin/env node
// Copies the wire contract from the repository's proto/ into this package
// for `npm pack` / `npm publish` (`prepack`), and removes the copy afterwards
// (`postpack`, with --remove), so that the repository keeps one copy and the
// checkout never reads a stale one: in the checkout, src/client.js finds the
// repository's proto/ itself.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const RELATIVE = path.join('sessiond', 'v1', 'sessiond.proto');
const source = path.join(__dirname, '..', '..', '..', 'proto', RELATIVE);
const copyRoot = path.join(__dirname, '..', 'proto');
const target = path.join(copyRoot, RELATIVE);

if (process.argv.includes('--remove')) {
  // Only a copy: outside a checkout the proto/ directory is the package's own.
  if (fs.existsSync(source)) fs.rmSync(copyRoot, { recursive: true, force: true });
  process.exit(0);
}
if (!fs.existsSync(source)) {
  console.error(`sessiond-client: ${source} does not exist; pack the package from a checkout of the repository`);
  process.exit(1);
}
fs.mkdirSync(path.dirname(target), { recursive: true });
fs.copyFileSync(source, target);
