// The page accepts a policy module on the same exports as the host (issue #15): abi.js's
// REQUIRED (generated into abi-exports.js by host/tests/it/abi.rs), docs/ABI.md's "Exports"
// table and host/src/policy.rs's ABI_EXPORTS are one list,
// and a module without any one of them is refused. Runs in Node (no browser needed).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { instantiate, REQUIRED } from '../abi.js';
import { REPO } from './harness.mjs';
import { rawAbiModule } from './wasm-builder.mjs';

/** The export names of docs/ABI.md's "Exports" table (the optional ones follow in their own). */
function documented() {
  const md = readFileSync(join(REPO, 'docs/ABI.md'), 'utf8');
  const section = md.slice(md.indexOf('\n## Exports\n'), md.indexOf('\n### Optional exports\n'));
  return [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
}

/** The export names the host checks (host/src/policy.rs ABI_EXPORTS). */
function hostChecks() {
  const rs = readFileSync(join(REPO, 'host/src/policy.rs'), 'utf8');
  const list = rs.slice(rs.indexOf('pub const ABI_EXPORTS'), rs.indexOf('];', rs.indexOf('pub const ABI_EXPORTS')));
  return [...list.matchAll(/\("([a-z_]+)", "/g)].map((m) => m[1]);
}

describe('the exports a module must have', () => {
  test('the page, docs/ABI.md and the host name the same exports', () => {
    const page = Object.keys(REQUIRED).sort();
    assert.equal(page.length, 11);
    assert.deepEqual(documented().sort(), page);
    assert.deepEqual(hostChecks().sort(), page);
  });

  test('a module missing any one of them is refused, naming it', async () => {
    const answers = { plan: '{"ok":{"subjects":[]}}' };
    await instantiate(rawAbiModule({ answers })); // the whole set loads
    for (const name of Object.keys(REQUIRED).filter((n) => n !== 'memory')) {
      await assert.rejects(instantiate(rawAbiModule({ answers, omit: [name] })), new RegExp(`missing export ${name} \\(function\\)`), name);
    }
  });
});
