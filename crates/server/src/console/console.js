// assent web console: live updates over /v1/events and decisions through /v1/approvals/{id}/resolve.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;
const EVENTS = ["approval.requested", "approval.delivered", "approval.vote", "approval.approved",
  "approval.denied", "approval.expired", "approval.cancelled", "approval.consumed",
  "grant.created", "grant.revoked"];

function countdowns() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-expires]")) {
    const left = Math.max(0, Math.floor((Number(el.dataset.expires) - now) / 1000));
    const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    el.textContent = left === 0 ? "a moment (expiring)" : (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
  }
  for (const el of document.querySelectorAll("time[data-ts]")) relative(el, now);
}

// "3 min ago" beside the local date and time; the UTC text the server wrote stays as the tooltip.
function relative(el, now) {
  const at = new Date(Number(el.dataset.ts));
  if (!el.title) el.title = el.textContent;
  const secs = Math.round((now - at.getTime()) / 1000);
  const abs = Math.abs(secs);
  const unit = abs < 60 ? [abs, "s"] : abs < 3600 ? [Math.round(abs / 60), " min"]
    : abs < 86400 ? [Math.round(abs / 3600), " h"] : null;
  const local = at.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  el.textContent = unit ? (secs >= 0 ? unit[0] + unit[1] + " ago" : "in " + unit[0] + unit[1]) : local;
  if (unit) el.title = local;
}

// Re-reads a live section. Several refreshes can be in flight (one per event), and their answers
// can arrive in any order: each takes a ticket, and an answer older than the one already shown is
// dropped, so a slow early answer never paints an older state over a newer one.
async function refresh(section) {
  const ticket = (section.tickets = (section.tickets || 0) + 1);
  const url = section.dataset.live === "queue" ? "/fragments/queue" : "/fragments/a/" + section.dataset.id;
  const r = await fetch(url, { credentials: "same-origin" });
  if (!r.ok) return;
  const html = await r.text();
  if (ticket < (section.shown || 0)) return;
  section.shown = ticket;
  section.innerHTML = html;
  wire(section);
  countdowns();
}

async function decide(form, decision) {
  const section = form.closest("[data-live]");
  const error = form.querySelector("#decide-error");
  const body = { kind: form.dataset.kind, decision: decision };
  const reason = form.querySelector("#reason").value.trim();
  if (reason) body.reason = reason;
  const scope = form.querySelector("#scope");
  if (decision === "allow-always" && scope && scope.value) body.grant_scope = JSON.parse(scope.value);
  for (const b of form.querySelectorAll("button")) b.disabled = true;
  const r = await fetch("/v1/approvals/" + section.dataset.id + "/resolve", {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-assent-csrf": csrf },
    body: JSON.stringify(body),
  });
  if (!r.ok) {
    const e = await r.json().catch(() => ({ error: { message: "request failed" } }));
    error.textContent = e.error.message;
    error.hidden = false;
  }
  await refresh(section);
}

async function revoke(button) {
  button.disabled = true;
  const r = await fetch("/v1/grants/" + button.dataset.grant, {
    method: "DELETE", credentials: "same-origin", headers: { "x-assent-csrf": csrf },
  });
  if (r.ok) button.closest("tr").remove(); else button.disabled = false;
}

function wire(root) {
  for (const b of root.querySelectorAll("#decide [data-decision]")) {
    b.addEventListener("click", () => decide(b.closest("form"), b.dataset.decision));
  }
  for (const b of root.querySelectorAll("button[data-grant]")) {
    b.addEventListener("click", () => revoke(b));
  }
}

// Says on the page whether live updates are flowing; tests wait for body[data-live=connected].
function live(connected) {
  document.body.dataset.live = connected ? "connected" : "reconnecting";
  let note = document.getElementById("live-lost");
  if (!connected && !note) {
    note = document.createElement("p");
    note.id = "live-lost";
    note.className = "error";
    note.setAttribute("role", "status");
    note.textContent = "Live updates lost: reconnecting… This page may be out of date until then.";
    document.getElementById("main").prepend(note);
  }
  if (note) note.hidden = connected;
}

// Follows /v1/events. The first stream resumes from the seq the page was rendered at, so nothing
// that changed while the page loaded is missed. The browser retries a dropped stream by itself
// (sending Last-Event-ID); one it gave up on is retried here from "now", and the live sections
// are re-read once it opens, which also covers a server that restarted with fewer events.
function follow(since) {
  const sections = document.querySelectorAll("[data-live]");
  if (!sections.length) return;
  const source = new EventSource("/v1/events" + (since ? "?since=" + since : ""));
  const onEvent = (message) => {
    const event = JSON.parse(message.data);
    for (const s of sections) {
      if (s.dataset.live === "queue" || s.dataset.id === event.approval_id) refresh(s);
    }
  };
  for (const type of EVENTS) source.addEventListener(type, onEvent);
  source.addEventListener("open", () => {
    live(true);
    if (!since) for (const s of sections) refresh(s);
  });
  source.addEventListener("error", () => {
    live(false);
    if (source.readyState === EventSource.CLOSED) setTimeout(resume, 3000);
  });
}

// Waits for the server to answer again, then follows from "now". Console sessions live in the
// server's memory, so after a restart the answer is the login page: go there.
async function resume() {
  try {
    const r = await fetch("/fragments/queue", { credentials: "same-origin" });
    if (r.redirected && new URL(r.url).pathname === "/login") location.assign("/login");
    else follow(null);
  } catch {
    setTimeout(resume, 3000);
  }
}

wire(document);
countdowns();
setInterval(countdowns, 1000);
follow(document.querySelector("[data-live]")?.dataset.since);
