'use strict';

/**
 * The package's native transport: `native/sessiond_native.node`, a gRPC
 * channel on tonic (the HTTP/2 stack of sessiond's Rust client), built from
 * `native/` by the install script when cargo is there. `Client` sends its
 * calls through it when it is built, else through @grpc/grpc-js, with the
 * same behaviour; `SESSIOND_CLIENT_TRANSPORT=grpc-js` (or the `transport`
 * option) chooses grpc-js even then.
 *
 * The addon carries serialized messages only: requests are encoded and
 * answers decoded here with the serializers @grpc/proto-loader made from
 * the proto, the same as grpc-js does, so both transports put the same
 * bytes on the wire.
 */

const path = require('node:path');

/** Where scripts/build-native.js puts the built addon. */
const ADDON_PATH = path.join(__dirname, '..', 'native', 'sessiond_native.node');

let addon = null;
/** Why the addon could not be loaded, for `transport: 'native'`'s error. */
let loadError = null;
try {
  addon = require(ADDON_PATH);
} catch (error) {
  loadError = error;
}

/** The transports a client can use. */
const TRANSPORTS = ['native', 'grpc-js'];

/**
 * The transport for a new client: `requested` (the `transport` option),
 * else $SESSIOND_CLIENT_TRANSPORT, else the native one when it is built.
 * @param {string | undefined} requested
 * @returns {'native' | 'grpc-js'}
 */
function chooseTransport(requested) {
  const setting = requested ?? (process.env.SESSIOND_CLIENT_TRANSPORT || undefined);
  const name = requested !== undefined ? '`transport`' : 'SESSIOND_CLIENT_TRANSPORT';
  if (setting === undefined) return addon ? 'native' : 'grpc-js';
  if (!TRANSPORTS.includes(setting)) {
    throw new TypeError(`sessiond-client: ${name} must be "native" or "grpc-js", not ${JSON.stringify(setting)}`);
  }
  if (setting === 'native' && !addon) {
    throw new Error(
      `sessiond-client: ${name} asks for the native transport, which is not built (${ADDON_PATH}: ` +
        `${loadError?.code ?? loadError?.message}); run \`npm run build-native\` in the package (needs cargo)`,
    );
  }
  return setting;
}

/**
 * A native channel to `address`.
 * @param {string} address
 * @param {{ tls: boolean, ca: Buffer | null, cert: Buffer | null, key: Buffer | null,
 *   serverName?: string, token?: string, connectTimeoutMs: number,
 *   keepaliveTimeMs: number, keepaliveTimeoutMs: number }} options
 */
function openChannel(address, options) {
  return new addon.Channel(address, {
    ...options,
    ca: options.ca ?? undefined,
    cert: options.cert ?? undefined,
    key: options.key ?? undefined,
  });
}

/**
 * Sends `request` for the method `definition` (from the service definition
 * proto-loader made) and resolves to the decoded answer; rejects with
 * a `NativeStatus` (`code`, `details`), as grpc-js's errors carry them.
 */
async function call(channel, definition, request, timeoutMs) {
  const answer = await channel.call(definition.path, definition.requestSerialize(request), timeoutMs);
  if (answer.code !== 0) throw new NativeStatus(answer.code, answer.details);
  return definition.responseDeserialize(answer.message);
}

/** A failed call's status, read as grpc-js's errors are (`code`, `details`). */
class NativeStatus extends Error {
  constructor(code, details) {
    super(details);
    this.code = code;
    this.details = details;
  }
}

module.exports = { chooseTransport, openChannel, call, TRANSPORTS };
