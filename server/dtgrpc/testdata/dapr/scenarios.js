// scenarios.js runs @dapr/durabletask-js 1.0.0, unchanged, against a duro
// server: `node scenarios.js NAME...` (or `all`) with DURO_GRPC (host:port
// of --grpc-listen) set. This SDK speaks an older form of the protocol: it
// sends no completion tokens (duro matches its completions by instance and
// task ID) and no tags. It prints "PASS name" or "FAIL name: why" per
// scenario and a closing "N passed, N failed" line, and exits 1 if any
// failed.
"use strict";
const { TaskHubGrpcClient, TaskHubGrpcWorker } = require("@dapr/durabletask-js");
const { whenAll } = require("@dapr/durabletask-js/task");
const { OrchestrationStatus } = require("@dapr/durabletask-js/orchestration/enum/orchestration-status.enum");
const { registerBasic, check, checks, runScenarios } = require("../basic");

const GRPC = process.env.DURO_GRPC || "localhost:4001";

// The SDK logs every work item with console.log; keep the output to the
// scenarios' lines.
const quiet = { log: console.log, error: console.error, info: console.info };
console.log = console.info = console.error = () => {};
const say = (...a) => quiet.log(...a);

function register(w) {
  registerBasic(w, whenAll);
  w.addNamedActivity("Boom", async (_, why) => { throw new Error(`boom: ${why}`); });
  w.addNamedOrchestrator("Catch", async function* (ctx, why) {
    try {
      yield ctx.callActivity("Boom", why);
      return "no failure";
    } catch (e) {
      return `caught: ${e.message}`;
    }
  });
  w.addNamedOrchestrator("Uncaught", async function* (ctx, why) {
    return yield ctx.callActivity("Boom", why);
  });
}

const { complete, want } = checks(OrchestrationStatus);

const scenarios = {
  async sequence(c) {
    const id = await c.scheduleNewOrchestration("Sequence", "Seattle");
    want(await complete(c, id), OrchestrationStatus.COMPLETED, ["Hello, Seattle!", "Hello, Tokyo!", "Hello, London!"]);
  },
  async fanout(c) {
    const id = await c.scheduleNewOrchestration("FanOut", 10);
    want(await complete(c, id), OrchestrationStatus.COMPLETED, 110);
  },
  async timer(c) {
    const id = await c.scheduleNewOrchestration("Timer");
    const st = await complete(c, id);
    want(st, OrchestrationStatus.COMPLETED);
    check(Number(st.serializedOutput) >= 1000, `the timer fired after ${st.serializedOutput}ms, before its second`);
  },
  async event(c) {
    const id = await c.scheduleNewOrchestration("Approval");
    await c.waitForOrchestrationStart(id, false, 20);
    await c.raiseOrchestrationEvent(id, "approve", { by: "ana" });
    want(await complete(c, id), OrchestrationStatus.COMPLETED, "approved by ana");
  },
  // An activity that throws: the orchestration catches the failure, or
  // fails with it when it does not.
  async activityfailure(c) {
    const caught = await c.scheduleNewOrchestration("Catch", "one");
    const st1 = await complete(c, caught);
    want(st1, OrchestrationStatus.COMPLETED);
    check(/^"caught: .*boom: one"$/.test(st1.serializedOutput), `output ${st1.serializedOutput}, want the caught failure`);
    const uncaught = await c.scheduleNewOrchestration("Uncaught", "two");
    const st = await complete(c, uncaught);
    want(st, OrchestrationStatus.FAILED);
    check(/boom: two/.test(JSON.stringify(st.failureDetails)), `failure ${JSON.stringify(st.failureDetails)}, want boom: two`);
  },
};

async function main() {
  const w = new TaskHubGrpcWorker(GRPC);
  register(w);
  await w.start();
  const c = new TaskHubGrpcClient(GRPC);
  const { summary, failed } = await runScenarios(scenarios, c, say);
  await c.stop();
  await w.stop();
  say(summary);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { quiet.error(e); process.exit(2); });
