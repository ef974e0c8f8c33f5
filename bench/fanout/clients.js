#!/usr/bin/env node
// Load generator for bench/fanout: one Node process holding many socket.io-client
// connections to ws://127.0.0.1:PORT/realtime (websocket transport only).
//
// It is driven by bench/fanout/run.py over stdin/stdout, one JSON object per line:
//   {"seq": 1, "cmd": "connect", "urls": [...], "count": 500, "offset": 0, "rooms": 20,
//    "concurrency": 200, "timeoutMs": 60000, "deflate": true}
//   {"seq": 2, "cmd": "reset"}            -> start a measurement window
//   {"seq": 3, "cmd": "stats"}            -> messages received so far in the window
//   {"seq": 4, "cmd": "report", "published": {"b:12": 1700000000000.5, ...}}
//   {"seq": 5, "cmd": "close"}
// Every reply carries the same seq. Socket i (global index offset+i) subscribes to
// price:TOK<(offset+i) % rooms> and connects to urls[(offset+i) % urls.length].
//
// Messages are keyed "b:<number>" (new-block) and "p:<token>:<blockNumber>"
// (price-update); the receive time of each is kept so that the driver, which knows when
// it appended each event to the Redis stream, gets latency = receive - publish.
'use strict';

const path = require('path');
const readline = require('readline');
const { performance } = require('perf_hooks');

const { io } = require(path.join(__dirname, '..', '..', 'node_modules', 'socket.io-client'));

const now = () => performance.timeOrigin + performance.now();

const sockets = []; // {socket, room, alive, lastBlock}
let received = new Map(); // key -> array of receive times (ms since epoch)
let windowCount = 0;
let disconnects = 0;
let disconnectReasons = {};
let dupOrOutOfOrder = 0;
let gaps = 0;
let snapshots = 0;
let aliveAtReset = [];

function record(key) {
  let arr = received.get(key);
  if (arr === undefined) {
    arr = [];
    received.set(key, arr);
  }
  arr.push(now());
  windowCount += 1;
}

function openOne(url, room, timeoutMs, deflate) {
  return new Promise((resolve) => {
    const started = now();
    const entry = { socket: null, room, alive: false, lastBlock: null, ready: false };
    const socket = io(url, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      timeout: timeoutMs,
      // Browsers always offer permessage-deflate; so does this client unless told not to.
      perMessageDeflate: deflate ? { threshold: 1024 } : false,
    });
    entry.socket = socket;
    let settled = false;
    const finish = (ok, why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!ok) {
        entry.alive = false;
        socket.disconnect();
      }
      resolve({ entry, ok, why, ms: now() - started });
    };
    const timer = setTimeout(() => finish(false, 'timeout'), timeoutMs);
    socket.on('connect_error', (err) => finish(false, 'connect_error: ' + (err && err.message)));
    socket.on('connected', () => {
      socket.emit('subscribe', { channel: 'price:TOK' + room }, (ack) => {
        if (settled) return;
        if (ack && ack.success) {
          entry.alive = true;
          entry.ready = true;
          finish(true);
        } else {
          finish(false, 'subscribe refused: ' + JSON.stringify(ack));
        }
      });
    });
    socket.on('disconnect', (reason) => {
      if (entry.alive) {
        disconnects += 1;
        disconnectReasons[reason] = (disconnectReasons[reason] || 0) + 1;
      }
      entry.alive = false;
      finish(false, 'disconnect: ' + reason);
    });
    socket.on('new-block', (msg) => {
      const n = msg && msg.number;
      if (entry.lastBlock !== null) {
        if (n <= entry.lastBlock) dupOrOutOfOrder += 1;
        else if (n !== entry.lastBlock + 1) gaps += 1;
      }
      entry.lastBlock = n;
      record('b:' + n);
    });
    socket.on('price-update', (msg) => {
      if (msg && msg.snapshot) {
        snapshots += 1;
        return;
      }
      record('p:' + msg.token + ':' + msg.blockNumber);
    });
  });
}

async function connect(cmd) {
  const { urls, count, offset, rooms, concurrency, timeoutMs } = cmd;
  const deflate = cmd.deflate !== false;
  const started = now();
  const times = [];
  const failures = {};
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      const g = offset + i;
      const url = urls[g % urls.length];
      const r = await openOne(url, g % rooms, timeoutMs, deflate);
      sockets.push(r.entry);
      r.entry.room = g % rooms;
      if (r.ok) times.push(r.ms);
      else failures[r.why] = (failures[r.why] || 0) + 1;
    }
  }
  const workers = [];
  for (let w = 0; w < Math.min(concurrency, count); w++) workers.push(worker());
  await Promise.all(workers);
  times.sort((a, b) => a - b);
  const q = (p) => (times.length ? times[Math.min(times.length - 1, Math.floor(p * times.length))] : null);
  return {
    connected: times.length,
    failed: count - times.length,
    failures,
    elapsedMs: now() - started,
    connectMs: { p50: q(0.5), p99: q(0.99), max: times.length ? times[times.length - 1] : null },
  };
}

function reset() {
  received = new Map();
  windowCount = 0;
  dupOrOutOfOrder = 0;
  gaps = 0;
  snapshots = 0;
  const byRoom = {};
  aliveAtReset = [];
  for (const s of sockets) {
    if (s.alive) {
      aliveAtReset.push(s);
      byRoom[s.room] = (byRoom[s.room] || 0) + 1;
    }
  }
  return { alive: aliveAtReset.length, byRoom, disconnects };
}

function stats() {
  let alive = 0;
  for (const s of sockets) if (s.alive) alive += 1;
  return { received: windowCount, alive, disconnects, disconnectReasons };
}

// Log-scale histogram, 1 % wide buckets: bucket b holds latencies around 1.01^b - 1 ms.
const LOG_STEP = Math.log(1.01);
function bucketOf(ms) {
  return Math.round(Math.log(Math.max(ms, 0) + 1) / LOG_STEP);
}

function report(cmd) {
  const published = cmd.published || {};
  const byRoom = {};
  for (const s of aliveAtReset) byRoom['TOK' + s.room] = (byRoom['TOK' + s.room] || 0) + 1;
  const hist = {};
  let expected = 0;
  let got = 0;
  let lost = 0;
  let extra = 0;
  let negative = 0;
  for (const key of Object.keys(published)) {
    const pub = published[key];
    let want;
    if (key.startsWith('b:')) want = aliveAtReset.length;
    else want = byRoom[key.split(':')[1]] || 0;
    const arr = received.get(key) || [];
    expected += want;
    got += arr.length;
    if (arr.length < want) lost += want - arr.length;
    else extra += arr.length - want;
    for (const t of arr) {
      const lat = t - pub;
      if (lat < 0) negative += 1;
      const b = bucketOf(lat);
      hist[b] = (hist[b] || 0) + 1;
    }
  }
  let unexpected = 0;
  for (const [key, arr] of received) if (!(key in published)) unexpected += arr.length;
  return {
    expected,
    received: got,
    lost,
    extra,
    unexpected,
    negative,
    dupOrOutOfOrder,
    gaps,
    snapshots,
    hist,
    ...stats(),
  };
}

function write(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function cpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    write({ error: 'bad command: ' + err.message });
    return;
  }
  const seq = cmd.seq;
  try {
    let out;
    if (cmd.cmd === 'connect') out = await connect(cmd);
    else if (cmd.cmd === 'reset') out = reset();
    else if (cmd.cmd === 'stats') out = stats();
    else if (cmd.cmd === 'report') out = report(cmd);
    else if (cmd.cmd === 'close') {
      for (const s of sockets) {
        s.alive = false;
        s.socket.disconnect();
      }
      write({ seq, ok: true, cpuMs: cpuMs() });
      setTimeout(() => process.exit(0), 200);
      return;
    } else out = { error: 'unknown command ' + cmd.cmd };
    write({ seq, cpuMs: cpuMs(), rssKb: Math.round(process.memoryUsage().rss / 1024), ...out });
  } catch (err) {
    write({ seq, error: String(err && err.stack) });
  }
});
rl.on('close', () => process.exit(0));
