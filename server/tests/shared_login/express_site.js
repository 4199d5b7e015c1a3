// The Express site of the shared-login test (server/tests/shared_login.rs):
// sessiond-client's middleware on Django's `sessionid` cookie. It answers
// GET /session, POST /session/<name> and POST /logout as every site of the
// test does (see django_site.py).
//
// Environment: SESSIOND_NODE_PACKAGE (integrations/node, installed),
// SESSIOND_ADDRESS. Prints `listening on <port>` once it serves on 127.0.0.1.

'use strict';

const path = require('node:path');

const packageDir = process.env.SESSIOND_NODE_PACKAGE;
const express = require(path.join(packageDir, 'node_modules', 'express'));
const { Client, sessionMiddleware } = require(packageDir);

const client = new Client({ addresses: process.env.SESSIOND_ADDRESS });
const app = express();
app.use(express.json({ strict: false }));
app.use(sessionMiddleware({ client }));

app.get('/session', async (req, res) => {
  res.json({ data: Object.fromEntries(await req.session.entries()) });
});

app.post('/session/:name', async (req, res) => {
  await req.session.set(req.params.name, req.body);
  res.json({ ok: true });
});

app.post('/logout', async (req, res) => {
  await req.session.flush();
  res.json({ ok: true });
});

const server = app.listen(0, '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`);
});
