// dream view: the page over a sink output (dream view) or a key's rollout history (dream serve /ui).
// Plain JS, no libraries: every request is relative, so the page works at / and at /ui/.
"use strict";

const state = { offset: 0, limit: 60, status: "all", q: "", sort: null, desc: false, mode: "grid",
  summary: null, key: sessionStorage.getItem("dream-key") || "", page: null };
const $ = (sel) => document.querySelector(sel);
const objectUrls = new Map();

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function headers() { return state.key ? { Authorization: "Bearer " + state.key } : {}; }

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api(path, options) {
  let resp = await fetch(path, Object.assign({ headers: headers() }, options || {}));
  // The key's rate limit covers the page's calls too: wait out a 429's Retry-After (a page of
  // thumbnails can outrun a key's burst) and try again, a few times.
  for (let tries = 0; resp.status === 429 && tries < 20 && !(options && options.method === "POST"); tries++) {
    await sleep(1000 * Math.min(10, parseFloat(resp.headers.get("Retry-After")) || 1));
    resp = await fetch(path, Object.assign({ headers: headers() }, options || {}));
  }
  if (!resp.ok) {
    let detail = resp.status + " " + resp.statusText;
    try { const body = await resp.json(); detail = body.detail?.message || body.detail || detail; } catch (e) { /* not JSON */ }
    const err = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    err.status = resp.status;
    throw err;
  }
  return resp;
}

// Media go through fetch (not a bare src=) so the API key header rides along on /ui.
async function mediaUrl(path) {
  if (objectUrls.has(path)) return objectUrls.get(path);
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  objectUrls.set(path, url);
  return url;
}

const q = (id) => "id=" + encodeURIComponent(id);

function showMessage(text) { $("#message").textContent = text || ""; }

async function loadPage() {
  const params = new URLSearchParams({ offset: state.offset, limit: state.limit, status: state.status, q: state.q });
  if (state.sort) { params.set("sort", state.sort); params.set("desc", state.desc ? "true" : "false"); }
  let page;
  try { page = await (await api("api/rows?" + params)).json(); } catch (e) { showMessage(e.message); return; }
  state.page = page;
  for (const b of document.querySelectorAll("#filters button")) b.querySelector("b").textContent = page.counts[b.dataset.status] ?? 0;
  const end = Math.min(page.offset + page.rows.length, page.total);
  $("#range").textContent = page.total ? `${page.offset + 1}–${end} of ${page.total}` : "0 rows";
  $("#prev").disabled = page.offset === 0;
  $("#next").disabled = end >= page.total;
  showMessage(page.total ? "" : "No rows match.");
  $("#drift-sort").hidden = !page.columns.includes("qc_drift_db");
  $("#drift-sort").classList.toggle("active", state.sort === "qc_drift_db" && state.desc);
  if (state.mode === "grid") renderGrid(page); else renderTable(page);
  document.body.dataset.loaded = String(Date.now());
}

function renderGrid(page) {
  const grid = $("#grid");
  grid.replaceChildren();
  for (const row of page.rows) {
    const img = row.has_video ? el("img", { alt: "first and last frame" }) : el("div", { class: "no-video" }, "no video");
    const card = el("div", { class: "card", "data-row-id": row.row_id, "data-status": row.status, onclick: () => openRow(row.row_id) },
      img, el("div", { class: "id", title: row.row_id }, row.row_id), el("span", { class: "badge " + row.status }, row.status));
    if (row.qc && row.qc.drift_db != null) {
      card.append(" ", el("span", { class: "badge" + (row.qc.flagged ? " flagged" : "") }, `drift ${row.qc.drift_db.toFixed(2)} dB`));
    }
    if (row.error) card.append(el("div", { class: "error" }, row.error));
    grid.append(card);
    if (row.has_video) mediaUrl("api/thumb?" + q(row.row_id)).then((u) => { img.src = u; }).catch(() => { img.alt = "no thumbnail"; });
  }
}

function cell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(4).replace(/\.?0+$/, "");
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function renderTable(page) {
  const head = $("#table thead"), body = $("#table tbody");
  const tr = el("tr");
  for (const col of page.columns) {
    const arrow = state.sort === col ? (state.desc ? " ▼" : " ▲") : "";
    tr.append(el("th", { "data-col": col, onclick: () => sortBy(col) }, col + arrow));
  }
  head.replaceChildren(tr);
  body.replaceChildren();
  for (const row of page.rows) {
    const r = el("tr", { "data-row-id": row.row_id, onclick: () => openRow(row.row_id) });
    for (const col of page.columns) {
      const text = cell(row.columns[col]);
      r.append(el("td", { title: text }, text));
    }
    body.append(r);
  }
}

function sortBy(col) {
  if (state.sort === col) state.desc = !state.desc; else { state.sort = col; state.desc = false; }
  state.offset = 0;
  loadPage();
}

// ---------------------------------------------------------------- row view

let stripTimer = null;

async function stripPlayer(container, stripPath, frames, onFrame) {
  const url = await mediaUrl(stripPath);
  const img = new Image();
  await new Promise((ok, fail) => { img.onload = ok; img.onerror = fail; img.src = url; });
  const n = Math.max(1, frames || Math.round(img.naturalWidth / img.naturalHeight));
  const fw = img.naturalWidth / n, scale = 288 / img.naturalHeight;
  container.style.width = (fw * scale) + "px";
  container.style.height = "288px";
  container.style.backgroundImage = `url(${url})`;
  container.style.backgroundSize = `${img.naturalWidth * scale}px 288px`;
  const show = (i) => { container.style.backgroundPosition = `${-i * fw * scale}px 0`; container.dataset.frame = i; if (onFrame) onFrame(i); };
  show(0);
  return { frames: n, show };
}

function stopStrip() { if (stripTimer) { clearInterval(stripTimer); stripTimer = null; } }

function canPlayMp4() {
  const v = document.createElement("video");
  return v.canPlayType('video/mp4; codecs="avc1.64001E"') !== "" || v.canPlayType("video/mp4") !== "";
}

async function openRow(rowId) {
  let row;
  try { row = await (await api("api/row?" + q(rowId))).json(); } catch (e) { showMessage(e.message); return; }
  stopStrip();
  const view = $("#row-view");
  view.hidden = false;
  view.dataset.rowId = rowId;
  $("#row-title").textContent = rowId + " · " + row.status +
    (row.qc && row.qc.drift_db != null ? ` · drift ${row.qc.drift_db.toFixed(2)} dB vs ${row.qc.parent_row_id}${row.qc.flagged ? " (flagged)" : ""}` : "");
  $("#row-error").hidden = !row.error;
  $("#row-error").textContent = row.error || "";
  $("#compare-view").hidden = true;
  $("#compare-btn").hidden = !row.reference;
  if (row.reference) $("#compare-btn").textContent = "Side by side with " + row.reference.label;
  const meta = $("#row-meta");
  meta.replaceChildren();
  for (const [k, v] of Object.entries(row.columns)) meta.append(el("tr", {}, el("td", {}, k), el("td", {}, cell(v))));
  const player = $("#player");
  player.replaceChildren();
  if (!row.has_video) return;
  const frames = Number(row.columns.frames) || 0;
  const label = el("span", { id: "frame-label" }, `frame 1 / ${frames}`);
  const scrubber = el("input", { id: "scrubber", type: "range", min: "0", max: String(Math.max(0, frames - 1)), value: "0" });
  if (canPlayMp4()) {
    const video = el("video", { id: "video", muted: "", autoplay: "", loop: "", playsinline: "", controls: "" });
    video.muted = true;
    player.append(video, el("div", { class: "scrub" }, scrubber, label));
    const fps = () => (frames && video.duration ? frames / video.duration : 10);
    video.addEventListener("timeupdate", () => {
      const i = Math.min(frames - 1, Math.floor(video.currentTime * fps()));
      scrubber.value = String(i); label.textContent = `frame ${i + 1} / ${frames}`;
    });
    scrubber.addEventListener("input", () => { video.pause(); video.currentTime = (Number(scrubber.value) + 0.5) / fps(); });
    video.addEventListener("error", () => fallbackToStrip(rowId, frames, player));
    video.src = await mediaUrl("api/video?" + q(rowId));
    video.play().catch(() => { /* autoplay may be refused; the controls remain */ });
  } else {
    await fallbackToStrip(rowId, frames, player);
  }
}

async function fallbackToStrip(rowId, frames, player) {
  player.replaceChildren();
  const box = el("div", { id: "strip", class: "strip-frame" });
  const label = el("span", { id: "frame-label" });
  const scrubber = el("input", { id: "scrubber", type: "range", min: "0", value: "0" });
  const play = el("button", { id: "strip-play" }, "⏸");
  player.append(el("p", {}, "This browser cannot play the mp4; showing its frames."), box, el("div", { class: "scrub" }, play, scrubber, label));
  let total = frames;
  const strip = await stripPlayer(box, "api/strip?" + q(rowId), frames, (i) => { scrubber.value = String(i); label.textContent = `frame ${i + 1} / ${total}`; });
  total = strip.frames;
  strip.show(0);
  scrubber.max = String(strip.frames - 1);
  scrubber.addEventListener("input", () => { stopStrip(); play.textContent = "▶"; strip.show(Number(scrubber.value)); });
  const run = () => { stripTimer = setInterval(() => strip.show((Number(scrubber.value) + 1) % strip.frames), 100); };
  play.addEventListener("click", () => { if (stripTimer) { stopStrip(); play.textContent = "▶"; } else { run(); play.textContent = "⏸"; } });
  run();
}

async function openCompare() {
  const rowId = $("#row-view").dataset.rowId;
  let cmp;
  try { cmp = await (await api("api/compare?" + q(rowId))).json(); } catch (e) { showMessage(e.message); return; }
  stopStrip();
  const v = document.querySelector("#player video");
  if (v) v.pause();
  $("#compare-view").hidden = false;
  $("#cmp-left-label").textContent = "rollout " + rowId;
  $("#cmp-right-label").textContent = cmp.reference.label;
  const scrubber = $("#cmp-scrubber"), label = $("#cmp-frame-label");
  let marker = null;
  const onFrame = (i) => {
    scrubber.value = String(i);
    const p = cmp.psnr_db[i];
    label.textContent = `frame ${i + 1} / ${cmp.frames} · PSNR ${p == null ? "identical" : p.toFixed(2) + " dB"}`;
    if (marker) marker(i);
  };
  const left = await stripPlayer($("#cmp-left"), "api/strip?" + q(rowId), null);
  const right = await stripPlayer($("#cmp-right"), "api/reference/strip?" + q(rowId), null);
  const n = Math.min(left.frames, right.frames);
  const show = (i) => { left.show(i); right.show(i); onFrame(i); };
  scrubber.max = String(n - 1);
  scrubber.oninput = () => { stopStrip(); show(Number(scrubber.value)); };
  $("#cmp-play").onclick = () => {
    if (stripTimer) { stopStrip(); return; }
    stripTimer = setInterval(() => show((Number(scrubber.value) + 1) % n), 100);
  };
  marker = plotPsnr($("#psnr-plot"), cmp);
  show(0);
}

// Per-frame PSNR as an inline SVG line; identical frames (null) are drawn at the top.
function plotPsnr(container, cmp) {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 180, L = 40, B = 24, T = 10, R = 10;
  const vals = cmp.psnr_db.map((v) => (v == null ? null : v));
  const finite = vals.filter((v) => v != null);
  const hi = finite.length ? Math.ceil(Math.max(...finite) / 5) * 5 : 50, lo = finite.length ? Math.floor(Math.min(...finite) / 5) * 5 : 0;
  const top = hi === lo ? hi + 5 : hi;
  const x = (i) => L + (vals.length > 1 ? (i * (W - L - R)) / (vals.length - 1) : 0);
  const y = (v) => T + ((top - (v == null ? top : Math.min(v, top))) * (H - T - B)) / (top - lo || 1);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const add = (tag, attrs, text) => { const n = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); if (text != null) n.textContent = text; svg.append(n); return n; };
  for (const v of [lo, (lo + top) / 2, top]) {
    add("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#dde1e6" });
    add("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6674" }, v.toFixed(0));
  }
  add("text", { x: L, y: H - 6, "font-size": 11, fill: "#5b6674" }, `PSNR (dB) per frame vs ${cmp.reference.label} (identical frames at the top); mean ${cmp.mean_db == null ? "identical" : cmp.mean_db.toFixed(2) + " dB"}`);
  add("polyline", { points: vals.map((v, i) => `${x(i)},${y(v)}`).join(" "), fill: "none", stroke: "#2f6fdf", "stroke-width": 2, class: "psnr-line" });
  const cursor = add("line", { y1: T, y2: H - B, stroke: "#d33", "stroke-width": 1 });
  container.replaceChildren(svg);
  return (i) => { cursor.setAttribute("x1", x(i)); cursor.setAttribute("x2", x(i)); };
}

function closeRow() {
  stopStrip();
  const v = document.querySelector("#player video");
  if (v) v.pause();
  $("#row-view").hidden = true;
}

// ---------------------------------------------------------------- wiring

function wire() {
  for (const b of document.querySelectorAll("#filters button")) {
    b.addEventListener("click", () => {
      for (const o of document.querySelectorAll("#filters button")) o.classList.toggle("active", o === b);
      state.status = b.dataset.status; state.offset = 0; loadPage();
    });
  }
  for (const b of document.querySelectorAll("#modes button")) {
    b.addEventListener("click", () => {
      for (const o of document.querySelectorAll("#modes button")) o.classList.toggle("active", o === b);
      state.mode = b.dataset.mode;
      $("#grid").hidden = state.mode !== "grid"; $("#table").hidden = state.mode !== "table";
      loadPage();
    });
  }
  let timer = null;
  $("#search").addEventListener("input", (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.q = e.target.value; state.offset = 0; loadPage(); }, 200);
  });
  $("#drift-sort").addEventListener("click", () => { state.sort = "qc_drift_db"; state.desc = true; state.offset = 0; loadPage(); });
  $("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadPage(); });
  $("#next").addEventListener("click", () => { state.offset += state.limit; loadPage(); });
  $("#close-row").addEventListener("click", closeRow);
  $("#compare-btn").addEventListener("click", openCompare);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeRow(); });
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("#api-key").value.trim();
    sessionStorage.setItem("dream-key", state.key);
    objectUrls.clear();
    start();
  });
  $("#play-form").addEventListener("submit", (e) => { e.preventDefault(); playground(); });
}

async function playground() {
  const form = new FormData();
  const frame = $("#play-frame").files[0], actions = $("#play-actions").files[0];
  const out = $("#play-result");
  if (!frame || !actions) { out.textContent = "Choose a start frame and an actions .npy first."; return; }
  form.append("start_frame", frame); form.append("actions", actions);
  form.append("model", $("#play-model").value);
  for (const name of ["seed", "num_steps", "guidance"]) {
    const v = document.querySelector(`#play-form [name=${name}]`).value;
    if (v !== "") form.append(name, v);
  }
  out.textContent = "Rolling out…";
  try {
    const result = await (await api("api/playground", { method: "POST", body: form, headers: headers() })).json();
    out.replaceChildren(el("p", { id: "play-cost" }, `${result.frames} frames · cost $${result.cost_usd.toFixed(4)} · engine ${Math.round(result.engine_wall_ms)} ms · ${result.rollout_id}`));
    state.offset = 0;
    await loadPage();
    openRow(result.rollout_id);
  } catch (e) { out.textContent = "error: " + e.message; }
}

async function start() {
  try {
    state.summary = await (await api("api/summary")).json();
  } catch (e) {
    showMessage(e.message);
    if (e.status === 401) { $("#key-form").hidden = false; $("#key-status").textContent = e.message; }
    return;
  }
  const s = state.summary;
  $("#title").textContent = s.title;
  document.title = "dream view · " + s.title;
  if (s.needs_key) { $("#key-form").hidden = false; $("#key-status").textContent = s.signed_in ? "signed in as " + s.customer : ""; }
  if (s.playground) {
    $("#playground").hidden = false;
    const select = $("#play-model");
    select.replaceChildren(...(s.models || []).map((m) => el("option", { value: m }, m)));
  }
  if (s.needs_key && !s.signed_in) { showMessage("Enter an API key to see its rollouts."); return; }
  await loadPage();
}

wire();
start();
