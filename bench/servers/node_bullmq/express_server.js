'use strict';
// Peer: the webhook receiver a Node team would write with Express + BullMQ (one process).
// node express_server.js --port P --redis-url URL --prefix KEYPREFIX --queue NAME --app-secret S

const express = require('express');
const { WEBHOOK_PATH, runPeer } = require('./webhook_queue');

runPeer(async (options, handle) => {
  const app = express();
  app.get('/health', (request, response) => response.json({ ok: true }));
  // The signature covers the raw bytes: express.raw keeps them, JSON is parsed in the handler.
  app.post(WEBHOOK_PATH, express.raw({ type: 'application/json' }), async (request, response) => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const [status, answer] = await handle(body, request.get('x-hub-signature-256'));
    response.status(status).json(answer);
  });
  const server = await new Promise((resolve, reject) => {
    const listening = app.listen(options.port, '127.0.0.1', (error) =>
      error ? reject(error) : resolve(listening));
  });
  return () => new Promise((resolve) => server.close(() => resolve()));
});
