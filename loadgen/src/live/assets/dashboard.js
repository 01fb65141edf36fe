// Gauntlet's live dashboard: line charts on <canvas> (no library), filled from the server's
// events. On every (re)connection the server first sends `hello` and the run so far, so the
// page rebuilds itself from scratch and then follows each second.
"use strict";

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#64748b", "#a16207"];

class Chart {
  constructor(canvas) {
    this.canvas = canvas;
    this.series = new Map();
  }
  clear() { this.series.clear(); }
  // `like`: the name of a series whose colour this one shares (drawn dashed beside it).
  add(name, t, value, dashed, like) {
    if (value === null || value === undefined || !isFinite(value)) return;
    let s = this.series.get(name);
    if (!s) {
      const color = this.series.get(like)?.color || PALETTE[this.series.size % PALETTE.length];
      s = { points: [], dashed: !!dashed, color };
      this.series.set(name, s);
    }
    s.points.push([t, value]);
  }
  draw() {
    const c = this.canvas, ratio = window.devicePixelRatio || 1;
    const width = c.clientWidth || 400, height = c.clientHeight || 210;
    c.width = width * ratio; c.height = height * ratio;
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    g.font = "11px system-ui, sans-serif";
    const legendRows = Math.ceil(this.series.size / 3);
    const left = 52, right = 10, top = 8, bottom = 22 + 14 * legendRows;
    let tMin = Infinity, tMax = -Infinity, vMax = 0, count = 0;
    for (const s of this.series.values()) for (const [t, v] of s.points) {
      tMin = Math.min(tMin, t); tMax = Math.max(tMax, t); vMax = Math.max(vMax, v); count++;
    }
    c.dataset.points = String(count);
    if (!count) { g.fillStyle = "#667085"; g.fillText("no data yet", left, top + 20); return; }
    if (tMax === tMin) tMax = tMin + 1;
    const step = niceStep(vMax / 4 || 1), yMax = Math.max(step * Math.ceil(vMax / step), step);
    const plotW = width - left - right, plotH = height - top - bottom;
    const x = t => left + (t - tMin) / (tMax - tMin) * plotW, y = v => top + plotH - v / yMax * plotH;
    g.strokeStyle = "#e5e9f0"; g.fillStyle = "#667085"; g.lineWidth = 1; g.textAlign = "right";
    for (let v = 0; v <= yMax + step / 2; v += step) {
      g.beginPath(); g.moveTo(left, y(v)); g.lineTo(width - right, y(v)); g.stroke();
      g.fillText(label(v), left - 4, y(v) + 4);
    }
    g.textAlign = "center";
    const tStep = niceStep((tMax - tMin) / 6 || 1);
    for (let t = Math.ceil(tMin / tStep) * tStep; t <= tMax; t += tStep) g.fillText(t + "s", x(t), top + plotH + 14);
    for (const s of this.series.values()) {
      g.strokeStyle = s.color; g.lineWidth = 1.6; g.setLineDash(s.dashed ? [5, 3] : []);
      g.beginPath();
      s.points.forEach(([t, v], i) => (i ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
      g.stroke();
    }
    g.setLineDash([]); g.textAlign = "left";
    let i = 0;
    for (const [name, s] of this.series) {
      const lx = left + (i % 3) * (plotW / 3), ly = top + plotH + 30 + 14 * Math.floor(i / 3);
      g.fillStyle = s.color; g.fillRect(lx, ly - 7, 12, 3);
      g.fillStyle = "#1d2330"; g.fillText(name.length > 34 ? name.slice(0, 33) + "…" : name, lx + 16, ly);
      i++;
    }
  }
}

function niceStep(raw) {
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}
function label(v) { return v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e4 ? (v / 1e3).toFixed(0) + "k" : +v.toFixed(2) + ""; }
function fixed(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }
function cell(text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; }
const $ = id => document.getElementById(id);

const charts = {};
for (const id of ["rate", "failures", "cpu", "memory", "database", "buffer"]) charts[id] = new Chart($("chart-" + id));
let run, totals, last, latest, latency, drawTimer;

function reset() {
  run = null; totals = {}; last = null; latest = {}; latency = {};
  for (const chart of Object.values(charts)) chart.clear();
  $("latency-charts").replaceChildren();
  $("operations").tBodies[0].replaceChildren();
  $("thresholds").tBodies[0].replaceChildren();
  $("statement").textContent = "no statement data yet";
  $("end").hidden = true;
  schedule();
}

function latencyChart(operation) {
  if (!latency[operation]) {
    const section = document.createElement("section");
    const title = document.createElement("h2");
    title.textContent = "Latency of " + operation + ", ms (solid: from the intended send; dashed: service time)";
    const canvas = document.createElement("canvas");
    canvas.dataset.operation = operation;
    section.append(title, canvas);
    $("latency-charts").append(section);
    latency[operation] = new Chart(canvas);
  }
  return latency[operation];
}

function schedule() {
  if (!drawTimer) drawTimer = setTimeout(draw, 100);
}

function draw() {
  drawTimer = null;
  for (const chart of Object.values(charts)) chart.draw();
  for (const chart of Object.values(latency)) chart.draw();
  if (last) {
    const body = $("operations").tBodies[0];
    body.replaceChildren();
    for (const [name, sum] of Object.entries(totals)) {
      // The operation's last second with activity (the drain after the schedule has none).
      const { op, length_s } = latest[name];
      const tr = document.createElement("tr");
      tr.dataset.operation = name;
      const values = {
        target: fixed(op.target, 1), achieved: fixed(op.requests / length_s, 1), requests: String(sum.requests),
        errors: String(sum.errors), dropped: String(sum.dropped), in_flight: String(op.in_flight ?? 0),
        p50: fixed(op.latency_ms?.p50, 2), p95: fixed(op.latency_ms?.p95, 2), p99: fixed(op.latency_ms?.p99, 2),
        service_p95: fixed(op.service_ms?.p95, 2),
      };
      tr.append(cell(name));
      for (const [field, text] of Object.entries(values)) { const td = cell(text); td.dataset.field = field; tr.append(td); }
      body.append(tr);
    }
    const thresholds = $("thresholds").tBodies[0];
    thresholds.replaceChildren();
    for (const t of last.thresholds) {
      const tr = document.createElement("tr");
      const state = t.value === null ? "judged at the end" : t.passed ? "passing" : "failing";
      tr.dataset.threshold = t.metric + " " + t.expression;
      tr.append(cell(t.metric + " " + t.expression), cell(t.value === null ? "–" : fixed(t.value, 4)),
        cell(state, t.value === null ? "wait" : t.passed ? "pass" : "fail"));
      thresholds.append(tr);
    }
    $("clock").textContent = last.t + "s of " + (run ? Math.round(run.duration_s) : "?") + "s";
  }
}

function onRun(start) {
  reset();
  run = start;
  $("scenario").textContent = start.scenario + " → " + start.folder;
  setStatus("running", "running");
}

function onSecond(second) {
  last = second;
  const t = second.t;
  let dropped = 0;
  for (const [name, op] of Object.entries(second.operations)) {
    const sum = totals[name] || (totals[name] = { requests: 0, errors: 0, dropped: 0 });
    sum.requests += op.requests; sum.errors += op.errors; sum.dropped += op.dropped;
    dropped += op.dropped;
    if (op.requests || op.dropped || op.target != null || !latest[name]) latest[name] = { op, length_s: second.length_s };
    if (op.target !== null && op.target !== undefined) charts.rate.add(name + " offered", t, op.target, true);
    charts.rate.add(name + " achieved", t, op.requests / second.length_s, false, name + " offered");
    for (const [kind, n] of Object.entries(op.errors_by_kind)) charts.failures.add(name + " " + kind, t, n);
    const chart = latencyChart(name);
    for (const q of ["p50", "p95", "p99"]) {
      chart.add(q, t, op.latency_ms?.[q]);
      chart.add("service " + q, t, op.service_ms?.[q], true, q);
    }
  }
  charts.failures.add("dropped", t, dropped);
  schedule();
}

function onRound(round) {
  const t = round.t;
  for (const [name, usage] of Object.entries(round.components)) {
    charts.cpu.add(name, t, usage.cpu_percent);
    charts.memory.add(name, t, usage.memory_mb);
  }
  const db = round.database;
  charts.database.add("connections", t, db.connections);
  charts.database.add("lock waits", t, db.lock_waits);
  for (const [service, busy] of Object.entries(db.pool_busy)) charts.database.add(service + " pool busy %", t, busy * 100, true);
  for (const [service, size] of Object.entries(round.event_buffer)) charts.buffer.add(service, t, size);
  if (db.top_statement) {
    const s = db.top_statement;
    $("statement").innerHTML = "";
    const code = document.createElement("code");
    code.textContent = s.query;
    const line = document.createElement("div");
    line.textContent = s.calls + " calls, mean " + fixed(s.mean_ms, 3) + " ms, " + fixed(s.total_ms, 0) + " ms in all";
    $("statement").append(line, code);
  }
  schedule();
}

function onSweep(levels) {
  $("sweep-card").hidden = false;
  const body = $("sweep").tBodies[0];
  body.replaceChildren();
  for (const level of levels) {
    const tr = document.createElement("tr");
    const verdict = level.held === null ? "running" : level.held ? "held" : "broke: " + level.broken;
    tr.append(cell(level.mode), cell(level.level), cell(verdict, level.held === null ? "wait" : level.held ? "pass" : "fail"));
    body.append(tr);
  }
}

function onEnd(end) {
  $("end").hidden = false;
  $("verdict").textContent = (end.passed ? "PASS" : "FAIL") + (end.interrupted ? " (ended early: " + end.interrupted + ")" : "") + " — " + end.folder;
  const links = $("reports");
  links.replaceChildren();
  for (const link of end.reports) {
    const a = document.createElement("a");
    a.href = link.href; a.textContent = link.title;
    links.append(a);
  }
  if (!end.last) return; // a sweep level: the next one follows
  setStatus(end.passed ? "passed" : "failed", end.passed ? "finished: PASS" : "finished: FAIL");
  source.close(); // nothing more will come; the links stay while loadgen serves them
  draw();
}

function setStatus(state, text) { $("status").dataset.state = state; $("status").textContent = text; }

const source = new EventSource("/events");
const handlers = { hello: reset, run: onRun, second: onSecond, round: onRound, sweep: onSweep, end: onEnd };
for (const [name, handler] of Object.entries(handlers)) {
  source.addEventListener(name, e => handler(JSON.parse(e.data)));
}
source.onerror = () => { if ($("status").dataset.state === "running") setStatus("disconnected", "reconnecting…"); };
source.onopen = () => { if ($("status").dataset.state !== "passed" && $("status").dataset.state !== "failed") setStatus("running", "running"); };
