// Injection simulation: Istio, Linkerd and Kuma, classic and native, into a workflow step
// and a Job; the policy's answer for each.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pasteInput, shownPlan, suiteSession, WEB } from './harness.mjs';

const example = (f) => readFileSync(join(WEB, 'examples', f), 'utf8');

describe('simulating injection', () => {
  const session = suiteSession();
  let page;
  before(() => { ({ page } = session); });

  const row = (mesh, mode) => page.locator(`#sim-result tr[data-mesh="${mesh}"][data-mode="${mode}"]`);
  const roleIn = (mesh, mode, name) => row(mesh, mode).locator(`li[data-container="${name}"]`).getAttribute('data-role');

  test('into a workflow step: six variants, each planned by the policy', async () => {
    await pasteInput(page, example('argo-workflow-sidecars.yaml'));
    assert.match(await page.locator('#sim-pod option').first().textContent(), /template build-image \(the pod Argo creates\)/);
    await page.click('#sim-run');
    await page.locator('#sim-result tbody tr').nth(5).waitFor();
    assert.equal(await page.locator('#sim-result tbody tr').count(), 6);
    assert.equal(await roleIn('istio', 'classic', 'istio-proxy'), 'injected-sidecar');
    assert.equal(await roleIn('istio', 'native', 'istio-proxy'), 'native-sidecar');
    assert.equal(await roleIn('linkerd', 'classic', 'linkerd-proxy'), 'injected-sidecar');
    assert.equal(await roleIn('kuma', 'native', 'kuma-sidecar'), 'native-sidecar');
    assert.equal(await row('istio', 'classic').locator('[data-container="istio-proxy"][data-verdict]').getAttribute('data-verdict'), 'stops');
    assert.equal(await row('linkerd', 'classic').locator('[data-container="linkerd-proxy"][data-verdict]').getAttribute('data-verdict'), 'cannot-stop');
    assert.equal(await row('istio', 'classic').locator('[data-code="proxy-after-wait"]').count(), 1);
    assert.equal(await row('kuma', 'native').locator('[data-code="native-sidecar"]').count(), 1);
  });

  test('the facts count: native sidecars on Kubernetes 1.28', async () => {
    await page.fill('#fact-cluster', '1.28');
    await row('linkerd', 'native').locator('[data-code="native-sidecar-unsupported"]').waitFor();
    await page.fill('#fact-cluster', '');
    await row('linkerd', 'native').locator('[data-code="native-sidecar"]').waitFor();
  });

  test('a variant opens as the input, and a meshed pod is not meshed twice', async () => {
    await row('istio', 'classic').getByRole('button', { name: /Open the Istio classic injection/ }).click();
    await page.waitForFunction(() => document.getElementById('input').value.startsWith('# Simulated: Istio classic'));
    const plan = await shownPlan(page);
    assert.equal(plan[0].roles['istio-proxy'], 'injected-sidecar');
    assert.equal(plan[0].executor, 'emissary');
    assert.equal(plan[0].stops.at(-1).container, 'istio-proxy', 'the proxy is stopped last');
    // This pod has Istio already.
    await page.locator('#sim-result tbody tr').nth(5).waitFor();
    assert.match(await row('istio', 'classic').textContent(), /already has istio-init/);
    assert.equal(await roleIn('kuma', 'classic', 'kuma-sidecar'), 'injected-sidecar');
  });

  test('into a Job, in place', async () => {
    await pasteInput(page, example('multi-document.yaml'));
    await page.selectOption('#sim-pod', { index: 1 });
    await page.waitForFunction(() => /CronJob ledger-close/.test(document.querySelector('#sim-result caption')?.textContent));
    assert.equal(await roleIn('istio', 'classic', 'istio-proxy'), 'injected-sidecar');
    assert.match(await row('kuma', 'classic').textContent(), /kuma-sidecar/);
    assert.deepEqual(page.problems, []);
  });
});
