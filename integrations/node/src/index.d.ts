// Types of sessiond-client (hand-written; the code is plain JavaScript).

import type { IncomingMessage, ServerResponse } from 'node:http';

/** TLS settings: Buffers hold PEM, strings are paths of PEM files. `{}` trusts the bundled public (Mozilla) roots. */
export interface TlsOptions {
  /** The CA that signed sessiond's certificate. */
  ca?: Buffer | string;
  /** A client certificate, for sessiond's --tls-client-ca (with `key`). */
  cert?: Buffer | string;
  /** The client certificate's private key. */
  key?: Buffer | string;
  /**
   * The host name sessiond's certificate names, when the address does not
   * carry it (an IP address, or a name the certificate does not list); also
   * sent as SNI and as the `:authority` of each call.
   */
  serverName?: string;
}

export interface ClientOptions {
  /** `host:port` (host name, IPv4 or `[IPv6]`), or several for failover (tried in order on UNAVAILABLE). */
  addresses: string | string[];
  /** Bearer token, sent as `authorization: Bearer <token>`. */
  token?: string;
  /** TLS; absent means plaintext. */
  tls?: TlsOptions;
  /** Deadline of each call in milliseconds (default 5000). */
  timeoutMs?: number;
  /**
   * What sends the calls: the package's native addon (the default when the
   * install built it) or `@grpc/grpc-js`; default from `SESSIOND_CLIENT_TRANSPORT`.
   */
  transport?: Transport;
}

/** `'native'`: the addon built from `native/` (tonic); `'grpc-js'`: `@grpc/grpc-js`. */
export type Transport = 'native' | 'grpc-js';

export interface Loaded {
  data: Record<string, any>;
  expireDate: Date;
}

export interface Created {
  sessionKey: string;
  expireDate: Date;
}

export interface Saved {
  expireDate: Date;
}

/** One typed method per RPC of `sessiond.v1.SessionService`. Make one per process and share it. */
export class Client {
  constructor(options: ClientOptions);
  readonly addresses: string[];
  readonly timeoutMs: number;
  /** What sends this client's calls. */
  readonly transport: Transport;
  /** The data and expiry of a live session; null when missing or expired. */
  load(sessionKey: string): Promise<Loaded | null>;
  /** Whether a row exists, expired or not. */
  exists(sessionKey: string): Promise<boolean>;
  /** Stores data under a fresh key drawn by the server. */
  create(data: Record<string, unknown>, expireDate?: Date): Promise<Created>;
  /** Writes a whole session: update (NOT_FOUND if gone), or insert with `mustCreate`. */
  save(sessionKey: string, data: Record<string, unknown>, options?: { expireDate?: Date; mustCreate?: boolean }): Promise<Saved>;
  /** Removes `remove`, then sets the members of `set` (on an empty session with `replace`). */
  patch(
    sessionKey: string,
    changes?: { set?: Record<string, unknown>; remove?: string[]; replace?: boolean; expireDate?: Date },
  ): Promise<Saved>;
  /** Deletes a session; resolves to whether a row was removed. */
  delete(sessionKey: string): Promise<boolean>;
  /** Moves a session to a fresh key in one step. */
  cycleKey(sessionKey: string, options?: { data?: Record<string, unknown>; expireDate?: Date }): Promise<Created>;
  /** Removes expired sessions; resolves to how many. */
  clearExpired(): Promise<number>;
  /** Closes the channels. */
  close(): void;
}

/** A sessiond call failed; the message names the RPC and the status, never a key, data or token. */
export class SessiondError extends Error {
  /** The RPC, e.g. 'Load'. */
  readonly rpc: string;
  /** The numeric gRPC status code. */
  readonly code: number;
  /** The status name, e.g. 'NOT_FOUND'. */
  readonly codeName: string;
  /** The address the call went to, when known. */
  readonly address?: string;
}

/** UNAVAILABLE or DEADLINE_EXCEEDED: sessiond was not reached or did not answer in time. */
export class SessiondUnavailable extends SessiondError {}

/** A save found the session deleted meanwhile (Django's UpdateError); it is not brought back. */
export class UpdateError extends SessiondError {}

export interface SessionOptions {
  /** Seconds a session lives without its own expiry (default 1209600). */
  cookieAge?: number;
  /** Whether sessions without their own expiry end with the browser (default false). */
  expireAtBrowserClose?: boolean;
}

/** A web session used like Django's `request.session`; loads lazily, saves a Patch of what changed. */
export class Session {
  constructor(client: Client, sessionKey?: string | null, options?: SessionOptions);
  readonly sessionKey: string | null;
  readonly accessed: boolean;
  readonly modified: boolean;
  /** A save found the session deleted meanwhile. */
  readonly interrupted: boolean;
  getSessionCookieAge(): number;
  isEmpty(): boolean;
  get<T = any>(key: string): Promise<T | undefined>;
  /**
   * Stores a JSON value; a Date is stored as its ISO 8601 string. Rejects with a
   * TypeError naming the member what would not read back as written: BigInt,
   * NaN / Infinity, functions, symbols, undefined (at the top or in an array),
   * Map, Set, circular structures.
   */
  set(key: string, value: unknown): Promise<void>;
  /** Stores every member of `values`, with `set`'s checks, all of them before any is stored. */
  update(values: Record<string, unknown>): Promise<void>;
  /** Removes `key`; resolves to its value, or undefined if it was absent. */
  delete<T = any>(key: string): Promise<T | undefined>;
  has(key: string): Promise<boolean>;
  keys(): Promise<string[]>;
  values(): Promise<any[]>;
  entries(): Promise<Array<[string, any]>>;
  /** Empties the session without loading it; the key stays. */
  clear(): void;
  /** Deletes the session and starts an empty one (logout). */
  flush(): Promise<void>;
  /** Moves the data to a fresh key in one call (login). */
  cycleKey(): Promise<void>;
  /** Seconds of inactivity, a Date, 0 for browser close, null for the default. */
  setExpiry(value: number | Date | null): Promise<void>;
  getExpiryAge(): Promise<number>;
  getExpiryDate(): Promise<Date>;
  getExpireAtBrowserClose(): Promise<boolean>;
  /** Stores the session under a fresh key with the data in hand. */
  create(): Promise<void>;
  /** Creates, or sends a Patch of the members changed since the load; UpdateError if deleted meanwhile. */
  save(): Promise<void>;
}

export interface SessionMiddlewareOptions {
  client: Client;
  /** Default 'sessionid' (Django's SESSION_COOKIE_NAME). */
  cookieName?: string;
  /** Seconds, default 1209600 (SESSION_COOKIE_AGE). */
  cookieAge?: number;
  domain?: string;
  /** Default '/'. */
  path?: string;
  /** Default false. */
  secure?: boolean;
  /** Default true. */
  httpOnly?: boolean;
  /** Default 'Lax'; false leaves the attribute out. */
  sameSite?: 'Lax' | 'Strict' | 'None' | 'lax' | 'strict' | 'none' | false;
  /** Default false. */
  expireAtBrowserClose?: boolean;
  /** Default false. */
  saveEveryRequest?: boolean;
  /** Told of sessiond errors that turned a response into a 500 (default: console.error of the message). */
  onError?: (error: Error, req: IncomingMessage) => void;
}

/**
 * Express middleware: `req.session` is a Session on Django's cookie. Express's
 * own `Request` type does not know it: read it with `sessionOf(req)`.
 */
export function sessionMiddleware(
  options: SessionMiddlewareOptions,
): (req: IncomingMessage, res: ServerResponse, next: (error?: any) => void) => void;

/**
 * The Session that `sessionMiddleware` put on `req.session`, typed; throws a
 * TypeError when the middleware is not mounted. Takes any request object, so
 * it compiles with or without express-session's types.
 */
export function sessionOf(req: object): Session;

/** A fresh 32-character [a-z0-9] key (express-session's `genid`). */
export function genid(): string;
/** Whether a value may be a sessiond key (8 to 40 characters of [a-z0-9]). */
export function isValidKey(value: unknown): value is string;

export const DEFAULT_TIMEOUT_MS: number;
export const DEFAULT_COOKIE_AGE: number;
export const DEFAULT_COOKIE_NAME: string;
export const INTERRUPTED_BODY: string;
