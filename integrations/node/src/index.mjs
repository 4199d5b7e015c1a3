// The ES module face of sessiond-client; the code is CommonJS, so both
// module systems share one copy of every class (instanceof works across them).
import sessiond from './index.js';

export const {
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
} = sessiond;
export default sessiond;
