// The live demo page: a snapshot from the read API first, then live updates over
// Socket.IO, resuming from the last block seen after a reconnect. Plain DOM and SVG:
// every value from the server goes in as text, never as HTML.
"use strict";

const CHART_SECONDS = 180;
const BLOCK_ROWS = 15;
const HISTORY = 60;
const state = {
  blocks: [],            // newest last: {number, hash, transactions, gasUsed, blockTimestamp}
  prices: new Map(),     // token -> latest price-update payload
  history: new Map(),    // token -> [number, …] oldest first (sparkline)
  lastBlock: null,
  lastHash: null,
  replaced: new Set(),   // hashes a reorg removed, still shown struck through
  socket: null,
  chains: [],            // /api/chains: {chainId, name, primary, …}, the primary first
  lanes: new Map(),      // chainId -> {blocks, lastBlock, lastHash}
  contracts: [],         // /api/contracts: {name, chainId, events: [{key, …}]}
  events: [],            // contract-event payloads, newest first
  eventsLast: new Map(), // contract -> {block, hash}: where its subscription resumes
  marks: new Map(),      // chainId -> {finalized, safe}: block numbers, as last announced
};
const EVENT_ROWS = 15;
const $ = (id) => document.getElementById(id);

async function getJSON(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// blocks -------------------------------------------------------------------------------

function addBlock(block, live) {
  const known = state.blocks.findIndex((b) => b.number === block.number);
  const entry = {
    number: block.number,
    hash: block.hash,
    transactions: block.transactions,
    gasUsed: block.gasUsed ?? null,
    blockTimestamp: block.blockTimestamp,
    live,
  };
  if (known >= 0) state.blocks[known] = entry;
  else state.blocks.push(entry);
  state.blocks.sort((a, b) => a.number - b.number);
  if (state.blocks.length > 400) state.blocks.splice(0, state.blocks.length - 400);
  if (state.lastBlock === null || block.number >= state.lastBlock) {
    state.lastBlock = block.number;
    state.lastHash = block.hash;
  }
}

function age(seconds) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h`;
}

function renderBlocks() {
  const body = $("blocks");
  body.replaceChildren();
  for (const block of state.blocks.slice(-BLOCK_ROWS).reverse()) {
    const row = el("tr", { "data-number": String(block.number) });
    if (block.live) { row.className = "fresh"; block.live = false; }
    const hash = el("td", { title: block.hash });
    hash.append(el("code", {}, block.hash.slice(0, 10) + "…"));
    row.append(
      el("td", {}, `#${block.number}`),
      hash,
      el("td", { class: "num" }, String(block.transactions)),
      el("td", { class: "num" }, block.gasUsed === null ? "–" : block.gasUsed.toLocaleString("en")),
      el("td", { class: "num age", "data-ts": String(block.blockTimestamp) }, age(block.blockTimestamp)),
    );
    body.append(row);
  }
  for (const hash of state.replaced) {
    const row = el("tr", { class: "replaced" });
    row.append(el("td", {}, "replaced"), el("td", {}, hash.slice(0, 10) + "…"), el("td"), el("td"), el("td"));
    body.append(row);
  }
}

function tickAges() {
  if (state.contracts.length) renderEvents();
  for (const cell of document.querySelectorAll("td.age")) cell.textContent = age(Number(cell.dataset.ts));
}

function renderChart() {
  const chart = $("chart");
  chart.replaceChildren();
  const now = Date.now() / 1000;
  const recent = state.blocks.filter((b) => b.blockTimestamp >= now - CHART_SECONDS);
  const most = Math.max(1, ...recent.map((b) => b.transactions));
  const width = 600, height = 140, top = 4, base = height - 2;
  const barWidth = Math.max(2, (width / CHART_SECONDS) * 0.8);
  for (const block of recent) {
    const x = ((block.blockTimestamp - (now - CHART_SECONDS)) / CHART_SECONDS) * (width - barWidth);
    const h = ((base - top) * block.transactions) / most;
    const bar = svg("rect", { x: x.toFixed(1), y: (base - h).toFixed(1), width: barWidth.toFixed(1), height: Math.max(1, h).toFixed(1) });
    const tip = svg("title");
    tip.textContent = `#${block.number}: ${block.transactions} transactions`;
    bar.append(tip);
    chart.append(bar);
  }
  $("chart-note").textContent = recent.length
    ? `${recent.length} blocks, up to ${most} transactions each`
    : "no block in the last 3 minutes";
}

// prices -------------------------------------------------------------------------------

async function loadHistory(token) {
  try {
    const updates = await getJSON(`/api/prices/${encodeURIComponent(token)}?limit=${HISTORY}`);
    const values = updates.reverse().map((u) => Number(u.price)).filter(Number.isFinite);
    const live = state.history.get(token) || [];
    state.history.set(token, [...values, ...live].slice(-HISTORY));
    renderTicker(token);
  } catch (err) {
    console.warn("history of", token, err);
  }
}

function onPrice(update) {
  const previous = state.prices.get(update.token);
  const isNew = !state.prices.has(update.token);
  if (update.snapshot && previous && previous.priceExact === update.priceExact
      && Boolean(previous.stale) === Boolean(update.stale)) return;
  state.prices.set(update.token, update);
  // a stale update repeats the last good price: it is no new point of the line
  if (update.price !== null && Number.isFinite(update.price) && !update.snapshot && !update.stale) {
    const values = state.history.get(update.token) || [];
    values.push(update.price);
    state.history.set(update.token, values.slice(-HISTORY));
  }
  let direction = "";
  if (previous && previous.price !== null && update.price !== null && !update.snapshot) {
    direction = update.price > previous.price ? "up" : update.price < previous.price ? "down" : "";
  }
  renderTicker(update.token, direction);
  if (isNew) loadHistory(update.token);
}

function renderTicker(token, direction = "") {
  const container = $("tickers");
  container.querySelector(".empty")?.remove();
  const price = state.prices.get(token);
  if (!price) return;
  let card = container.querySelector(`[data-token="${CSS.escape(token)}"]`);
  if (!card) {
    card = el("div", { class: "ticker", "data-token": token });
    card.append(el("div", { class: "token" }), el("div", { class: "value" }), el("div", { class: "quote" }), svg("svg", { viewBox: "0 0 100 30", preserveAspectRatio: "none" }), el("div", { class: "source" }));
    const cards = [...container.children, card].sort((a, b) => a.dataset.token.localeCompare(b.dataset.token));
    container.replaceChildren(...cards);
  }
  card.querySelector(".token").textContent = token;
  const value = card.querySelector(".value");
  value.textContent = price.priceExact === null ? "no price" : formatPrice(price.priceExact);
  value.title = price.priceExact ?? "";
  card.querySelector(".quote").textContent = price.quote ? `in ${price.quote}` : "";
  const block = price.blockNumber !== null && price.blockNumber !== undefined ? ` · block ${price.blockNumber}` : "";
  // older servers send no `stale`: fresh
  const stale = price.stale ? ` · stale: ${price.staleReason ?? "unknown"}` : "";
  // with several chains, each ticker names its source's chain (null: a manual price)
  const chain = state.chains.length > 1 && price.chainId != null ? ` · ${chainName(price.chainId)}` : "";
  card.querySelector(".source").textContent = `${price.source}${chain}${block}${stale}`;
  card.classList.toggle("stale", Boolean(price.stale));
  card.title = price.stale ? "the source would not publish this price now: it is the last good one" : "";
  drawSparkline(card.querySelector("svg"), state.history.get(token) || []);
  if (direction) {
    card.classList.remove("up", "down");
    void card.offsetWidth; // restart the flash
    card.classList.add(direction);
    clearTimeout(card.flash);
    card.flash = setTimeout(() => card.classList.remove("up", "down"), 1200);
  }
}

function formatPrice(exact) {
  const [whole, fraction = ""] = exact.split(".");
  const digits = whole.replace("-", "").length;
  const keep = digits >= 4 ? 2 : digits >= 1 && whole !== "0" && whole !== "-0" ? 4 : 8;
  const shown = fraction ? `${whole}.${fraction.slice(0, keep)}` : whole;
  return fraction.length > keep ? `${shown}…` : shown;
}

function drawSparkline(node, values) {
  node.replaceChildren();
  if (values.length < 2) return;
  const lo = Math.min(...values), hi = Math.max(...values);
  const span = hi - lo || 1;
  const points = values.map((v, i) => `${((i / (values.length - 1)) * 100).toFixed(2)},${(28 - ((v - lo) / span) * 26).toFixed(2)}`);
  node.append(svg("polyline", { points: points.join(" ") }));
}

async function refreshTokens() {
  try {
    for (const price of await getJSON("/api/prices")) {
      if (!state.prices.has(price.token)) {
        onPrice(price);
        state.socket?.emit("subscribe", { channel: `price:${price.token}` });
      }
    }
  } catch (err) {
    console.warn("prices", err);
  }
}

// chains -------------------------------------------------------------------------------
// With several chains (/api/chains), a lane per chain shows its newest blocks: the
// primary's come to every client, another's through its `blocks:<chainId>` room, each
// resumed from the lane's last block after a reconnect.

const LANE_BLOCKS = 12;

function lane(chainId) {
  let found = state.lanes.get(chainId);
  if (!found) {
    found = { blocks: [], lastBlock: null, lastHash: null };
    state.lanes.set(chainId, found);
  }
  return found;
}

function chainName(chainId) {
  const chain = state.chains.find((c) => c.chainId === chainId);
  return chain ? chain.name : String(chainId);
}

function laneBlock(block) {
  const entry = lane(block.chainId);
  entry.blocks = entry.blocks.filter((b) => b.number !== block.number);
  entry.blocks.push({ number: block.number, hash: block.hash, transactions: block.transactions, fresh: true });
  entry.blocks.sort((a, b) => a.number - b.number);
  entry.blocks.splice(0, Math.max(0, entry.blocks.length - LANE_BLOCKS));
  if (entry.lastBlock === null || block.number >= entry.lastBlock) {
    entry.lastBlock = block.number;
    entry.lastHash = block.hash;
  }
}

function laneReorg(reorg) {
  const entry = lane(reorg.chainId);
  entry.blocks = entry.blocks.filter((b) => b.number <= reorg.commonAncestor.number);
  entry.lastBlock = reorg.commonAncestor.number;
  entry.lastHash = reorg.commonAncestor.hash;
}

function renderLanes() {
  if (state.chains.length < 2) return;
  const container = $("lanes");
  container.replaceChildren();
  for (const chain of state.chains) {
    const entry = lane(chain.chainId);
    const row = el("div", { class: "lane", "data-chain": String(chain.chainId) });
    const label = el("div", { class: "lane-name" });
    label.append(el("strong", {}, chain.name), el("small", {}, ` ${chain.chainId}${chain.primary ? " · primary" : ""}`));
    const marks = state.marks.get(chain.chainId);
    if (marks) label.append(el("small", { class: "final" }, ` · final #${marks.finalized}`));
    const chips = el("div", { class: "chips" });
    for (const block of entry.blocks) {
      const chip = el("span", { class: block.fresh ? "chip fresh" : "chip", "data-number": String(block.number), title: `${block.hash}: ${block.transactions} transactions` }, `#${block.number}`);
      block.fresh = false;
      chips.append(chip);
    }
    row.append(label, chips);
    container.append(row);
  }
}

async function loadChains() {
  try {
    state.chains = await getJSON("/api/chains");
  } catch (err) {
    console.warn("chains", err);
    state.chains = [];
  }
  for (const chain of state.chains) {
    if (chain.finalized && chain.safe) {
      onFinalized({ chainId: chain.chainId, number: chain.finalized.number, safe: chain.safe });
    }
  }
  if (state.chains.length < 2) return;
  $("lanes-section").hidden = false;
  const primary = state.chains.find((c) => c.primary);
  if (primary) $("blocks-chain").textContent = `chain ${primary.name}, the primary`;
  await Promise.all(state.chains.map(async (chain) => {
    try {
      const blocks = await getJSON(`/api/blocks?chain=${chain.chainId}&limit=${LANE_BLOCKS}`);
      for (const block of blocks.reverse()) laneBlock(block);
    } catch (err) {
      console.warn("blocks of chain", chain.chainId, err);
    }
  }));
  renderLanes();
}

function subscribeLanes(socket) {
  for (const chain of state.chains) {
    if (chain.primary) continue;  // its blocks come to every client
    const entry = lane(chain.chainId);
    const payload = { channel: `blocks:${chain.chainId}` };
    if (entry.lastBlock !== null) Object.assign(payload, { lastBlock: entry.lastBlock, lastBlockHash: entry.lastHash });
    socket.emit("subscribe", payload);
  }
}

// contract events ------------------------------------------------------------------------

function short(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return /^0x[0-9a-f]{40,}$/.test(text) ? `${text.slice(0, 6)}…${text.slice(-4)}` : text.length > 28 ? `${text.slice(0, 27)}…` : text;
}

function addEvent(event) {
  const key = `${event.chainId}:${event.blockNumber}:${event.logIndex}`;
  if (state.events.some((e) => `${e.chainId}:${e.blockNumber}:${e.logIndex}` === key)) return;
  state.events.push(event);
  state.events.sort((a, b) => (b.blockTimestamp - a.blockTimestamp) || (b.blockNumber - a.blockNumber) || (b.logIndex - a.logIndex));
  state.events.splice(EVENT_ROWS);
  const last = state.eventsLast.get(event.contract);
  if (!last || event.blockNumber >= last.block) state.eventsLast.set(event.contract, { block: event.blockNumber, hash: event.blockHash });
}

function renderEvents() {
  const body = $("events");
  body.replaceChildren();
  for (const event of state.events) {
    const key = `${event.chainId}:${event.blockNumber}:${event.logIndex}`;
    const row = el("tr", event.fresh ? { class: "fresh", "data-key": key } : { "data-key": key });
    event.fresh = false;
    const args = el("td", { class: "args" });
    for (const [name, value] of Object.entries(event.args)) {
      args.append(el("b", {}, name), document.createTextNode(`=${short(value)}  `));
    }
    const where = state.chains.length > 1 ? ` · ${chainName(event.chainId)}` : "";
    row.append(
      el("td", {}, `#${event.blockNumber}${where}`),
      el("td", { class: "name" }, `${event.contract}.${event.event}`),
      args,
      el("td", { class: "num" }, age(event.blockTimestamp)),
    );
    body.append(row);
  }
}

async function loadContracts() {
  try {
    state.contracts = await getJSON("/api/contracts");
  } catch (err) {
    console.warn("contracts", err);
    state.contracts = [];
  }
  if (!state.contracts.length) return;
  $("events-section").hidden = false;
  await Promise.all(state.contracts.flatMap((contract) => contract.events.map(async (event) => {
    try {
      const page = await getJSON(`/api/events/${contract.name}.${encodeURIComponent(event.key)}?limit=${EVENT_ROWS}`);
      for (const found of page.events) addEvent(found);
    } catch (err) {
      console.warn("events of", contract.name, err);
    }
  })));
  renderEvents();
}

function subscribeEvents(socket) {
  for (const contract of state.contracts) {
    const payload = { channel: `events:${contract.name}` };
    const last = state.eventsLast.get(contract.name);
    if (last) Object.assign(payload, { lastBlock: last.block, lastBlockHash: last.hash });
    socket.emit("subscribe", payload);
  }
}

function eventsReorg(reorg) {
  const removed = new Set(reorg.removed.map((r) => r.hash));
  state.events = state.events.filter((e) => !(e.chainId === reorg.chainId && removed.has(e.blockHash)));
  for (const [name, last] of state.eventsLast) {
    if (removed.has(last.hash)) state.eventsLast.set(name, { block: reorg.commonAncestor.number, hash: reorg.commonAncestor.hash });
  }
  renderEvents();
}

// reorgs, connection, lag --------------------------------------------------------------

function onReorg(reorg) {
  if (state.contracts.length) eventsReorg(reorg);
  if (state.chains.length > 1) {
    laneReorg(reorg);
    renderLanes();
    const primary = state.chains.find((c) => c.primary);
    if (primary && reorg.chainId !== primary.chainId) return;  // another chain's: its lane only
  }
  const removed = reorg.removed.map((r) => r.number);
  const first = Math.min(...removed), last = Math.max(...removed);
  const span = first === last ? `block ${first}` : `blocks ${first}–${last}`;
  const banner = $("reorg-banner");
  banner.textContent =
    `Reorg of depth ${reorg.depth} at ${new Date().toLocaleTimeString()}: ${span} replaced ` +
    `(common ancestor #${reorg.commonAncestor.number}); the new blocks follow.`;
  banner.hidden = false;
  clearTimeout(banner.timer);
  banner.timer = setTimeout(() => { banner.hidden = true; state.replaced.clear(); renderBlocks(); }, 60000);
  state.replaced = new Set(reorg.removed.map((r) => r.hash));
  state.blocks = state.blocks.filter((b) => b.number <= reorg.commonAncestor.number);
  state.lastBlock = reorg.commonAncestor.number;
  state.lastHash = reorg.commonAncestor.hash;
  renderBlocks();
  renderChart();
}

// finality: the chain's finalized and safe blocks, as the follower announces them
function onFinalized(marks) {
  state.marks.set(marks.chainId, { finalized: marks.number, safe: marks.safe.number });
  const primary = state.chains.find((c) => c.primary);
  if (!primary || (primary.chainId ?? marks.chainId) === marks.chainId) {
    const pill = $("finality");
    pill.textContent = `final #${marks.number} · safe #${marks.safe.number}`;
    pill.hidden = false;
  }
  renderLanes();
}

function setConnection(kind, text) {
  const pill = $("connection");
  pill.className = `pill ${kind}`;
  pill.textContent = text || kind;
}

async function pollStatus() {
  const pill = $("lag");
  try {
    const status = await getJSON("/api/status");
    if (status.lag === null) {
      pill.textContent = "lag unknown";
      pill.className = "pill";
    } else {
      pill.textContent = `lag ${status.lag} block${status.lag === 1 ? "" : "s"}`;
      pill.className = status.lag > 2 ? "pill behind" : "pill live";
    }
    pill.title = status.indexing;
  } catch (err) {
    pill.textContent = "lag –";
    pill.className = "pill";
  }
}

function connect() {
  const socket = io("/realtime", {
    transports: ["websocket", "polling"],
    // asked on every (re)connect: the server replays what was missed since lastBlock
    auth: (send) => send(state.lastBlock === null ? {} : { lastBlock: state.lastBlock, lastBlockHash: state.lastHash }),
  });
  state.socket = socket;
  socket.on("connect", () => setConnection("live"));
  socket.on("disconnect", () => setConnection("reconnecting"));
  socket.on("connect_error", () => setConnection(socket.active ? "reconnecting" : "offline"));
  socket.io.on("reconnect_attempt", (n) => setConnection("reconnecting", `reconnecting (${n})`));
  socket.io.on("reconnect_failed", () => setConnection("offline"));
  socket.on("connected", () => {
    for (const token of state.prices.keys()) socket.emit("subscribe", { channel: `price:${token}` });
    subscribeLanes(socket);
    subscribeEvents(socket);
  });
  socket.on("contract-event", (event) => {
    event.fresh = true;
    addEvent(event);
    renderEvents();
  });
  socket.on("new-block", (block) => {
    if (state.chains.length > 1) {
      laneBlock(block);
      renderLanes();
      const primary = state.chains.find((c) => c.primary);
      if (primary && block.chainId !== primary.chainId) return;  // another chain's: its lane only
    }
    addBlock(block, true);
    renderBlocks();
    renderChart();
  });
  socket.on("price-update", onPrice);
  socket.on("reorg", onReorg);
  socket.on("finalized", onFinalized);
  socket.on("exception", (error) => console.warn("server:", error.message));
  window.addEventListener("offline", () => setConnection("offline"));
}

async function start() {
  try {
    const [blocks, prices] = await Promise.all([getJSON("/api/blocks?limit=100"), getJSON("/api/prices")]);
    for (const block of blocks.reverse()) addBlock(block, false);
    for (const price of prices) onPrice(price);
  } catch (err) {
    console.warn("snapshot", err);
  }
  await loadChains();
  await loadContracts();
  renderBlocks();
  renderChart();
  if (typeof io !== "function") {
    setConnection("offline", "offline: socket.io-client missing (run make)");
    return;
  }
  connect();
  pollStatus();
  setInterval(tickAges, 1000);
  setInterval(renderChart, 5000);
  setInterval(pollStatus, 3000);
  setInterval(refreshTokens, 10000);
}

start();
