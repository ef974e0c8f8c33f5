#!/usr/bin/env node
// bench/latency client side: COUNT socket.io-client connections to URL (namespace
// /realtime, websocket transport). Prints {"ready": n} once connected; records the
// arrival time (ms since the epoch, sub-ms) of every `new-block` on every socket; on
// any line on stdin prints {"arrivals": {"<number>:<hash>": [t, ...]}, ...} and exits.
'use strict';

const path = require('path');
const readline = require('readline');
const { performance } = require('perf_hooks');
const { io } = require(path.join(__dirname, '..', '..', 'node_modules', 'socket.io-client'));

const url = process.argv[2];
const count = parseInt(process.argv[3] || '1', 10);
const now = () => performance.timeOrigin + performance.now();
const arrivals = {};
let disconnects = 0;
let ready = 0;

function open(i) {
  return new Promise((resolve) => {
    const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false,
      timeout: 60000, perMessageDeflate: false });
    socket.on('new-block', (block) => {
      const t = now();
      const key = `${block.number}:${block.hash}`;
      (arrivals[key] = arrivals[key] || []).push(t);
    });
    socket.on('connected', () => { ready += 1; resolve(); });
    socket.on('connect_error', () => resolve());
    socket.on('disconnect', () => { disconnects += 1; });
  });
}

async function main() {
  const batch = 100;
  for (let i = 0; i < count; i += batch) {
    const opening = [];
    for (let j = i; j < Math.min(count, i + batch); j++) opening.push(open(j));
    await Promise.all(opening);
  }
  process.stdout.write(JSON.stringify({ ready }) + '\n');
  const rl = readline.createInterface({ input: process.stdin });
  rl.once('line', () => {
    process.stdout.write(JSON.stringify({ arrivals, disconnects }) + '\n', () => process.exit(0));
  });
}

main();
