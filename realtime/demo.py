"""The live demo page served at `/`: the latest blocks and prices, then live updates.

It loads the snapshot from the HTTP API, then connects to `/realtime` with the
socket.io client this server serves at `/socket.io.min.js` (no CDN: works offline).
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>chainpulse live</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
 h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
 table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
 tr:nth-child(even) { background: #f4f4f4; } code { font-size: 12px; }
 #status.live { color: #080; } #status.down { color: #a00; }
</style>
</head>
<body>
<h1>chainpulse <span id="status" class="down">connecting</span></h1>
<h2>Blocks</h2>
<table><thead><tr><th>number</th><th>hash</th><th>txs</th><th>time</th></tr></thead>
<tbody id="blocks"></tbody></table>
<h2>Prices</h2>
<form id="add"><input id="token" placeholder="TOKEN" maxlength="32">
<button>subscribe</button></form>
<table><thead><tr><th>token</th><th>price</th><th>block</th><th>source</th></tr></thead>
<tbody id="prices"></tbody></table>
<script src="/socket.io.min.js"></script>
<script>
"use strict";
const MAX_ROWS = 20;
const blocks = document.getElementById("blocks");
const prices = document.getElementById("prices");
const status = document.getElementById("status");
const tokens = new Set();
let lastBlock = null;

function cell(row, text) {
  const td = document.createElement("td"); td.textContent = text; row.appendChild(td);
}
function showBlock(b) {
  const row = document.createElement("tr");
  row.dataset.number = b.number;
  cell(row, b.number); cell(row, b.hash.slice(0, 18) + "\\u2026");
  cell(row, b.transactions); cell(row, new Date(b.blockTimestamp * 1000).toLocaleTimeString());
  blocks.prepend(row);
  while (blocks.children.length > MAX_ROWS) blocks.lastChild.remove();
  lastBlock = Math.max(lastBlock ?? b.number, b.number);
}
function showPrice(p) {
  let row = document.getElementById("price-" + p.token);
  if (!row) {
    row = document.createElement("tr"); row.id = "price-" + p.token; prices.appendChild(row);
  }
  row.textContent = "";
  cell(row, p.token); cell(row, p.priceExact);
  cell(row, p.blockNumber ?? "manual"); cell(row, p.source);
}
function subscribe(token) {
  if (tokens.has(token)) return;
  tokens.add(token);
  socket.emit("subscribe", { channel: "price:" + token });
}

const socket = io("/realtime", {
  transports: ["websocket"],
  auth: (cb) => cb(lastBlock === null ? {} : { lastBlock }),
});
socket.on("connect", () => {
  status.textContent = "live"; status.className = "live";
  for (const t of tokens) socket.emit("subscribe", { channel: "price:" + t });
});
socket.on("disconnect", (reason) => { status.textContent = reason; status.className = "down"; });
socket.on("new-block", showBlock);
socket.on("price-update", showPrice);
socket.on("reorg", (r) => {
  for (const row of [...blocks.children]) {
    if (Number(row.dataset.number) > r.commonAncestor.number) row.remove();
  }
  lastBlock = r.commonAncestor.number;
});
socket.on("exception", (e) => console.warn("server:", e.message));

fetch("/api/blocks?limit=" + MAX_ROWS).then((r) => r.json()).then((list) => {
  for (const b of list.reverse()) if (lastBlock === null || b.number > lastBlock) showBlock(b);
});
fetch("/api/prices").then((r) => r.json()).then((list) => {
  for (const p of list) { showPrice(p); subscribe(p.token); }
});
document.getElementById("add").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = document.getElementById("token").value.trim();
  if (/^[A-Za-z0-9._-]{1,32}$/.test(t)) subscribe(t);
});
</script>
</body>
</html>
"""
