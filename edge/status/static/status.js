// lineside status page: polls /api/status every second and redraws. No framework, no CDN.
// Text from the daemon (reasons, PLC errors) is only ever set with textContent.
"use strict";

const POLL_MS = 1000;
const STALE_AFTER_MS = 3500;
const STATE_LABELS = {
  running: "RUNNING", micro_stop: "MICRO-STOP", unplanned_stop: "STOPPED", planned_stop: "PLANNED STOP",
  blocked: "BLOCKED", starved: "STARVED", planned_break: "BREAK", not_scheduled: "NOT SCHEDULED",
  unknown: "NO DATA",
};
const STATE_HINTS = {
  blocked: "waiting on the downstream machine", starved: "waiting on the upstream machine",
  unknown: "PLC not reachable or daemon not running", planned_break: "planned break",
};
const CATEGORY_LABELS = {
  micro_stop: "micro", unplanned_stop: "unplanned", planned_stop: "planned", blocked: "blocked", starved: "starved",
};

let lastOk = 0;
let timeZone;

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function stateColor(state) {
  return getComputedStyle(document.documentElement).getPropertyValue("--" + state).trim() || "#6b7280";
}

function setPct(id, x) {
  // The unit is smaller than the figure so that "88.9 %" fits on one line of its tile.
  const node = $(id);
  if (x === null || x === undefined) { node.textContent = "–"; return; }
  node.replaceChildren((x * 100).toFixed(1), el("span", "unit", " %"));
}

function num(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US").replace(/,/g, "\u202f");
}

function dur(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, "0"), ss = String(sec).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function clock(ts, seconds) {
  if (!ts) return "–";
  const opts = { hour: "2-digit", minute: "2-digit", hour12: false };
  if (seconds) opts.second = "2-digit";
  if (timeZone) opts.timeZone = timeZone;
  try { return new Date(ts).toLocaleTimeString("en-GB", opts); } catch (e) { return ts; }
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function renderHeader(d) {
  const line = d.line || {};
  timeZone = line.timezone || undefined;
  $("line-name").textContent = line.name || [line.area, line.id].filter(Boolean).join(" / ") || "lineside";
  const sh = d.shift || {};
  $("shift-name").textContent = sh.name ? `Shift ${sh.name}  ${clock(sh.start)}–${clock(sh.end)}` : "no shift";
  $("clock").textContent = clock(d.now, true);
  document.title = `${STATE_LABELS[(d.state || {}).state] || "?"} · ${line.id || "lineside"}`;
}

function renderState(d) {
  const st = d.state || { state: "unknown" };
  const state = st.state || "unknown";
  document.body.dataset.state = state;
  $("state-label").textContent = STATE_LABELS[state] || state.toUpperCase();
  $("state-duration").textContent = dur(st.duration_s);
  let reason = st.reason_text || (st.reason_code !== null && st.reason_code !== undefined ? `code ${st.reason_code}` : "");
  if (!reason && state !== "running") reason = STATE_HINTS[state] || (state.endsWith("stop") ? "no reason yet" : "");
  $("state-reason").textContent = reason || "\u00a0";
}

function renderKpis(d) {
  const sh = d.shift || {};
  setPct("kpi-oee", sh.oee);
  setPct("kpi-availability", sh.availability);
  setPct("kpi-performance", sh.performance);
  setPct("kpi-quality", sh.quality);
  $("parts-good").textContent = num(sh.good_count);
  $("parts-target").textContent = num(sh.target_count);
  const bar = $("parts-bar");
  const ratio = sh.target_count ? Math.min(sh.good_count / sh.target_count, 1) : 0;
  bar.style.width = (ratio * 100).toFixed(1) + "%";
  bar.classList.toggle("behind", ratio < 0.9);
  const detail = [`total ${num(sh.total_count)}`, `rejects ${num(sh.reject_count)}`];
  if (sh.plan_count) detail.push(`plan ${num(sh.plan_count)}`);
  if (sh.product) detail.push(sh.product);
  $("parts-detail").textContent = detail.join(" · ");
}

function renderTimeline(d) {
  const sh = d.shift || {};
  const segs = d.timeline || [];
  const box = $("timeline"), axis = $("timeline-axis");
  box.replaceChildren(); axis.replaceChildren();
  const now = Date.parse(d.now) || Date.now();
  const t0 = Date.parse(sh.start) || (segs.length ? Date.parse(segs[0].start) : now - 3600e3);
  const t1 = Date.parse(sh.end) || now;
  const span = Math.max(t1 - t0, 1);
  for (const s of segs) {
    const a = Math.max(Date.parse(s.start), t0), b = Math.min(s.end ? Date.parse(s.end) : now, t1);
    if (!(b > a)) continue;
    const seg = el("div", "seg");
    seg.style.left = ((a - t0) / span * 100) + "%";
    seg.style.width = Math.max((b - a) / span * 100, 0.15) + "%";
    seg.style.background = stateColor(s.state);
    seg.title = `${STATE_LABELS[s.state] || s.state} ${clock(s.start)}–${s.end ? clock(s.end) : "now"}`;
    box.appendChild(seg);
  }
  const hour = 3600e3;
  for (let t = Math.ceil(t0 / hour) * hour; t <= t1; t += hour) {
    const tick = el("span", null, clock(new Date(t).toISOString()));
    tick.style.left = ((t - t0) / span * 100) + "%";
    axis.appendChild(tick);
  }
  if (now > t0 && now < t1) {
    const mark = el("div", "seg");
    mark.style.left = ((now - t0) / span * 100) + "%";
    mark.style.width = "3px";
    mark.style.background = "#ffffff";
    box.appendChild(mark);
  }
}

function renderLegend() {
  const legend = $("legend");
  for (const s of ["running", "micro_stop", "unplanned_stop", "planned_stop", "blocked", "planned_break", "unknown"]) {
    const item = el("span", null);
    const sw = el("i"); sw.style.background = stateColor(s);
    item.append(sw, STATE_LABELS[s].toLowerCase());
    legend.appendChild(item);
  }
}

function renderStops(d) {
  const body = $("stops");
  body.replaceChildren();
  const stops = d.last_stops || [];
  if (!stops.length) {
    const tr = el("tr"); const td = el("td", "empty", "no stops yet"); td.colSpan = 4; tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  const now = Date.parse(d.now) || Date.now();
  for (const s of stops.slice(0, 6)) {
    const tr = el("tr");
    const open = !s.end;
    const seconds = open ? (now - Date.parse(s.start)) / 1000 : s.duration_s;
    const chip = el("span", "chip" + (open ? " open" : ""), CATEGORY_LABELS[s.category] || s.category);
    chip.style.background = stateColor(s.category);
    if (s.category === "micro_stop") chip.style.color = "#111";
    const cat = el("td"); cat.appendChild(chip);
    const hasReason = s.reason_code !== null && s.reason_code !== undefined;
    const reason = el("td", null, s.reason_text || (hasReason ? `code ${s.reason_code}` : (reasons.length ? "" : "–")));
    if (!hasReason && reasons.length && s.category !== "micro_stop") {
      // A stop without a reason gets a big button: the operator picks one from the configured list.
      const btn = el("button", "set-reason", "Set reason");
      btn.type = "button";
      btn.dataset.stopId = s.id;
      btn.addEventListener("click", () => openPicker(s));
      reason.appendChild(btn);
    }
    tr.append(el("td", null, clock(s.start, true)), el("td", null, dur(seconds) + (open ? " …" : "")), cat, reason);
    body.appendChild(tr);
  }
}

function renderReasons(d) {
  const box = $("reasons");
  box.replaceChildren();
  const rows = d.top_reasons || [];
  if (!rows.length) { box.appendChild(el("div", "empty", "no stop time this shift")); return; }
  const max = Math.max(...rows.map((r) => r.duration_s), 1);
  for (const r of rows) {
    const row = el("div", "reason-row");
    row.append(el("span", null, `${r.reason_text} (${r.count}×)`), el("b", null, dur(r.duration_s)));
    const bar = el("div", "reason-bar");
    bar.style.width = (r.duration_s / max * 100) + "%";
    row.appendChild(bar);
    box.appendChild(row);
  }
}

function renderHealth(d) {
  const plcs = $("plcs");
  plcs.replaceChildren();
  for (const [name, p] of Object.entries(d.plcs || {})) {
    const item = el("div", "plc " + (p.connected ? "up" : "down"));
    item.appendChild(el("span", "dot"));
    let text = `${name} ${p.connected ? "connected" : "DISCONNECTED"} · ${Number(p.values_per_s || 0).toFixed(0)}/s`;
    if (p.bad_samples) text += ` · bad ${num(p.bad_samples)}`;
    if (p.reconnects) text += ` · reconnects ${num(p.reconnects)}`;
    if (!p.connected && p.last_error) text += ` · ${p.last_error}`;
    item.append(text);
    plcs.appendChild(item);
  }
  const b = d.buffer || {};
  $("buffer-size").textContent = bytes(b.bytes) + (b.full ? " FULL" : "") + (b.overloaded ? " OVERLOADED" : "");
  $("buffer-size").className = b.full || b.overloaded ? "warn" : "";
  $("buffer-unsent").textContent = num(b.unsent);
  $("buffer-age").textContent = b.oldest_unsent_age_s === null || b.oldest_unsent_age_s === undefined ? "–" : dur(b.oldest_unsent_age_s);
  const s = d.sync || {};
  $("sync-lag").textContent = s.lag_s === null || s.lag_s === undefined ? "–" : dur(s.lag_s);
  const state = $("sync-state");
  state.textContent = s.state && s.state !== "ok" ? s.state.replace(/_/g, " ").toUpperCase() : "";
  state.className = s.state && s.state !== "ok" ? "warn" : "";
}

// ---- reason picker (GET /api/reasons, POST /api/stops/{id}/reason)

let reasons = [];
let pickerStop = null;

async function loadReasons() {
  try {
    const resp = await fetch("/api/reasons", { cache: "no-store", credentials: "same-origin" });
    if (resp.ok) reasons = await resp.json();
  } catch (e) {
    // retried on the next poll
  }
}

function openPicker(stop) {
  pickerStop = stop;
  $("picker-stop").textContent = `Stop at ${clock(stop.start, true)}, ${dur(stop.duration_s)} so far` +
    (stop.end ? ` (ended ${clock(stop.end, true)})` : "");
  $("picker-error").textContent = "";
  const list = $("picker-list");
  list.replaceChildren();
  for (const r of reasons) {
    const b = el("button", r.planned ? "planned" : "unplanned", r.text);
    b.type = "button";
    b.dataset.code = String(r.code);
    b.appendChild(el("span", "sub", `${r.planned ? "planned" : "unplanned"} · ${r.category} · code ${r.code}`));
    b.addEventListener("click", () => chooseReason(r));
    list.appendChild(b);
  }
  $("picker").hidden = false;
}

function closePicker() {
  pickerStop = null;
  $("picker").hidden = true;
}

async function chooseReason(r) {
  const stop = pickerStop;
  if (!stop) return;
  for (const b of $("picker-list").querySelectorAll("button")) b.disabled = true;
  try {
    const resp = await fetch(`/api/stops/${encodeURIComponent(stop.id)}/reason`, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code: r.code }),
    });
    if (!resp.ok) {
      let msg = `HTTP ${resp.status}`;
      try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
      $("picker-error").textContent = `Not saved: ${msg}`;
      for (const b of $("picker-list").querySelectorAll("button")) b.disabled = false;
      return;
    }
    closePicker();
    const toast = $("toast");
    toast.textContent = `Reason saved: ${r.text}`;
    toast.hidden = false;
    setTimeout(() => { toast.hidden = true; }, 4000);
  } catch (e) {
    $("picker-error").textContent = "Not saved: the daemon does not answer. Try again.";
    for (const b of $("picker-list").querySelectorAll("button")) b.disabled = false;
  }
}

$("picker-cancel").addEventListener("click", closePicker);
$("picker").addEventListener("click", (ev) => { if (ev.target === $("picker")) closePicker(); });

function render(d) {
  renderHeader(d); renderState(d); renderKpis(d); renderTimeline(d); renderStops(d); renderReasons(d); renderHealth(d);
}

function markStale() {
  const stale = lastOk && Date.now() - lastOk > STALE_AFTER_MS;
  document.body.classList.toggle("is-stale", Boolean(stale));
  $("stale").hidden = !stale;
  if (stale) $("stale-since").textContent = new Date(lastOk).toLocaleTimeString("en-GB", { hour12: false });
}

async function poll() {
  try {
    const resp = await fetch("/api/status", { cache: "no-store", credentials: "same-origin" });
    if (resp.ok) {
      if (!reasons.length) await loadReasons();
      render(await resp.json());
      lastOk = Date.now();
    }
  } catch (e) {
    // Network or daemon down: keep the last figures and flag them as stale.
  }
  markStale();
  setTimeout(poll, POLL_MS);
}

renderLegend();
poll();
