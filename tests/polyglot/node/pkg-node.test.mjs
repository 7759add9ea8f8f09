// The wasm-pack package (scripts/build-wasm: dist/pkg-node, `--target nodejs`) against the
// native answers: its typed API (`plan(request)` and friends answer envelope objects) and
// `callJson`, the raw ABI's call with strings in and out.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { NO_VECTORS, PKG_NODE, REPO, assertSameAnswer, canonical, loadPkgNode, loadVectors, wasmBytes } from './common.mjs';
import { loadPolicy } from './loader.mjs';

const vectors = loadVectors();
const built = `(was ${PKG_NODE} built from the same core as the vectors?)`;

/** The request as a JavaScript value, or undefined when its text is not JSON (a bad-input vector). */
function requestValue(v) {
  try { return JSON.parse(v.request.toString('utf8')); } catch { return undefined; }
}

test('pkg-node: the package loads and says what it exports', () => {
  const pkg = loadPkgNode();
  for (const name of ['plan', 'classify', 'matrix', 'policyInfo', 'parseDocuments', 'callJson']) {
    assert.equal(typeof pkg[name], 'function', `${PKG_NODE} exports ${name}`);
  }
  const { types } = JSON.parse(readFileSync(join(PKG_NODE, 'package.json'), 'utf8'));
  assert.ok(types, 'package.json names its .d.ts');
  const dts = readFileSync(join(PKG_NODE, types), 'utf8');
  for (const decl of ['export function plan(request: PlanRequest): Result<PlanResponse>;',
    'export function classify(request: ClassifyRequest): Result<ClassifyResponse>;',
    'export function matrix(): Result<Matrix>;', 'export function policyInfo(): Result<PolicyInfo>;',
    'export function parseDocuments(text: string): Result<JsonValue[]>;',
    'export function callJson(call: Call, request: string): string;']) {
    assert.ok(dts.includes(decl), `the .d.ts declares ${decl}`);
  }
});

test('pkg-node vectors: plan(object) answers as the native core', async (t) => {
  assert.ok(vectors.length > 0, NO_VECTORS);
  const pkg = loadPkgNode();
  for (const v of vectors) {
    await t.test(v.name, (t) => {
      assert.ok(v.answer !== null, `${v.name}.answer.json is missing`);
      const request = requestValue(v);
      if (request === undefined) {
        // Not JSON: a JavaScript value cannot carry it. callJson does, below.
        t.diagnostic('request is not JSON; checked through callJson only');
        return;
      }
      assertSameAnswer(canonical(pkg.plan(request)), canonical(v.answer), `${v.name} ${built}`);
    });
  }
});

test('pkg-node vectors: callJson("plan", text) answers as the native core, byte for byte', async (t) => {
  assert.ok(vectors.length > 0, NO_VECTORS);
  const pkg = loadPkgNode();
  for (const v of vectors) {
    await t.test(v.name, () => {
      assert.ok(v.answer !== null, `${v.name}.answer.json is missing`);
      const answer = pkg.callJson('plan', v.request.toString('utf8'));
      assert.equal(typeof answer, 'string');
      assertSameAnswer(canonical(answer), canonical(v.answer), `${v.name} ${built}`);
      assert.ok(answer === v.answer, `${v.name}: same canonical answer, but not the same bytes`);
    });
  }
});

test('pkg-node vectors from YAML fixtures: parseDocuments, then plan, answers as the native core', async (t) => {
  const fixtures = process.env.SIDEKILL_FIXTURES || join(REPO, '../shared/fixtures/real-world');
  const pkg = loadPkgNode();
  const source = (v) => join(REPO, 'tests/vectors', `${v.name}.json`);
  const stale = vectors.filter((v) => !existsSync(source(v))).map((v) => v.name);
  if (stale.length) t.diagnostic(`dumped vectors with no tests/vectors source (stale dump?): ${stale.join(', ')}`);
  const withFixture = vectors.filter((v) => existsSync(source(v)))
    .map((v) => ({ v, spec: JSON.parse(readFileSync(source(v), 'utf8')) }))
    .filter(({ spec }) => typeof spec.fixture === 'string');
  if (!withFixture.length || !existsSync(fixtures)) {
    t.skip(`no vector with a fixture, or no fixtures at ${fixtures}`);
    return;
  }
  for (const { v, spec } of withFixture) {
    await t.test(v.name, () => {
      const docs = pkg.parseDocuments(readFileSync(join(fixtures, spec.fixture), 'utf8'));
      assert.ok(docs.ok, `parseDocuments answers ok, got ${JSON.stringify(docs.error)}`);
      assert.equal(docs.ok.length, 1, 'one document, as dump_vectors expects');
      const request = { object: docs.ok[0], ...(spec.facts != null ? { facts: spec.facts } : {}) };
      assertSameAnswer(canonical(pkg.plan(request)), canonical(v.answer), `${v.name} ${built}`);
    });
  }
});

test('pkg-node: classify, matrix and policyInfo answer as the raw module', async () => {
  assert.ok(vectors.length > 0, NO_VECTORS);
  const pkg = loadPkgNode();
  const raw = await loadPolicy(wasmBytes());
  assertSameAnswer(canonical(pkg.policyInfo()), canonical(raw.policyInfo()), 'policyInfo');
  assertSameAnswer(canonical(pkg.matrix()), canonical(raw.matrix()), 'matrix');
  assert.equal(pkg.callJson('matrix', ''), raw.matrix());
  for (const v of vectors) {
    const request = requestValue(v);
    if (request === undefined) continue;
    assertSameAnswer(canonical(pkg.classify(request)), canonical(raw.classify(v.request)), `classify ${v.name}`);
  }
});

test('pkg-node: bad input answers an error envelope, never throws', () => {
  const pkg = loadPkgNode();
  const code = (answer) => {
    assert.deepEqual(Object.keys(answer), ['error'], JSON.stringify(answer).slice(0, 200));
    return answer.error.code;
  };
  assert.equal(code(pkg.plan(undefined)), 'invalid_json');
  assert.equal(code(pkg.plan({ object: 1n })), 'invalid_json'); // JSON.stringify throws on BigInt
  const cycle = { object: {} };
  cycle.object.self = cycle;
  assert.equal(code(pkg.plan(cycle)), 'invalid_json');
  assert.equal(code(pkg.plan({})), 'missing_field');
  assert.equal(code(pkg.plan({ object: { kind: 'Service', metadata: { name: 's' } } })), 'unsupported_kind');
  assert.equal(code(JSON.parse(pkg.callJson('plan', '{"object":'))), 'invalid_json');
  assert.equal(code(JSON.parse(pkg.callJson('nope', '{}'))), 'invalid_field');
  const yaml = pkg.parseDocuments('a: [1, 2\nb: }');
  assert.equal(code(yaml), 'invalid_yaml');
  assert.ok(Number.isInteger(yaml.error.line) && yaml.error.line >= 1, `a 1-based line: ${JSON.stringify(yaml.error)}`);
  assert.deepEqual(pkg.parseDocuments('a: 1\n---\n---\nb: [x]\n').ok, [{ a: 1 }, { b: ['x'] }]);
  const good = vectors.find((v) => v.answer !== null && 'ok' in JSON.parse(v.answer) && requestValue(v) !== undefined);
  if (good) assertSameAnswer(canonical(pkg.plan(requestValue(good))), canonical(good.answer), 'after bad input');
});
