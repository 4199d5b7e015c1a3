'use strict';

/**
 * sessiond-client: a client for sessiond, the gRPC session store that
 * shares Django's `django_session` table. `Client` makes the calls,
 * `Session` is the dictionary-like handle, `sessionMiddleware` mounts it on
 * Express's `req.session` with Django's cookie. The express-session store is
 * in `sessiond-client/express-session`.
 */

const { Client, DEFAULT_TIMEOUT_MS } = require('./client');
const { Session, DEFAULT_COOKIE_AGE } = require('./session');
const { sessionMiddleware, sessionOf, INTERRUPTED_BODY, DEFAULT_COOKIE_NAME } = require('./middleware');
const { SessiondError, SessiondUnavailable, UpdateError } = require('./errors');
const { genid, isValidKey } = require('./keys');

module.exports = {
  Client,
  Session,
  sessionMiddleware,
  sessionOf,
  SessiondError,
  SessiondUnavailable,
  UpdateError,
  genid,
  isValidKey,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_COOKIE_AGE,
  DEFAULT_COOKIE_NAME,
  INTERRUPTED_BODY,
};
