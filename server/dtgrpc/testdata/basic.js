// basic.js: the orchestrations and checks that the scenarios of both
// JavaScript SDKs (js/ for @microsoft/durabletask-js, dapr/ for
// @dapr/durabletask-js) share. It requires no package: each caller passes
// its SDK's whenAll and OrchestrationStatus.
"use strict";

// registerBasic registers Hello, Double, Sequence, FanOut, Timer and
// Approval on worker w.
function registerBasic(w, whenAll) {
  w.addNamedActivity("Hello", async (_, name) => `Hello, ${name}!`);
  w.addNamedActivity("Double", async (_, n) => n * 2);
  w.addNamedOrchestrator("Sequence", async function* (ctx, name) {
    const out = [];
    for (const n of [name, "Tokyo", "London"]) out.push(yield ctx.callActivity("Hello", n));
    return out;
  });
  w.addNamedOrchestrator("FanOut", async function* (ctx, n) {
    const tasks = [];
    for (let i = 1; i <= n; i++) tasks.push(ctx.callActivity("Double", i));
    const got = yield whenAll(tasks);
    return got.reduce((a, b) => a + b, 0);
  });
  w.addNamedOrchestrator("Timer", async function* (ctx) {
    const start = ctx.currentUtcDateTime;
    yield ctx.createTimer(1);
    return ctx.currentUtcDateTime.getTime() - start.getTime();
  });
  w.addNamedOrchestrator("Approval", async function* (ctx) {
    const v = yield ctx.waitForExternalEvent("approve");
    return `approved by ${v.by}`;
  });
}

function check(cond, msg) { if (!cond) throw new Error(msg); }

// checks returns complete (wait for an instance to finish) and want
// (check its status and output) for an SDK's OrchestrationStatus enum.
function checks(OrchestrationStatus) {
  async function complete(c, id, secs = 30) {
    const st = await c.waitForOrchestrationCompletion(id, true, secs);
    check(st, `instance ${id} not found`);
    return st;
  }
  function want(st, status, output) {
    check(st.runtimeStatus === status,
      `status ${OrchestrationStatus[st.runtimeStatus]}, want ${OrchestrationStatus[status]} (failure: ${JSON.stringify(st.failureDetails)})`);
    if (output !== undefined) check(st.serializedOutput === JSON.stringify(output), `output ${st.serializedOutput}, want ${JSON.stringify(output)}`);
  }
  return { complete, want };
}

// runScenarios runs the scenarios named on the command line (all by
// default) with client c, printing with say a "PASS name" or "FAIL name:
// why" line each, and returns the closing "N passed, N failed" line and
// whether any failed.
async function runScenarios(scenarios, c, say) {
  let names = process.argv.slice(2);
  if (names.length === 0 || names[0] === "all") names = Object.keys(scenarios);
  let passed = 0, failed = 0;
  for (const name of names) {
    const fn = scenarios[name];
    const t0 = Date.now();
    try {
      if (!fn) throw new Error("no such scenario");
      await fn(c);
      passed++;
      say(`PASS ${name} (${Date.now() - t0}ms)`);
    } catch (e) {
      failed++;
      say(`FAIL ${name}: ${e && e.stack || e}`);
    }
  }
  return { summary: `${passed} passed, ${failed} failed`, failed: failed > 0 };
}

module.exports = { registerBasic, check, checks, runScenarios };
