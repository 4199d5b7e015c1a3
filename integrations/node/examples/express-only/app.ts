// A typed Express app with only @types/express: nothing imports express-session,
// so `req.session` is unknown to Express's `Request` and sessionOf(req) reads it.
// Checked by `tsc --noEmit` in the tests, apart from typed.ts (whose
// express-session import would declare `req.session` for the whole program).
import express from 'express';
import { Client, Session, sessionMiddleware, sessionOf } from 'sessiond-client';

const client = new Client({
  addresses: '10.0.0.7:50051',
  tls: { ca: '/etc/sessiond/ca.pem', serverName: 'sessiond.internal' },
});

const app = express();
app.use(sessionMiddleware({ client }));
app.get('/', async (req, res) => {
  const session: Session = sessionOf(req);
  const visits = ((await session.get<number>('visits')) ?? 0) + 1;
  await session.set('visits', visits);
  res.send(`visit ${visits}`);
});
