// The live page: the newest value from the API, then every new value over the gateway's
// WebSocket ({"type": "welcome" | "snapshot" | "syi", "timestamp", "data": <syi.calculated record>}).
// A restatement arrives as {"type": "revision", "data": <the new record>}: its point on the chart
// changes and is ringed; clicking (or hovering) a ringed point lists the bucket's revisions.
"use strict";

const RANGES = {
  "6h": { ms: 6 * 3600e3, interval: "1m" },
  "24h": { ms: 24 * 3600e3, interval: "5m" },
  "7d": { ms: 7 * 86400e3, interval: "1h" },
  "90d": { ms: 90 * 86400e3, interval: "1d" },
};

const state = { config: null, apiKey: null, record: null, points: [], range: "6h", socket: null, retry: 1000 };
const $ = (id) => document.getElementById(id);

function apiKeyFromPage() {
  // a key may be given once as /?api_key=...; it stays for this tab only
  const params = new URLSearchParams(location.search);
  const key = params.get("api_key");
  if (key) {
    sessionStorage.setItem("syi_api_key", key);
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("syi_api_key");
}

async function api(path) {
  const headers = state.apiKey ? { "X-API-Key": state.apiKey } : {};
  const response = await fetch(path, { headers });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = new Error(body.message || body.detail || response.statusText);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function notice(text) {
  $("notice").hidden = !text;
  $("notice").textContent = text || "";
}

function pct(decimal, digits) {
  return decimal === null || decimal === undefined ? "—" : (decimal * 100).toFixed(digits) + " %";
}

function score(value) {
  return value === null || value === undefined ? "—" : value.toFixed(3);
}

function money(value) {
  if (value === null || value === undefined) return "—";
  if (value >= 1e9) return "$" + (value / 1e9).toFixed(1) + " B";
  if (value >= 1e6) return "$" + (value / 1e6).toFixed(1) + " M";
  return "$" + value.toFixed(0);
}

function badge(element, text, kind) {
  element.textContent = text;
  element.className = "badge " + (kind || "");
}

function renderRecord(record) {
  const previous = state.record;
  state.record = record;
  const value = $("syi-value");
  value.textContent = record.syi_percent.toFixed(4);
  value.dataset.bucketEnd = record.bucket_end;
  if (previous && previous.bucket_end !== record.bucket_end) {
    value.parentElement.classList.add("flash");
    setTimeout(() => value.parentElement.classList.remove("flash"), 600);
  }
  $("syi-time").textContent = record.bucket_end.replace("T", " ").replace(".000Z", " UTC");
  const premium = record.risk_premium_decimal;
  $("risk-premium").textContent = premium === null || premium === undefined
    ? "— (no fresh T-bill)" : (premium * 10000).toFixed(1) + " bps (" + pct(premium, 3) + ")";
  $("tbill").textContent = pct(record.tbill_apy_decimal, 3);
  $("coverage").textContent = pct(record.coverage, 1);
  $("hhi").textContent = record.hhi.toFixed(0);
  $("methodology").textContent = record.methodology_version;
  $("cid").textContent = record.cid;
  const flags = (record.flags || []).join(", ");
  badge($("status"), record.status + (flags ? " · " + flags : ""), record.status === "ok" ? "ok" : "warn");
  renderConstituents(record.constituents || []);
  renderAge();
}

function renderConstituents(rows) {
  const body = $("constituents-body");
  body.replaceChildren();
  for (const c of rows) {
    const tr = document.createElement("tr");
    const excluded = c.excluded_reason !== null && c.excluded_reason !== undefined;
    if (excluded) tr.className = "excluded";
    const cells = [
      c.symbol, pct(c.weight, 2), pct(c.weight_renormalised, 2), pct(c.apy_eff_decimal, 2), score(c.peg_score),
      score(c.liquidity_score), score(c.counterparty_score), score(c.s_worst), pct(c.ray_decimal, 3),
      money(c.market_cap_usd), excluded ? "excluded: " + c.excluded_reason : "included",
    ];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text; // textContent: published strings are never parsed as HTML
      if (i === cells.length - 1 && excluded) td.className = "reason";
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
}

function renderAge() {
  if (!state.record) return;
  const age = (Date.now() - Date.parse(state.record.bucket_end)) / 1000;
  $("syi-age").textContent = age < 0 ? "just now" : Math.round(age) + " s ago";
  const stale = age > (state.config ? state.config.stale_after_seconds : 300);
  badge($("freshness"), stale ? "stale" : "fresh", stale ? "bad" : "ok");
  document.body.dataset.stale = String(stale);
}

function drawHistory() {
  const canvas = $("history-chart");
  drawLineChart(canvas, state.points, { unit: "%", decimals: 3 });
  const range = RANGES[state.range];
  const revised = Number(canvas.dataset.revised || 0);
  $("chart-note").textContent = state.points.length + " points, " + range.interval + " averages, newest " +
    (state.points.length ? new Date(state.points[state.points.length - 1].t).toISOString() : "—") +
    (revised ? " · " + revised + " revised (ringed: click one for its revisions)" : "");
}

async function loadHistory() {
  const range = RANGES[state.range];
  // the window ends at the newest value (a replayed history may be older than now)
  const newest = state.record ? Date.parse(state.record.bucket_end) : Date.now();
  const end = new Date(newest + 1).toISOString();
  const start = new Date(newest + 1 - range.ms).toISOString();
  const query = new URLSearchParams({ start, end, interval: range.interval, limit: "2000" });
  const page = await api("/v1/index/syi/history?" + query);
  // minute points carry their revision (averages do not: they are not ringed)
  state.points = page.items.map((p) => ({ t: Date.parse(p.timestamp), v: p.syi_percent, revision: p.revision || 0 }));
  drawHistory();
}

function addLivePoint(record) {
  if (RANGES[state.range].interval !== "1m") return; // averaged ranges are redrawn from the API
  const t = Date.parse(record.bucket_end);
  const points = state.points.filter((p) => p.t !== t);
  points.push({ t, v: record.syi_percent, revision: record.revision || 0 });
  points.sort((a, b) => a.t - b.t);
  const from = t - RANGES[state.range].ms;
  state.points = points.filter((p) => p.t > from);
  drawHistory();
}

function onEnvelope(envelope) {
  if (typeof envelope.seq === "number") state.seq = Math.max(state.seq ?? -1, envelope.seq);
  if (envelope.type === "revision") return onRevision(envelope.data);
  if (envelope.type !== "snapshot" && envelope.type !== "syi") return; // welcome, pong, error
  let record = envelope.data;
  if (Array.isArray(record)) record = record[record.length - 1];
  if (!record || typeof record.syi_percent !== "number") return;
  // a late or repeated value must not move the ticker backwards
  if (state.record && record.bucket_end < state.record.bucket_end) return;
  renderRecord(record);
  addLivePoint(record);
  document.body.dataset.wsUpdates = String(Number(document.body.dataset.wsUpdates || 0) + 1);
}

// A restated bucket: the new record replaces its point (minute ranges) or the averages are
// re-read (averaged ranges); the ticker follows when it shows that bucket.
function onRevision(record) {
  if (!record || typeof record.syi_percent !== "number" || !record.bucket_end) return;
  revisionCache.delete(record.bucket_end);
  if (state.record && record.bucket_end === state.record.bucket_end &&
      (record.revision || 0) >= (state.record.revision || 0)) {
    renderRecord(record);
  }
  const t = Date.parse(record.bucket_end);
  if (RANGES[state.range].interval === "1m") {
    const point = state.points.find((p) => p.t === t);
    if (point && (record.revision || 0) >= (point.revision || 0)) {
      point.v = record.syi_percent;
      point.revision = record.revision || 0;
      drawHistory();
    }
  } else {
    clearTimeout(state.reloadTimer); // several revisions at once: one reload
    state.reloadTimer = setTimeout(() => loadHistory().catch((err) => notice("History unavailable: " + err.message)), 500);
  }
  if (state.panelBucket === record.bucket_end) showRevisions(record.bucket_end);
  document.body.dataset.wsRevisions = String(Number(document.body.dataset.wsRevisions || 0) + 1);
}

const revisionCache = new Map(); // bucket_end -> /revisions response (dropped when a revision arrives)

function markAt(event) {
  // the ring under the pointer, if any (within 10 CSS pixels)
  const canvas = $("history-chart");
  const box = canvas.getBoundingClientRect();
  const px = event.clientX - box.left, py = event.clientY - box.top;
  let best = null, bestDistance = 10;
  for (const mark of canvas.chartMarks || []) {
    const distance = Math.hypot(mark.x - px, mark.y - py);
    if (distance <= bestDistance) { best = mark; bestDistance = distance; }
  }
  return best;
}

async function showRevisions(bucketEnd) {
  state.panelBucket = bucketEnd;
  let page = revisionCache.get(bucketEnd);
  if (!page) {
    page = await api("/v1/index/syi/" + encodeURIComponent(bucketEnd) + "/revisions");
    revisionCache.set(bucketEnd, page);
  }
  if (state.panelBucket !== bucketEnd) return; // another point was chosen meanwhile
  $("revision-bucket").textContent = bucketEnd.replace("T", " ").replace(".000Z", " UTC");
  const body = $("revision-body");
  body.replaceChildren();
  for (const item of page.items) {
    const tr = document.createElement("tr");
    if (item.superseded) tr.className = "superseded";
    const cells = [
      String(item.revision) + (item.superseded ? "" : " (current)"), item.syi_percent.toFixed(4) + " %",
      item.published_at.replace("T", " ").replace("Z", " UTC"),
      item.revision === 0 ? "first publication" : (item.restatement_reason || "—"), item.cid,
    ];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text; // published strings are never parsed as HTML
      if (i === 4) td.className = "cid";
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
  $("revision-panel").hidden = false;
}

function watchChart() {
  const canvas = $("history-chart");
  const open = (mark) => showRevisions(new Date(mark.t).toISOString())
    .catch((err) => notice("Revisions unavailable: " + err.message));
  canvas.addEventListener("click", (event) => { const mark = markAt(event); if (mark) open(mark); });
  canvas.addEventListener("mousemove", (event) => {
    const mark = markAt(event);
    canvas.style.cursor = mark ? "pointer" : "";
    if (mark && new Date(mark.t).toISOString() !== state.panelBucket) open(mark);
  });
  $("revision-close").addEventListener("click", () => { $("revision-panel").hidden = true; state.panelBucket = null; });
}

function connect() {
  let url = state.config.ws_url;
  if (state.apiKey) url += (url.includes("?") ? "&" : "?") + "api_key=" + encodeURIComponent(state.apiKey);
  // after a drop, resume after the last position seen: the minutes missed meanwhile arrive in order
  if (state.seq !== undefined) url += (url.includes("?") ? "&" : "?") + "since_seq=" + state.seq;
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.onopen = () => { state.retry = 1000; badge($("connection"), "live", "ok"); };
  socket.onmessage = (event) => {
    try { onEnvelope(JSON.parse(event.data)); } catch (err) { console.warn("bad message", err); }
  };
  socket.onclose = () => {
    badge($("connection"), "reconnecting", "warn");
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 30000);
  };
}

async function start() {
  state.config = await (await fetch("/config.json")).json();
  state.apiKey = apiKeyFromPage();
  if (state.config.auth_required && !state.apiKey) {
    notice("This server requires an API key: open this page as /?api_key=<your key>.");
  }
  document.querySelectorAll(".ranges button").forEach((button) => {
    button.addEventListener("click", () => {
      document.querySelectorAll(".ranges button").forEach((b) => b.classList.toggle("active", b === button));
      state.range = button.dataset.range;
      loadHistory().catch((err) => notice("History unavailable: " + err.message));
    });
  });
  try {
    renderRecord(await api("/v1/index/syi/current"));
  } catch (err) {
    if (err.status === 404) badge($("status"), "no value yet", "warn");
    else notice("Current value unavailable: " + err.message);
  }
  await loadHistory().catch((err) => notice("History unavailable: " + err.message));
  watchChart();
  connect();
  setInterval(renderAge, 1000);
  window.addEventListener("resize", drawHistory);
}

start();
