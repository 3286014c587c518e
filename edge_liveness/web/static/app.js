// The commissioning page: Server-Sent Events for state and decisions, an MJPEG <img> for the preview,
// fetch() for the journal, health and the two controls. No framework, no build, no network beyond this device.
"use strict";
const $ = (id) => document.getElementById(id);
const fmt = (v, n = 2) => (v === null || v === undefined ? "-" : Number(v).toFixed(n));
let previewOn = true;
let controlsAllowed = false;
const ATTEMPT_STATES = new Set(["idle", "collecting", "cooldown"]);

function setText(id, text) { const el = $(id); if (el.textContent !== String(text)) el.textContent = text; }

function startPreview() {
  // a fresh URL each time: an old multipart stream is closed, not resumed
  $("preview").src = "/preview.mjpg?t=" + Date.now();
  $("preview").hidden = false; $("preview-off").hidden = true;
  $("preview-toggle").textContent = "Pause preview";
}
function stopPreview() {
  $("preview").removeAttribute("src"); // closes the stream: the daemon stops encoding
  $("preview").hidden = true; $("preview-off").hidden = false;
  $("preview-toggle").textContent = "Resume preview";
}

function showState(s) {
  setText("s-state", s.state);
  setText("s-mode", s.active_mode);
  setText("s-faces", s.n_faces);
  setText("s-frac", s.face_frac ? (s.face_frac * 100).toFixed(0) + " % of the short side" : "-");
  setText("s-pose", fmt(s.yaw, 0) + "° / " + fmt(s.pitch, 0) + "°");
  setText("s-plive", fmt(s.p_live, 3));
  setText("s-ear", fmt(s.ear_left) + " / " + fmt(s.ear_right));
  setText("s-frame", s.frame ? s.frame[0] + "×" + s.frame[1] + ", " + fmt(s.ms, 1) + " ms" : "-");
  if (document.activeElement !== $("mode")) $("mode").value = s.active_mode;
  const v = $("verdict");
  if (!v.classList.contains("pass") && !v.classList.contains("fail")) {
    v.className = "verdict " + (s.state === "collecting" ? "collecting" : "idle");
    v.textContent = s.state === "collecting" ? "checking…" : s.n_faces ? "face seen (" + s.state + ")" : "waiting for a face";
  }
  const p = $("prompt");
  if (s.prompt && s.prompt.length) { p.hidden = false; setText("prompt", "Please " + s.prompt.join(", then ").replace(/_/g, " ")); }
  else p.hidden = true;
}

let verdictTimer = null;
function showDecision(d) {
  const v = $("verdict");
  v.className = "verdict " + d.result;
  v.dataset.attempt = d.attempt_id;
  v.dataset.mode = (d.evidence && d.evidence.active_mode) || "";
  v.textContent = (d.result === "pass" ? "PASS" : "FAIL") + " · " + d.reason.replace(/_/g, " ");
  clearTimeout(verdictTimer);
  verdictTimer = setTimeout(() => { v.className = "verdict idle"; }, 4000);
  loadDecisions();
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  return r.json();
}

async function loadDecisions() {
  try {
    const { decisions } = await getJSON("/api/decisions?limit=15");
    const rows = decisions.map((d) => {
      const ev = d.evidence || {};
      const t = d.ts ? new Date(d.ts * 1000).toLocaleTimeString() : "-";
      return `<tr data-attempt="${d.attempt_id}"><td>${t}</td><td class="${d.result}">${d.result}</td><td>${d.reason}</td>` +
        `<td>${ev.active_mode || "-"}</td><td>${fmt(ev.passive_median, 3)}</td><td>${ev.blinks ?? "-"}</td>` +
        `<td>${d.delivered ? "yes" : "pending"}</td></tr>`;
    });
    $("decisions").innerHTML = rows.join("") || '<tr><td colspan="7">no decisions yet</td></tr>';
  } catch (e) { $("decisions").innerHTML = `<tr><td colspan="7">cannot read the journal: ${e.message}</td></tr>`; }
}

async function loadStatus() {
  try {
    const st = await getJSON("/api/status");
    setText("device", st.device_id);
    const h = st.health || {};
    // status.json's state is the attempt state of its last write (at most once a second, read here every
    // 3 s): beside the live "Now" panel it lagged ("idle" there, "cooldown" here). Health says whether
    // the daemon runs; the attempt state is shown in one place, "Now", fed live.
    setText("h-state", ATTEMPT_STATES.has(h.state) ? "running" : h.state || "-");
    setText("h-fps", fmt(h.fps, 1));
    setText("h-camera", h.camera || "-");
    setText("h-broker", h.broker_connected ? "connected" : "not connected");
    setText("h-backlog", h.backlog ?? "-");
    setText("h-storage", h.storage_problem || "ok");
    const m = st.model || {};
    setText("m-name", m.name || "-"); setText("m-sha", m.sha256 || "-");
    setText("m-thr", fmt(m.threshold, 3)); setText("m-rt", m.runtime || "-");
    controlsAllowed = st.web.controls && st.web.signed_in;
    for (const id of ["mode", "mode-set", "attempt"]) $(id).disabled = !controlsAllowed;
    if (!st.web.controls) setText("control-msg", "Controls are off: the daemon has no web_token secret.");
    else if (!st.web.signed_in) $("control-msg").innerHTML = 'Controls need the web token: <a href="/login">sign in</a>.';
  } catch (e) { setText("h-state", "unreachable: " + e.message); }
}

async function command(name, body) {
  setText("control-msg", "sending…");
  try {
    const r = await fetch("/api/" + name, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const a = await r.json().catch(() => ({}));
    setText("control-msg", a.ok ? name + ": done" + (a.active_mode ? " (active check " + a.active_mode + ")" : "")
                                : name + ": " + (a.error || r.statusText));
  } catch (e) { setText("control-msg", name + ": " + e.message); }
}

function connectEvents() {
  const es = new EventSource("/api/events");
  es.onopen = () => { $("conn").className = "pill on"; $("conn").textContent = "live"; };
  es.onerror = () => { $("conn").className = "pill off"; $("conn").textContent = "reconnecting"; };
  es.addEventListener("state", (e) => showState(JSON.parse(e.data)));
  es.addEventListener("decision", (e) => showDecision(JSON.parse(e.data)));
  es.addEventListener("prompt", (e) => {
    const actions = JSON.parse(e.data).actions || [];
    if (actions.length) { $("prompt").hidden = false; setText("prompt", "Please " + actions.join(", then ").replace(/_/g, " ")); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("preview-toggle").addEventListener("click", () => { previewOn = !previewOn; previewOn ? startPreview() : stopPreview(); });
  // the phone locks or the tab hides: stop the stream so the daemon stops encoding
  document.addEventListener("visibilitychange", () => { if (!previewOn) return; document.hidden ? stopPreview() : startPreview(); });
  $("mode-set").addEventListener("click", () => command("active", { mode: $("mode").value }));
  $("attempt").addEventListener("click", () => command("attempt", {}));
  startPreview();
  connectEvents();
  loadDecisions(); loadStatus();
  setInterval(loadStatus, 3000);
  setInterval(loadDecisions, 15000);
});
