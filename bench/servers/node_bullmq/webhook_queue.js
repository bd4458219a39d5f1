'use strict';
// What both Node peers do with a WhatsApp webhook, the way a Node team would write it:
// check Meta's X-Hub-Signature-256 (HMAC-SHA256 of the raw body, constant-time compare),
// parse the JSON, check the minimum shape, and add one BullMQ job per text message with the
// wamid as the job id (BullMQ ignores an add whose job id exists: the dedupe).
// Only the HTTP framework differs between fastify_server.js and express_server.js.

const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const { Queue } = require('bullmq');

const WEBHOOK_PATH = '/webhooks/whatsapp';
const JOB_NAME = 'handle_incoming_message';

// --port P --redis-url URL --prefix KEYPREFIX --queue NAME --app-secret S
function commandLine() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      'redis-url': { type: 'string' },
      prefix: { type: 'string' },
      queue: { type: 'string' },
      'app-secret': { type: 'string' },
    },
  });
  for (const name of ['port', 'redis-url', 'prefix', 'queue', 'app-secret']) {
    if (!values[name]) throw new Error(`--${name} is required`);
  }
  return {
    port: Number(values.port),
    redisUrl: values['redis-url'],
    prefix: values.prefix,
    queue: values.queue,
    appSecret: values['app-secret'],
  };
}

// ioredis connection options from redis://[user:password@]host:port/db
function redisConnection(redisUrl) {
  const url = new URL(redisUrl);
  return {
    host: url.hostname || '127.0.0.1',
    port: Number(url.port || 6379),
    db: Number(url.pathname.replace('/', '') || 0),
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
  };
}

function openQueue(options) {
  return new Queue(options.queue, {
    connection: redisConnection(options.redisUrl),
    prefix: options.prefix,
  });
}

function signatureMatches(rawBody, header, appSecret) {
  const expected = Buffer.from(
    'sha256=' + crypto.createHmac('sha256', appSecret).update(rawBody).digest('hex'));
  const given = Buffer.from(typeof header === 'string' ? header : '');
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

const isString = (value) => typeof value === 'string';

// The text messages of a delivery, or null when the body lacks the minimum shape
// (entry[].changes[].value.messages[] with string id, from and type; text.body a string).
function textMessages(payload) {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return null;
  const texts = [];
  for (const entry of payload.entry ?? []) {
    if (entry === null || typeof entry !== 'object') return null;
    for (const change of entry.changes ?? []) {
      if (change === null || typeof change !== 'object') return null;
      const messages = change.value?.messages ?? [];
      if (!Array.isArray(messages)) return null;
      for (const message of messages) {
        if (message === null || typeof message !== 'object') return null;
        if (!isString(message.id) || !isString(message.from) || !isString(message.type)) {
          return null;
        }
        if (message.text !== undefined && !isString(message.text?.body)) return null;
        if (message.type === 'text' && message.text !== undefined) texts.push(message);
      }
    }
  }
  return Array.isArray(payload.entry ?? []) ? texts : null;
}

// [status, body] for one delivery; 200 only once every job is in Redis.
async function receiveWebhook(queue, appSecret, rawBody, signatureHeader) {
  if (!signatureMatches(rawBody, signatureHeader, appSecret)) {
    return [401, { ok: false, error: 'invalid signature' }];
  }
  let payload;
  try {
    payload = JSON.parse(rawBody);
  } catch {
    return [400, { ok: false, error: 'malformed' }];
  }
  let messages;
  try {
    messages = textMessages(payload);
  } catch {
    messages = null; // e.g. entry or changes not iterable
  }
  if (messages === null) return [400, { ok: false, error: 'malformed' }];
  for (const message of messages) {
    await queue.add(JOB_NAME, message, { jobId: message.id });
  }
  return [200, { ok: true }];
}

// Run one peer: `listen(options, handle)` starts the framework's server on options.port, with
// `handle(rawBody, signatureHeader)` -> Promise<[status, body]> as its webhook route, and
// resolves to a function closing that server. The queue is closed after the server on
// SIGTERM / SIGINT.
function runPeer(listen) {
  const start = async () => {
    const options = commandLine();
    const queue = openQueue(options);
    await queue.waitUntilReady();
    const handle = (rawBody, signatureHeader) =>
      receiveWebhook(queue, options.appSecret, rawBody, signatureHeader);
    const closeServer = await listen(options, handle);
    const stop = async () => {
      try {
        await closeServer();
        await queue.close();
      } finally {
        process.exit(0);
      }
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  };
  start().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}

module.exports = { WEBHOOK_PATH, runPeer };
