'use strict';

const grpc = require('@grpc/grpc-js');

/** gRPC status names by number, e.g. 5 -> 'NOT_FOUND'. */
const STATUS_NAMES = Object.fromEntries(
  Object.entries(grpc.status).map(([name, code]) => [code, name]),
);

/**
 * A sessiond call failed. The message names the RPC and the status, and
 * never carries a session key, session data or the token.
 */
class SessiondError extends Error {
  /**
   * @param {string} rpc the RPC that failed, e.g. 'Load'
   * @param {number} code the numeric gRPC status code
   * @param {string} [detail] what the server or the transport said
   * @param {{ address?: string, cause?: unknown }} [extra]
   */
  constructor(rpc, code, detail, extra = {}) {
    const codeName = STATUS_NAMES[code] ?? `UNKNOWN_STATUS_${code}`;
    const at = extra.address ? ` at ${extra.address}` : '';
    const said = detail ? `: ${detail}` : '';
    super(`sessiond ${rpc}${at} failed with ${codeName}${said}`, { cause: extra.cause });
    this.name = new.target.name;
    /** The RPC that failed, e.g. 'Load'. */
    this.rpc = rpc;
    /** The numeric gRPC status code. */
    this.code = code;
    /** The status name, e.g. 'NOT_FOUND'. */
    this.codeName = codeName;
    /** The server address the call went to, when known. */
    this.address = extra.address;
  }
}

/**
 * sessiond could not be reached or did not answer in time (UNAVAILABLE or
 * DEADLINE_EXCEEDED): safe to retry later.
 */
class SessiondUnavailable extends SessiondError {}

/**
 * A save found the session deleted meanwhile (NOT_FOUND): typically the user
 * logged out in another tab. The session is never brought back; Django
 * raises `UpdateError` here and its middleware answers 400.
 */
class UpdateError extends SessiondError {}

/**
 * The error for a failed gRPC call, with the transport's details only when
 * they cannot echo the request (they name the RPC and the status).
 * @param {string} rpc
 * @param {{ code: number, details?: string }} status
 * @param {string} address
 * @returns {SessiondError}
 */
function errorFromStatus(rpc, status, address) {
  const code = status.code;
  const Kind =
    code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED
      ? SessiondUnavailable
      : SessiondError;
  // The server's messages are short and safe by design (no keys, no data);
  // the transport's name the address or the connection error.
  return new Kind(rpc, code, status.details, { address });
}

module.exports = { SessiondError, SessiondUnavailable, UpdateError, errorFromStatus, STATUS_NAMES };
