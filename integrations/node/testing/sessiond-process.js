'use strict';

// Starts the real sessiond binary ($SESSIOND_BIN) on 127.0.0.1:0 for the
// tests, as server/tests/common/process.rs does: JSON logs on stderr, the
// bound address read from the "sessiond serving" line.

const { spawn } = require('node:child_process');
const readline = require('node:readline');

const START_TIMEOUT_MS = 30000;

function sessiondBin() {
  const bin = process.env.SESSIOND_BIN;
  if (!bin) {
    throw new Error(
      'SESSIOND_BIN is not set: point it at a built sessiond binary ' +
        '(cargo build -p sessiond; SESSIOND_BIN=target/debug/sessiond npm test)',
    );
  }
  return bin;
}

/**
 * Starts `sessiond serve` with `env` (SESSIOND_* variables) over an
 * in-memory store unless `env.SESSIOND_STORE` says otherwise.
 * @returns {Promise<{ address: string, stop: () => Promise<void>, log: () => string }>}
 */
function startSessiond(env = {}) {
  const childEnv = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('SESSIOND_') && name !== 'RUST_LOG'),
  );
  Object.assign(childEnv, {
    SESSIOND_STORE: 'memory://',
    SESSIOND_LISTEN: '127.0.0.1:0',
    SESSIOND_LOG_FORMAT: 'json',
    ...env,
  });
  const child = spawn(sessiondBin(), ['serve'], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sessiond did not start within ${START_TIMEOUT_MS} ms:\n${log}`));
    }, START_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sessiond exited with ${code} before serving:\n${log}`));
    });
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      log += `${line}\n`;
      if (!line.includes('sessiond serving')) return;
      clearTimeout(timer);
      const address = JSON.parse(line).listen;
      resolve({
        address,
        log: () => log,
        stop: () =>
          new Promise((done) => {
            if (child.exitCode !== null) {
              done();
              return;
            }
            child.removeAllListeners('exit');
            child.on('exit', () => done());
            child.kill('SIGTERM');
          }),
      });
    });
  });
}

module.exports = { startSessiond };
