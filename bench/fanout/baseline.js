#!/usr/bin/env node
// The Node baseline for bench/fanout: a minimal socket.io 4 server with chainpulse's
// realtime events (DESIGN.md, Socket.IO), fed from the Redis stream chainpulse:events
// with XREAD. Environment: PORT, REDIS_URL, STREAM_KEY (default chainpulse:events).
//
// Namespace /realtime: `connected` {clientId, serverTime} on connect; `subscribe`
// {channel} acked {success, channel}; `unsubscribe`; `ping` -> `pong`; `new-block` to
// all for rising heights; `price-update` to room price:<TOKEN>; `reorg` to all.
// It is deliberately minimal: no auth, no resume, no rate limit.
'use strict';

const http = require('http');
const path = require('path');

const nm = path.join(__dirname, '..', '..', 'node_modules');
const { Server } = require(path.join(nm, 'socket.io'));
const Redis = require(path.join(nm, 'ioredis'));

const PORT = Number(process.env.PORT || 3000);
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379/0';
const STREAM = process.env.STREAM_KEY || 'chainpulse:events';
const CHANNEL = /^price:[A-Za-z0-9._-]{1,32}$/;

const httpServer = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
    return;
  }
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, {
  pingInterval: 10000,
  pingTimeout: 5000,
  maxHttpBufferSize: 65536,
  cors: { origin: '*' },
});
const nsp = io.of('/realtime');

nsp.on('connection', (socket) => {
  socket.emit('connected', { clientId: socket.id, serverTime: Date.now() });
  socket.on('subscribe', (payload, ack) => {
    const channel = payload && payload.channel;
    const reply = typeof ack === 'function' ? ack : () => {};
    if (typeof channel !== 'string' || !CHANNEL.test(channel)) {
      reply({ success: false, error: 'Invalid channel' });
      return;
    }
    socket.join(channel);
    reply({ success: true, channel });
  });
  socket.on('unsubscribe', (payload, ack) => {
    if (payload && typeof payload.channel === 'string') socket.leave(payload.channel);
    if (typeof ack === 'function') ack({ success: true });
  });
  socket.on('ping', () => socket.emit('pong', { timestamp: Date.now() }));
});

let lastHeight = null;

function handle(fields) {
  const entry = {};
  for (let i = 0; i + 1 < fields.length; i += 2) entry[fields[i]] = fields[i + 1];
  let data;
  try {
    data = JSON.parse(entry.data);
  } catch (err) {
    return;
  }
  if (entry.type === 'block.indexed') {
    if (lastHeight !== null && data.blockNumber <= lastHeight) return;
    lastHeight = data.blockNumber;
    nsp.emit('new-block', {
      number: data.blockNumber,
      hash: data.blockHash,
      parentHash: data.parentHash,
      transactions: data.transactions,
      blockTimestamp: data.blockTimestamp,
      timestamp: Date.now(),
    });
  } else if (entry.type === 'price.updated') {
    nsp.to('price:' + data.token).emit('price-update', {
      token: data.token,
      price: Number(data.price),
      priceExact: data.price,
      blockNumber: data.blockNumber,
      source: data.source,
      timestamp: Date.now(),
    });
  } else if (entry.type === 'block.reorged') {
    lastHeight = data.commonAncestor.number;
    nsp.emit('reorg', data);
  }
}

async function readLoop() {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  let lastId = '$';
  for (;;) {
    let reply;
    try {
      reply = await redis.xread('COUNT', 1000, 'BLOCK', 2000, 'STREAMS', STREAM, lastId);
    } catch (err) {
      console.error('xread failed:', err.message);
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    if (!reply) continue;
    for (const [, entries] of reply) {
      for (const [id, fields] of entries) {
        lastId = id;
        handle(fields);
      }
    }
  }
}

httpServer.listen(PORT, '127.0.0.1', 4096, () => {
  console.error(`baseline listening on 127.0.0.1:${PORT}`);
  readLoop();
});
process.on('SIGTERM', () => process.exit(0));
