// Policy comparison: a second raw-ABI module, run in a worker with a time limit. The same
// module agrees byte for byte; a module that answers differently has its differences
// marked; garbage, an import, another ABI major version, a trap and an endless loop are
// refused with a reason while the page keeps planning.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, ensureDir, pasteInput, RAW_WASM, runs, SCREENSHOTS, shownPlan, suiteSession, WEB } from './harness.mjs';
import { rawAbiModule, withCustomSection } from './wasm-builder.mjs';

const example = (f) => readFileSync(join(WEB, 'examples', f), 'utf8');
const INFO = JSON.stringify({ ok: { name: 'sidekill-policy', version: '0.0.1-fake', features: [], presetsHash: '0' } });

describe('comparing with another policy module', () => {
  const session = suiteSession();
  let page;
  before(async () => {
    ({ page } = session);
    await pasteInput(page, example('istio-job.yaml'));
  });

  /** Loads `bytes` as `name` and waits for the outcome; answers the status element. */
  async function load(name, bytes) {
    await page.evaluate(() => { document.getElementById('cmp-status').dataset.state = 'waiting'; });
    await page.setInputFiles('#cmp-file', { name, mimeType: 'application/wasm', buffer: Buffer.from(bytes) });
    await page.waitForFunction(() => ['loaded', 'refused'].includes(document.getElementById('cmp-status').dataset.state)
      && !/^Loading/.test(document.getElementById('cmp-status').textContent), null, { timeout: 15000 });
    return page.locator('#cmp-status');
  }

  /** Planning still works: a new input gets its plan. */
  async function pageStillPlans() {
    const before = await runs(page);
    await pasteInput(page, example('istio-job.yaml'));
    assert.ok(await runs(page) > before);
    assert.equal((await shownPlan(page))[0].stops[0].container, 'istio-proxy');
  }

  /** The answer this page gives for the current input, as JSON text. */
  const ownAnswer = () => page.evaluate(async () => {
    const { callJson, parseDocuments } = await import('./policy.js');
    const [object] = parseDocuments(document.getElementById('input').value).ok;
    return callJson('plan', JSON.stringify({ object, facts: {} }));
  });

  test('the raw module of this build agrees byte for byte', async () => {
    const status = await load('sidekill_policy.wasm', readFileSync(RAW_WASM));
    assert.equal(await status.getAttribute('data-state'), 'loaded');
    assert.match(await page.textContent('#cmp-module'), /^Loaded sidekill_policy\.wasm: sidekill-policy \d+\.\d+\.\d+, ABI 1\.\d+/);
    await page.waitForFunction(() => /byte for byte/.test(document.getElementById('cmp-status').textContent));
    assert.equal(await page.locator('#cmp-result .badge', { hasText: 'same answer, byte for byte' }).count(), 1);
    assert.equal(await page.locator('#cmp-result tr.differs').count(), 0);
  });

  test('a copy with a custom section appended is the same policy', async () => {
    const copy = withCustomSection(readFileSync(RAW_WASM), 'sidekill-test', 'a different build of the same code');
    const status = await load('with-section.wasm', copy);
    assert.equal(await status.getAttribute('data-state'), 'loaded');
    await page.waitForFunction(() => /byte for byte/.test(document.getElementById('cmp-status').textContent));
  });

  test('a module that answers differently: the differences are marked side by side', async () => {
    const answer = JSON.parse(await ownAnswer());
    const stop = answer.ok.subjects[0].plan.stops[0];
    stop.verdict = 'may-stop';
    stop.steps[1].seconds = 5;
    answer.ok.subjects[0].diagnostics.push({ code: 'non-root', severity: 'warning', container: 'istio-proxy', message: 'm', fix: 'f' });
    const fake = rawAbiModule({ answers: { plan: JSON.stringify(answer), policyInfo: INFO } });
    const status = await load('fake-policy.wasm', fake);
    assert.equal(await status.getAttribute('data-state'), 'loaded');
    assert.match(await page.textContent('#cmp-module'), /0\.0\.1-fake/);
    await page.waitForFunction(() => Number(document.getElementById('cmp-result').dataset.differences) > 0);
    assert.match(await status.textContent(), /2 differences across 1 document/);
    const differing = await page.locator('#cmp-result tr.differs th').allTextContents();
    assert.equal(differing.length, 2);
    assert.match(differing[0], /≠ stop istio-proxy/);
    assert.match(differing[1], /non-root @ istio-proxy/);
    const cells = await page.locator('#cmp-result tr.differs').first().locator('td').allTextContents();
    assert.match(cells[0], /^stops .*wait 30/);
    assert.match(cells[1], /^may-stop .*wait 5/);
    assert.match(await page.textContent('#cmp-result thead'), /this page \(\d+\.\d+\.\d+\).*fake-policy\.wasm \(0\.0\.1-fake\)/);
    ensureDir(SCREENSHOTS);
    await page.locator('#compare').scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(SCREENSHOTS, 'desktop-comparison.png') });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator('#cmp-result').scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(SCREENSHOTS, 'phone-comparison.png') });
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  const refusals = [
    ['garbage bytes', 'garbage.wasm', () => new TextEncoder().encode('this is not a wasm module at all'), /not a WebAssembly module this browser can compile/],
    ['a module with an import', 'imports.wasm', () => rawAbiModule({ answers: { plan: '{"ok":{"subjects":[]}}' }, importFn: 'fd_write' }), /imports env\.fd_write \(function\); sidekill's raw ABI imports nothing/],
    ['another ABI major version', 'abi2.wasm', () => rawAbiModule({ answers: { plan: '{"ok":{"subjects":[]}}' }, abiMajor: 2, abiMinor: 3 }), /ABI version 2\.3: this page speaks major version 1/],
    ['a module without the ABI', 'empty.wasm', () => new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]), /missing export memory \(memory\), sidekill_abi_major/],
    ['a module that traps', 'trap.wasm', () => rawAbiModule({ answers: { plan: '{}', policyInfo: INFO }, planBody: 'trap' }), /trapped \(unreachable/],
    ['a module that answers no envelope', 'nonsense.wasm', () => rawAbiModule({ answers: { plan: '[1, 2, 3]', policyInfo: INFO } }), /sidekill_plan's answer is not an \{ok\} or \{error\} envelope/],
    ['a module whose policy_info answers garbage', 'bad-info.wasm', () => rawAbiModule({ answers: { plan: '{}', policyInfo: 'not json' } }), /sidekill_policy_info's answer is not JSON/],
  ];
  for (const [what, name, bytes, reason] of refusals) {
    test(`${what} is refused with a reason, and the page keeps working`, async () => {
      const status = await load(name, bytes());
      assert.equal(await status.getAttribute('data-state'), 'refused');
      assert.match(await status.textContent(), reason);
      assert.match(await status.textContent(), /The page goes on with its own policy/);
      assert.equal(await page.locator('#cmp-result tr').count(), 0);
      assert.equal(await page.locator('#cmp-unload').isDisabled(), true);
      await pageStillPlans();
    });
  }

  test('an endless loop is stopped after the time limit while the page stays responsive', async () => {
    await page.evaluate(() => { document.getElementById('cmp-status').dataset.state = 'waiting'; });
    const loop = rawAbiModule({ answers: { plan: '{}', policyInfo: INFO }, planBody: 'loop' });
    const started = Date.now();
    await page.setInputFiles('#cmp-file', { name: 'loop.wasm', mimeType: 'application/wasm', buffer: Buffer.from(loop) });
    await page.waitForFunction(() => document.getElementById('cmp-status').dataset.state === 'loaded');
    // The module spins in its worker; the page still plans new input meanwhile.
    await pageStillPlans();
    assert.ok(Date.now() - started < 3000, 'the page answered before the time limit');
    await page.waitForFunction(() => document.getElementById('cmp-status').dataset.state === 'refused', null, { timeout: 15000 });
    assert.match(await page.textContent('#cmp-status'), /^Stopped loop\.wasm: planning took longer than 3 s, so the module was stopped \(an endless loop\?\)/);
    await pageStillPlans();
    assert.deepEqual(page.problems, []);
  });
});
