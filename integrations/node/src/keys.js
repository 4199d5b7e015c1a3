'use strict';

const crypto = require('node:crypto');

/** The characters of a key sessiond draws, as Django draws its own. */
const KEY_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
/** The length of a key sessiond draws (Django's, too). */
const KEY_LENGTH = 32;
/** What sessiond accepts: 8 to 40 characters of [a-z0-9]. */
const VALID_KEY = /^[a-z0-9]{8,40}$/;

/**
 * Whether `value` may be a sessiond session key (8 to 40 characters of
 * `[a-z0-9]`). A cookie that is not one starts an empty session without any
 * call to the server.
 * @param {unknown} value
 * @returns {boolean}
 */
function isValidKey(value) {
  return typeof value === 'string' && VALID_KEY.test(value);
}

/**
 * A fresh session key as sessiond and Django draw them: 32 characters of
 * `[a-z0-9]` from the operating system's CSPRNG. Meant as express-session's
 * `genid`; sessiond's own `Create` draws keys on the server.
 * @returns {string}
 */
function genid() {
  let key = '';
  for (let i = 0; i < KEY_LENGTH; i += 1) {
    key += KEY_ALPHABET[crypto.randomInt(KEY_ALPHABET.length)];
  }
  return key;
}

module.exports = { isValidKey, genid, KEY_LENGTH };
