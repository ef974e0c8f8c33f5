#!/usr/bin/env node
// bench/chains client side: COUNT socket.io-client connections to URL (namespace
// /realtime, websocket transport), each subscribed to `blocks:<id>` for every id in
// ROOMS (comma-separated; the primary's blocks come to every client anyway), the first
// also to `price:<token>` for every token of TOKENS (comma-separated). Prints
// {"ready": n} once connected and subscribed; records the arrival time (ms since the
// epoch, sub-ms) of every `new-block`, by "<chainId>:<number>:<hash>", and of every
// live `price-update` (not snapshots); on any line on stdin prints {"arrivals": {...},
// "prices": [...], "disconnects": n} and exits.
'use strict';

const path = require('path');
const readline = require('readline');
const { performance } = require('perf_hooks');
const { io } = require(path.join(__dirname, '..', '..', 'node_modules', 'socket.io-client'));

const url = process.argv[2];
const count = parseInt(process.argv[3] || '1', 10);
const rooms = (process.argv[4] || '').split(',').filter((x) => x);
const tokens = (process.argv[5] || '').split(',').filter((x) => x);
const now = () => performance.timeOrigin + performance.now();
const arrivals = {};
const prices = [];
let disconnects = 0;
let ready = 0;

function open(first) {
  const channels = [
    ...rooms.map((id) => `blocks:${id}`),
    ...(first ? tokens.map((token) => `price:${token}`) : []),
  ];
  return new Promise((resolve) => {
    const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false,
      timeout: 60000, perMessageDeflate: false });
    socket.on('new-block', (block) => {
      const t = now();
      const key = `${block.chainId}:${block.number}:${block.hash}`;
      (arrivals[key] = arrivals[key] || []).push(t);
    });
    socket.on('price-update', (update) => {
      if (!update.snapshot) prices.push(now());
    });
    socket.on('connected', () => {
      let acks = 0;
      if (!channels.length) { ready += 1; resolve(); return; }
      for (const channel of channels) {
        socket.emit('subscribe', { channel }, () => {
          acks += 1;
          if (acks === channels.length) { ready += 1; resolve(); }
        });
      }
    });
    socket.on('connect_error', () => resolve());
    socket.on('disconnect', () => { disconnects += 1; });
  });
}

async function main() {
  const batch = 100;
  for (let i = 0; i < count; i += batch) {
    const opening = [];
    for (let j = i; j < Math.min(count, i + batch); j++) opening.push(open(j === 0));
    await Promise.all(opening);
  }
  process.stdout.write(JSON.stringify({ ready }) + '\n');
  const rl = readline.createInterface({ input: process.stdin });
  rl.once('line', () => {
    process.stdout.write(JSON.stringify({ arrivals, prices, disconnects }) + '\n', () => process.exit(0));
  });
}

main();
