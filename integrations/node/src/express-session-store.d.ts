// Types of sessiond-client/express-session.

import type { Store, SessionData } from 'express-session';
import type { Client } from './index';

/** An express-session store on sessiond. all(), length() and clear() are not supported. */
export class SessiondStore extends Store {
  constructor(options: { client: Client });
  readonly client: Client;
  get(sid: string, callback: (error: any, session?: SessionData | null) => void): void;
  set(sid: string, session: SessionData, callback?: (error?: any) => void): void;
  destroy(sid: string, callback?: (error?: any) => void): void;
  touch(sid: string, session: SessionData, callback?: (error?: any) => void): void;
}

/** A fresh 32-character [a-z0-9] key, for express-session's `genid`. */
export function genid(): string;
