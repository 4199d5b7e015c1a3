'use strict';

const grpc = require('@grpc/grpc-js');
const { Store } = require('express-session');

const { genid, isValidKey } = require('./keys');
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

/** Why set() refuses an id that sessiond cannot store. */
const INVALID_ID =
  "sessiond-client: express-session drew a session id that sessiond cannot store (sessiond keys are 8 to 40 characters of [a-z0-9]); set genid: require('sessiond-client/express-session').genid";

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
   * needs). An id that cannot be a sessiond key (one express-session's
   * default genid drew before the app moved to sessiond) is a missing
   * session too, so that express-session starts a new one.
   */
  get(sid, callback) {
    if (!isValidKey(sid)) {
      process.nextTick(callback, null, null);
      return;
    }
    this.client.load(sid).then(
      (loaded) => callback(null, loaded && isObject(loaded.data.cookie) ? loaded.data : null),
      (error) => callback(error),
    );
  }

  /**
   * Writes a whole session: updates it, or inserts it when it is new
   * (express-session upserts; it has no separate create). An id that cannot
   * be a sessiond key is an error asking for this module's `genid`.
   */
  set(sid, sess, callback = () => {}) {
    if (!isValidKey(sid)) {
      process.nextTick(callback, new Error(INVALID_ID));
      return;
    }
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

  /** Deletes a session (a missing one, or an id sessiond cannot hold, is fine). */
  destroy(sid, callback = () => {}) {
    if (!isValidKey(sid)) {
      process.nextTick(callback, null);
      return;
    }
    this.client.delete(sid).then(() => callback(null), (error) => callback(error));
  }

  /**
   * Extends a session's expiry: patches only its `cookie` member and the
   * expiry. A session deleted meanwhile stays deleted; an id sessiond cannot
   * hold names no session, so there is nothing to touch.
   */
  touch(sid, sess, callback = () => {}) {
    if (!isValidKey(sid)) {
      process.nextTick(callback, null);
      return;
    }
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
