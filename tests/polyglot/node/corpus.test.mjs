// Issue 17: every module of the hostile corpus (host/tests/modules/corpus.json) loaded by
// loader.mjs: each gives a clean JavaScript error, an answer, or is stopped by this test's
// bound, and never takes the test process down.
//
// The loader's own bounds: none for time (a module that loops, in its start function or in a
// call, blocks the thread for ever: `WebAssembly` has no deadline) and V8's for memory (a
// memory may grow to 4 GiB, or what the process may map). So each module runs in a child
// process this test bounds to 10 s of wall-clock time; a child stopped by it is reported as a
// timeout, which is what this loader does with a module that never returns.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const corpus = join(here, '../../../host/tests/modules');
const manifest = JSON.parse(readFileSync(join(corpus, 'corpus.json'), 'utf8'));
const SECONDS = 10;
// The modules that never return under this loader: it has no deadline.
const HANGS = new Set(['loop_plan.wasm', 'grow_plan.wasm', 'start_loop.wasm']);

const child = `
import { readFileSync } from 'node:fs';
import { loadPolicy } from ${JSON.stringify(join(here, 'loader.mjs'))};
const say = (o) => process.stdout.write(JSON.stringify(o));
let policy;
try {
  policy = await loadPolicy(readFileSync(process.argv[1]));
} catch (e) {
  say({ outcome: 'refused-at-load', error: e.constructor.name });
  process.exit(0);
}
try {
  const answer = policy.planBytes(readFileSync(0));
  say({ outcome: 'answers', bytes: answer.length });
} catch (e) {
  say({ outcome: 'call-fails', error: e.constructor.name });
}
`;

const request = JSON.stringify(manifest.request);
for (const { file } of manifest.modules.filter((m) => m.file !== 'embedded')) {
  test(`corpus: ${file} never takes the loader down`, () => {
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', child, join(corpus, file)], {
      input: request, timeout: SECONDS * 1000, killSignal: 'SIGKILL', encoding: 'utf8',
    });
    if (run.error?.code === 'ETIMEDOUT' || run.signal === 'SIGKILL') {
      assert.ok(HANGS.has(file), `${file} ran past ${SECONDS} s: the loader has no deadline`);
      return;
    }
    assert.ok(!HANGS.has(file), `${file} returned: ${run.stdout} ${run.stderr}`);
    assert.equal(run.status, 0, `${file}: exit ${run.status}, signal ${run.signal}: ${run.stderr.slice(-2000)}`);
    const outcome = JSON.parse(run.stdout);
    assert.ok(['refused-at-load', 'call-fails', 'answers'].includes(outcome.outcome), run.stdout);
  });
}
