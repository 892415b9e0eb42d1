// duro dashboard: an instance's history as a timeline of tasks.
"use strict";

// buildTimeline turns history events into tasks (one per task ID, with
// their attempts, durations, outcomes and policies) and instance markers.
// finishedAt is when the instance finished (null while it runs): the tasks
// it did not wait for end there, a timer "not needed", the others "not
// waited for", instead of running for ever.
function buildTimeline(events) {
  const tasks = new Map();
  const markers = [];
  let t0 = Infinity, tEnd = -Infinity, finishedAt = null;
  for (const e of events) {
    const ts = Date.parse(e.timestamp);
    if (!isNaN(ts)) { t0 = Math.min(t0, ts); tEnd = Math.max(tEnd, ts); }
  }
  const task = (e, kind) => {
    let t = tasks.get(e.taskId);
    if (!t) {
      t = {id: e.taskId, kind, name: e.name || "", start: null, end: null, outcome: "running",
        steps: [], policy: null, input: undefined, result: undefined, failure: null, child: null};
      tasks.set(e.taskId, t);
    }
    return t;
  };
  const finish = (t, e, outcome) => {
    t.end = Date.parse(e.timestamp);
    t.outcome = outcome;
  };
  for (const e of events) {
    const ts = Date.parse(e.timestamp);
    switch (e.type) {
      case "TaskScheduled": {
        const t = task(e, "activity");
        t.name = e.name; t.start = ts; t.input = e.input;
        t.policy = policyOf(e.activity);
        break;
      }
      case "TaskCompleted": {
        const t = task(e, "activity");
        finish(t, e, "completed");
        t.result = e.result;
        t.failure = null; // an earlier failure (before a rewind) is in the steps
        if (e.attempt) t.steps.push({text: `attempt ${e.attempt}: completed`});
        else t.steps.push({text: "result supplied by an operator", note: true});
        break;
      }
      case "TaskFailed": {
        const t = task(e, "activity");
        finish(t, e, "failed");
        t.failure = e.failure;
        if (e.attempt) t.steps.push({text: `attempt ${e.attempt}: failed` + (e.failure ? ": " + e.failure.message : "")});
        else if (e.failure && e.failure.type === "OperatorFailed") t.steps.push({text: "failed by an operator", note: true});
        break;
      }
      case "TaskDuplicate": {
        const t = task(e, "activity");
        t.outcome = "awaiting decision";
        t.steps.push({text: `attempt ${e.attempt}: possible duplicate: not run, instance suspended`});
        break;
      }
      case "TimerCreated": {
        const t = task(e, "timer");
        t.name = "timer until " + fmtTime(e.fireAt); t.start = ts;
        break;
      }
      case "TimerFired": finish(task(e, "timer"), e, "fired"); break;
      case "SubOrchestrationCreated": {
        const t = task(e, "sub-orchestration");
        t.name = e.name; t.start = ts; t.child = e.instanceId; t.input = e.input;
        break;
      }
      case "SubOrchestrationCompleted": {
        const t = task(e, "sub-orchestration");
        finish(t, e, "completed"); t.result = e.result; t.failure = null;
        break;
      }
      case "SubOrchestrationFailed": {
        const t = task(e, "sub-orchestration");
        finish(t, e, "failed"); t.failure = e.failure;
        t.steps.push({text: "failed: " + ((e.failure && e.failure.message) || "")});
        break;
      }
      case "EventSent": {
        const t = task(e, "event sent");
        t.name = `${e.name} → ${e.instanceId}`; t.start = ts; t.end = ts; t.outcome = "sent"; t.input = e.input;
        break;
      }
      case "EntitySignaled": case "EntityCalled": case "EntityLockRequested": {
        const t = task(e, "entity");
        t.name = e.type === "EntityLockRequested" ? "lock " + ((e.entity && e.entity.lock) || []).join(", ")
          : `${e.name} on ${e.instanceId}`;
        t.start = ts; t.input = e.input;
        if (e.type === "EntitySignaled") { t.end = ts; t.outcome = "signalled"; }
        break;
      }
      case "EntityResponse": {
        const t = task(e, "entity");
        finish(t, e, e.failure ? "failed" : "completed"); t.result = e.result; t.failure = e.failure;
        break;
      }
      case "EntityLockGranted": finish(task(e, "entity"), e, "locked"); break;
      case "ExecutionResumed":
        for (const d of e.decisions || []) {
          const t = tasks.get(d.taskId);
          if (!t) continue;
          const what = {Retry: "operator decided: retry", Result: "operator decided: use result " + preview(d.result, 40),
            Fail: "operator decided: fail (" + (d.message || "") + ")"}[d.action] || d.action;
          t.steps.push({text: what, note: true});
          if (d.action === "Retry") t.outcome = "running";
        }
        markers.push(marker(e, ts, t0));
        break;
      case "ExecutionRewound":
        for (const id of (e.rewind && e.rewind.tasks) || []) {
          const t = tasks.get(id);
          if (t) { t.steps.push({text: "rewound: runs again", note: true}); t.outcome = "running"; t.end = null; t.failure = null; }
        }
        finishedAt = null;
        markers.push(marker(e, ts, t0));
        break;
      case "ExecutionCompleted": case "ExecutionTerminated":
        finishedAt = ts;
        markers.push(marker(e, ts, t0));
        break;
      case "OrchestratorStarted":
        break;
      default:
        markers.push(marker(e, ts, t0));
    }
  }
  const list = [...tasks.values()].sort((a, b) => a.id - b.id);
  if (finishedAt !== null) {
    for (const t of list) {
      if (t.end !== null) continue;
      t.end = Math.max(finishedAt, t.start === null ? finishedAt : t.start);
      t.outcome = t.kind === "timer" ? "not needed" : "not waited for";
      t.steps.push({text: (t.kind === "timer" ? "not needed: " : "not waited for: ") + "the instance finished first", note: true});
    }
  }
  if (!isFinite(t0)) { t0 = 0; tEnd = 0; }
  return {tasks: list, markers, t0, tEnd, finishedAt};
}

function marker(e, ts, t0) {
  let text = e.type;
  if (e.type === "ExecutionStarted") text = `started ${e.name || ""}`;
  if (e.type === "ExecutionCompleted") text = `${(e.status || "completed").toLowerCase()}` +
    (e.failure ? ": " + e.failure.message : "");
  if (e.type === "ExecutionSuspended") text = "suspended" + (e.reason ? ": " + e.reason : "");
  if (e.type === "ExecutionResumed") text = "resumed" + (e.reason ? ": " + e.reason : "");
  if (e.type === "ExecutionRewound") text = "rewound" + (e.reason ? ": " + e.reason : "");
  if (e.type === "ExecutionTerminated") text = "terminated" + (e.reason ? ": " + e.reason : "");
  if (e.type === "LateResult") text = `${e.name || "activity"} ${e.failure ? "failed" : "completed"} after ` +
    ({Terminated: "termination", Completed: "completion", Failed: "failure"}[e.status] || "the end") +
    (e.result !== undefined ? ": " + preview(e.result, 40) : e.failure ? ": " + e.failure.message : "") + " (not processed)";
  if (e.type === "EventRaised") text = `event ${e.name} raised` + (e.input !== undefined ? " " + preview(e.input, 40) : "");
  return {type: e.type, at: ts, text};
}

// policyOf describes a scheduled activity's guarantee.
function policyOf(o) {
  if (!o || !o.atMostOnce) return {label: "at-least-once", amo: false};
  let label = "at-most-once · " + (o.onDuplicate || "Fail");
  if (o.maxDeliveries) label += ` · max ${o.maxDeliveries} deliveries`;
  return {label, amo: true};
}

// renderTimeline renders the timeline of events.
function renderTimeline(events, now) {
  const tl = buildTimeline(events);
  const end = Math.max(tl.tEnd, ...tl.tasks.map((t) => t.end || now));
  const span = Math.max(end - tl.t0, 1);
  const offset = (ms) => "+" + fmtDuration(ms - tl.t0);
  const rows = tl.tasks.map((t) => {
    const start = t.start === null ? tl.t0 : t.start;
    const stop = t.end === null ? now : t.end;
    const left = ((start - tl.t0) / span) * 100;
    const width = Math.max(((stop - start) / span) * 100, 0.5);
    const outcome = t.failure ? `${t.outcome}: ${t.failure.message}` :
      t.result !== undefined ? `${t.outcome} → ${preview(t.result, 60)}` : t.outcome;
    return h("li", {class: `task outcome-${t.outcome.replace(/\s+/g, "-")}`, dataset: {task: t.id}},
      h("div", {class: "task-head"},
        h("span", {class: "task-id"}, `#${t.id}`),
        h("span", {class: "task-kind"}, t.kind),
        h("strong", {class: "task-name"}, t.child ? h("a", {href: "#/instances/" + encodeURIComponent(t.child)}, t.name) : t.name),
        t.policy ? h("span", {class: "badge policy" + (t.policy.amo ? " amo" : "")}, t.policy.label) : null),
      h("div", {class: "bar-track"}, h("div", {class: "bar", style: {marginLeft: left.toFixed(2) + "%", width: width.toFixed(2) + "%"}})),
      h("div", {class: "task-meta"},
        h("span", {}, "at ", offset(start)),
        h("span", {}, "took ", t.end === null ? fmtDuration(now - start) + " so far" : fmtDuration(stop - start)),
        h("span", {class: "task-outcome"}, outcome)),
      t.steps.length ? h("ul", {class: "attempts"},
        t.steps.map((x) => h("li", {class: x.note ? "note" : null}, x.text))) : null,
      t.input !== undefined ? h("details", {dataset: {key: "input-" + t.id}}, h("summary", {}, "input"), h("pre", {}, pretty(t.input))) : null,
      t.failure ? h("details", {dataset: {key: "failure-" + t.id}}, h("summary", {}, "failure"), h("pre", {}, pretty(t.failure))) : null);
  });
  const marks = tl.markers.map((m) => h("li", {class: "marker", dataset: {type: m.type}},
    h("span", {class: "when"}, offset(m.at)), " ", m.text));
  return h("section", {class: "timeline", id: "timeline"},
    tl.tasks.length ? h("ol", {class: "tasks"}, rows) : h("p", {class: "muted"}, "No tasks yet."),
    h("h3", {}, "Instance events"), h("ol", {class: "markers"}, marks));
}

// eventSummary describes one history event on one line, for the compact
// view.
function eventSummary(e) {
  const parts = [];
  if (e.name) parts.push(e.name);
  if (e.instanceId) parts.push("→ " + e.instanceId);
  if (e.attempt) parts.push("attempt " + e.attempt);
  if (e.fireAt) parts.push((e.type === "TaskDuplicate" ? "previous delivery " : "fires ") + fmtTime(e.fireAt));
  if (e.status) parts.push(e.status);
  if (e.reason) parts.push("— " + e.reason);
  if (e.input !== undefined) parts.push("input " + preview(e.input, 60));
  if (e.result !== undefined) parts.push("→ " + preview(e.result, 60));
  if (e.decisions) parts.push(e.decisions.map((d) => `#${d.taskId} ${d.action}`).join(", "));
  if (e.resumeOutcome) parts.push("resume " + e.resumeOutcome.status.toLowerCase());
  if (e.rewind && e.rewind.tasks) parts.push("runs again: " + e.rewind.tasks.map((id) => "#" + id).join(", "));
  return parts.join(" ");
}

// renderCompact renders the history as a table, one event a row.
function renderCompact(events) {
  const t0 = events.length ? Date.parse(events[0].timestamp) : 0;
  return h("section", {class: "compact", id: "history-compact"},
    events.length ? h("table", {class: "list events-table"},
      h("thead", {}, h("tr", {}, ["#", "At", "Time", "Event", "Task", "Details"].map((c) => h("th", {}, c)))),
      h("tbody", {}, events.map((e, i) => h("tr", {dataset: {type: e.type}},
        h("td", {"data-label": "#"}, String(i)),
        h("td", {"data-label": "At", class: "when"}, "+" + fmtDuration(Date.parse(e.timestamp) - t0)),
        h("td", {"data-label": "Time"}, fmtTime(e.timestamp)),
        h("td", {"data-label": "Event"}, h("strong", {}, e.type)),
        h("td", {"data-label": "Task"}, e.taskId !== undefined ? "#" + e.taskId : ""),
        h("td", {"data-label": "Details"}, eventSummary(e),
          e.failure ? h("span", {class: "error"}, " " + e.failure.message) : null)))))
      : h("p", {class: "muted"}, "No events yet."));
}

// renderJSON renders the history as the API returns it.
function renderJSON(events) {
  return h("section", {class: "json", id: "history-json"},
    h("p", {class: "muted"}, "GET ", h("code", {}, "/api/v1/instances/{id}/history"), " returns this document."),
    h("pre", {class: "history-json"}, JSON.stringify({events}, null, 2)));
}
