'use strict';

const grpc = require('@grpc/grpc-js');

const { SessiondError, UpdateError } = require('./errors');
const expiry = require('./expiry');
const { memberText } = require('./member-json');

/** Django's SESSION_COOKIE_AGE: two weeks, in seconds. */
const DEFAULT_COOKIE_AGE = 1209600;

/**
 * A web session, used like Django's `request.session`: a dictionary of JSON
 * values stored in sessiond.
 *
 * Nothing is loaded when the session is made; the first method that reads
 * or writes the data loads it, so those methods are async. `save()` sends a
 * `Patch` of only the members changed since the load (compared by their
 * JSON text), so two requests of one user that change different members
 * both keep their writes.
 */
class Session {
  #client;
  #key;
  #cookieAge;
  #expireAtBrowserClose;
  /** @type {Map<string, unknown> | null} null until loaded, like Django's _session_cache */
  #data = null;
  /** The JSON text of each member as the server holds it (after the load or the last save). */
  #stored = new Map();
  /** The next save starts from an empty session (after clear()). */
  #replace = false;
  #loading = null;
  #accessed = false;
  #modified = false;
  #interrupted = false;

  /**
   * @param {import('./client').Client} client
   * @param {string | null} [sessionKey] the key from the cookie; null for a new session
   * @param {{ cookieAge?: number, expireAtBrowserClose?: boolean }} [options]
   */
  constructor(client, sessionKey = null, options = {}) {
    this.#client = client;
    this.#key = sessionKey || null;
    this.#cookieAge = options.cookieAge ?? DEFAULT_COOKIE_AGE;
    this.#expireAtBrowserClose = Boolean(options.expireAtBrowserClose);
  }

  /** The session key, or null until a new session is saved (read-only). */
  get sessionKey() {
    return this.#key;
  }

  /** Whether the data was read or written (the response then varies on Cookie). */
  get accessed() {
    return this.#accessed;
  }

  /** Whether the data was changed (the session is then saved at the end of the request). */
  get modified() {
    return this.#modified;
  }

  /** Whether a save found the session deleted meanwhile; saving again would fail again. */
  get interrupted() {
    return this.#interrupted;
  }

  /** Seconds a session lives without its own expiry (SESSION_COOKIE_AGE). */
  getSessionCookieAge() {
    return this.#cookieAge;
  }

  /**
   * True when the session has no key and no data; never loads (Django's
   * `is_empty`).
   * @returns {boolean}
   */
  isEmpty() {
    return this.#key === null && (this.#data === null || this.#data.size === 0);
  }

  /** Loads the data once; a missing or expired session reads as empty and loses its key. */
  async #load() {
    this.#accessed = true;
    if (this.#data !== null) return this.#data;
    if (this.#key === null) {
      this.#data = new Map();
      return this.#data;
    }
    if (!this.#loading) {
      const key = this.#key;
      this.#loading = this.#client.load(key).finally(() => {
        this.#loading = null;
      });
      const loaded = await this.#loading;
      // clear() may have filled the cache while the load was under way.
      if (this.#data === null) {
        this.#data = new Map();
        if (loaded) {
          for (const [name, value] of Object.entries(loaded.data)) {
            this.#data.set(name, value);
            this.#stored.set(name, JSON.stringify(value));
          }
        } else {
          this.#key = null;
        }
      }
    } else {
      await this.#loading;
    }
    return this.#data ?? this.#load();
  }

  /**
   * The value under `key`, or undefined. Objects come back as stored in the
   * session: changing one in place is saved only if the session is saved.
   * @param {string} key
   * @returns {Promise<any>}
   */
  async get(key) {
    return (await this.#load()).get(key);
  }

  /**
   * Stores `value` under `key`: anything JSON holds and reads back as it
   * was; a Date is stored as its ISO 8601 string (JSON has no dates, and
   * Django's JSONSerializer cannot store datetimes at all). Rejects with a
   * TypeError naming the member, before anything changes, for BigInt,
   * NaN / Infinity, functions, symbols, undefined (at the top or in an
   * array), Map, Set and circular structures.
   * @param {string} key
   * @param {unknown} value
   * @returns {Promise<void>}
   */
  async set(key, value) {
    memberText(key, value);
    (await this.#load()).set(key, value);
    this.#modified = true;
  }

  /**
   * Stores every member of `values` (Django's `update`).
   * @param {Record<string, unknown>} values
   * @returns {Promise<void>}
   */
  async update(values) {
    for (const [key, value] of Object.entries(values)) memberText(key, value);
    const data = await this.#load();
    for (const [key, value] of Object.entries(values)) data.set(key, value);
    this.#modified = true;
  }

  /**
   * Removes `key` and returns its value; undefined, with nothing changed, if
   * it was absent.
   * @param {string} key
   * @returns {Promise<any>}
   */
  async delete(key) {
    const data = await this.#load();
    if (!data.has(key)) return undefined;
    const value = data.get(key);
    data.delete(key);
    this.#modified = true;
    return value;
  }

  /**
   * Whether `key` is in the session.
   * @param {string} key
   * @returns {Promise<boolean>}
   */
  async has(key) {
    return (await this.#load()).has(key);
  }

  /** The keys, in insertion order. @returns {Promise<string[]>} */
  async keys() {
    return [...(await this.#load()).keys()];
  }

  /** The values, in insertion order. @returns {Promise<any[]>} */
  async values() {
    return [...(await this.#load()).values()];
  }

  /** The [key, value] pairs, in insertion order. @returns {Promise<Array<[string, any]>>} */
  async entries() {
    return [...(await this.#load()).entries()];
  }

  /**
   * Empties the session without loading it; the key stays (Django's
   * `clear`). The next save replaces what is stored.
   */
  clear() {
    this.#data = new Map();
    this.#accessed = true;
    this.#modified = true;
    this.#replace = true;
  }

  /**
   * Empties the session, deletes it from sessiond and drops its key, as
   * logging out does (Django's `flush`). The middleware then deletes the
   * cookie.
   * @returns {Promise<void>}
   */
  async flush() {
    this.clear();
    if (this.#key !== null) await this.#client.delete(this.#key);
    this.#key = null;
    this.#stored = new Map();
    this.#interrupted = false;
  }

  /**
   * Moves the data to a fresh key and deletes the old one in one CycleKey
   * call, as logging in does against session fixation; a session without a
   * key is created instead.
   * @returns {Promise<void>}
   */
  async cycleKey() {
    const data = await this.#load();
    if (this.#key === null) {
      await this.create();
      return;
    }
    const texts = this.#texts(data);
    const moved = await this.#client.cycleKey(this.#key, {
      data: Object.fromEntries(data),
      expireDate: this.#expiryDateOf(data),
    });
    this.#key = moved.sessionKey;
    this.#stored = texts;
    this.#replace = false;
    this.#modified = true;
    this.#interrupted = false;
  }

  /**
   * Sets this session's expiry, stored under `_session_expiry` as Django
   * stores it: whole seconds of inactivity, a Date (stored as an ISO 8601
   * string), 0 for "when the browser closes", or null for the default.
   * @param {number | Date | null} value
   * @returns {Promise<void>}
   */
  async setExpiry(value) {
    const stored = expiry.toStored(value);
    if (stored === undefined) await this.delete(expiry.EXPIRY_KEY);
    else await this.set(expiry.EXPIRY_KEY, stored);
  }

  /** Seconds until the session expires, counted from now. @returns {Promise<number>} */
  async getExpiryAge() {
    const data = await this.#load();
    return expiry.expiryAge(data.get(expiry.EXPIRY_KEY), new Date(), this.#cookieAge);
  }

  /** When the session expires, counted from now. @returns {Promise<Date>} */
  async getExpiryDate() {
    return this.#expiryDateOf(await this.#load());
  }

  /** Whether the cookie should end with the browser session. @returns {Promise<boolean>} */
  async getExpireAtBrowserClose() {
    const data = await this.#load();
    return expiry.expireAtBrowserClose(data.get(expiry.EXPIRY_KEY), new Date(), this.#expireAtBrowserClose);
  }

  #expiryDateOf(data) {
    return expiry.expiryDate(data.get(expiry.EXPIRY_KEY), new Date(), this.#cookieAge);
  }

  #texts(data) {
    const texts = new Map();
    for (const [key, value] of data) texts.set(key, memberText(key, value));
    return texts;
  }

  /**
   * Stores the session under a fresh key drawn by sessiond, with the data in
   * hand (Django's `create`).
   * @returns {Promise<void>}
   */
  async create() {
    const data = this.#data ?? new Map();
    const texts = this.#texts(data);
    const created = await this.#client.create(Object.fromEntries(data), this.#expiryDateOf(data));
    this.#key = created.sessionKey;
    if (this.#data === null) this.#data = data;
    this.#stored = texts;
    this.#replace = false;
    this.#modified = true;
    this.#interrupted = false;
  }

  /**
   * Writes the session: creates it if it has no key, else sends a Patch of
   * the members changed since the load. Rejects with `UpdateError` if the
   * session was deleted meanwhile; it is never brought back.
   * @returns {Promise<void>}
   */
  async save() {
    if (this.#key === null) return this.create();
    const data = await this.#load();
    // The load finds a missing session and drops its key.
    if (this.#key === null) return this.create();
    const texts = this.#texts(data);
    const replace = this.#replace;
    const set = {};
    for (const [key, text] of texts) {
      if (replace || this.#stored.get(key) !== text) set[key] = data.get(key);
    }
    const remove = replace ? [] : [...this.#stored.keys()].filter((key) => !texts.has(key));
    this.#replace = false;
    try {
      await this.#client.patch(this.#key, { set, remove, replace, expireDate: this.#expiryDateOf(data) });
    } catch (error) {
      // Keep the changes for a retry.
      this.#replace = this.#replace || replace;
      if (error instanceof SessiondError && error.code === grpc.status.NOT_FOUND) {
        this.#interrupted = true;
        throw new UpdateError('Patch', error.code, 'the session was deleted before this request saved it', {
          address: error.address,
        });
      }
      throw error;
    }
    this.#stored = texts;
  }
}

module.exports = { Session, DEFAULT_COOKIE_AGE };
