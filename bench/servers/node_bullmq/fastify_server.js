'use strict';
// Peer: the webhook receiver a Node team would write with Fastify + BullMQ (one process).
// node fastify_server.js --port P --redis-url URL --prefix KEYPREFIX --queue NAME --app-secret S

const Fastify = require('fastify');
const { WEBHOOK_PATH, runPeer } = require('./webhook_queue');

runPeer(async (options, handle) => {
  const app = Fastify({ logger: false });
  // The signature covers the raw bytes: keep them, parse JSON in the handler.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' },
    (request, body, done) => done(null, body));
  app.get('/health', async () => ({ ok: true }));
  app.post(WEBHOOK_PATH, async (request, reply) => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const [status, answer] = await handle(body, request.headers['x-hub-signature-256']);
    return reply.code(status).send(answer);
  });
  await app.listen({ host: '127.0.0.1', port: options.port });
  return () => app.close();
});
