// @ts-check
// tmwarden status page. It reads the coordinator's JSON API under /api/v1/; the documents are
// api/httpv1's Go types (NodeList, NodeDetail, DecisionList, Decision, EventList), whose JSON
// field names this file uses as they are: api-types.js is generated from those Go types (make
// generate) and the page test type-checks this file against it (tsc --checkJs), so a renamed
// API field fails the test. Everything is built with textContent, never innerHTML, so API
// strings cannot inject.
"use strict";

/** @typedef {import("./api-types.js").Node} APINode */
/** @typedef {import("./api-types.js").NodeList} APINodeList */
/** @typedef {import("./api-types.js").NodeDetail} APINodeDetail */
/** @typedef {import("./api-types.js").HostSummary} APIHostSummary */
/** @typedef {import("./api-types.js").Evidence} APIEvidence */
/** @typedef {import("./api-types.js").Culprit} APICulprit */
/** @typedef {import("./api-types.js").DecisionList} APIDecisionList */
/** @typedef {import("./api-types.js").Decision} APIDecision */
/** @typedef {import("./api-types.js").Breaker} APIBreaker */
/** @typedef {import("./api-types.js").EventList} APIEventList */

const REFRESH_MS = 5000;
/** @type {(sel: string) => any} DOM elements are not what the type check is about. */
const $ = (sel) => document.querySelector(sel);
// Health values in order of severity (api/httpv1 Node.health, plus reachability).
const SEVERITY = ["unreachable", "quarantined", "migrating", "slow", "suspect", "probation", "healthy"];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

const pct = (v) => (typeof v === "number" ? (v * 100).toFixed(1) + "%" : "–");
const num = (v, d = 2) => (typeof v === "number" && isFinite(v) ? v.toFixed(d) : "–");
const bytes = (v) => {
  if (typeof v !== "number" || v <= 0) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return v.toFixed(1) + " " + u[i];
};
function ago(ts) {
  if (!ts) return "never";
  const s = Math.round((Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 60) return Math.max(s, 0) + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  return new Date(ts).toLocaleString();
}
const when = (ts) => (ts ? new Date(ts).toLocaleString() : "–");
const badge = (s) => el("span", { class: "state state-" + String(s || "unknown").toLowerCase().replace(/[^a-z_-]/g, "") }, s || "unknown");

// A node's health as the page ranks it: an agent that stopped reporting trumps the decision state.
/** @param {APINode} n */
const healthOf = (n) => (n.state === "unreachable" ? "unreachable" : n.health || "healthy");
/** @param {APINode} n */
const severity = (n) => { const i = SEVERITY.indexOf(healthOf(n)); return i < 0 ? SEVERITY.length : i; };

function token() { return sessionStorage.getItem("tmwarden-token") || ""; }

// culpritName is the neighbour as an operator finds it: the pod, else the systemd unit, else the cgroup.
/** @param {APICulprit} c */
const culpritName = (c) => (c.pod_name ? `${c.pod_namespace}/${c.pod_name}` : c.systemd_unit || c.cgroup);

// causeLabel adds the culprit and detection's findings (slower hardware, host-only, retrospective) to the cause.
/** @param {APINode} n */
const causeLabel = (n) => {
  let s = n.cause || "–";
  if (n.culprit) s += " · culprit " + culpritName(n.culprit);
  for (const f of n.findings || []) {
    if (f.kind === "slower_hardware") s += ` · slower hardware (speed ${f.speed})`;
    else if (f.kind === "retrospective") s += ` · was slow (${f.cause}${f.culprit ? ", culprit " + culpritName(f.culprit) : ""}) ${f.since} – ${f.until}, while cut off`;
    else s += ` · ${f.kind}`;
  }
  return s;
};

/**
 * @param {string} path
 * @returns {Promise<{notFound?: boolean, body?: any}>} body is the document the caller declares
 */
async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (r.status === 404) return { notFound: true };
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new Error(path + ": " + msg);
  }
  return { body: await r.json() };
}

const fill = (tbody, rows) => tbody.replaceChildren(...rows);

function showError(err) {
  const e = $("#error");
  if (err) { e.textContent = String(err.message || err); e.hidden = false; } else { e.hidden = true; }
}

function route() {
  let m = location.hash.match(/^#node\/(.+)$/);
  if (m) return { node: decodeURIComponent(m[1]) };
  m = location.hash.match(/^#decision\/(.+)$/);
  if (m) return { decision: decodeURIComponent(m[1]) };
  return {};
}

async function loadNodes() {
  /** @type {APINodeList | undefined} */
  const body = (await getJSON("/api/v1/nodes")).body;
  const nodes = ((body && body.nodes) || []).slice();
  nodes.sort((a, b) => severity(a) - severity(b) || (b.score || 0) - (a.score || 0) || a.name.localeCompare(b.name));
  const sel = route().node;
  fill($("#nodes tbody"), nodes.map((n) => {
    /** @type {Partial<APIHostSummary>} */
    const h = n.host || {};
    const health = healthOf(n);
    // An unreachable node's figures are what its agent said last: marked, never shown as current.
    const stale = n.stale ? "stale" : "";
    const fig = (v) => el("td", { class: stale, title: n.stale ? "stale: last report " + ago(n.last_report_at) : null }, v);
    return el("tr", {
      class: "clickable sev-" + health + (n.name === sel ? " selected" : ""), "data-node": n.name, "data-health": health,
      onclick: () => { location.hash = "#node/" + encodeURIComponent(n.name); },
    },
      el("td", null, el("a", { href: "#node/" + encodeURIComponent(n.name) }, n.name)),
      el("td", { class: "health" }, badge(health), n.would_migrate ? el("span", { class: "would", title: n.would_migrate }, " would migrate (dry-run)") : null),
      el("td", { class: "score" }, num(n.score)),
      el("td", { class: "cause" }, causeLabel(n)),
      el("td", null, n.connected ? "connected" : "disconnected"),
      fig(pct(h.cpu_busy)), fig(pct(h.cpu_steal)), fig(num(h.load1)),
      fig(n.task_managers ?? 0), fig(n.subtasks ?? 0),
      el("td", { class: stale }, ago(n.last_report_at), n.stale ? " (stale)" : ""));
  }));
  $("#nodes-empty").hidden = nodes.length > 0;
  const counts = Object.fromEntries(SEVERITY.map((s) => [s, 0]));
  for (const n of nodes) counts[healthOf(n)] = (counts[healthOf(n)] || 0) + 1;
  fill($("#fleet-summary"), [el("li", { "data-health": "all" }, el("b", null, nodes.length), " nodes"),
    ...SEVERITY.map((s) => el("li", { class: counts[s] ? "sev-" + s : "zero", "data-health": s }, el("b", null, counts[s]), " " + s))]);
}

/** @param {APIEvidence} e */
function subtaskEvidence(e) { return e.kind === "straggler" || e.vertex_id || e.vertex_name; }

/** @param {APIEvidence[] | undefined} evidence */
function evidenceRows(evidence) {
  const subs = [], host = [];
  for (const e of evidence || []) {
    if (subtaskEvidence(e)) {
      subs.push(el("tr", { "data-evidence": "subtask" },
        el("td", { class: "wrap" }, e.job_name || e.job_id || "–"), el("td", { class: "wrap" }, e.vertex_name || e.vertex_id || "–"),
        el("td", null, e.subtask ?? 0), el("td", null, num(e.tpr, 1)), el("td", null, num(e.peer_median_tpr, 1)),
        el("td", null, e.slowdown ? num(e.slowdown, 2) + "×" : "–"), el("td", { class: "wrap" }, e.task_manager || "–"), el("td", null, ago(e.since))));
    } else {
      const ratio = e.peer_median ? e.value / e.peer_median : undefined;
      host.push(el("tr", { "data-evidence": "host" },
        el("td", null, e.signal || e.kind), el("td", null, num(e.value ?? 0, 4)), el("td", null, num(e.peer_median ?? 0, 4)),
        el("td", null, ratio !== undefined ? num(ratio, 1) + "×" : "–"), el("td", null, e.kind), el("td", null, ago(e.since))));
    }
  }
  return { subs, host };
}

async function loadNode(name) {
  const sec = $("#detail");
  if (!name) { sec.hidden = true; return; }
  const res = await getJSON("/api/v1/nodes/" + encodeURIComponent(name));
  if (res.notFound) { sec.hidden = true; throw new Error("no node named " + name); }
  /** @type {APINodeDetail} */
  const d = res.body;
  $("#detail-name").textContent = d.name;
  const ds = d.decision;
  const v = [["health", badge(healthOf(d))]];
  if (ds) {
    v.push(["verdict", ds.verdict || "healthy"], ["score", num(ds.score)], ["cause", ds.cause || "–"],
      ["in state since", when(ds.since)]);
    if (ds.verdict_since) v.push(["verdict since", when(ds.verdict_since)]);
    if (ds.would_migrate) v.push(["dry run", "would have migrated it (" + ds.would_migrate + "); nothing was changed"]);
    if (ds.open_decision) v.push(["open decision", el("a", { href: "#decision/" + encodeURIComponent(ds.open_decision) }, ds.open_decision)]);
    if (ds.note) v.push(["note", ds.note]);
  }
  $("#verdict").replaceChildren(...v.flatMap(([k, x]) => [el("dt", null, k), el("dd", { "data-field": k }, x ?? "–")]));
  const facts = [["reachability", badge(d.state)], ["hostname", d.hostname], ["agent", (d.agent_version || "") + " (" + (d.connected ? "connected" : "disconnected") + ")"],
    ["reports", d.reports_received + " received, " + d.sequence_gaps + " gaps, " + d.dropped_by_agent + " dropped by agent"],
    ["last report", ago(d.last_report_at) + (d.stale ? " — figures below are stale" : "")]];
  if (d.labels) facts.push(["labels", Object.entries(d.labels).map(([k, x]) => k + "=" + x).join(", ")]);
  $("#detail-facts").replaceChildren(...facts.flatMap(([k, x]) => [el("dt", null, k), el("dd", null, x ?? "–")]));

  const { subs, host } = evidenceRows(ds && ds.evidence);
  fill($("#evidence-subtasks tbody"), subs);
  fill($("#evidence-host tbody"), host);
  $("#evidence-empty").hidden = subs.length + host.length > 0;

  const tmRows = [];
  for (const tm of d.task_manager_list || []) {
    tmRows.push(el("tr", { class: "tm" + (d.stale ? " stale" : ""), "data-tm": tm.resource_id },
      el("td", { class: "wrap" }, el("b", null, tm.resource_id), tm.pod ? " " + (tm.namespace ? tm.namespace + "/" : "") + tm.pod : ""),
      el("td", null, pct(tm.cpu_load)), el("td", null, num(tm.gc_time_ms_per_second, 1)),
      el("td", null, bytes(tm.heap_used_bytes) + " / " + bytes(tm.heap_max_bytes)), el("td", null, (tm.subtasks || []).length + " subtasks"),
      el("td", { class: "wrap" }, tm.scrape_error || "ok")));
    for (const s of tm.subtasks || []) {
      tmRows.push(el("tr", { class: "subtask" + (d.stale ? " stale" : "") },
        el("td", { class: "wrap" }, "↳ " + (s.job_name || s.job_id) + " / " + (s.vertex_name || s.vertex_id) + " #" + s.index),
        el("td", null, num(s.busy_ms_per_second, 0)), el("td", null, num(s.backpressured_ms_per_second, 0)),
        el("td", null, num(s.records_in_per_second, 1)), el("td", null, num(s.true_processing_rate, 1)), el("td", null, "")));
    }
  }
  fill($("#taskmanagers tbody"), tmRows);
  fill($("#collectors tbody"), (d.collectors || []).map((c) =>
    el("tr", { "data-collector": c.name }, el("td", null, c.name), el("td", null, badge(c.state)), el("td", { class: "wrap" }, c.reason || ""))));
  const evs = (d.events || []).slice().sort((a, b) => b.id - a.id);
  fill($("#node-events tbody"), evs.map((e) =>
    el("tr", { "data-type": e.type }, el("td", null, when(e.time)), el("td", null, e.type), el("td", { class: "wrap" }, e.message))));
  sec.hidden = false;
}

/** @param {APIDecision} d */
function approveButton(d) {
  // Only a proposed decision waits for an operator; approved or finished ones show no button.
  if (d.status !== "proposed") return null;
  return el("button", {
    "data-approve": d.id,
    onclick: async (ev) => {
      ev.stopPropagation();
      ev.target.disabled = true;
      try {
        const headers = { "Content-Type": "application/json" };
        if (token()) headers.Authorization = "Bearer " + token();
        const r = await fetch("/api/v1/decisions/" + encodeURIComponent(d.id) + "/approve", { method: "POST", headers, body: JSON.stringify({ by: "status page" }) });
        if (!r.ok) {
          const msg = (await r.json().catch(() => ({}))).error || r.statusText;
          throw new Error("approve " + d.id + ": " + r.status + " " + msg + (r.status === 401 ? " — set the API token at the top" : ""));
        }
        showError(null);
        await refresh();
      } catch (err) { ev.target.disabled = false; showError(err); }
    },
  }, "approve");
}

/** @param {APIDecision} d */
function actionText(d) {
  return d.dry_run && (d.kind === "migrate" || d.kind === "release") ? "would " + d.kind + " (dry-run)" : d.kind;
}

async function loadDecisions() {
  const res = await getJSON("/api/v1/decisions?limit=50");
  if (res.notFound) return;
  /** @type {APIDecisionList} */
  const body = res.body;
  $("#mode").textContent = body.mode ? "mode: " + body.mode : "";
  /** @type {Partial<APIBreaker>} */
  const b = body.breaker || {};
  const banner = $("#breaker");
  if (b.open) {
    banner.textContent = "Circuit breaker open since " + when(b.since) + ": " + (b.reason || "") + ". Nothing will be migrated until it closes.";
    banner.hidden = false;
  } else banner.hidden = true;
  const list = body.decisions || [];
  fill($("#decisions tbody"), list.map((d) => el("tr", {
    class: "clickable", "data-decision": d.id, "data-status": d.status,
    onclick: () => { location.hash = "#decision/" + encodeURIComponent(d.id); },
  },
    el("td", null, when(d.created_at)), el("td", null, d.node || "–"), el("td", null, actionText(d)), el("td", null, badge(d.status)),
    el("td", { class: "wrap" }, d.reason || ""), el("td", null, approveButton(d)))));
  $("#decisions-empty").hidden = list.length > 0;
}

async function loadDecision(id) {
  const sec = $("#decision-detail");
  if (!id) { sec.hidden = true; return; }
  const res = await getJSON("/api/v1/decisions/" + encodeURIComponent(id));
  if (res.notFound) { sec.hidden = true; throw new Error("no decision " + id); }
  /** @type {APIDecision} */
  const d = res.body;
  $("#decision-id").textContent = d.id;
  const f = [["action", actionText(d) + (d.node ? " on " + d.node : "")], ["status", badge(d.status)], ["mode", d.mode],
    ["reason", d.reason], ["score", num(d.score)], ["cause", d.cause || "–"], ["created", when(d.created_at)], ["actuator", d.actuator || "–"]];
  if (d.approved_at) f.push(["approved", when(d.approved_at) + " by " + (d.approved_by || "an operator")]);
  if (d.message) f.push(["message", d.message]);
  if (d.error) f.push(["error", d.error]);
  const btn = approveButton(d);
  if (btn) f.push(["", btn]);
  $("#decision-facts").replaceChildren(...f.flatMap(([k, x]) => [el("dt", null, k), el("dd", null, x ?? "–")]));
  fill($("#decision-evidence tbody"), (d.evidence || []).map((e) => subtaskEvidence(e)
    ? el("tr", null, el("td", null, e.kind), el("td", { class: "wrap" }, (e.job_name || e.job_id) + " / " + (e.vertex_name || e.vertex_id) + " #" + (e.subtask ?? 0)),
      el("td", null, num(e.tpr, 1)), el("td", null, num(e.peer_median_tpr, 1)), el("td", null, e.slowdown ? num(e.slowdown) + "×" : "–"), el("td", null, when(e.since)))
    : el("tr", null, el("td", null, e.kind), el("td", null, e.signal || ""), el("td", null, num(e.value, 4)), el("td", null, num(e.peer_median, 4)),
      el("td", null, "–"), el("td", null, when(e.since)))));
  fill($("#decision-steps tbody"), (d.steps || []).map((s) => el("tr", null, el("td", null, s.name), el("td", null, s.kind),
    el("td", { class: "wrap" }, s.target || ""), el("td", null, badge(s.status)), el("td", null, s.attempts), el("td", { class: "wrap" }, s.message || ""))));
  fill($("#decision-audit tbody"), (d.audit || []).map((a) => el("tr", { "data-audit": a.event }, el("td", null, when(a.time)),
    el("td", null, a.event), el("td", null, a.step || ""), el("td", { class: "wrap" }, a.message || ""))));
  sec.hidden = false;
}

async function loadEvents() {
  /** @type {APIEventList | undefined} */
  const body = (await getJSON("/api/v1/events?limit=50")).body;
  const evs = ((body && body.events) || []).slice().sort((a, b) => b.id - a.id);
  fill($("#events tbody"), evs.map((e) =>
    el("tr", { "data-type": e.type }, el("td", null, when(e.time)), el("td", null, e.node || ""), el("td", null, e.type),
      el("td", { class: "wrap" }, e.message))));
}

let timer = 0;
async function refresh() {
  clearTimeout(timer);
  const r = route();
  const results = await Promise.allSettled([loadNodes(), loadNode(r.node), loadDecisions(), loadDecision(r.decision), loadEvents()]);
  const failed = results.find((x) => x.status === "rejected");
  showError(failed ? failed.reason : null);
  $("#updated").textContent = "updated " + new Date().toLocaleTimeString() + ", every " + REFRESH_MS / 1000 + " s";
  document.body.dataset.loaded = "true";
  timer = setTimeout(refresh, REFRESH_MS);
}

function showTokenState() { $("#token-state").textContent = token() ? "token set" : "no token"; }
$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const v = $("#token").value.trim();
  if (v) sessionStorage.setItem("tmwarden-token", v); else sessionStorage.removeItem("tmwarden-token");
  $("#token").value = "";
  showTokenState();
});
showTokenState();
window.addEventListener("hashchange", refresh);
refresh();
