// The page accepts a policy module on the same exports as the host (issue #15): abi.js's
// REQUIRED (generated into abi-exports.js by host/tests/it/abi.rs), docs/ABI.md's "Exports"
// table and the host's ABI_EXPORTS are one list (host/build.rs reads the table into
// sidekill::abi::EXPORTS, which policy::ABI_EXPORTS is), and a module without any one of them is
// refused. Runs in Node (no browser needed).
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

/** Whether the host checks docs/ABI.md's table itself (policy::ABI_EXPORTS is abi::EXPORTS,
 * which host/build.rs reads from the table), rather than a list of its own. */
function hostChecksTheTable() {
  const rs = readFileSync(join(REPO, 'host/src/policy/mod.rs'), 'utf8');
  const build = readFileSync(join(REPO, 'host/build.rs'), 'utf8');
  return rs.includes('pub use crate::abi::EXPORTS as ABI_EXPORTS;') && build.includes('docs/ABI.md');
}

describe('the exports a module must have', () => {
  test('the page, docs/ABI.md and the host name the same exports', () => {
    const page = Object.keys(REQUIRED).sort();
    assert.equal(page.length, 11);
    assert.deepEqual(documented().sort(), page);
    assert.ok(hostChecksTheTable(), "the host's ABI_EXPORTS is not docs/ABI.md's table");
  });

  test('a module missing any one of them is refused, naming it', async () => {
    const answers = { plan: '{"ok":{"subjects":[]}}' };
    await instantiate(rawAbiModule({ answers })); // the whole set loads
    for (const name of Object.keys(REQUIRED).filter((n) => n !== 'memory')) {
      await assert.rejects(instantiate(rawAbiModule({ answers, omit: [name] })), new RegExp(`missing export ${name} \\(function\\)`), name);
    }
  });
});
