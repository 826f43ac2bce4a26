// tmwarden status page: reads /api/v1/* and renders nodes, one node's evidence, decisions and
// events. Everything is built with textContent, never innerHTML, so API strings cannot inject.
"use strict";

const REFRESH_MS = 5000;
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
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
const num = (v, d = 2) => (typeof v === "number" ? v.toFixed(d) : "–");
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
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  return new Date(ts).toLocaleString();
}
const stateBadge = (s) => el("span", { class: "state state-" + String(s || "unknown").toLowerCase() }, s || "unknown");

// cause and score may come from the detection engine (verdict) or be absent before it runs.
const causeOf = (n) => n.cause || (n.verdict && (n.verdict.cause || n.verdict.kind)) || "";
const scoreOf = (n) => (typeof n.score === "number" ? n.score : n.verdict && typeof n.verdict.score === "number" ? n.verdict.score : undefined);

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

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function showError(err) {
  const e = $("#error");
  if (err) { e.textContent = String(err.message || err); e.hidden = false; } else { e.hidden = true; }
}

function selectedNode() {
  const m = location.hash.match(/^#node\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : "";
}

async function loadNodes() {
  const { body } = await getJSON("/api/v1/nodes");
  const nodes = (body && body.nodes) || [];
  const sel = selectedNode();
  fill($("#nodes tbody"), nodes.map((n) => {
    const h = n.host || {};
    return el("tr", {
      class: "clickable" + (n.name === sel ? " selected" : ""), "data-node": n.name,
      onclick: () => { location.hash = "#node/" + encodeURIComponent(n.name); },
    },
      el("td", null, el("a", { href: "#node/" + encodeURIComponent(n.name) }, n.name)),
      el("td", null, stateBadge(n.state)),
      el("td", { class: "cause" }, causeOf(n) || "–"),
      el("td", null, num(scoreOf(n))),
      el("td", null, n.connected ? "connected" : "disconnected", " ", el("span", { class: "muted" }, n.agent_version || "")),
      el("td", null, pct(h.cpu_busy)),
      el("td", null, pct(h.cpu_steal)),
      el("td", null, num(h.load1)),
      el("td", null, num(h.tcp_retransmits_per_second, 1)),
      el("td", null, n.task_managers ?? 0),
      el("td", null, n.subtasks ?? 0),
      el("td", null, ago(n.last_report_at)));
  }));
  $("#nodes-empty").hidden = nodes.length > 0;
  const counts = {};
  for (const n of nodes) counts[n.state] = (counts[n.state] || 0) + 1;
  $("#summary").textContent = nodes.length + " nodes" +
    Object.entries(counts).map(([s, c]) => " · " + c + " " + s).join("");
}

function evidenceRows(ev) {
  if (!ev) return [];
  const items = Array.isArray(ev) ? ev : Object.entries(ev).map(([k, v]) => (typeof v === "object" && v ? { signal: k, ...v } : { signal: k, value: v }));
  return items.map((it) => {
    if (typeof it !== "object" || it === null) return el("tr", null, el("td", { class: "wrap", colspan: 4 }, String(it)));
    const signal = it.signal || it.name || it.metric || it.kind || "";
    const value = it.value ?? it.observed ?? "";
    const peers = it.peers ?? it.peer_median ?? it.baseline ?? "";
    const detail = it.detail || it.message || it.reason || "";
    return el("tr", null, el("td", null, signal), el("td", null, typeof value === "number" ? num(value, 3) : String(value)),
      el("td", null, typeof peers === "number" ? num(peers, 3) : typeof peers === "object" ? JSON.stringify(peers) : String(peers)),
      el("td", { class: "wrap" }, detail));
  });
}

async function loadDetail() {
  const name = selectedNode();
  const sec = $("#detail");
  if (!name) { sec.hidden = true; return; }
  const res = await getJSON("/api/v1/nodes/" + encodeURIComponent(name));
  if (res.notFound) { sec.hidden = true; showError(new Error("no node named " + name)); return; }
  const d = res.body;
  $("#detail-name").textContent = d.name;
  const facts = [["state", stateBadge(d.state)], ["hostname", d.hostname], ["agent", (d.agent_version || "") + " (" + (d.connected ? "connected" : "disconnected") + ")"],
    ["instance", d.instance_id], ["reports", d.reports_received + " received, " + d.sequence_gaps + " gaps, " + d.dropped_by_agent + " dropped by agent"],
    ["last report", ago(d.last_report_at)], ["first seen", d.first_seen ? new Date(d.first_seen).toLocaleString() : "–"]];
  if (d.labels) facts.push(["labels", Object.entries(d.labels).map(([k, v]) => k + "=" + v).join(", ")]);
  $("#detail-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", null, k), el("dd", null, v ?? "–")]));

  const verdict = d.verdict || (d.cause ? { cause: d.cause, score: d.score } : null);
  const evidence = d.evidence || (d.verdict && d.verdict.evidence);
  $("#evidence-block").hidden = !verdict && !evidence;
  if (verdict) {
    $("#verdict").replaceChildren(...Object.entries(verdict).filter(([k, v]) => k !== "evidence" && typeof v !== "object")
      .flatMap(([k, v]) => [el("dt", null, k), el("dd", null, typeof v === "number" ? num(v, 3) : String(v))]));
  }
  fill($("#evidence tbody"), evidenceRows(evidence));

  fill($("#collectors tbody"), (d.collectors || []).map((c) =>
    el("tr", { "data-collector": c.name }, el("td", null, c.name), el("td", null, stateBadge(c.state)), el("td", { class: "wrap" }, c.reason || ""))));
  fill($("#taskmanagers tbody"), (d.task_manager_list || []).map((tm) =>
    el("tr", null, el("td", null, tm.resource_id), el("td", null, tm.pod ? (tm.namespace ? tm.namespace + "/" : "") + tm.pod : "–"),
      el("td", null, pct(tm.cpu_load)), el("td", null, num(tm.gc_time_ms_per_second, 1)),
      el("td", null, bytes(tm.heap_used_bytes) + " / " + bytes(tm.heap_max_bytes)),
      el("td", null, (tm.subtasks || []).length), el("td", { class: "wrap" }, tm.scrape_error || "ok"))));
  fill($("#node-events tbody"), (d.events || []).map((e) =>
    el("tr", null, el("td", null, new Date(e.time).toLocaleString()), el("td", null, e.type), el("td", { class: "wrap" }, e.message))));
  sec.hidden = false;
}

// The decisions API may not exist on an older coordinator: a 404 hides the section.
async function loadDecisions() {
  const res = await getJSON("/api/v1/decisions");
  const sec = $("#decisions-section");
  if (res.notFound) { sec.hidden = true; return; }
  const body = res.body;
  const list = Array.isArray(body) ? body : body.decisions || [];
  const mode = Array.isArray(body) ? "" : body.mode || "";
  $("#mode").textContent = mode ? "mode: " + mode : "";
  fill($("#decisions tbody"), list.map((d) => {
    const state = d.state || d.status || "";
    const pending = /pending|await|proposed/i.test(state) || d.needs_approval === true;
    const canApprove = pending && (mode === "" || mode === "approve") && d.id !== undefined;
    const btn = canApprove ? el("button", {
      "data-approve": d.id,
      onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          const r = await fetch("/api/v1/decisions/" + encodeURIComponent(d.id) + "/approve", { method: "POST" });
          if (!r.ok) throw new Error("approve " + d.id + ": " + r.status + " " + ((await r.json().catch(() => ({}))).error || r.statusText));
          showError(null);
        } catch (err) { showError(err); ev.target.disabled = false; }
        refresh();
      },
    }, "approve") : null;
    return el("tr", { "data-decision": d.id },
      el("td", null, d.time || d.created_at ? new Date(d.time || d.created_at).toLocaleString() : "–"),
      el("td", null, d.node || "–"), el("td", null, d.action || d.kind || "–"), el("td", null, stateBadge(state)),
      el("td", { class: "wrap" }, d.reason || d.cause || ""), el("td", null, btn));
  }));
  $("#decisions-empty").hidden = list.length > 0;
  sec.hidden = false;
}

async function loadEvents() {
  const { body } = await getJSON("/api/v1/events?limit=50");
  fill($("#events tbody"), ((body && body.events) || []).map((e) =>
    el("tr", null, el("td", null, new Date(e.time).toLocaleString()), el("td", null, e.node || ""), el("td", null, e.type),
      el("td", { class: "wrap" }, e.message))));
}

let timer = 0;
async function refresh() {
  clearTimeout(timer);
  const results = await Promise.allSettled([loadNodes(), loadDetail(), loadDecisions(), loadEvents()]);
  const failed = results.find((r) => r.status === "rejected");
  showError(failed ? failed.reason : null);
  document.body.dataset.loaded = "true";
  timer = setTimeout(refresh, REFRESH_MS);
}

window.addEventListener("hashchange", refresh);
refresh();
