// duro dashboard: the work an instance has in flight, and the workers.
"use strict";

// relTime renders t relative to now (both RFC 3339, now the store's clock).
function relTime(t, now) {
  if (!t) return "–";
  const d = Date.parse(t) - Date.parse(now);
  if (isNaN(d)) return fmtTime(t);
  if (Math.abs(d) < 1000) return fmtTime(t) + " (now)";
  return fmtTime(t) + (d > 0 ? ` (in ${fmtDuration(d)})` : ` (${fmtDuration(-d)} ago)`);
}

// ownerBadge names a lease owner and whether a live worker has its name.
function ownerBadge(owner, live, known) {
  if (!owner) return "–";
  return [owner, " ", known ? h("span", {class: "badge " + (live ? "worker-live" : "worker-gone"), dataset: {live: String(!!live)}},
    live ? "live" : "no live worker") : null];
}

const STEP_TEXT = {
  Idle: () => "idle: no message waits (the instance waits for its activities, timers or events)",
  Ready: (s) => `${s.messages} message${s.messages === 1 ? "" : "s"} waiting for a worker to run the next step`,
  Waiting: (s, now) => `${s.messages} message${s.messages === 1 ? "" : "s"} waiting; the next becomes visible ${relTime(s.nextMessageAt, now)}`,
  Running: (s, now) => `running, lease until ${relTime(s.leaseExpiresAt, now)}`,
  LeaseExpired: (s, now) => `the lease lapsed ${relTime(s.leaseExpiresAt, now)}; the next claim runs the step again`,
  HandedBack: (s, now) => `handed back; claimable again ${relTime(s.retryAt, now)}`,
};

const ACTIVITY_TEXT = {
  Waiting: (a) => a.attempt ? `waiting for delivery ${a.attempt + 1}` : "waiting for its first delivery",
  Running: () => "running",
  LeaseExpired: (a) => `lease lapsed: the next claim delivers it again as attempt ${a.attempt + 1}` +
    (a.options && a.options.atMostOnce ? (a.startedAttempt ? `, a possible duplicate (attempt ${a.startedAttempt} started its code)` :
      ", not a duplicate (no delivery started its code)") : ""),
  Delayed: () => "handed back, delivered again later",
  RetryWait: () => "failed; waiting for the retry policy's next try",
  ResultPending: () => "completed; the next step takes its result",
  AwaitingDecision: () => "possible duplicate: waiting for your decision",
  Parked: () => "instance finished while it ran; its result goes to the history",
};

// inFlightSection shows what an instance has in flight (the inFlight of
// GET /api/v1/instances/{id}); null when there is nothing to show.
function inFlightSection(inst) {
  const f = inst.inFlight;
  if (!f) return null;
  const finished = ["Completed", "Failed", "Terminated"].includes(inst.status);
  const acts = f.activities || [];
  if (finished && !acts.length) return null;
  const now = f.now;
  const blocked = (f.blocked || []).length ? h("div", {class: "card blocked", id: "blocked", role: "alert"},
    h("strong", {}, "Blocked: "), f.blocked.join("; "),
    h("div", {class: "muted"}, "See the Workers page. Terminate works without a worker.")) : null;
  const step = f.detailed && !finished ? h("p", {id: "step-state", dataset: {state: f.step.state || ""}},
    h("strong", {}, "Step: "), (STEP_TEXT[f.step.state] || (() => f.step.state))(f.step, now),
    f.step.owner ? [" · owner ", ownerBadge(f.step.owner, f.step.ownerLive, f.workersKnown)] : null,
    ` · step attempt ${f.step.attempt}`,
    f.step.deliveries > 1 ? ` · ${f.step.deliveries} deliveries since the last commit` : null) : null;
  const rows = acts.map((a) => h("tr", {dataset: {task: a.taskId, state: a.state || ""}},
    h("td", {"data-label": "Task"}, "#" + a.taskId),
    h("td", {"data-label": "Activity"}, a.activity, " ",
      h("span", {class: "badge policy" + (a.options && a.options.atMostOnce ? " amo" : "")},
        a.options && a.options.atMostOnce ? "at-most-once" : "at-least-once")),
    h("td", {"data-label": "State"}, h("span", {class: "badge state-" + (a.state || "").toLowerCase()}, a.state || "?"),
      " ", h("span", {class: "muted"}, (ACTIVITY_TEXT[a.state] || (() => ""))(a))),
    h("td", {"data-label": "Attempt"}, a.attempt || "–"),
    h("td", {"data-label": "Owner"}, ownerBadge(a.owner, a.ownerLive, f.workersKnown)),
    h("td", {"data-label": "Lease until"}, a.leaseExpiresAt ? relTime(a.leaseExpiresAt, now) : "–"),
    h("td", {"data-label": "Next try"}, a.nextAttemptAt ? relTime(a.nextAttemptAt, now) : "–"),
    h("td", {"data-label": "Last failure", class: a.lastFailure ? "error" : ""}, a.lastFailure ? failureText(a.lastFailure) : "–")));
  const table = rows.length ? h("table", {class: "list", id: "pending-activities"},
    h("thead", {}, h("tr", {}, ["Task", "Activity", "State", "Attempt", "Owner", "Lease until", "Next try", "Last failure"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows)) : h("p", {class: "muted", id: "pending-activities"}, "No activity in flight.");
  const timers = (f.timers || []).length ? h("ul", {class: "events", id: "pending-timers"}, f.timers.map((t) =>
    h("li", {dataset: {task: t.taskId}}, `timer #${t.taskId} fires ${relTime(t.fireAt, now)}`, t.retryOf ? ` (the retry of ${t.retryOf})` : ""))) : null;
  return h("section", {id: "in-flight"}, h("h2", {}, "In flight"), blocked, step, table, timers,
    f.workersKnown ? null : h("p", {class: "muted"}, "This store keeps no worker heartbeats: whether lease owners are alive is unknown."));
}

// workerState is live, stopping, gone (stopped) or silent (its heartbeats
// ended without a stop: killed, or cut off from the store).
function workerState(w) {
  if (w.goneAt) return "gone";
  if (!w.live) return "silent";
  return w.stopping ? "stopping" : "live";
}

// workersView lists the workers that recorded heartbeats, live first.
async function workersView() {
  const l = await api.get("/api/v1/workers");
  const names = (label, list) => list && list.length ? h("div", {}, h("span", {class: "muted"}, label + ": "), list.join(", ")) : null;
  const rows = l.workers.map((w) => {
    const st = workerState(w);
    return h("tr", {dataset: {worker: w.name, state: st}},
      h("td", {"data-label": "Name"}, h("strong", {}, w.name), h("div", {class: "muted"}, w.id)),
      h("td", {"data-label": "State"}, h("span", {class: "badge worker-" + st}, st)),
      h("td", {"data-label": "Host"}, (w.host || "–") + (w.pid ? " · pid " + w.pid : ""), h("div", {class: "muted"}, w.version || "")),
      h("td", {"data-label": "Busy"}, `steps ${w.orchestrationBusy}/${w.orchestrationSlots}`, h("br", {}), `activities ${w.activityBusy}/${w.activitySlots}`),
      h("td", {"data-label": "Last seen"}, relTime(w.heartbeatAt, l.now), h("div", {class: "muted"}, "started " + fmtTime(w.startedAt))),
      h("td", {"data-label": "Registers"}, names("orchestrations", w.orchestrations), names("activities", w.activities), names("entities", w.entities)));
  });
  const live = l.workers.filter((w) => w.live).length;
  return h("section", {},
    h("h1", {}, "Workers"),
    h("p", {class: "muted"}, `${live} live, ${l.workers.length - live} gone or silent. Each worker records a heartbeat every 10 seconds by default; ` +
      "it counts as silent three intervals after its last one, and gone at once when it stops. Workers stay listed for an hour."),
    rows.length ? h("table", {class: "list", id: "workers"},
      h("thead", {}, h("tr", {}, ["Name", "State", "Host", "Busy", "Last seen", "Registers"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)) : h("p", {class: "muted", id: "workers"}, "No worker has recorded a heartbeat in the last hour."));
}
