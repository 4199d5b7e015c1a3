'use strict';

const grpc = require('@grpc/grpc-js');
const { Store } = require('express-session');

const { genid } = require('./keys');
const { SessiondError } = require('./errors');

/** What express-session's optional listing methods answer: sessiond cannot list sessions. */
const NO_LISTING =
  'sessiond has no RPC that lists or counts sessions, so SessiondStore does not support all(), length() or clear()';

/** The expiry express-session keeps in the session's cookie, if any. */
function expiryOf(sess) {
  const expires = sess && sess.cookie && sess.cookie.expires;
  if (!expires) return undefined;
  const date = new Date(expires);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function isObject(value) {
  return value !== null && typeof value === 'object';
}

function isStatus(error, code) {
  return error instanceof SessiondError && error.code === code;
}

/**
 * An express-session store that keeps sessions in sessiond.
 *
 * express-session draws the ids (pass `genid` from this module so that they
 * are keys sessiond accepts) and signs its cookie, so these sessions are not
 * shared with a Django site; `sessionMiddleware` is the way to share a login.
 */
class SessiondStore extends Store {
  /**
   * @param {{ client: import('./client').Client }} options
   */
  constructor(options) {
    super();
    if (!options || !options.client) throw new TypeError('sessiond-client: SessiondStore needs `client`');
    this.client = options.client;
  }

  /**
   * Loads a session; null when it is missing or expired, or was not written
   * by express-session (it has no `cookie` member, which express-session
   * needs).
   */
  get(sid, callback) {
    this.client.load(sid).then(
      (loaded) => callback(null, loaded && isObject(loaded.data.cookie) ? loaded.data : null),
      (error) => callback(error),
    );
  }

  /**
   * Writes a whole session: updates it, or inserts it when it is new
   * (express-session upserts; it has no separate create).
   */
  set(sid, sess, callback = () => {}) {
    const expireDate = expiryOf(sess);
    const write = async () => {
      try {
        await this.client.save(sid, sess, { expireDate });
      } catch (error) {
        if (!isStatus(error, grpc.status.NOT_FOUND)) throw error;
        try {
          await this.client.save(sid, sess, { expireDate, mustCreate: true });
        } catch (insertError) {
          // Inserted by a concurrent request between the two calls.
          if (!isStatus(insertError, grpc.status.ALREADY_EXISTS)) throw insertError;
          await this.client.save(sid, sess, { expireDate });
        }
      }
    };
    write().then(() => callback(null), (error) => callback(error));
  }

  /** Deletes a session (a missing one is fine). */
  destroy(sid, callback = () => {}) {
    this.client.delete(sid).then(() => callback(null), (error) => callback(error));
  }

  /**
   * Extends a session's expiry: patches only its `cookie` member and the
   * expiry. A session deleted meanwhile stays deleted.
   */
  touch(sid, sess, callback = () => {}) {
    this.client
      .patch(sid, { set: { cookie: sess.cookie }, expireDate: expiryOf(sess) })
      .then(
        () => callback(null),
        (error) => callback(isStatus(error, grpc.status.NOT_FOUND) ? null : error),
      );
  }

  /** Not supported: sessiond cannot list sessions. */
  all(callback) {
    callback(new Error(NO_LISTING));
  }

  /** Not supported: sessiond cannot count sessions. */
  length(callback) {
    callback(new Error(NO_LISTING));
  }

  /** Not supported: sessiond cannot remove all sessions (clearExpired() removes the expired ones). */
  clear(callback) {
    callback(new Error(NO_LISTING));
  }
}

module.exports = { SessiondStore, genid };
