'use strict';

// The JSON text of session members, refusing what would not read back as it
// was written. JSON.stringify alone turns NaN into null, drops functions and
// throws on a BigInt without saying which member held it; a session that
// silently changes a value is worse than a TypeError at `set`.

/**
 * Why `value` cannot be stored faithfully, or null when it can. Called by
 * JSON.stringify's replacer, so toJSON (Date, Buffer, express-session's
 * Cookie) has already run.
 * @param {unknown} value
 * @param {boolean} inArray
 * @returns {string | null}
 */
function refusal(value, inArray) {
  switch (typeof value) {
    case 'bigint':
      return 'a BigInt has no JSON form (store it as a string)';
    case 'number':
      return Number.isFinite(value) ? null : `${value} has no JSON form (it would read back as null)`;
    case 'function':
      return 'a function has no JSON form (it would vanish)';
    case 'symbol':
      return 'a symbol has no JSON form (it would vanish)';
    case 'undefined':
      // An undefined object member is left out and reads back as absent,
      // which is still undefined; in an array it would read back as null.
      return inArray ? 'undefined in an array would read back as null' : null;
    default:
      if (value instanceof Map || value instanceof Set) {
        return `a ${value.constructor.name} would read back as {} (convert it to an object or an array)`;
      }
      return null;
  }
}

/**
 * The JSON text of one session member.
 * @param {string} name the member's name, for the error
 * @param {unknown} value
 * @returns {string}
 * @throws {TypeError} naming the member when the value would not round-trip
 */
function memberText(name, value) {
  const fail = (why, inner) => {
    const where = inner ? ` (at "${inner}")` : '';
    return new TypeError(`sessiond-client: session member "${name}"${where}: ${why}`);
  };
  if (value === undefined) {
    throw fail('undefined cannot be stored (delete the member instead)');
  }
  let text;
  try {
    text = JSON.stringify(value, function check(key, current) {
      const why = refusal(current, Array.isArray(this));
      if (why) throw fail(why, key);
      return current;
    });
  } catch (error) {
    if (error instanceof TypeError && error.message.startsWith('sessiond-client:')) throw error;
    // A circular structure, or a toJSON that threw.
    throw new TypeError(`sessiond-client: session member "${name}" cannot be stored as JSON: ${error.message}`, {
      cause: error,
    });
  }
  if (text === undefined) throw fail('it has no JSON form');
  return text;
}

/**
 * The JSON text of session data: a plain object whose members all pass
 * `memberText`. A member that is undefined is left out, as JSON.stringify
 * leaves it out (express-session's data may hold one).
 * @param {unknown} data
 * @returns {string}
 */
function dataText(data) {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new TypeError('sessiond-client: session data must be a plain object');
  }
  const members = Object.entries(data)
    .filter(([, value]) => value !== undefined)
    .map(([name, value]) => `${JSON.stringify(name)}:${memberText(name, value)}`);
  return `{${members.join(',')}}`;
}

module.exports = { memberText, dataText };
