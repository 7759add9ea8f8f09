// index.html asks for everything the first plan needs in its first round trip (issue 16): a
// module the browser discovers only when it parses its importer costs one more round trip
// before any of the page's code runs, and the first example, found only in examples/index.json,
// one more before the first plan. This reads the files themselves (no browser): every module
// that the page's scripts import, directly or not, is preloaded, and nothing else is; so are
// the policy module, the examples index and its first example.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WEB } from './harness.mjs';

const html = readFileSync(join(WEB, 'index.html'), 'utf8');
const attributes = (tag) => Object.fromEntries([...tag.matchAll(/([a-z-]+)(?:="([^"]*)")?/g)].slice(1).map((m) => [m[1], m[2] ?? '']));
const tags = (name) => [...html.matchAll(new RegExp(`<${name}\\b[^>]*>`, 'g'))].map((m) => attributes(m[0]));

/** The page's own modules that `file` imports statically (`import ... from './x.js'`). */
function imports(file) {
  const source = readFileSync(join(WEB, file), 'utf8');
  return [...source.matchAll(/^(?:import|export)\s[^;]*?from\s+'\.\/([^']+)'|^import\s+'\.\/([^']+)'/gm)].map((m) => m[1] ?? m[2]);
}

test('every module the page imports is preloaded, and only those', () => {
  const scripts = tags('script').filter((s) => s.type === 'module').map((s) => s.src);
  assert.ok(scripts.includes('app.js') && scripts.includes('start.js'), `module scripts: ${scripts.join(', ')}`);
  const reachable = new Set();
  const pending = [...scripts];
  while (pending.length) {
    const file = pending.pop();
    for (const imported of imports(file)) {
      if (!reachable.has(imported)) {
        reachable.add(imported);
        pending.push(imported);
      }
    }
  }
  for (const script of scripts) reachable.delete(script);
  const preloaded = tags('link').filter((l) => l.rel === 'modulepreload').map((l) => l.href);
  assert.deepEqual([...preloaded].sort(), [...reachable].sort());
});

test('the policy module, the examples index and the first example are preloaded as fetches', () => {
  const fetches = tags('link').filter((l) => l.rel === 'preload' && l.as === 'fetch');
  // `crossorigin` makes the preload a CORS request, as fetch() is: otherwise the page's
  // fetch does not match it and downloads the file again.
  for (const link of fetches) assert.ok('crossorigin' in link, `${link.href} is preloaded without crossorigin`);
  const first = JSON.parse(readFileSync(join(WEB, 'examples/index.json'), 'utf8'))[0].file;
  const hrefs = fetches.map((l) => l.href);
  for (const wanted of ['sidekill_policy.wasm', 'examples/index.json', `examples/${first}`]) {
    assert.ok(hrefs.includes(wanted), `${wanted} is not preloaded (preloads: ${hrefs.join(', ')})`);
  }
});
