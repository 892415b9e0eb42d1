// duro dashboard: the views and the router.
"use strict";

const STATUSES = ["Pending", "Running", "Suspended", "Completed", "Failed", "Terminated", "ContinuedAsNew"];
const POLL_MS = 2000;

const state = {info: null, view: null, timer: null, pageTokens: [""]};

// route parses location.hash: #/instances?status=…, #/instances/ID,
// #/decisions, #/entities, #/workers.
function route() {
  const hash = location.hash.replace(/^#/, "") || "/instances";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  return {name: parts[0] || "instances", id: parts[1] ? decodeURIComponent(parts.slice(1).join("/")) : null,
    query: new URLSearchParams(query || "")};
}

async function render() {
  const r = route();
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.nav === r.name);
  }
  const main = document.getElementById("main");
  try {
    let node;
    if (r.name === "instances" && r.id) node = await instanceView(r.id, r.query);
    else if (r.name === "decisions") node = await decisionsView();
    else if (r.name === "entities") node = await entitiesView();
    else if (r.name === "workers") node = await workersView();
    else node = await listView(r.query);
    if (dialog.busy) return; // keep the page under an open dialog as it is
    // Keep what the reader opened across refreshes.
    const open = new Set([...main.querySelectorAll("details[open]")].map((d) => d.dataset.key));
    for (const d of node.querySelectorAll("details")) d.open = open.has(d.dataset.key);
    main.replaceChildren(node);
    setLive("live");
    await updateDecisionCount();
  } catch (e) {
    if (e.status === 401) {
      setLive("signed-out");
      return tokenView(main, !!api.token);
    }
    setLive("stale");
    if (!main.firstChild || main.querySelector(".loading")) {
      main.replaceChildren(h("p", {class: "error"}, e.message));
    } else {
      toast(e.message, true);
    }
  }
}

// refresh re-renders now and then every POLL_MS while the tab is visible.
function refresh() {
  clearTimeout(state.timer);
  render().finally(() => {
    state.timer = setTimeout(function tick() {
      if (document.hidden || dialog.busy || document.activeElement && document.activeElement.matches("input, textarea, select")) {
        state.timer = setTimeout(tick, POLL_MS);
        return;
      }
      refresh();
    }, POLL_MS);
  });
}

// setLive shows the state of the page's refresh: "live" (green) only once
// the API has answered, "stale" when it stops answering, "signed-out"
// while it wants a token.
function setLive(st) {
  const el = document.getElementById("live");
  el.classList.toggle("stale", st === "stale");
  el.classList.toggle("off", st === "signed-out");
  el.dataset.state = st;
  el.title = {live: "The page refreshes every 2 seconds", stale: "The server does not answer",
    "signed-out": "Not signed in: the page shows nothing until you give the token"}[st];
}

async function updateDecisionCount() {
  const d = await api.get("/api/v1/decisions");
  const c = document.getElementById("decision-count");
  c.textContent = d.decisions.length;
  c.hidden = d.decisions.length === 0;
}

function tokenView(main, refused) {
  const input = h("input", {type: "password", id: "token-input", autocomplete: "current-password"});
  const form = h("form", {class: "card narrow", onsubmit: (e) => {
    e.preventDefault();
    api.setToken(input.value.trim());
    refresh();
  }}, h("h1", {}, "Token"),
  h("p", {}, "This server needs its bearer token (duro server --token, DURO_TOKEN or --token-file)."),
  refused ? h("p", {class: "error", id: "token-error"}, "The server refused that token.") : null,
  h("label", {class: "field"}, h("span", {}, "Token"), input),
  h("div", {class: "buttons"}, h("button", {type: "submit", class: "primary"}, "Sign in")));
  main.replaceChildren(form);
  input.focus();
}

// The list's filters: the hash's query keys and the API's parameters.
const FILTERS = [
  {key: "id", param: "idPrefix", label: "ID starts with", id: "filter-id", placeholder: "order-"},
  {key: "name", param: "name", label: "Orchestration", id: "filter-name", placeholder: "ProcessOrder"},
  {key: "cs", param: "customStatus", label: "Custom status contains", id: "filter-custom-status", placeholder: "shipped"},
  {key: "from", param: "createdFrom", label: "Created from", id: "filter-from", type: "datetime-local", time: true},
  {key: "to", param: "createdTo", label: "Created before", id: "filter-to", type: "datetime-local", time: true},
];

// listView is the instance list with its search: status, ID prefix,
// orchestration name, custom status and creation time.
async function listView(q) {
  const statuses = (q.get("status") || "").split(",").filter(Boolean);
  const values = Object.fromEntries(FILTERS.map((f) => [f.key, q.get(f.key) || ""]));
  const token = q.get("page") || "";
  const params = new URLSearchParams();
  if (statuses.length) params.set("status", statuses.join(","));
  for (const f of FILTERS) {
    const v = values[f.key];
    if (!v) continue;
    if (f.time) {
      const d = new Date(v); // datetime-local: the browser's time zone
      if (isNaN(d)) throw new Error(`${f.label}: "${v}" is not a time`);
      params.set(f.param, d.toISOString());
    } else {
      params.set(f.param, v);
    }
  }
  if (token) params.set("pageToken", token);
  params.set("pageSize", "50");
  const page = await api.get("/api/v1/instances?" + params);
  const filtered = statuses.length > 0 || FILTERS.some((f) => values[f.key]);

  const setFilter = (next) => {
    const p = new URLSearchParams();
    if (next.statuses.length) p.set("status", next.statuses.join(","));
    for (const f of FILTERS) if (next.values[f.key]) p.set(f.key, next.values[f.key]);
    location.hash = "#/instances" + (p.toString() ? "?" + p : "");
  };
  const inputs = FILTERS.map((f) => h("input", {type: f.type || "search", id: f.id, placeholder: f.placeholder,
    value: values[f.key], "aria-label": f.label, step: f.time ? "1" : undefined}));
  const read = () => Object.fromEntries(FILTERS.map((f, i) => [f.key, inputs[i].value.trim()]));
  const chips = STATUSES.map((st) => h("button", {type: "button", class: "chip" + (statuses.includes(st) ? " on" : ""),
    "aria-pressed": statuses.includes(st) ? "true" : "false", dataset: {status: st},
    onclick: () => setFilter({statuses: statuses.includes(st) ? statuses.filter((x) => x !== st) : [...statuses, st], values: read()})}, st));
  const filters = h("form", {class: "filters", id: "search", onsubmit: (e) => { e.preventDefault(); setFilter({statuses, values: read()}); }},
    h("div", {class: "chips"}, chips),
    h("div", {class: "search-fields"}, FILTERS.map((f, i) => h("label", {class: "search-field"}, h("span", {}, f.label), inputs[i]))),
    h("div", {class: "search-buttons"}, h("button", {type: "submit", class: "primary", id: "search-button"}, "Search"),
      filtered ? h("a", {href: "#/instances", id: "clear-search"}, "clear") : null));

  const rows = page.instances.map((i) => h("tr", {dataset: {id: i.id}},
    h("td", {"data-label": "ID"}, h("a", {class: "instance-link", href: "#/instances/" + encodeURIComponent(i.id)}, i.id)),
    h("td", {"data-label": "Name"}, i.name),
    h("td", {"data-label": "Status"}, statusBadge(i.status),
      i.suspension && i.suspension.pending ? h("span", {class: "badge warn"}, "decision needed") : null),
    h("td", {"data-label": "Custom status", class: "custom-status"}, i.customStatus !== undefined ? h("code", {}, preview(i.customStatus, 60))
      : i.customStatusSize ? h("span", {class: "muted"}, fmtBytes(i.customStatusSize)) : ""),
    h("td", {"data-label": "Input", class: "size"}, i.inputSize ? fmtBytes(i.inputSize) : "–"),
    h("td", {"data-label": "Output", class: "size"}, i.outputSize ? fmtBytes(i.outputSize) : "–"),
    h("td", {"data-label": "Created"}, fmtTime(i.createdAt)),
    h("td", {"data-label": "Updated"}, fmtTime(i.updatedAt))));
  const table = rows.length ? h("table", {class: "list", id: "instances"},
    h("thead", {}, h("tr", {}, ["ID", "Name", "Status", "Custom status", "Input", "Output", "Created", "Updated"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows)) : h("p", {class: "muted", id: "instances"}, "No instances" + (filtered ? " match." : " yet."));
  const more = h("div", {class: "pager"},
    token ? h("a", {href: "#/instances?" + withoutPage(q)}, "← first page") : null,
    page.nextPageToken ? h("a", {id: "next-page", href: "#/instances?" + withPage(q, page.nextPageToken)}, "next page →") : null);
  return h("section", {},
    h("div", {class: "title"}, h("h1", {}, "Instances"),
      h("button", {type: "button", class: "primary", id: "start-button", onclick: startDialog}, "Start instance")),
    filters, table, more);
}

function withPage(q, token) {
  const p = new URLSearchParams(q);
  p.set("page", token);
  return p.toString();
}

function withoutPage(q) {
  const p = new URLSearchParams(q);
  p.delete("page");
  return p.toString();
}

// startDialog starts an instance, offering the server's samples.
function startDialog() {
  const samples = (state.info && state.info.samples) || [];
  const name = field("Orchestration", {id: "start-name", required: true});
  const id = field("Instance ID (empty: a random one)", {id: "start-id"});
  const input = valueField("Input (JSON, or plain text for a string)", {id: "start-input", spellcheck: "false"}, 6);
  const replace = h("input", {type: "checkbox", id: "start-replace"});
  const fill = (s) => {
    name.querySelector("input").value = s.name;
    id.querySelector("input").value = s.id || "";
    input.querySelector("textarea").value = s.input === undefined ? "" : pretty(s.input);
    replace.checked = !!s.id;
  };
  const pick = samples.length ? h("div", {class: "samples"}, h("span", {}, "Samples: "),
    samples.map((s, i) => h("button", {type: "button", class: "chip", dataset: {sample: i}, onclick: () => fill(s)}, s.title))) : null;
  dialog.open({
    title: "Start an instance", ok: "Start",
    body: [pick, name, id, input, h("label", {class: "check"}, replace, " replace a finished instance with this ID")],
    onOK: async () => {
      const body = {name: name.querySelector("input").value.trim(), input: parseValue(input.querySelector("textarea"), "The input")};
      const idv = id.querySelector("input").value.trim();
      if (idv) body.id = idv;
      if (replace.checked) body.replaceFinished = true;
      const res = await api.post("/api/v1/instances", body);
      toast(`started ${res.id}`);
      location.hash = "#/instances/" + encodeURIComponent(res.id);
    },
  });
}

// HISTORY_VIEWS are the ways to show an instance's history.
const HISTORY_VIEWS = [["timeline", "Timeline"], ["compact", "Compact"], ["json", "JSON"]];

// instanceView is one instance: summary, decisions, actions, and its
// history as a timeline, a compact table or JSON (?view=).
async function instanceView(id, q) {
  const [inst, hist] = await Promise.all([api.get(instancePath(id)), api.get(instancePath(id) + "/history")]);
  const view = HISTORY_VIEWS.some(([v]) => v === q.get("view")) ? q.get("view") : "timeline";
  const sized = (v, n) => v === undefined ? "–" : [n > 2048 ? h("div", {class: "muted"}, fmtBytes(n)) : null, h("pre", {}, pretty(v))];
  const rows = [
    ["Name", inst.name], ["Status", statusBadge(inst.status)], ["Execution", inst.executionId],
    inst.parentInstanceId ? ["Parent", h("a", {href: "#/instances/" + encodeURIComponent(inst.parentInstanceId)}, inst.parentInstanceId)] : null,
    ["Created", fmtTime(inst.createdAt)], ["Updated", fmtTime(inst.updatedAt)],
    inst.completedAt ? ["Completed", fmtTime(inst.completedAt) + " (took " + fmtDuration(Date.parse(inst.completedAt) - Date.parse(inst.createdAt)) + ")"] : null,
    inst.customStatus !== undefined ? ["Custom status", h("code", {id: "custom-status"}, preview(inst.customStatus, 200))] : null,
    ["Input", sized(inst.input, inst.inputSize)],
    inst.output !== undefined ? ["Output", h("div", {id: "output"}, sized(inst.output, inst.outputSize))] : null,
    inst.failure ? ["Failure", h("pre", {class: "error"}, failureText(inst.failure))] : null,
    terminationReason(inst, hist.events),
    inst.suspension ? ["Suspended", `since ${fmtTime(inst.suspension.since)}: ${inst.suspension.reason || "no reason given"}` +
      (inst.suspension.poisoned ? " (poisoned: resuming retries the step)" : "")] : null,
    inst.lastResume ? ["Last resume", h("span", {id: "last-resume", class: inst.lastResume.status === "Refused" ? "error" : "",
      dataset: {status: inst.lastResume.status}}, resumeText(inst.lastResume))] : null,
  ].filter(Boolean);
  const pending = inst.suspension && inst.suspension.pending ? inst.suspension.pending.map((pd) => ({
    instanceId: inst.id, orchestration: inst.name, suspendedAt: inst.suspension.since, reason: inst.suspension.reason, ...pd})) : [];
  const base = "#/instances/" + encodeURIComponent(inst.id);
  const tabs = h("nav", {class: "tabs", "aria-label": "History views"}, HISTORY_VIEWS.map(([v, label]) =>
    h("a", {href: base + (v === "timeline" ? "" : "?view=" + v), class: v === view ? "active" : "", dataset: {view: v},
      "aria-current": v === view ? "page" : undefined}, label)));
  const history = view === "compact" ? renderCompact(hist.events) : view === "json" ? renderJSON(hist.events)
    : renderTimeline(hist.events, Date.now());
  return h("section", {class: "instance", dataset: {id: inst.id, status: inst.status, view}},
    h("div", {class: "title"}, h("h1", {}, inst.id), statusBadge(inst.status)),
    actions(inst),
    pending.length ? h("section", {}, h("h2", {}, "Waiting for your decision"), decisionCard(pending)) : null,
    h("dl", {class: "summary"}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    inFlightSection(inst),
    h("div", {class: "history-head"}, h("h2", {}, "History"), tabs, h("span", {class: "muted"}, `${hist.events.length} events`)),
    history);
}

// terminationReason is the summary row of a Terminated instance: the
// reason its termination recorded.
function terminationReason(inst, events) {
  if (inst.status !== "Terminated") return null;
  const e = [...events].reverse().find((x) => x.type === "ExecutionTerminated");
  return ["Terminated", h("span", {id: "termination"}, e ? (e.reason || "no reason given") + " (" + fmtTime(e.timestamp) + ")" : "–")];
}

// resumeText says what became of a resume and of each of its decisions.
function resumeText(o) {
  let text = o.status.toLowerCase() + (o.at ? " " + fmtTime(o.at) : "") + (o.reason ? ": " + o.reason : "");
  for (const d of o.decisions || []) text += `; task #${d.taskId} ${d.action}: ${d.status.toLowerCase()}` + (d.reason ? ` (${d.reason})` : "");
  return text;
}

function failureText(f) {
  const parts = [];
  for (; f; f = f.cause) parts.push((f.type ? f.type + ": " : "") + f.message + (f.taskName ? ` (in ${f.taskName})` : ""));
  return parts.join("\ncaused by ");
}

// actions are the buttons that act on an instance, each behind a
// confirmation.
function actions(inst) {
  const s = inst.status;
  const finished = ["Completed", "Failed", "Terminated"].includes(s);
  const pending = inst.suspension && inst.suspension.pending && inst.suspension.pending.length;
  const act = (label, verb, path, opts = {}) => h("button", {type: "button", class: opts.danger ? "danger" : "",
    dataset: {action: verb}, onclick: () => confirmAction(inst, label, verb, path, opts)}, label);
  return h("div", {class: "actions"},
    !finished ? h("button", {type: "button", dataset: {action: "raise"}, onclick: () => raiseDialog(inst)}, "Raise event") : null,
    !finished && s !== "Suspended" ? act("Suspend", "suspend", "/suspend") : null,
    s === "Suspended" && !pending ? act("Resume", "resume", "/resume") : null,
    s === "Failed" ? act("Rewind", "rewind", "/rewind", {explain: "The failed tasks run again with new attempt numbers; completed tasks do not."}) : null,
    !finished ? act("Terminate", "terminate", "/terminate", {danger: true, explain: "No more orchestration code runs; running activities are not interrupted."}) : null,
    finished ? act("Purge", "purge", "", {danger: true, method: "DELETE", noReason: true, explain: "The instance and its history are deleted."}) : null);
}

// raiseDialog raises an event to the instance: WaitForEvent(name)
// receives its data.
function raiseDialog(inst) {
  const name = field("Event name", {id: "raise-name", required: true, autocomplete: "off"});
  const data = valueField("Data (JSON, or plain text for a string; empty for none)", {id: "raise-data", spellcheck: "false"}, 4);
  dialog.open({
    title: `Raise an event to ${inst.id}`, ok: "Raise",
    body: [h("p", {}, "The orchestration receives it where it waits for an event of this name; events wait, in order, until it does."), name, data],
    onOK: async () => {
      const n = name.querySelector("input").value.trim();
      if (!n) throw new Error("Give the event's name.");
      await api.post(instancePath(inst.id) + "/events", {name: n, data: parseValue(data.querySelector("textarea"), "The data")});
      toast(`event ${n} raised on ${inst.id}`);
      refresh();
    },
  });
}

function confirmAction(inst, label, verb, path, opts) {
  const reason = field("Reason (recorded in the history)", {id: "action-reason"});
  dialog.open({
    title: `${label} ${inst.id}?`, ok: label, danger: opts.danger,
    body: [opts.explain ? h("p", {}, opts.explain) : null, opts.noReason ? null : reason],
    onOK: async () => {
      if (opts.method === "DELETE") {
        await api.call("DELETE", instancePath(inst.id));
        toast(`purged ${inst.id}`);
        location.hash = "#/instances";
        return;
      }
      const body = {reason: reason.querySelector("input").value.trim() || undefined};
      await api.post(instancePath(inst.id) + path, body);
      toast(`${verb} of ${inst.id} requested`);
      refresh();
    },
  });
}

// decisionsView lists every task that waits for a decision, by instance.
async function decisionsView() {
  const d = await api.get("/api/v1/decisions");
  const groups = new Map();
  for (const t of d.decisions) {
    if (!groups.has(t.instanceId)) groups.set(t.instanceId, []);
    groups.get(t.instanceId).push(t);
  }
  return h("section", {},
    h("h1", {}, "Pending decisions"),
    h("p", {class: "muted"}, "An at-most-once activity was delivered again after a delivery whose outcome is unknown: it may have done its work. " +
      "Find out (ask the payment provider, say), then retry it, supply the result it produced, or fail it."),
    groups.size ? [...groups.values()].map(decisionCard) : h("p", {class: "muted", id: "no-decisions"}, "No task waits for a decision."));
}

// decisionCard shows one instance's pending tasks with the three decisions.
// With one task a button decides at once (after confirmation); with
// several, each task gets a choice and one resume sends them all.
function decisionCard(tasks) {
  const first = tasks[0];
  const chosen = new Map();
  const submit = h("button", {type: "button", class: "primary", hidden: tasks.length === 1,
    onclick: () => resumeWith(first, tasks, chosen)}, "Resume with these decisions");
  const row = (t) => {
    const choose = (action) => {
      if (tasks.length === 1) return decide(first, t, action);
      chosen.set(t.taskId, {action});
      for (const b of rowEl.querySelectorAll("button[data-action]")) b.classList.toggle("on", b.dataset.action === action);
    };
    const rowEl = h("div", {class: "decision-task", dataset: {task: t.taskId}},
      h("div", {}, h("strong", {}, `#${t.taskId} ${t.activity}`), " ",
        h("span", {class: "badge policy amo"}, policyOf(t.options).label)),
      h("div", {class: "muted"}, `attempt ${t.attempt} found a possible duplicate; previous delivery ${fmtTime(t.previousDeliveryAt)}`),
      t.input !== undefined ? h("pre", {class: "input"}, pretty(t.input)) : null,
      h("div", {class: "buttons"},
        h("button", {type: "button", dataset: {action: "retry"}, onclick: () => choose("retry")}, "Retry"),
        h("button", {type: "button", dataset: {action: "result"}, onclick: () => choose("result")}, "Supply result"),
        h("button", {type: "button", class: "danger", dataset: {action: "fail"}, onclick: () => choose("fail")}, "Fail")));
    return rowEl;
  };
  return h("article", {class: "card decision-card", dataset: {instance: first.instanceId}},
    h("header", {}, h("a", {href: "#/instances/" + encodeURIComponent(first.instanceId)}, h("strong", {}, first.instanceId)),
      ` (${first.orchestration}) suspended since ${fmtTime(first.suspendedAt)}`),
    h("p", {class: "reason"}, first.reason),
    tasks.map(row), submit);
}

// decisionFields returns the inputs a decision needs and a reader of them.
function decisionFields(t, action) {
  if (action === "retry") {
    return {body: [h("p", {}, `${t.activity} runs again, as attempt ${t.attempt + 1}. Do this only if the earlier delivery did not do the work.`)],
      read: () => ({taskId: t.taskId, action})};
  }
  if (action === "result") {
    const f = valueField("Result, as the code would have returned it: JSON, or plain text for a string", {id: "decision-result", spellcheck: "false"}, 4);
    return {body: [h("p", {}, `${t.activity} is completed with this result; its code does not run.`), f],
      read: () => {
        const v = parseValue(f.querySelector("textarea"), "The result");
        if (v === undefined) throw new Error("Give the result: JSON such as {\"charge\": \"ch_1\"}, or plain text such as PAY-123 for a string.");
        return {taskId: t.taskId, action, result: v};
      }};
  }
  const f = field("Failure message", {id: "decision-message"});
  return {body: [h("p", {}, `${t.activity} fails (OperatorFailed, not retried); the orchestration handles the failure.`), f],
    read: () => ({taskId: t.taskId, action, message: f.querySelector("input").value.trim() || undefined})};
}

function decide(inst, t, action) {
  const fields = decisionFields(t, action);
  const reason = field("Reason (recorded in the history)", {id: "decision-reason"});
  const label = {retry: "Retry", result: "Complete with result", fail: "Fail"}[action];
  dialog.open({
    title: `${label}: task #${t.taskId} ${t.activity} of ${inst.instanceId}`, ok: label, danger: action === "fail",
    body: [...fields.body, reason],
    onOK: async () => {
      const d = fields.read();
      await api.post(instancePath(inst.instanceId) + "/resume",
        {reason: reason.querySelector("input").value.trim() || undefined, decisions: [d]});
      toast(`${inst.instanceId} resumed: task #${t.taskId} ${action}`);
      refresh();
    },
  });
}

function resumeWith(inst, tasks, chosen) {
  const missing = tasks.filter((t) => !chosen.has(t.taskId));
  if (missing.length) return toast("Choose a decision for every task: " + missing.map((t) => "#" + t.taskId).join(", "), true);
  const parts = tasks.map((t) => ({t, f: decisionFields(t, chosen.get(t.taskId).action)}));
  const reason = field("Reason (recorded in the history)", {id: "decision-reason"});
  dialog.open({
    title: `Resume ${inst.instanceId} with ${tasks.length} decisions`, ok: "Resume",
    body: [...parts.map(({t, f}) => h("fieldset", {}, h("legend", {}, `#${t.taskId} ${t.activity}: ${chosen.get(t.taskId).action}`), f.body)), reason],
    onOK: async () => {
      const decisions = parts.map(({f}) => f.read());
      await api.post(instancePath(inst.instanceId) + "/resume", {reason: reason.querySelector("input").value.trim() || undefined, decisions});
      toast(`${inst.instanceId} resumed`);
      refresh();
    },
  });
}

async function entitiesView() {
  const page = await api.get("/api/v1/entities?includeEmpty=true");
  const rows = page.entities.map((e) => h("tr", {},
    h("td", {"data-label": "Entity"}, e.id,
      e.suspension ? h("span", {class: "badge status-suspended", title: e.suspension.reason}, e.suspension.poisoned ? "poisoned" : "suspended") : null),
    h("td", {"data-label": "State"}, e.suspension && !e.exists ? h("span", {class: "muted"}, e.suspension.reason) : h("code", {}, preview(e.state, 120))),
    h("td", {"data-label": "Locked by"}, e.lockedBy || "–"), h("td", {"data-label": "Queued"}, e.queued || 0),
    h("td", {"data-label": "Modified"}, fmtTime(e.lastModified))));
  return h("section", {}, h("h1", {}, "Entities"),
    rows.length ? h("table", {class: "list"}, h("thead", {}, h("tr", {}, ["Entity", "State", "Locked by", "Queued", "Modified"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)) : h("p", {class: "muted"}, "No entities."));
}

async function main() {
  try {
    state.info = await api.get("/api/v1/info");
  } catch (e) {
    state.info = {};
  }
  const tb = document.getElementById("token-button");
  tb.hidden = !state.info.auth;
  tb.onclick = () => { api.setToken(""); setLive("signed-out"); tokenView(document.getElementById("main")); };
  window.addEventListener("hashchange", refresh);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  refresh();
}

main();
