'use strict';

const cookie = require('cookie');
const grpc = require('@grpc/grpc-js');
const vary = require('vary');

const { isValidKey } = require('./keys');
const { Session, DEFAULT_COOKIE_AGE } = require('./session');
const { UpdateError } = require('./errors');

/** Django's SESSION_COOKIE_NAME. */
const DEFAULT_COOKIE_NAME = 'sessionid';

/** The body of the 400 answered when the session was deleted during the request. */
const INTERRUPTED_BODY =
  'Your session ended while this request was running (did you log out in another tab?). Please reload the page.';

/** The latest time an HTTP date can name (9999-12-31T23:59:59Z). */
const LATEST_HTTP_DATE_MS = 253402300799000;

/**
 * Express middleware that gives each request a sessiond session on
 * `req.session`, read from and written to Django's session cookie: a login
 * made by a Django site on the same sessiond (and cookie) is the same login
 * here, and the other way round.
 *
 * At the end of the response it does what Django's SessionMiddleware does:
 * `Vary: Cookie` when the session was used; the cookie deleted when it came
 * in and the session is now empty; otherwise, when the session was modified
 * (or `saveEveryRequest`) and the status is below 500, the session is saved
 * and its cookie set. A save that finds the session deleted meanwhile (a
 * logout in another tab) answers 400 instead, as Django's SessionInterrupted.
 * The save runs before the response's headers go out, so the status line
 * and the body wait for it.
 *
 * @param {object} options
 * @param {import('./client').Client} options.client
 * @param {string} [options.cookieName] default 'sessionid'
 * @param {number} [options.cookieAge] seconds, default 1209600 (two weeks)
 * @param {string} [options.domain]
 * @param {string} [options.path] default '/'
 * @param {boolean} [options.secure] default false
 * @param {boolean} [options.httpOnly] default true
 * @param {'Lax' | 'Strict' | 'None' | false} [options.sameSite] default 'Lax'
 * @param {boolean} [options.expireAtBrowserClose] default false
 * @param {boolean} [options.saveEveryRequest] default false
 * @param {(error: Error, req: any) => void} [options.onError] told of store errors
 *   that turned a response into a 500; default: console.error of the message
 * @returns {(req: any, res: any, next: (error?: unknown) => void) => void}
 */
function sessionMiddleware(options) {
  const settings = {
    cookieName: DEFAULT_COOKIE_NAME,
    cookieAge: DEFAULT_COOKIE_AGE,
    domain: undefined,
    path: '/',
    secure: false,
    httpOnly: true,
    sameSite: 'Lax',
    expireAtBrowserClose: false,
    saveEveryRequest: false,
    onError: (error) => console.error(`sessiond-client: ${error.message}`),
    ...options,
  };
  if (!settings.client) throw new TypeError('sessiond-client: sessionMiddleware needs `client`');

  return function sessiondSession(req, res, next) {
    if (req.session) {
      next();
      return;
    }
    const value = cookieValue(req.headers.cookie, settings.cookieName);
    const hadCookie = value !== undefined;
    const session = new Session(settings.client, isValidKey(value) ? value : null, settings);
    req.session = session;
    holdHeadersUntil(res, (status) => finishSession(res, session, hadCookie, status, settings), (error) =>
      settings.onError(error, req),
    );
    next();
  };
}

/**
 * The Session that `sessionMiddleware` put on `req.session`. Express's own
 * `Request` type has no `session` (express-session's types claim it, with
 * their own type), so TypeScript code reads it through this function; it
 * also says clearly when the middleware is not mounted.
 * @param {{ session?: unknown }} req
 * @returns {Session}
 */
function sessionOf(req) {
  const session = req ? req.session : undefined;
  if (!(session instanceof Session)) {
    throw new TypeError('sessiond-client: req.session is not a sessiond Session; mount sessionMiddleware before this route');
  }
  return session;
}

/**
 * The value of the cookie `name`; the last one when it comes more than once,
 * as Django (Python's cookie parser) reads it.
 * @param {string | undefined} header
 * @param {string} name
 * @returns {string | undefined}
 */
function cookieValue(header, name) {
  let found;
  for (const pair of (header ?? '').split(';')) {
    const value = cookie.parse(pair)[name];
    if (value !== undefined) found = value;
  }
  return found;
}

/**
 * Django's process_response for `session`: sets Vary and Set-Cookie on `res`.
 * Rejects with UpdateError when the session was deleted meanwhile.
 */
async function finishSession(res, session, hadCookie, status, settings) {
  const accessed = session.accessed;
  const modified = session.modified;
  const empty = session.isEmpty();
  if (hadCookie && empty) {
    appendSetCookie(res, deletionCookie(settings));
    vary(res, 'Cookie');
    return;
  }
  if (accessed) vary(res, 'Cookie');
  if (!(modified || settings.saveEveryRequest) || empty || status >= 500) return;
  if (session.interrupted) {
    throw new UpdateError('Patch', grpc.status.NOT_FOUND, 'the session was deleted before this request saved it');
  }
  const maxAge = (await session.getExpireAtBrowserClose()) ? undefined : await session.getExpiryAge();
  await session.save();
  if (session.sessionKey === null) return;
  appendSetCookie(res, sessionCookie(settings, session.sessionKey, maxAge));
  vary(res, 'Cookie');
}

function sessionCookie(settings, key, maxAge) {
  const attributes = {
    domain: settings.domain,
    path: settings.path,
    httpOnly: settings.httpOnly,
    secure: settings.secure,
    sameSite: settings.sameSite || undefined,
  };
  if (maxAge !== undefined) {
    attributes.maxAge = maxAge;
    const expires = Math.min(Math.max(Date.now() + maxAge * 1000, 0), LATEST_HTTP_DATE_MS);
    attributes.expires = new Date(expires);
  }
  return cookie.serialize(settings.cookieName, key, attributes);
}

/** Django's delete_cookie: an empty quoted value that expired in 1970. */
function deletionCookie(settings) {
  const prefixed = settings.cookieName.startsWith('__Secure-') || settings.cookieName.startsWith('__Host-');
  const sameSiteNone = typeof settings.sameSite === 'string' && settings.sameSite.toLowerCase() === 'none';
  return cookie.serialize(settings.cookieName, '""', {
    encode: String,
    domain: settings.domain,
    path: settings.path,
    expires: new Date(0),
    maxAge: 0,
    sameSite: settings.sameSite || undefined,
    secure: prefixed || sameSiteNone,
  });
}

function appendSetCookie(res, value) {
  const current = res.getHeader('Set-Cookie');
  const list = current === undefined ? [] : Array.isArray(current) ? current : [String(current)];
  res.setHeader('Set-Cookie', [...list, value]);
}

/**
 * What node's writeHead does with its headers argument when headers were
 * already set: an object's members replace headers of the same name; a flat
 * array `[name, value, name, value, ...]` replaces them too but may repeat a
 * name (several Set-Cookie).
 */
function applyHeaders(res, headers) {
  if (!headers) return;
  if (!Array.isArray(headers)) {
    for (const name of Object.keys(headers)) if (name) res.setHeader(name, headers[name]);
    return;
  }
  if (headers.length % 2 !== 0) {
    throw new TypeError('writeHead: a flat array of headers must hold name, value pairs');
  }
  for (let i = 0; i < headers.length; i += 2) res.removeHeader(headers[i]);
  for (let i = 0; i < headers.length; i += 2) {
    const [name, value] = [headers[i], headers[i + 1]];
    const current = res.getHeader(name);
    if (current === undefined) res.setHeader(name, value);
    else res.setHeader(name, [...[current].flat(), ...[value].flat()]);
  }
}

/**
 * Holds back `res`'s status line, headers and body until `finish(status)`
 * has settled, so that an async save can still set the cookie: the way
 * express-session waits for its store, with writeHead held as well. When
 * `finish` fails, the response the app wrote is replaced by a 400 (session
 * deleted meanwhile) or a 500 (sessiond failed).
 */
function holdHeadersUntil(res, finish, onError) {
  const original = { writeHead: res.writeHead, write: res.write, end: res.end };
  let heldHead = null;
  let finishing = null;

  const restore = () => {
    res.writeHead = original.writeHead;
    res.write = original.write;
    res.end = original.end;
  };
  const answer = (status, body) => {
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    res.statusCode = status;
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(body);
  };
  /** Runs `finish` once; resolves to whether the app's response may go out. */
  const finished = () => {
    if (!finishing) {
      const status = heldHead ? heldHead[0] : res.statusCode;
      finishing = Promise.resolve()
        .then(() => finish(status))
        .then(
          () => {
            restore();
            if (heldHead) res.writeHead(...heldHead);
            return true;
          },
          (error) => {
            restore();
            if (error instanceof UpdateError) {
              answer(400, INTERRUPTED_BODY);
            } else {
              onError(error);
              answer(500, 'Internal Server Error');
            }
            return false;
          },
        );
    }
    return finishing;
  };

  res.writeHead = function writeHead(statusCode, reason, headers) {
    if (typeof reason !== 'string') {
      headers = reason;
      reason = undefined;
    }
    // Apply the headers now, as node applies them on top of setHeader's, and
    // hold only the status line: the session's Set-Cookie is then appended
    // to the app's, where replaying writeHead(status, headers) after it
    // would replace it.
    applyHeaders(res, headers);
    heldHead = reason === undefined ? [statusCode] : [statusCode, reason];
    return this;
  };
  res.write = function write(...args) {
    finished().then((goOn) => goOn && res.write(...args));
    return true;
  };
  res.end = function end(...args) {
    finished().then((goOn) => goOn && res.end(...args));
    return this;
  };
}

module.exports = { sessionMiddleware, sessionOf, INTERRUPTED_BODY, DEFAULT_COOKIE_NAME };
