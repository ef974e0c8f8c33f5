#!/usr/bin/env node
// Clients for bench/soak: one Node process holding many socket.io-client connections,
// each subscribed to one price room, counted one by one. Driven over stdin/stdout with
// JSON lines (every reply carries the command's seq):
//   {"seq": 1, "cmd": "connect", "url": "...", "count": 1000, "offset": 0, "rooms": 20}
//   {"seq": 2, "cmd": "storm"}   every client disconnects and reconnects with lastBlock
//   {"seq": 3, "cmd": "report", "published": {"b:12": <ms>, "p:TOK3:1000.5": <ms>, ...}}
//   {"seq": 4, "cmd": "close"}
// `report` counts, for the keys given, what was expected, received and lost, and the
// latency histogram, then forgets those keys. Every client expects every block (a client
// that reconnects resumes from lastBlock); a price is expected by the clients of its
// room that were subscribed when it was published, except in the last second before a
// client chose to disconnect (it may still have been on the wire: prices published while
// a client is away are not resent, by contract, and its next subscribe sends a snapshot).
'use strict';

const path = require('path');
const readline = require('readline');
const { performance } = require('perf_hooks');

const { io } = require(path.join(__dirname, '..', '..', 'node_modules', 'socket.io-client'));

const now = () => performance.timeOrigin + performance.now();
const IN_FLIGHT_MS = 1000;

const clients = []; // {socket, room, lastBlock, intervals: [[from, to|null]], ...}
const received = new Map(); // key -> receive times (ms)
let duplicates = 0;
let gaps = 0;
let disconnects = 0;

function record(key) {
  let times = received.get(key);
  if (times === undefined) {
    times = [];
    received.set(key, times);
  }
  times.push(now());
}

function open(url, client) {
  return new Promise((resolve) => {
    const auth = client.lastBlock === null ? {} : { lastBlock: client.lastBlock };
    const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, auth });
    client.socket = socket;
    let settled = false;
    const done = (ok) => {
      if (!settled) {
        settled = true;
        resolve(ok);
      }
    };
    socket.on('connect_error', () => done(false));
    socket.on('connected', () => {
      client.leaving = false;
      socket.emit('subscribe', { channel: 'price:TOK' + client.room }, (ack) => {
        if (ack && ack.success) client.intervals.push([now(), null]);
        done(Boolean(ack && ack.success));
      });
    });
    socket.on('disconnect', () => {
      const last = client.intervals[client.intervals.length - 1];
      if (last && last[1] === null) last[1] = now() - (client.leaving ? IN_FLIGHT_MS : 0);
      if (!client.leaving) disconnects += 1;
      done(false);
    });
    socket.on('new-block', (block) => {
      const n = block.number;
      if (client.lastBlock !== null) {
        if (n <= client.lastBlock) duplicates += 1;
        else if (n !== client.lastBlock + 1) gaps += 1;
      }
      client.lastBlock = n;
      record('b:' + n);
    });
    socket.on('price-update', (p) => {
      if (!p.snapshot) record('p:' + p.token + ':' + p.priceExact);
    });
  });
}

async function inBatches(items, size, fn) {
  let next = 0;
  let ok = 0;
  const workers = [];
  for (let w = 0; w < size; w++) {
    workers.push((async () => {
      while (next < items.length) {
        if (await fn(items[next++])) ok += 1;
      }
    })());
  }
  await Promise.all(workers);
  return ok;
}

async function connect(cmd) {
  const made = [];
  for (let i = 0; i < cmd.count; i++) {
    const client = { url: cmd.url, room: (cmd.offset + i) % cmd.rooms, lastBlock: null, intervals: [] };
    clients.push(client);
    made.push(client);
  }
  const connected = await inBatches(made, 100, (c) => open(c.url, c));
  return { connected };
}

async function storm() {
  const started = now();
  for (const c of clients) {
    c.leaving = true; // until it is connected again (see open)
    c.socket.disconnect();
  }
  const connected = await inBatches(clients, 100, (c) => open(c.url, c));
  return { connected, ms: now() - started };
}

const LOG_STEP = Math.log(1.01);
const bucketOf = (ms) => Math.round(Math.log(Math.max(ms, 0) + 1) / LOG_STEP);

function subscribedAt(room, t) {
  let n = 0;
  for (const c of clients) {
    if (c.room !== room) continue;
    for (const [from, to] of c.intervals) {
      if (from <= t && (to === null || t < to)) {
        n += 1;
        break;
      }
    }
  }
  return n;
}

function report(cmd) {
  const hist = {};
  let expected = 0;
  let got = 0;
  let lost = 0;
  for (const [key, published] of Object.entries(cmd.published)) {
    const want = key.startsWith('b:')
      ? clients.length
      : subscribedAt(Number(key.split(':')[1].slice(3)), published);
    const times = received.get(key) || [];
    received.delete(key);
    expected += want;
    got += Math.min(times.length, want);
    lost += Math.max(want - times.length, 0);
    for (const t of times) {
      const b = bucketOf(t - published);
      hist[b] = (hist[b] || 0) + 1;
    }
  }
  const out = { expected, received: got, lost, duplicates, gaps, disconnects, hist };
  duplicates = 0;
  gaps = 0;
  return out;
}

const write = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    write({ error: 'bad command: ' + err.message });
    return;
  }
  try {
    let out;
    if (cmd.cmd === 'connect') out = await connect(cmd);
    else if (cmd.cmd === 'storm') out = await storm();
    else if (cmd.cmd === 'report') out = report(cmd);
    else if (cmd.cmd === 'close') {
      for (const c of clients) {
        c.leaving = true;
        c.socket.disconnect();
      }
      write({ seq: cmd.seq, ok: true });
      setTimeout(() => process.exit(0), 200);
      return;
    } else out = { error: 'unknown command ' + cmd.cmd };
    const usage = process.cpuUsage();
    write({ seq: cmd.seq, cpuMs: (usage.user + usage.system) / 1000, ...out });
  } catch (err) {
    write({ seq: cmd.seq, error: String(err && err.stack) });
  }
});
rl.on('close', () => process.exit(0));
