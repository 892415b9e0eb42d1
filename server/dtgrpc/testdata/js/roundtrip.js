// roundtrip.js decodes protocol messages with the generated code of
// @microsoft/durabletask-js and prints what that code saw in them.
//
// stdin: a JSON array of {type, b64}: a message name and its binary
// encoding made by duro's Go code. stdout: a JSON array of {leaves, b64}:
// every leaf of the message's toObject() by path, and the message encoded
// again by the JavaScript code. The Go test compares both with what it
// encoded, so a field whose number, type or name differs shows up.
"use strict";
const fs = require("fs");
const pb = require("@microsoft/durabletask-js/dist/proto/orchestrator_service_pb");

function flatten(v, path, out) {
  if (v === undefined || v === null) return;
  if (Array.isArray(v)) {
    v.forEach((e, i) => flatten(e, `${path}[${i}]`, out));
    return;
  }
  if (typeof v === "object") {
    for (const [k, e] of Object.entries(v)) flatten(e, path ? `${path}.${k}` : k, out);
    return;
  }
  out[path] = v;
}

const cases = JSON.parse(fs.readFileSync(0, "utf8"));
const results = cases.map(({ type, b64 }) => {
  const cls = pb[type];
  if (!cls) return { error: `no message ${type} in the JavaScript code` };
  const msg = cls.deserializeBinary(Buffer.from(b64, "base64"));
  const leaves = {};
  flatten(msg.toObject(), "", leaves);
  return { leaves, b64: Buffer.from(msg.serializeBinary()).toString("base64") };
});
process.stdout.write(JSON.stringify(results));
