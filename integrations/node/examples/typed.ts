// A typed Express app on sessiond-client; checked by `tsc --noEmit` in the tests.
import express from 'express';
import session from 'express-session';
import { Client, Session, SessiondError, SessiondUnavailable, sessionMiddleware, sessionOf } from 'sessiond-client';
import { SessiondStore, genid } from 'sessiond-client/express-session';

const client = new Client({ addresses: ['127.0.0.1:50051', '127.0.0.1:50052'], token: 'secret-token', timeoutMs: 2000 });

const app = express();
app.use(sessionMiddleware({ client, cookieName: 'sessionid', sameSite: 'Lax', secure: true }));
app.post('/login', async (req, res) => {
  const current: Session = sessionOf(req);
  await current.cycleKey();
  await current.set('_auth_user_id', '42');
  const user: string | undefined = await current.get<string>('_auth_user_id');
  await current.setExpiry(new Date(Date.now() + 3600_000));
  res.send(user ?? 'nobody');
});

async function lowLevel(): Promise<void> {
  try {
    const { sessionKey, expireDate } = await client.create({ cart: [] });
    const loaded = await client.load(sessionKey);
    await client.patch(sessionKey, { set: { theme: 'dark' }, remove: ['cart'] });
    console.log(expireDate.toISOString(), loaded?.data);
  } catch (error) {
    if (error instanceof SessiondUnavailable) console.log('down:', error.codeName);
    else if (error instanceof SessiondError) console.log(error.rpc, error.code);
  }
}

const legacy = express();
legacy.use(session({ store: new SessiondStore({ client }), genid, secret: 'x', resave: false, saveUninitialized: false }));

void lowLevel;
