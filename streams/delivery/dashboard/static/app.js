/* churnpulse support dashboard: plain JS, no dependencies (works offline). */
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { selected: null, customer: null, boardTimer: null, custTimer: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function pct(x) { return typeof x === "number" ? `${Math.round(x * 100)}%` : "–"; }
function ago(ts) {
  if (!ts) return "";
  const s = (Date.now() - Date.parse(ts)) / 1000;
  if (s < 0 || Number.isNaN(s)) return new Date(ts).toLocaleString();
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}
function when(ts) { return ts ? new Date(ts).toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : ""; }
function tick(ms) { return new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }); }
function badge(sev) { return el("span", { class: `badge ${sev}`, text: sev || "?" }); }

/* ---- at-risk board ------------------------------------------------------------------ */
function filters() {
  const params = new URLSearchParams();
  for (const name of ["severity", "team", "segment", "status", "q"]) {
    const value = $(`#filter-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  if ($("#filter-holdout").checked) params.set("holdout", "1");
  return params;
}

function fillSelect(select, values) {
  const current = select.value;
  const have = new Set([...select.options].map((o) => o.value));
  for (const v of values) if (!have.has(v)) select.append(el("option", { value: v, text: v }));
  select.value = current;
}

/* Responses can come back out of order: only the newest request may render. */
const seq = { board: 0, customer: 0 };

async function loadBoard() {
  const mine = ++seq.board;
  const data = await api(`/api/board?${filters()}`);
  if (mine !== seq.board) return;
  fillSelect($("#filter-severity"), data.facets.severities);
  fillSelect($("#filter-team"), data.facets.teams);
  fillSelect($("#filter-segment"), data.facets.segments);
  const c = data.counts;
  $("#kpi-critical").textContent = c["severity.critical"];
  $("#kpi-high").textContent = c["severity.high"];
  $("#kpi-medium").textContent = c["severity.medium"];
  $("#kpi-open").textContent = c.open;
  $("#board-count").textContent = `${data.rows.length} shown`;
  const body = $("#board tbody");
  body.replaceChildren();
  if (!data.rows.length) body.append(el("tr", { class: "empty" }, el("td", { colspan: 7, text: "No customers match." })));
  for (const r of data.rows) {
    const bar = el("span", { class: "bar" }, el("i"));
    bar.firstChild.style.width = pct(r.score);
    const tr = el("tr", {
      "data-customer": r.customer_id, "data-severity": r.severity, "data-status": r.status,
      class: r.customer_id === state.selected ? "selected" : null,
      onclick: () => openCustomer(r.customer_id),
    },
      el("td", { class: "num" }, el("span", { class: "risk" }, bar, el("b", { text: pct(r.score) })),
        r.calibrated === false ? el("span", { class: "badge uncal", text: "calibrating", title: "from a model version still calibrating: not yet a trustworthy probability" }) : ""),
      el("td", {}, el("b", { text: r.customer_id }),
        r.customer_value ? el("span", { class: `value ${r.customer_value}`, text: `${r.customer_value} value` }) : ""),
      el("td", {}, badge(r.severity), r.holdout ? el("span", { class: "badge holdout", text: "holdout" }) : ""),
      el("td", { text: r.team || "" }),
      el("td", { text: r.segment || "" }),
      el("td", {}, el("span", { class: `status ${r.status}`, text: r.status + (r.assignee ? ` · ${r.assignee}` : "") })),
      el("td", { class: "muted", text: ago(r.ts), title: r.ts }));
    body.append(tr);
  }
}

/* Throttled, not debounced: a steady stream of events must not starve the refresh. */
function refreshBoardSoon(delay = 150) {
  if (state.boardTimer) return;
  state.boardTimer = setTimeout(() => { state.boardTimer = null; loadBoard().catch(showError); }, delay);
}

/* ---- live feed ---------------------------------------------------------------------- */
function feedItem(a, fresh) {
  return el("li", { class: `${a.severity}${fresh ? " fresh" : ""}`, "data-alert-id": a.alert_id,
                    onclick: () => openCustomer(a.customer_id) },
    el("div", { class: "line1" }, el("span", { text: a.customer_id }), badge(a.severity)),
    el("div", { class: "line2", text: `${a.kind === "escalated" ? "escalated" : "new"} · risk ${pct(a.alert_score)} · ${a.team || "?"}` }),
    el("div", { class: "line2", text: a.summary || "" }));
}

function addToFeed(a) {
  const feed = $("#feed");
  feed.querySelector(".empty")?.remove();
  feed.prepend(feedItem(a, true));
  while (feed.children.length > 50) feed.lastChild.remove();
}

/* Merges, never replaces: alerts pushed while the request was in flight stay. */
async function loadFeed() {
  const data = await api("/api/feed");
  const feed = $("#feed");
  const shown = new Set([...feed.querySelectorAll("li[data-alert-id]")].map((li) => li.dataset.alertId));
  for (const a of data.alerts) {
    if (shown.has(a.alert_id)) continue;
    feed.querySelector(".empty")?.remove();
    feed.append(feedItem(a, false));  // older than anything pushed since
  }
  while (feed.children.length > 50) feed.lastChild.remove();
}

/* ---- customer view ------------------------------------------------------------------ */
function chart(history, alerts) {
  const W = 520, H = 190, L = 34, R = 8, T = 10, B = 22;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "score history" });
  for (const y of [0, 0.25, 0.5, 0.75, 1]) {
    const py = T + (1 - y) * (H - T - B);
    root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: py, y2: py }));
    root.append(svg("text", { class: "axis", x: L - 6, y: py + 3, "text-anchor": "end" }, `${y * 100}%`));
  }
  if (!history.length) {
    root.append(svg("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" }, "no scores yet"));
    return root;
  }
  const t0 = history[0][0], t1 = Math.max(history[history.length - 1][0], t0 + 1);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (s) => T + (1 - s) * (H - T - B);
  const pts = history.map(([t, s]) => `${x(t).toFixed(1)},${y(s).toFixed(1)}`);
  root.append(svg("path", { class: "area", d: `M${x(t0)},${y(0)} L${pts.join(" L")} L${x(history[history.length - 1][0])},${y(0)} Z` }));
  root.append(svg("path", { class: "line", d: `M${pts.join(" L")}` }));
  for (const a of alerts) {
    const t = Date.parse(a.ts);
    if (Number.isNaN(t) || t < t0 || t > t1) continue;
    const dot = svg("circle", { class: `mark ${a.severity}`, cx: x(t), cy: y(a.score), r: 5 });
    dot.append(svg("title", {}, `${a.severity} alert · ${pct(a.score)} · ${when(a.ts)}`));
    root.append(dot);
  }
  const anchors = ["start", "middle", "end"];
  [t0, (t0 + t1) / 2, t1].forEach((t, i) => {
    root.append(svg("text", { class: "axis", x: x(t), y: H - 6, "text-anchor": anchors[i] }, tick(t)));
  });
  return root;
}

function renderDrivers(drivers) {
  const list = $("#drivers");
  list.replaceChildren();
  if (!drivers.length) { list.append(el("li", { class: "muted", text: "No drivers for this model." })); return; }
  const top = Math.max(...drivers.map((d) => Math.abs(d.contribution || 0)), 1e-9);
  for (const d of drivers.slice(0, 6)) {
    const bar = el("div", { class: "cbar" }, el("i", { class: d.contribution < 0 ? "neg" : null }));
    bar.firstChild.style.width = `${Math.round((Math.abs(d.contribution || 0) / top) * 100)}%`;
    list.append(el("li", {},
      el("div", { class: "text", text: d.text || `${d.feature} = ${Number(d.value).toFixed(2)}` }),
      el("div", { class: "name" }, el("span", { text: d.feature }),
        el("span", { text: `${d.contribution >= 0 ? "+" : ""}${Number(d.contribution || 0).toFixed(2)}` })),
      bar));
  }
}

function fmt(v) {
  if (typeof v !== "number") return "–";
  return Number.isInteger(v) || Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(1);
}

function renderActivity(view) {
  const body = $("#activity tbody");
  body.replaceChildren();
  const f = view.features;
  $("#activity-meta").textContent = f
    ? `${fmt(f.events_total)} events · tenure ${fmt(f.tenure_days)} d · last event ${ago(view.last_event)} · active ${fmt(f.active_days_7d)} of the last 7 days`
    : (view.features_error ? `Activity unavailable: ${view.features_error}` : "No feature state in Redis for this customer.");
  for (const row of view.activity || []) {
    const trend = typeof row.trend === "number" ? `${row.trend >= 0 ? "+" : ""}${Math.round(row.trend * 100)}%` : "–";
    body.append(el("tr", {},
      el("td", { text: row.event_type }), el("td", { text: ago(row.last_seen), title: row.last_seen || "" }),
      el("td", { class: "num", text: fmt(row.count_7d) }), el("td", { class: "num", text: fmt(row.count_30d) }),
      el("td", { class: "num", text: trend })));
  }
}

function renderTimeline(view) {
  const items = [
    ...view.alerts.map((a) => ({ at: a.processed_at || a.ts, cls: "alert", text: `${a.kind} · ${a.severity} · risk ${pct(a.score)}${a.recommended_action ? ` · suggested: ${a.recommended_action}` : ""}` })),
    ...view.outcomes.map((o) => ({ at: o.at, cls: "outcome", text: `${o.action}${o.assignee ? ` → ${o.assignee}` : ""} by ${o.by}${o.note ? `: ${o.note}` : ""}` })),
  ].sort((a, b) => (a.at < b.at) - (a.at > b.at));  // newest first; stable for equal times
  const list = $("#timeline");
  list.replaceChildren(...items.map((i) => el("li", { class: i.cls }, el("time", { text: when(i.at) }), i.text)));
}

function renderCustomer(view) {
  state.customer = view;
  $("#customer-empty").classList.add("hidden");
  $("#customer").classList.remove("hidden");
  const e = view.entry;
  $("#cust-id").textContent = view.customer_id;
  const meta = $("#cust-meta");
  meta.replaceChildren();
  if (e) {
    meta.append(badge(e.severity), el("span", { class: `status ${e.status}`, "data-status": e.status, id: "cust-status", text: e.status + (e.assignee ? ` · ${e.assignee}` : "") }),
      el("span", { text: `${e.team || "?"} · ${e.segment || "?"} · ${e.lifecycle_stage || "?"} · value ${e.customer_value || "?"}` }),
      el("span", { text: e.sla_hours ? `SLA ${e.sla_hours} h` : "" }),
      el("span", { class: "offers", text: (e.offers || []).length ? `offers: ${e.offers.map((o) => o.offer).join(", ")}` : "" }));
  }
  $("#cust-score").textContent = pct(e ? e.score : (view.history.at(-1) || [0, null])[1])
    + (view.calibrated === false ? " (calibrating)" : "");
  $("#cust-summary").textContent = e ? (e.summary || "") : "No open alert.";
  for (const id of ["#btn-ack", "#btn-assign", "#btn-resolve"]) $(id).disabled = !e || e.status === "resolved";
  if (e && e.status !== "open") $("#btn-ack").disabled = true;
  const held = Boolean(e && e.holdout);
  $("#cust-holdout").classList.toggle("hidden", !held);
  if (held) { $("#btn-assign").disabled = true; $("#btn-resolve").disabled = true; }
  $("#chart").replaceChildren(chart(view.history, view.alerts));
  renderDrivers(view.drivers || []);
  renderActivity(view);
  renderTimeline(view);
}

async function openCustomer(cid) {
  if (cid !== state.selected) $("#action-msg").textContent = "";
  state.selected = cid;
  for (const tr of document.querySelectorAll("#board tbody tr")) tr.classList.toggle("selected", tr.dataset.customer === cid);
  const mine = ++seq.customer;
  const view = await api(`/api/customers/${encodeURIComponent(cid)}`);
  if (mine === seq.customer && cid === state.selected) renderCustomer(view);
}

function refreshCustomerSoon(cid, delay = 300) {
  if (cid !== state.selected || state.custTimer) return;
  state.custTimer = setTimeout(() => { state.custTimer = null; openCustomer(cid).catch(showError); }, delay);
}

async function act(action) {
  const e = state.customer && state.customer.entry;
  if (!e) return;
  const payload = { action };
  if (action === "assign") {
    payload.assignee = $("#assignee").value.trim();
    if (!payload.assignee) { $("#action-msg").textContent = "type an assignee first"; return; }
  }
  try {
    const result = await api(`/api/alerts/${encodeURIComponent(e.alert_id)}/outcome`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
    });
    state.customer.entry = result.entry;
    await openCustomer(e.customer_id);
    $("#action-msg").textContent = `${action} recorded as ${result.outcome.by}`;
    refreshBoardSoon();
  } catch (err) { $("#action-msg").textContent = `failed: ${err.message}`; }
}

/* ---- live connection ---------------------------------------------------------------- */
function connect() {
  const source = new EventSource("/api/stream");
  const live = $("#live");
  source.addEventListener("hello", () => {
    live.className = "pill on"; live.textContent = "live";
    loadFeed().catch(showError); refreshBoardSoon();
  });
  source.addEventListener("alert", (ev) => {
    const a = JSON.parse(ev.data);
    addToFeed(a); refreshBoardSoon(); refreshCustomerSoon(a.customer_id);
  });
  source.addEventListener("outcome", (ev) => {
    const o = JSON.parse(ev.data);
    refreshBoardSoon(); refreshCustomerSoon(o.entry.customer_id);
  });
  source.addEventListener("score", (ev) => {
    const s = JSON.parse(ev.data);
    refreshCustomerSoon(s.customer_id, 1000); refreshBoardSoon(1000);
  });
  source.onerror = () => { live.className = "pill off"; live.textContent = "reconnecting…"; };
}

/* ---- calibration panel: the served model's reliability diagram and ECE ------------- */
async function loadCalibration() {
  const c = await api("/api/calibration");
  const box = $("#calibration");
  box.dataset.state = c.state;
  $("#calib-state").textContent = c.state === "calibrated" ? `calibrated · ${c.version}`
    : c.state === "calibrating" ? `calibrating · ${c.version}` : "no model yet";
  $("#calib-ece").textContent = typeof c.ece === "number"
    ? `ECE ${c.ece.toFixed(3)} on ${c.n.toLocaleString()} resolved` : "";
  const doc = new DOMParser().parseFromString(c.svg, "image/svg+xml");
  $("#calib-chart").replaceChildren(document.importNode(doc.documentElement, true));
  $("#calib-message").textContent = c.message
    + (c.uncalibrated_scores ? ` · ${c.uncalibrated_scores.toLocaleString()} scores seen from uncalibrated versions` : "");
}

function showError(err) { console.error(err); $("#live").textContent = `error: ${err.message}`; }

document.addEventListener("DOMContentLoaded", () => {
  $("#filters").addEventListener("change", () => refreshBoardSoon());
  $("#filters").addEventListener("input", () => refreshBoardSoon(250));
  $("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); refreshBoardSoon(); });
  $("#btn-ack").addEventListener("click", () => act("acknowledge"));
  $("#btn-assign").addEventListener("click", () => act("assign"));
  $("#btn-resolve").addEventListener("click", () => act("resolve"));
  api("/api/me").then((me) => { $("#user").textContent = `signed in as ${me.user}`; }).catch(showError);
  loadBoard().catch(showError);
  loadFeed().catch(showError);
  loadCalibration().catch(showError);
  setInterval(() => loadCalibration().catch(showError), 5000);
  connect();
});
