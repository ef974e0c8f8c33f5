#!/usr/bin/env node
// bench/contracts client side: connections FROM..TO-1 to URL (namespace /realtime,
// websocket transport), each holding one contract event subscription chosen by MODE
// from its index: `filtered`, `events:Token.Transfer` with the filter {to: <address of
// index % 1000>}; `rooms`, `events:T<index % 10>`. Prints {"ready": n} once every
// subscription is acknowledged; records, for each `contract-event`, the latency from
// its `args.value` (the driver's append time, microseconds since the epoch) to its
// arrival; on any line on stdin prints {"latencies": [...ms], "disconnects": n} and exits.
'use strict';

const path = require('path');
const readline = require('readline');
const { performance } = require('perf_hooks');
const { io } = require(path.join(__dirname, '..', '..', 'node_modules', 'socket.io-client'));

const url = process.argv[2];
const from = parseInt(process.argv[3], 10);
const to = parseInt(process.argv[4], 10);
const mode = process.argv[5];
const now = () => performance.timeOrigin + performance.now();
const latencies = [];
let disconnects = 0;
let ready = 0;

const address = (n) => '0x' + n.toString(16).padStart(40, '0');

function subscription(index) {
  if (mode === 'filtered') return { channel: 'events:Token.Transfer', filter: { to: address(index % 1000) } };
  return { channel: `events:T${index % 10}` };
}

function open(index) {
  return new Promise((resolve) => {
    const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false,
      timeout: 60000, perMessageDeflate: false });
    socket.on('contract-event', (event) => {
      latencies.push(now() - Number(event.args.value) / 1000);
    });
    socket.on('connected', () => {
      socket.emit('subscribe', subscription(index), (ack) => {
        if (ack && ack.success) ready += 1;
        resolve();
      });
    });
    socket.on('connect_error', () => resolve());
    socket.on('disconnect', () => { disconnects += 1; });
  });
}

async function main() {
  const batch = 100;
  for (let i = from; i < to; i += batch) {
    const opening = [];
    for (let j = i; j < Math.min(to, i + batch); j++) opening.push(open(j));
    await Promise.all(opening);
  }
  process.stdout.write(JSON.stringify({ ready }) + '\n');
  const rl = readline.createInterface({ input: process.stdin });
  rl.once('line', () => {
    process.stdout.write(JSON.stringify({ latencies, disconnects }) + '\n', () => process.exit(0));
  });
}

main();
