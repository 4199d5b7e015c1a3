'use strict';

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const { errorFromStatus, SessiondError } = require('./errors');
const { dataText } = require('./member-json');
const native = require('./native');

/** A call that takes longer fails with DEADLINE_EXCEEDED; five seconds, as the Rust client. */
const DEFAULT_TIMEOUT_MS = 5000;
/**
 * Idle time after which the client sends an HTTP/2 PING. A replica that died
 * without closing its connections (power lost, a killed VM, a firewall that
 * forgets the flow) sends no FIN or RST, and calls would otherwise go into the
 * dead connection until each one timed out. 20 s is a third of sessiond's own
 * ping interval (`--keepalive`, 60 s), so the client notices first. sessiond
 * (hyper's HTTP/2) answers pings at any rate and never closes a connection for
 * them. The Python client uses the same values.
 */
const KEEPALIVE_TIME_MS = 20000;
/** How long a PING may go unanswered before the connection is dropped and the next call reconnects or fails over. */
const KEEPALIVE_TIMEOUT_MS = 5000;
/**
 * How long the native transport gives one connection attempt: ample on the
 * loopback or private network sessiond belongs on, short enough that a
 * replica whose packets are dropped is given up for the next address.
 */
const CONNECT_TIMEOUT_MS = 1000;
/** Where the proto lives relative to its include directory. */
const PROTO_FILE = path.join('sessiond', 'v1', 'sessiond.proto');

/**
 * The directory holding `sessiond/v1/sessiond.proto`: the package's own copy
 * (put in the tarball by scripts/copy-proto.js at `npm pack`), else
 * $SESSIOND_PROTO_DIR, else the checkout's `proto/` two levels up.
 * @returns {string}
 */
function protoDir() {
  const candidates = [
    path.join(__dirname, '..', 'proto'),
    process.env.SESSIOND_PROTO_DIR,
    path.join(__dirname, '..', '..', '..', 'proto'),
  ].filter(Boolean);
  const found = candidates.find((dir) => fs.existsSync(path.join(dir, PROTO_FILE)));
  if (!found) {
    throw new Error(
      `sessiond-client: cannot find ${PROTO_FILE} in ${candidates.join(', ')}; ` +
        'install the package from its tarball (it carries the proto) or set SESSIOND_PROTO_DIR',
    );
  }
  return found;
}

let serviceConstructor;

/** The generated service client class, parsed from the proto once per process. */
function sessionServiceClient() {
  if (!serviceConstructor) {
    const definition = protoLoader.loadSync(PROTO_FILE, {
      includeDirs: [protoDir()],
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    serviceConstructor = grpc.loadPackageDefinition(definition).sessiond.v1.SessionService;
  }
  return serviceConstructor;
}

/**
 * @param {Date | undefined | null} date
 * @returns {{ seconds: number, nanos: number } | undefined}
 */
function toTimestamp(date) {
  if (date === undefined || date === null) return undefined;
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new TypeError('sessiond-client: an expiry must be a valid Date');
  }
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1e6 };
}

/**
 * @param {{ seconds: number | string, nanos: number } | null | undefined} timestamp
 * @returns {Date | null}
 */
function fromTimestamp(timestamp) {
  if (!timestamp) return null;
  return new Date(Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1e6));
}

/** A host name: dot-separated labels of letters, digits, `-` and `_` (container names have them). */
const HOST_NAME = /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*$/;

/**
 * Whether `address` is `host:port`: a host name, an IPv4 address or an
 * `[IPv6]` address, and a port from 1 to 65535. gRPC would take `localhost`
 * as port 443 and `http://host:port` as a host name, and fail only at the
 * first call; both are mistakes worth naming at start-up.
 * @param {unknown} address
 * @returns {boolean}
 */
function isHostPort(address) {
  if (typeof address !== 'string') return false;
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  if (!match) return false;
  const [, ipv6, host, port] = match;
  if (!(Number(port) >= 1 && Number(port) <= 65535)) return false;
  if (ipv6 !== undefined) return net.isIPv6(ipv6);
  // All digits and dots is meant as an IPv4 address: 999.1.1.1 is a typo, not a name.
  if (/^[\d.]+$/.test(host)) return net.isIPv4(host);
  return HOST_NAME.test(host);
}

/**
 * Reads a TLS setting: a Buffer holds PEM itself, a string names a PEM file.
 * @param {Buffer | string | undefined} value
 * @param {string} name the option, e.g. 'tls.ca', for the error
 * @returns {Buffer | null}
 */
function pem(value, name) {
  if (value === undefined || value === null) return null;
  if (Buffer.isBuffer(value)) return value;
  if (typeof value !== 'string') {
    throw new TypeError(`sessiond-client: \`${name}\` must be a Buffer (PEM) or the path of a PEM file`);
  }
  try {
    return fs.readFileSync(value);
  } catch (error) {
    const failure = new Error(`sessiond-client: cannot read \`${name}\` (${value}): ${error.message}`, { cause: error });
    failure.code = error.code;
    throw failure;
  }
}

/**
 * The TLS settings' PEM, read once for either transport: null for plaintext.
 * @param {object | undefined} tls
 * @returns {{ ca: Buffer | null, cert: Buffer | null, key: Buffer | null } | null}
 */
function tlsFiles(tls) {
  if (!tls) return null;
  const cert = pem(tls.cert, 'tls.cert');
  const key = pem(tls.key, 'tls.key');
  if (Boolean(cert) !== Boolean(key)) {
    throw new TypeError('sessiond-client: tls.cert and tls.key go together (a client certificate and its key)');
  }
  return { ca: pem(tls.ca, 'tls.ca'), cert, key };
}

/**
 * @param {{ ca: Buffer | null, cert: Buffer | null, key: Buffer | null } | null} files
 * @returns {grpc.ChannelCredentials}
 */
function channelCredentials(files) {
  if (!files) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(files.ca, files.key, files.cert);
}

/**
 * Channel options: keepalive, and for `tls.serverName` the name checked
 * against the server's certificate and sent as SNI and `:authority`, instead
 * of the address's host.
 * @param {object | undefined} tls
 * @returns {object}
 */
function channelOptions(tls) {
  // grpc-js keeps channelz statistics of every call unless told not to;
  // nothing here reads them, and they cost 15-20 µs of CPU a call
  // (bench/clients/run.py).
  const options = {
    'grpc.enable_channelz': 0,
    'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
    // A web app's connection to sessiond sits idle between requests, which is
    // when a dead peer goes unnoticed: ping then too.
    'grpc.keepalive_permit_without_calls': 1,
  };
  const serverName = tls ? tls.serverName : undefined;
  if (serverName === undefined || serverName === null) return options;
  if (typeof serverName !== 'string' || !HOST_NAME.test(serverName)) {
    throw new TypeError('sessiond-client: `tls.serverName` must be a host name, the one sessiond\'s certificate names');
  }
  return { ...options, 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName };
}

/** Parses the server's data text; anything but an object reads as empty. */
function fromDataText(text) {
  if (!text) return {};
  const data = JSON.parse(text);
  return data !== null && typeof data === 'object' && !Array.isArray(data) ? data : {};
}

/**
 * A connection to sessiond: one typed method per RPC of
 * `sessiond.v1.SessionService`. Make one per process and share it; it keeps
 * one HTTP/2 channel per address.
 *
 * With several addresses, calls go to the first one that answers; a call
 * failing with UNAVAILABLE is tried once on each next address, and the
 * address that answered is tried first from then on. Every attempt has its
 * own deadline of `timeoutMs`.
 */
class Client {
  /**
   * @param {object} options
   * @param {string | string[]} options.addresses `host:port`, or several for failover
   * @param {string} [options.token] a bearer token (`--token` / `--tokens-file` on the server)
   * @param {{ ca?: Buffer | string, cert?: Buffer | string, key?: Buffer | string, serverName?: string }} [options.tls]
   *   TLS: Buffers hold PEM, strings are paths of PEM files; `{}` trusts the bundled public roots;
   *   `serverName` is the name to expect in sessiond's certificate when the address does not carry it
   * @param {number} [options.timeoutMs] deadline of each call (default 5000)
   * @param {'native' | 'grpc-js'} [options.transport] what sends the calls: the native
   *   addon (the default when it is built) or @grpc/grpc-js; default from $SESSIOND_CLIENT_TRANSPORT
   */
  constructor(options) {
    const { addresses, token, tls, timeoutMs = DEFAULT_TIMEOUT_MS, transport } = options ?? {};
    const list = typeof addresses === 'string' ? [addresses] : addresses;
    if (!Array.isArray(list) || list.length === 0) {
      throw new TypeError('sessiond-client: `addresses` must be a non-empty string or array of "host:port"');
    }
    const bad = list.find((address) => !isHostPort(address));
    if (bad !== undefined) {
      throw new TypeError(
        `sessiond-client: \`addresses\` holds ${JSON.stringify(bad) ?? String(bad)}, which is not "host:port" ` +
          '(a host name, an IPv4 address or [IPv6], and a port from 1 to 65535), e.g. "127.0.0.1:50051"',
      );
    }
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      throw new TypeError('sessiond-client: `timeoutMs` must be a positive number of milliseconds');
    }
    if (token !== undefined && token !== null) {
      if (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token)) {
        throw new TypeError('sessiond-client: `token` must be printable ASCII without spaces');
      }
    }
    const Service = sessionServiceClient();
    const files = tlsFiles(tls);
    const settings = channelOptions(tls);
    /** @type {string[]} */
    this.addresses = [...list];
    this.timeoutMs = timeoutMs;
    /** What sends the calls: 'native' (the package's addon) or 'grpc-js'. */
    this.transport = native.chooseTransport(transport);
    this._service = Service.service;
    this._preferred = 0;
    // Not enumerable: `console.log(client)` must not print the token.
    Object.defineProperty(this, '_metadata', { value: new grpc.Metadata() });
    if (token !== undefined && token !== null) this._metadata.set('authorization', `Bearer ${token}`);
    if (this.transport === 'native') {
      const options = {
        tls: Boolean(files),
        ca: files?.ca ?? null,
        cert: files?.cert ?? null,
        key: files?.key ?? null,
        serverName: tls?.serverName ?? undefined,
        token: token ?? undefined,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        keepaliveTimeMs: KEEPALIVE_TIME_MS,
        keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS,
      };
      this._channels = list.map((address) => native.openChannel(address, options));
      this._stubs = [];
    } else {
      this._channels = null;
      const credentials = channelCredentials(files);
      this._stubs = list.map((address) => new Service(address, credentials, settings));
    }
  }

  /**
   * Makes one call, failing over to the next address on UNAVAILABLE.
   * @param {string} rpc the RPC name, e.g. 'Load'
   * @param {object} request
   * @returns {Promise<any>}
   */
  async _call(rpc, request) {
    const count = this.addresses.length;
    let lastError;
    for (let attempt = 0; attempt < count; attempt += 1) {
      const index = (this._preferred + attempt) % count;
      try {
        const response = await this._callOne(index, rpc, request);
        this._preferred = index;
        return response;
      } catch (error) {
        if (!(error instanceof SessiondError) || error.code !== grpc.status.UNAVAILABLE) throw error;
        lastError = error;
      }
    }
    throw lastError;
  }

  _callOne(index, rpc, request) {
    if (this._channels) {
      return native
        .call(this._channels[index], this._service[rpc], request, this.timeoutMs)
        .catch((failure) => {
          // A status the addon answered with; anything else (a message
          // the serializers refused) is thrown as it is.
          if (typeof failure?.code !== 'number') throw failure;
          throw errorFromStatus(rpc, failure, this.addresses[index]);
        });
    }
    const stub = this._stubs[index];
    const method = rpc[0].toLowerCase() + rpc.slice(1);
    const deadline = new Date(Date.now() + this.timeoutMs);
    return new Promise((resolve, reject) => {
      stub[method](request, this._metadata, { deadline }, (error, response) => {
        if (error) reject(errorFromStatus(rpc, error, this.addresses[index]));
        else resolve(response);
      });
    });
  }

  /**
   * The data and expiry of a live session, or `null` if it is missing or
   * expired (not an error).
   * @param {string} sessionKey
   * @returns {Promise<{ data: object, expireDate: Date } | null>}
   */
  async load(sessionKey) {
    const response = await this._call('Load', { session_key: sessionKey });
    if (!response.found) return null;
    return { data: fromDataText(response.data), expireDate: fromTimestamp(response.expire_date) };
  }

  /**
   * Whether a session row exists, expired or not.
   * @param {string} sessionKey
   * @returns {Promise<boolean>}
   */
  async exists(sessionKey) {
    const response = await this._call('Exists', { session_key: sessionKey });
    return response.exists;
  }

  /**
   * Stores `data` under a fresh key drawn by the server.
   * @param {object} data
   * @param {Date} [expireDate] default: now plus the server's session age
   * @returns {Promise<{ sessionKey: string, expireDate: Date }>}
   */
  async create(data, expireDate) {
    const response = await this._call('Create', {
      data: dataText(data),
      expire_date: toTimestamp(expireDate),
    });
    return { sessionKey: response.session_key, expireDate: fromTimestamp(response.expire_date) };
  }

  /**
   * Writes a whole session: updates it, or with `mustCreate` inserts it
   * (ALREADY_EXISTS if taken). An update of a deleted session fails with
   * NOT_FOUND and does not bring it back.
   * @param {string} sessionKey
   * @param {object} data
   * @param {{ expireDate?: Date, mustCreate?: boolean }} [options]
   * @returns {Promise<{ expireDate: Date }>}
   */
  async save(sessionKey, data, options = {}) {
    const response = await this._call('Save', {
      session_key: sessionKey,
      data: dataText(data),
      expire_date: toTimestamp(options.expireDate),
      must_create: Boolean(options.mustCreate),
    });
    return { expireDate: fromTimestamp(response.expire_date) };
  }

  /**
   * Changes some members of a session in one step on the server: removes
   * `remove`, then sets the members of `set` (on an empty session when
   * `replace`). NOT_FOUND if the session was deleted meanwhile.
   * @param {string} sessionKey
   * @param {{ set?: object, remove?: string[], replace?: boolean, expireDate?: Date }} changes
   * @returns {Promise<{ expireDate: Date }>}
   */
  async patch(sessionKey, changes = {}) {
    const set = changes.set ?? {};
    const response = await this._call('Patch', {
      session_key: sessionKey,
      set: Object.keys(set).length === 0 ? '' : dataText(set),
      remove: changes.remove ?? [],
      replace: Boolean(changes.replace),
      expire_date: toTimestamp(changes.expireDate),
    });
    return { expireDate: fromTimestamp(response.expire_date) };
  }

  /**
   * Deletes a session; deleting a missing one is not an error.
   * @param {string} sessionKey
   * @returns {Promise<boolean>} whether a row was removed
   */
  async delete(sessionKey) {
    const response = await this._call('Delete', { session_key: sessionKey });
    return response.deleted;
  }

  /**
   * Moves a session to a fresh key in one step; the old key is gone. Without
   * `data` the stored data moves (NOT_FOUND if there is no live session).
   * @param {string} sessionKey
   * @param {{ data?: object, expireDate?: Date }} [options]
   * @returns {Promise<{ sessionKey: string, expireDate: Date }>}
   */
  async cycleKey(sessionKey, options = {}) {
    const request = { session_key: sessionKey, expire_date: toTimestamp(options.expireDate) };
    if (options.data !== undefined) request.data = dataText(options.data);
    const response = await this._call('CycleKey', request);
    return { sessionKey: response.session_key, expireDate: fromTimestamp(response.expire_date) };
  }

  /**
   * Removes every expired session.
   * @returns {Promise<number>} how many were removed
   */
  async clearExpired() {
    const response = await this._call('ClearExpired', {});
    return Number(response.removed);
  }

  /** Closes the channels; calls made afterwards fail. */
  close() {
    for (const stub of this._stubs) stub.close();
    for (const channel of this._channels ?? []) channel.close();
  }
}

module.exports = { Client, DEFAULT_TIMEOUT_MS };
