// dream view over a policy-evaluation run: the table, the correlations, two scatters, coverage curves, GIFs.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = { simulator: "#286ec8", model: "#dc5a1e" };

function el(tag, attrs = {}, text = "") {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function fmt(x, digits = 2) {
  return x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(digits);
}

function scatter(target, points, label) {
  const size = 320, pad = 34;
  const svg = el("svg", { width: size, height: size, viewBox: `0 0 ${size} ${size}` });
  const pos = (v) => pad + v * (size - 2 * pad);
  svg.appendChild(el("rect", { x: pad, y: pad, width: size - 2 * pad, height: size - 2 * pad, fill: "#fafbfc", stroke: "#dde1e6" }));
  svg.appendChild(el("line", { x1: pos(0), y1: size - pos(0), x2: pos(1), y2: size - pos(1), stroke: "#c4cbd4", "stroke-dasharray": "4 3" }));
  for (const t of [0, 0.5, 1]) {
    svg.appendChild(el("text", { x: pos(t), y: size - pad + 14, "font-size": 10, "text-anchor": "middle", fill: "#5b6674" }, String(t)));
    svg.appendChild(el("text", { x: pad - 6, y: size - pos(t) + 3, "font-size": 10, "text-anchor": "end", fill: "#5b6674" }, String(t)));
  }
  const placed = [];  // label boxes so far: a label that would overlap one moves down a line
  const sorted = [...points].sort((a, b) => b.y - a.y || a.x - b.x);
  for (const p of sorted) {
    const x = pos(p.x), y = size - pos(p.y);
    const dot = el("circle", { cx: x, cy: y, r: 4, fill: "#2f6fdf", "fill-opacity": 0.8 });
    dot.appendChild(el("title", {}, `${p.name}: simulator ${fmt(p.x, 3)}, model ${fmt(p.y, 3)}`));
    svg.appendChild(dot);
    let ly = y - 4;
    const lx = Math.min(x + 6, size - 5 * p.name.length - 2);
    while (placed.some((b) => Math.abs(b.y - ly) < 10 && Math.abs(b.x - lx) < 5 * Math.max(b.len, p.name.length))) ly += 10;
    placed.push({ x: lx, y: ly, len: p.name.length });
    if (ly - y > 6) svg.appendChild(el("line", { x1: x, y1: y, x2: lx, y2: ly - 3, stroke: "#c4cbd4" }));
    svg.appendChild(el("text", { x: lx, y: ly, "font-size": 9, fill: "#1d232b" }, p.name));
  }
  svg.appendChild(el("title", {}, label));
  target.replaceChildren(svg);
}

function curves(episodes, steps) {
  const box = document.getElementById("curves");
  box.replaceChildren();
  const w = 190, h = 90;
  episodes.simulator.forEach((sim, i) => {
    const model = episodes.model[i];
    const svg = el("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}` });
    svg.appendChild(el("rect", { x: 0, y: 0, width: w, height: h, fill: "#fafbfc", stroke: "#dde1e6" }));
    const y = (c) => h - 4 - c * (h - 8);
    svg.appendChild(el("line", { x1: 0, y1: y(0.95), x2: w, y2: y(0.95), stroke: "#78c878" }));
    for (const [name, ep] of [["simulator", sim], ["model", model]]) {
      const pts = ep.coverage.map((c, t) => `${(t / steps) * w},${y(c)}`).join(" ");
      svg.appendChild(el("polyline", { points: pts, fill: "none", stroke: COLOURS[name], "stroke-width": 1.5 }));
    }
    const fig = document.createElement("figure");
    fig.appendChild(svg);
    const cap = document.createElement("figcaption");
    const mark = (ep) => (ep.success ? `<b class="ok">✓ ${ep.steps}</b>` : `<b class="bad">✗ ${fmt(ep.final_coverage)}</b>`);
    cap.innerHTML = `seed ${sim.seed}: <span class="sim">${mark(sim)}</span> · <span class="model">${mark(model)}</span>`;
    fig.appendChild(cap);
    box.appendChild(fig);
  });
}

async function showPolicy(name, steps, row) {
  document.querySelectorAll("#policies tbody tr").forEach((tr) => tr.classList.toggle("active", tr === row));
  const r = await fetch(`api/episodes?policy=${encodeURIComponent(name)}`);
  if (!r.ok) { document.getElementById("message").textContent = (await r.json()).detail; return; }
  const data = await r.json();
  document.getElementById("episodes").hidden = false;
  document.getElementById("episodes-title").textContent = `${name}: every start state`;
  curves(data, steps);
}

async function main() {
  const r = await fetch("api/policy-eval");
  const run = await r.json();
  document.getElementById("title").textContent = run.title;
  const cfg = run.config;
  document.getElementById("config").textContent =
    `${cfg.policies.length} policies × ${cfg.starts} test-split start states (seeds ${cfg.seed_offset}…) × up to ${cfg.steps} steps; ` +
    `model ${cfg.model}. Wall time: simulator ${fmt(run.wall_s.simulator, 0)} s, model ${fmt(run.wall_s.model, 0)} s.`;
  const body = document.querySelector("#policies tbody");
  for (const p of run.policies) {
    const tr = document.createElement("tr");
    const r30 = p.replay && p.replay["30"];
    const replay = r30 && r30.position_px !== null ? `${fmt(r30.position_px, 1)} px, ${fmt(r30.angle_deg, 1)}°` : "–";
    tr.innerHTML = `<td>${p.policy}</td><td>${fmt(p.simulator_success)}</td><td>${fmt(p.model_success)}</td>` +
      `<td>${fmt(p.simulator_coverage, 3)}</td><td>${fmt(p.model_coverage, 3)}</td><td>${fmt(p.agreement)}</td>` +
      `<td>${fmt(p.simulator_steps, 0)} / ${fmt(p.model_steps, 0)}</td><td>${replay}</td>` +
      `<td>${fmt(p.simulator_wall_s, 0)}</td><td>${fmt(p.model_wall_s, 0)}</td>`;
    tr.addEventListener("click", () => showPolicy(p.policy, cfg.steps, tr));
    body.appendChild(tr);
  }
  const corr = document.querySelector("#corr tbody");
  for (const [key, label] of [["success", "success rate"], ["coverage", "mean final coverage"]]) {
    const c = run.correlations[key];
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${label}</td><td>${fmt(c.pearson, 3)}</td><td>${fmt(c.spearman, 3)}</td><td>${fmt(c.mmrv, 3)}</td>`;
    corr.appendChild(tr);
  }
  scatter(document.getElementById("scatter-success"),
    run.policies.map((p) => ({ name: p.policy, x: p.simulator_success, y: p.model_success })), "success rate");
  scatter(document.getElementById("scatter-coverage"),
    run.policies.map((p) => ({ name: p.policy, x: p.simulator_coverage, y: p.model_coverage })), "mean final coverage");
  if (run.videos.length) {
    document.getElementById("videos").hidden = false;
    const list = document.getElementById("video-list");
    for (const name of run.videos) {
      const img = document.createElement("img");
      img.src = `api/gif?name=${encodeURIComponent(name)}`;
      img.alt = name;
      list.appendChild(img);
    }
  }
  if (run.policies.length) showPolicy(run.policies[0].policy, cfg.steps, body.firstElementChild);
}

main().catch((err) => { document.getElementById("message").textContent = String(err); });
