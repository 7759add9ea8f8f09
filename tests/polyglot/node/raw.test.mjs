// The raw module through loader.mjs: the shared vectors, bad input, and the empty import object.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { NO_VECTORS, WASM, assertSameAnswer, canonical, loadVectors, wasmBytes } from './common.mjs';
import { loadPolicy } from './loader.mjs';

const bytes = wasmBytes();
const module = await WebAssembly.compile(bytes);
const vectors = loadVectors();

/** The error envelope's code, failing the test if the answer is not an error envelope. */
function errorCode(answerText) {
  const answer = JSON.parse(answerText);
  assert.deepEqual(Object.keys(answer), ['error'], `an error envelope, got ${answerText.slice(0, 200)}`);
  assert.equal(typeof answer.error.message, 'string');
  return answer.error.code;
}

test('vectors: raw module answers as the native core', async (t) => {
  assert.ok(vectors.length > 0, NO_VECTORS);
  const policy = await loadPolicy(module); // one instance serves every vector, as a host would
  for (const v of vectors) {
    await t.test(v.name, () => {
      assert.ok(v.answer !== null, `${v.name}.answer.json is missing`);
      assertSameAnswer(canonical(policy.plan(v.request)), canonical(v.answer),
        `${v.name} (was ${WASM} built from the same core as the vectors?)`);
    });
  }
});

test('imports: none, and an empty import object instantiates', async () => {
  assert.deepEqual(WebAssembly.Module.imports(module), []);
  const { instance } = await WebAssembly.instantiate(bytes, {});
  assert.equal(instance.exports.sidekill_abi_major(), 1);
  const exports = WebAssembly.Module.exports(module).map((e) => e.name);
  for (const name of ['memory', 'sidekill_abi_major', 'sidekill_abi_minor', 'sidekill_alloc', 'sidekill_free',
    'sidekill_reset', 'sidekill_result_len', 'sidekill_plan', 'sidekill_classify', 'sidekill_matrix',
    'sidekill_policy_info']) {
    assert.ok(exports.includes(name), `export ${name} missing (exports: ${exports.join(', ')})`);
  }
});

test('bad input: an error envelope, and the instance still serves the next call', async (t) => {
  assert.ok(vectors.length > 0, NO_VECTORS);
  const good = vectors.find((v) => v.answer !== null && 'ok' in JSON.parse(v.answer));
  assert.ok(good, 'a vector with an ok answer is needed to check the instance after bad input');
  const policy = await loadPolicy(module);
  const x = policy.exports;
  const stillGood = () => assertSameAnswer(canonical(policy.plan(good.request)), canonical(good.answer), 'after bad input');

  await t.test('invalid UTF-8: invalid_utf8', () => {
    const request = Buffer.concat([Buffer.from('{"object":{"kind":"Pod","metadata":{"name":"'),
      Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}}}')]);
    assert.equal(errorCode(policy.plan(request)), 'invalid_utf8');
    stillGood();
  });

  await t.test('truncated JSON: invalid_json', () => {
    const request = good.request.subarray(0, Math.floor(good.request.length / 2));
    assert.equal(errorCode(policy.plan(request)), 'invalid_json');
    assert.equal(errorCode(policy.plan('')), 'invalid_json');
    stillGood();
  });

  await t.test('50 MB request: request_too_large', () => {
    const request = new Uint8Array(50 * 1000 * 1000).fill(0x20); // alloc grows memory past 50 MB
    const pagesBefore = x.memory.buffer.byteLength;
    assert.equal(errorCode(policy.plan(request)), 'request_too_large');
    assert.ok(x.memory.buffer.byteLength > pagesBefore, 'memory grew, so the loader re-made its views');
    stillGood();
  });

  await t.test('pointer or length outside memory: bad_pointer', () => {
    const size = x.memory.buffer.byteLength;
    const ptr = x.sidekill_alloc(16);
    try {
      for (const [p, n, what] of [
        [size + 64, 8, 'past the end of memory'],
        [size - 4, 64, 'straddling the end of memory'],
        [ptr, 17, 'one byte past the buffer'],
        [ptr + 16, 1, 'just after the buffer'],
        [0xfffffff0 | 0, 64, 'near 4 GiB, offset + length wraps'],
        [0xffffffff | 0, 1, 'the last address of a 4 GiB space'],
      ]) { // lengths stay under 8 MiB: a longer one is request_too_large before its pointer is looked at
        for (const [fn, call] of [['plan', x.sidekill_plan], ['classify', x.sidekill_classify]]) {
          assert.equal(errorCode(policy.readAnswer(call(p, n))), 'bad_pointer', `${fn}: ${what}`);
        }
      }
    } finally {
      x.sidekill_free(ptr, 16);
    }
    stillGood();
  });

  await t.test('a call before any alloc on a fresh instance: bad_pointer', async () => {
    const fresh = await loadPolicy(module);
    assert.equal(errorCode(fresh.readAnswer(fresh.exports.sidekill_plan(0, 0))), 'bad_pointer');
    assert.equal(errorCode(fresh.readAnswer(fresh.exports.sidekill_plan(1024, 16))), 'bad_pointer');
    assert.equal(errorCode(fresh.readAnswer(fresh.exports.sidekill_classify(1024, 16))), 'bad_pointer');
    assertSameAnswer(canonical(fresh.plan(good.request)), canonical(good.answer), 'after bad input');
  });

  await t.test('a freed buffer: bad_pointer', () => {
    const ptr = x.sidekill_alloc(good.request.length);
    new Uint8Array(x.memory.buffer, ptr, good.request.length).set(good.request);
    x.sidekill_free(ptr, good.request.length);
    assert.equal(errorCode(policy.readAnswer(x.sidekill_plan(ptr, good.request.length))), 'bad_pointer');
    stillGood();
  });

  await t.test('alloc refuses 0 and over 64 MiB with 0', () => {
    assert.equal(x.sidekill_alloc(0), 0);
    assert.equal(x.sidekill_alloc(64 * 1024 * 1024 + 1), 0);
    assert.throws(() => policy.plan(new Uint8Array(64 * 1024 * 1024 + 1)), RangeError);
    stillGood();
  });
});

test('other calls: classify, matrix, policyInfo, reset', async () => {
  assert.ok(vectors.length > 0, NO_VECTORS);
  const policy = await loadPolicy(module);
  assert.deepEqual(policy.abi, { major: 1, minor: policy.exports.sidekill_abi_minor() });

  const info = JSON.parse(policy.policyInfo()).ok;
  assert.ok(info, 'policyInfo answers ok');
  assert.deepEqual(Object.keys(info).sort(), ['argoOwnRoles', 'commands', 'features', 'killCmdPrefix', 'name', 'nopPathEnv', 'nopPaths', 'presetsHash', 'quitterPath', 'version']);
  assert.equal(info.name, 'sidekill-policy');
  assert.ok(Array.isArray(info.features) && info.features.includes('plan'));

  assert.ok('ok' in JSON.parse(policy.matrix()), 'matrix answers ok');
  assert.equal(policy.matrix(), policy.matrix(), 'deterministic');

  for (const v of vectors.filter((v) => v.answer !== null && 'ok' in JSON.parse(v.answer))) {
    const classified = JSON.parse(policy.classify(v.request));
    assert.ok('ok' in classified, `${v.name}: classify answers ok, got ${JSON.stringify(classified).slice(0, 200)}`);
    assert.equal(classified.ok.subjects.length, JSON.parse(v.answer).ok.subjects.length, v.name);
  }

  policy.exports.sidekill_reset();
  assert.equal(policy.exports.sidekill_result_len(), 0);
  const v = vectors[0];
  assertSameAnswer(canonical(policy.plan(v.request)), canonical(v.answer), 'after bad input');
});
