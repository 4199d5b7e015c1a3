'use strict';

/**
 * Session expiry as Django stores and reads it: the reserved key
 * `_session_expiry` holds a number of seconds of inactivity (`0` meaning
 * "when the browser closes") or an absolute time as an ISO 8601 string in
 * Python's `datetime.isoformat()` form.
 */

const EXPIRY_KEY = '_session_expiry';

/** Python's isoformat of a UTC time: microseconds only when there are some. */
function isoformat(date) {
  const text = date.toISOString(); // 2026-01-01T01:00:00.500Z
  const [whole, fraction] = text.slice(0, -1).split('.');
  const micros = fraction && fraction !== '000' ? `.${fraction}000` : '';
  return `${whole}${micros}+00:00`;
}

const ISO_PATTERN =
  /^(-?\d{4,6})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|([+-])(\d{2}):?(\d{2})(?::(\d{2}))?)?$/;

/**
 * Parses what `datetime.isoformat()` writes (with or without an offset; a
 * time without one is UTC, as Django's USE_TZ=False times would be read by
 * sessiond); `null` for anything else.
 * @param {string} text
 * @returns {Date | null}
 */
function parseIsoformat(text) {
  const m = ISO_PATTERN.exec(text);
  if (!m) return null;
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', zone, sign, oh, om, os] = m;
  const ms = Number((frac + '000').slice(0, 3));
  let at = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms);
  if (zone && zone !== 'Z') {
    const offset = (Number(oh) * 3600 + Number(om) * 60 + Number(os ?? 0)) * 1000;
    at -= sign === '-' ? -offset : offset;
  }
  const date = new Date(at);
  return Number.isNaN(date.getTime()) ? null : date;
}

/**
 * The value to store for `setExpiry(value)`, or `undefined` to remove the key.
 * @param {number | Date | null | undefined} value
 * @returns {number | string | undefined}
 */
function toStored(value) {
  if (value === null || value === undefined) return undefined;
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new TypeError('sessiond-client: setExpiry got an invalid Date');
    return isoformat(value);
  }
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  throw new TypeError('sessiond-client: setExpiry takes whole seconds, a Date, 0 (browser close) or null (default)');
}

/**
 * The session's own expiry date from a stored value, or `null` when it has
 * none (absent, 0, or a value Django could not have written).
 * @param {unknown} stored
 * @param {Date} modification
 * @returns {Date | null}
 */
function ownDate(stored, modification) {
  if (typeof stored === 'number' && Number.isFinite(stored) && stored !== 0) {
    const date = new Date(modification.getTime() + Math.floor(stored) * 1000);
    return Number.isNaN(date.getTime()) ? null : date;
  }
  if (typeof stored === 'string') return parseIsoformat(stored);
  return null;
}

/**
 * Seconds from `modification` until expiry (Django's `get_expiry_age`): the
 * session's own, else `cookieAge`; floored, negative once passed.
 */
function expiryAge(stored, modification, cookieAge) {
  const at = ownDate(stored, modification);
  if (!at) return cookieAge;
  return Math.floor((at.getTime() - modification.getTime()) / 1000);
}

/** When the session expires (Django's `get_expiry_date`). */
function expiryDate(stored, modification, cookieAge) {
  return ownDate(stored, modification) ?? new Date(modification.getTime() + cookieAge * 1000);
}

/** Whether the cookie ends with the browser session (Django's `get_expire_at_browser_close`). */
function expireAtBrowserClose(stored, now, defaultSetting) {
  if (stored === 0) return true;
  if (ownDate(stored, now)) return false;
  return defaultSetting;
}

module.exports = {
  EXPIRY_KEY,
  isoformat,
  parseIsoformat,
  toStored,
  expiryAge,
  expiryDate,
  expireAtBrowserClose,
};
