// The JavaScript build (dist/pkg-node) answers every shared vector as the native core does:
// callJson byte for byte, plan() as the same object. Run by check-types with `node --test`.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const dist = process.env.SIDEKILL_DIST ?? join(root, "dist");
const policy = createRequire(import.meta.url)(join(dist, "pkg-node", "sidekill_policy.js"));
const vectors = join(dist, "vectors");
const names = readdirSync(vectors)
  .filter((f) => f.endsWith(".request.json"))
  .map((f) => f.slice(0, -".request.json".length))
  .sort();

test("there are vectors", () => assert.ok(names.length > 0, `no vectors in ${vectors}`));

for (const name of names) {
  test(name, () => {
    const request = readFileSync(join(vectors, `${name}.request.json`), "utf8");
    const native = readFileSync(join(vectors, `${name}.answer.json`), "utf8");
    assert.equal(policy.callJson("plan", request), native);
    let object;
    try {
      object = JSON.parse(request);
    } catch {
      return; // a vector of bad JSON: only callJson can send it
    }
    assert.deepEqual(policy.plan(object), JSON.parse(native));
  });
}

test("bad input answers an error envelope, never throws", () => {
  const cycle = {};
  cycle.self = cycle;
  for (const request of [undefined, cycle, 1n, "text", [], { object: null }]) {
    const answer = policy.plan(request);
    assert.equal(typeof answer.error?.code, "string", JSON.stringify(answer));
  }
  const yaml = policy.parseDocuments("a: 1\n  b: 2\n");
  assert.equal(yaml.error.code, "invalid_yaml");
  assert.equal(yaml.error.line, 2);
  assert.equal(typeof yaml.error.column, "number");
  assert.deepEqual(Object.keys(yaml.error), ["code", "message", "line", "column"]);
});
