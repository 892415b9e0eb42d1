// scenarios.js runs @microsoft/durabletask-js 0.4.0, unchanged, against a
// duro server: `node scenarios.js NAME...` (or `all`) with DURO_GRPC
// (host:port of --grpc-listen) and DURO_HTTP (the JSON API's URL) set.
// It prints "PASS name" or "FAIL name: why" per scenario and a closing
// "N passed, N failed" line, and exits 1 if any failed.
//
// `node scenarios.js --child-worker DIR` is the worker the kill
// scenarios start and SIGKILL: its activity "Slow" marks DIR/started and
// then never returns. Every run of Slow's body, in any worker given the
// directory, appends a line to DIR/ran.
"use strict";
const fs = require("fs");
const path = require("path");
const { spawn } = require("child_process");
const {
  TaskHubGrpcClient, TaskHubGrpcWorker, OrchestrationStatus, whenAll, NoOpLogger,
  TaskEntity, EntityInstanceId,
} = require("@microsoft/durabletask-js");
const { registerBasic, check, checks, runScenarios } = require("../basic");

const GRPC = process.env.DURO_GRPC || "localhost:4001";
const HTTP = process.env.DURO_HTTP || "http://127.0.0.1:8233";
const logger = new NoOpLogger();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- orchestrations, activities and entities ----

// Counter is an entity the SDK runs: its state is a number.
class Counter extends TaskEntity {
  initializeState() { return 0; }
  add(n) { this.state += n; return this.state; }
  set(n) { this.state = n; }
  get() { return this.state; }
  fail() { throw new Error("counter refuses"); }
}

const runs = {}; // activity runs in this process, by key
const count = (k) => { runs[k] = (runs[k] || 0) + 1; return runs[k]; };

function register(w, { slowHangs = false, markDir = "" } = {}) {
  registerBasic(w, whenAll);
  w.addNamedActivity("FailOnce", async (_, key) => {
    if (count("FailOnce:" + key) === 1) throw new Error("first try fails");
    return "second try works";
  });
  w.addNamedActivity("Slow", async (_, key) => {
    // The body's side effect, in whichever worker process runs it.
    if (markDir) fs.appendFileSync(path.join(markDir, "ran"), `${process.pid} ${key}\n`);
    if (slowHangs) {
      fs.writeFileSync(path.join(markDir, "started"), key);
      await new Promise(() => {}); // killed here
    }
    count("Slow:" + key);
    return "slow done";
  });
  // FindSlow reconciles Slow: it "asks the outside world" (here: the key
  // says) whether the first delivery took effect.
  w.addNamedActivity("FindSlow", async (_, key) => {
    count("FindSlow:" + key);
    return key.startsWith("found") ? { found: true, result: `found ${key}` } : { found: false };
  });
  w.addNamedOrchestrator("Parent", async function* (ctx, name) {
    const child = yield ctx.callSubOrchestrator("Sequence", name);
    return child.length;
  });
  w.addNamedOrchestrator("Flaky", async function* (ctx, key) {
    const a = yield ctx.callActivity("Hello", key);
    const b = yield ctx.callActivity("FailOnce", key);
    return [a, b];
  });
  // Carry: the first execution receives "item" events it does not wait
  // for, then "go", and continues as new keeping them (saveEvents); the
  // next one reads four items.
  w.addNamedOrchestrator("Carry", async function* (ctx, gen) {
    if (gen === 0) {
      yield ctx.waitForExternalEvent("go");
      ctx.continueAsNew(1, true);
      return;
    }
    const got = [];
    for (let i = 0; i < 4; i++) got.push(yield ctx.waitForExternalEvent("item"));
    return got;
  });
  w.addNamedEntity("counter", () => new Counter());
  // Calls calls an entity, signals another, and sees an operation fail.
  w.addNamedOrchestrator("Calls", async function* (ctx, key) {
    const a = new EntityInstanceId("counter", key);
    const first = yield ctx.entities.callEntity(a, "add", 3);
    const second = yield ctx.entities.callEntity(a, "add", 4);
    ctx.entities.signalEntity(new EntityInstanceId("counter", key + "-signalled"), "add", 10);
    let failed = "";
    try { yield ctx.entities.callEntity(a, "fail"); } catch (e) { failed = e.message; }
    const got = yield ctx.entities.callEntity(a, "get");
    return { first, second, got, failed: /counter refuses/.test(failed) };
  });
  // Increment reads and writes a counter inside a critical section: run
  // concurrently, no increment is lost only if the lock excludes the others.
  w.addNamedOrchestrator("Increment", async function* (ctx, keys) {
    const ids = keys.map((k) => new EntityInstanceId("counter", k));
    const lock = yield ctx.entities.lockEntities(...ids);
    const inside = ctx.entities.isInCriticalSection().inSection;
    const v = yield ctx.entities.callEntity(ids[0], "get");
    yield ctx.createTimer(0.2); // others try to get in meanwhile
    yield ctx.entities.callEntity(ids[0], "set", v + 1);
    if (ids[1]) yield ctx.entities.callEntity(ids[1], "add", 1);
    lock.release();
    return inside;
  });
  w.addNamedOrchestrator("SlowOnce", async function* (ctx, opts) {
    const tags = opts.policy ? { "duro.guarantee": "AtMostOnce", "duro.onDuplicate": opts.policy } : undefined;
    if (opts.policy === "Reconcile") tags["duro.reconcile"] = "FindSlow";
    try {
      return yield ctx.callActivity("Slow", opts.key, tags ? { tags } : undefined);
    } catch (e) {
      return `failed: ${e.details?.errorType || e.message}`;
    }
  });
}

// ---- helpers ----

function client() { return new TaskHubGrpcClient({ hostAddress: GRPC, logger }); }

async function withWorker(fn, opts) {
  const w = new TaskHubGrpcWorker({ hostAddress: GRPC, logger, shutdownTimeoutMs: 2000 });
  register(w, opts);
  await w.start();
  try { return await fn(); } finally { await w.stop(); }
}

const { complete, want } = checks(OrchestrationStatus);

async function statusSoon(c, id, status, secs = 20) {
  const end = Date.now() + secs * 1000;
  for (;;) {
    const st = await c.getOrchestrationState(id, true);
    if (st && st.runtimeStatus === status) return st;
    if (Date.now() > end) throw new Error(`instance ${id} is ${st && OrchestrationStatus[st.runtimeStatus]}, not ${OrchestrationStatus[status]}`);
    await sleep(50);
  }
}

async function api(method, p, body) {
  const r = await fetch(HTTP + p, {
    method, headers: { "content-type": "application/json" }, body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

const uid = (p) => `${p}-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

// startChild starts a worker process whose Slow activity hangs; it
// resolves once the activity started.
async function startChild() {
  const dir = fs.mkdtempSync(path.join(require("os").tmpdir(), "duro-js-"));
  const child = spawn(process.execPath, [__filename, "--child-worker", dir], { stdio: "inherit", env: process.env });
  return { child, dir };
}

async function waitStarted(dir, secs = 30) {
  const end = Date.now() + secs * 1000;
  while (!fs.existsSync(path.join(dir, "started"))) {
    if (Date.now() > end) throw new Error("the child worker's activity did not start");
    await sleep(50);
  }
}

// ranOnce checks that Slow's body ran once, in the killed worker pid,
// though the restarted worker had the directory too.
function ranOnce(dir, pid) {
  const lines = fs.readFileSync(path.join(dir, "ran"), "utf8").trim().split("\n");
  check(lines.length === 1 && lines[0].startsWith(`${pid} `), `the activity body ran ${lines.length} times: ${JSON.stringify(lines)}`);
}

async function killed(child) {
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await gone;
}

// ---- scenarios ----

const scenarios = {
  async sequence(c) {
    const id = await c.scheduleNewOrchestration("Sequence", "Seattle");
    await withWorker(async () => want(await complete(c, id), OrchestrationStatus.COMPLETED,
      ["Hello, Seattle!", "Hello, Tokyo!", "Hello, London!"]));
  },
  async fanout(c) {
    const id = await c.scheduleNewOrchestration("FanOut", 10);
    await withWorker(async () => want(await complete(c, id), OrchestrationStatus.COMPLETED, 110));
  },
  async timer(c) {
    const id = await c.scheduleNewOrchestration("Timer");
    await withWorker(async () => {
      const st = await complete(c, id);
      want(st, OrchestrationStatus.COMPLETED);
      check(Number(st.serializedOutput) >= 1000, `the timer fired after ${st.serializedOutput}ms, before its second`);
    });
  },
  async event(c) {
    const id = await c.scheduleNewOrchestration("Approval");
    await withWorker(async () => {
      await c.waitForOrchestrationStart(id, false, 20);
      await c.raiseOrchestrationEvent(id, "approve", { by: "ana" });
      want(await complete(c, id), OrchestrationStatus.COMPLETED, "approved by ana");
    });
  },
  async suborchestration(c) {
    const id = await c.scheduleNewOrchestration("Parent", "Oslo");
    await withWorker(async () => want(await complete(c, id), OrchestrationStatus.COMPLETED, 3));
  },
  async suspendresume(c) {
    const id = await c.scheduleNewOrchestration("Approval");
    await withWorker(async () => {
      await statusSoon(c, id, OrchestrationStatus.RUNNING);
      await c.suspendOrchestration(id);
      await statusSoon(c, id, OrchestrationStatus.SUSPENDED);
      await c.raiseOrchestrationEvent(id, "approve", { by: "bo" });
      // The event waits while the instance is suspended: a step processes
      // it only after the resume.
      const held = await waitHeld(id);
      check(held, "the event was processed while the instance was suspended");
      check((await c.getOrchestrationState(id)).runtimeStatus === OrchestrationStatus.SUSPENDED, "no longer suspended");
      await c.resumeOrchestration(id);
      want(await complete(c, id), OrchestrationStatus.COMPLETED, "approved by bo");
    });
  },
  async terminate(c) {
    const id = await c.scheduleNewOrchestration("Approval");
    await withWorker(async () => {
      await statusSoon(c, id, OrchestrationStatus.RUNNING);
      await c.terminateOrchestration(id, "not needed");
      want(await complete(c, id), OrchestrationStatus.TERMINATED);
    });
  },
  async purge(c) {
    const id = await c.scheduleNewOrchestration("Sequence", "Lima");
    await withWorker(async () => want(await complete(c, id), OrchestrationStatus.COMPLETED));
    const res = await c.purgeOrchestration(id);
    check(res && res.deletedInstanceCount === 1, `purged ${res && res.deletedInstanceCount}, want 1`);
    check((await c.getOrchestrationState(id)) === undefined, "the instance is still there");
  },
  async rewind(c) {
    const key = uid("rw");
    const id = await c.scheduleNewOrchestration("Flaky", key);
    await withWorker(async () => {
      want(await complete(c, id), OrchestrationStatus.FAILED);
      await c.rewindInstance(id, "try again");
      want(await complete(c, id), OrchestrationStatus.COMPLETED, [`Hello, ${key}!`, "second try works"]);
      check(runs["FailOnce:" + key] === 2, `FailOnce ran ${runs["FailOnce:" + key]} times, want 2`);
    });
  },
  // An entity the SDK runs: client signals, then GetEntity and
  // QueryEntities show its state.
  async entitysignal(c) {
    const key = uid("sig");
    const id = new EntityInstanceId("counter", key);
    await withWorker(async () => {
      await c.signalEntity(id, "add", 5);
      await c.signalEntity(id, "add", 2);
      const m = await entitySoon(c, id, (m) => m.state === 7);
      check(m.lockedBy === undefined, `locked by ${m.lockedBy}`);
      const seen = [];
      for await (const e of c.getEntities({ instanceIdStartsWith: "@counter@" + key, includeState: true })) seen.push(e);
      check(seen.length === 1 && seen[0].id.toString() === id.toString() && seen[0].state === 7,
        `QueryEntities: ${JSON.stringify(seen.map((e) => [e.id.toString(), e.includesState && e.state]))}`);
    });
  },
  // An SDK orchestration calls and signals SDK-run entities; a failing
  // operation fails the call, not the orchestration.
  async entitycall(c) {
    const key = uid("call");
    const id = await c.scheduleNewOrchestration("Calls", key);
    await withWorker(async () => {
      want(await complete(c, id), OrchestrationStatus.COMPLETED, { first: 3, second: 7, got: 7, failed: true });
      await entitySoon(c, new EntityInstanceId("counter", key + "-signalled"), (m) => m.state === 10);
    });
  },
  // Critical sections: five orchestrations increment two counters, each
  // reading and writing under the lock of both; none is lost.
  async entitylock(c) {
    const a = uid("lock-a"), b = uid("lock-b");
    await withWorker(async () => {
      const ids = [];
      for (let i = 0; i < 5; i++) ids.push(await c.scheduleNewOrchestration("Increment", i % 2 ? [a, b] : [b, a]));
      for (const id of ids) want(await complete(c, id, 60), OrchestrationStatus.COMPLETED, true);
      // The releases reach the entities after the orchestrations end.
      for (const k of [a, b]) await entitySoon(c, new EntityInstanceId("counter", k), (m) => m.state === 5 && m.lockedBy === undefined);
    });
  },
  // A worker killed in the middle of an at-least-once activity: the
  // next delivery is attempt 2 (duro.attempt) and the activity runs again.
  async killedworker(c) {
    const key = uid("kill");
    const { child, dir } = await startChild();
    const id = await c.scheduleNewOrchestration("SlowOnce", { key });
    try {
      await waitStarted(dir);
    } finally {
      await killed(child);
    }
    await withWorker(async () => want(await complete(c, id), OrchestrationStatus.COMPLETED, "slow done"));
    check(runs["Slow:" + key] === 1, `Slow ran ${runs["Slow:" + key]} times here after the kill, want 1`);
    const h = await api("GET", `/api/v1/instances/${encodeURIComponent(id)}/history`);
    const done = h.events.find((e) => e.type === "TaskCompleted");
    check(done && done.attempt === 2, `the result came from attempt ${done && done.attempt}, want 2`);
  },
  // At most once via tags, Fail: the killed worker's delivery may have run
  // the activity, so the next one fails as a possible duplicate and the
  // code does not run again.
  async atmostoncefail(c) {
    const key = uid("amof");
    const { child, dir } = await startChild();
    const id = await c.scheduleNewOrchestration("SlowOnce", { key, policy: "Fail" });
    try {
      await waitStarted(dir);
    } finally {
      await killed(child);
    }
    await withWorker(async () => want(await complete(c, id), OrchestrationStatus.COMPLETED, "failed: PossibleDuplicate"),
      { markDir: dir });
    check(!runs["Slow:" + key], `the at-most-once activity ran again (${runs["Slow:" + key]} times)`);
    ranOnce(dir, child.pid);
  },
  // At most once via tags, Reconcile: the next delivery runs the
  // reconcile activity FindSlow instead; found, its result is the task's
  // and Slow does not run again; not found, Slow runs once more.
  async atmostoncereconcile(c) {
    for (const [key, out, reruns] of [[uid("found"), (k) => `found ${k}`, undefined], [uid("lost"), () => "slow done", 1]]) {
      const { child, dir } = await startChild();
      const id = await c.scheduleNewOrchestration("SlowOnce", { key, policy: "Reconcile" });
      try {
        await waitStarted(dir);
      } finally {
        await killed(child);
      }
      await withWorker(async () => want(await complete(c, id), OrchestrationStatus.COMPLETED, out(key)));
      check(runs["FindSlow:" + key] === 1, `FindSlow ran ${runs["FindSlow:" + key]} times, want 1`);
      check(runs["Slow:" + key] === reruns, `Slow ran ${runs["Slow:" + key]} times here after the kill, want ${reruns}`);
    }
  },
  // At most once via tags, Suspend: the instance waits for a decision; a
  // stock resume is refused with FAILED_PRECONDITION; duro's API decides.
  async atmostoncesuspend(c) {
    const key = uid("amos");
    const { child, dir } = await startChild();
    const id = await c.scheduleNewOrchestration("SlowOnce", { key, policy: "Suspend" });
    try {
      await waitStarted(dir);
    } finally {
      await killed(child);
    }
    await withWorker(async () => {
      await statusSoon(c, id, OrchestrationStatus.SUSPENDED);
      let refused = "";
      try { await c.resumeOrchestration(id); } catch (e) { refused = String(e.message || e); }
      check(/FAILED_PRECONDITION|9 /.test(refused) && /Slow/.test(refused), `a stock resume was not refused naming the task: ${refused}`);
      const inst = await api("GET", `/api/v1/instances/${encodeURIComponent(id)}`);
      const pending = inst.suspension && inst.suspension.pending;
      check(pending && pending.length === 1, `pending decisions: ${JSON.stringify(inst.suspension)}`);
      await api("POST", `/api/v1/instances/${encodeURIComponent(id)}/resume`,
        { reason: "charged once, checked by hand", decisions: [{ taskId: pending[0].taskId, action: "result", result: "decided" }] });
      want(await complete(c, id), OrchestrationStatus.COMPLETED, "decided");
    }, { markDir: dir });
    check(!runs["Slow:" + key], `the at-most-once activity ran again (${runs["Slow:" + key]} times)`);
    ranOnce(dir, child.pid);
  },
  // Continue-as-new with carried-over events: the events the first
  // execution received and did not use reach the next one first, in
  // order, ahead of the event raised after the continue-as-new.
  async continueasnew(c) {
    const id = await c.scheduleNewOrchestration("Carry", 0);
    await withWorker(async () => {
      await statusSoon(c, id, OrchestrationStatus.RUNNING);
      for (const n of [1, 2, 3]) await c.raiseOrchestrationEvent(id, "item", n);
      await c.raiseOrchestrationEvent(id, "go");
      await c.raiseOrchestrationEvent(id, "item", 4);
      want(await complete(c, id), OrchestrationStatus.COMPLETED, [1, 2, 3, 4]);
    });
  },
  // RestartInstance: a finished instance restarts under its own ID (a new
  // execution, the same input) or under a new one; a running one does not
  // restart under its own ID.
  async restart(c) {
    const id = await c.scheduleNewOrchestration("Sequence", "Quito");
    await withWorker(async () => {
      const out = ["Hello, Quito!", "Hello, Tokyo!", "Hello, London!"];
      const first = await complete(c, id);
      want(first, OrchestrationStatus.COMPLETED, out);
      const before = await api("GET", `/api/v1/instances/${encodeURIComponent(id)}`);
      const same = await c.restartOrchestration(id);
      check(same === id, `restarted as ${same}, want ${id}`);
      const again = await complete(c, id);
      want(again, OrchestrationStatus.COMPLETED, out);
      const after = await api("GET", `/api/v1/instances/${encodeURIComponent(id)}`);
      check(after.executionId !== before.executionId, "the restart did not start a new execution");
      const other = await c.restartOrchestration(id, true);
      check(other && other !== id, `restarted with a new ID as ${other}`);
      want(await complete(c, other), OrchestrationStatus.COMPLETED, out);
      const live = await c.scheduleNewOrchestration("Approval");
      await statusSoon(c, live, OrchestrationStatus.RUNNING);
      let refused = "";
      try { await c.restartOrchestration(live); } catch (e) { refused = String(e.message || e); }
      check(/cannot be restarted/.test(refused), `a running instance restarted under its own ID: ${refused}`);
      let missing = "";
      try { await c.restartOrchestration(uid("none")); } catch (e) { missing = String(e.message || e); }
      check(/was not found/.test(missing), `restart of an unknown instance: ${missing}`);
      await c.terminateOrchestration(live, "done");
      want(await complete(c, live), OrchestrationStatus.TERMINATED);
    });
  },
};

// entitySoon waits until the entity's metadata satisfies ok.
async function entitySoon(c, id, ok, secs = 20) {
  const end = Date.now() + secs * 1000;
  for (;;) {
    const m = await c.getEntity(id, true);
    if (m && m.includesState && ok(m)) return m;
    if (Date.now() > end) throw new Error(`entity ${id}: ${m ? JSON.stringify({ state: m.includesState && m.state, lockedBy: m.lockedBy }) : "not found"}`);
    await sleep(50);
  }
}

// waitHeld watches the history for a second and reports whether no
// EventRaised was recorded meanwhile.
async function waitHeld(id) {
  const end = Date.now() + 1000;
  while (Date.now() < end) {
    const h = await api("GET", `/api/v1/instances/${encodeURIComponent(id)}/history`);
    if (h.events.some((e) => e.type === "EventRaised")) return false;
    await sleep(100);
  }
  return true;
}

async function main() {
  if (process.argv[2] === "--child-worker") {
    const w = new TaskHubGrpcWorker({ hostAddress: GRPC, logger });
    register(w, { slowHangs: true, markDir: process.argv[3] });
    await w.start();
    return; // runs until killed
  }
  const c = client();
  const { summary, failed } = await runScenarios(scenarios, c, console.log);
  await c.stop();
  console.log(summary);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(2); });
