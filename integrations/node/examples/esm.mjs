// Loads the package as an ES module, the way an app would.
import { Client, Session, sessionMiddleware, SessiondError } from 'sessiond-client';
import { SessiondStore } from 'sessiond-client/express-session';

const ok = [Client, Session, sessionMiddleware, SessiondError, SessiondStore].every((f) => typeof f === 'function');
console.log(ok ? 'ok' : 'missing exports');
