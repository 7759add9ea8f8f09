// The kill-cmd annotation editor: live validation from the module's diagnostics, the plan
// following the edit, and the fixed annotation or YAML handed back.
import { before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pasteInput, shownPlan, suiteSession, WEB } from './harness.mjs';

const example = (f) => readFileSync(join(WEB, 'examples', f), 'utf8');

describe('editing a kill-cmd annotation', () => {
  const session = suiteSession((tab, site) =>
    tab.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(site.url).origin }));
  let page;
  before(() => { ({ page } = session); });
  beforeEach(async () => {
    await pasteInput(page, example('seed-istio-quitquitquit.yaml'));
  });

  /** Types into the value field and waits for the plan that follows. */
  async function typeValue(value) {
    await page.fill('#edit-value', value);
    await page.waitForFunction((v) => document.getElementById('edit-value').value === v, value);
    await page.waitForTimeout(50);
  }

  test('the editor starts on the sidecar with its current annotation', async () => {
    assert.equal(await page.inputValue('#edit-container'), 'istio-proxy');
    assert.equal(await page.inputValue('#edit-value'), '["pilot-agent", "request", "POST", "quitquitquit"]');
  });

  test('an invalid value shows its diagnostic at once, and the plan follows', async () => {
    await typeValue('["kill", 15]');
    const feedback = page.locator('#edit-feedback');
    await feedback.locator('[data-code="kill-cmd-not-string"]').waitFor();
    assert.match(await feedback.textContent(), /error/);
    assert.equal(await page.getAttribute('#edit-value', 'aria-invalid'), 'true');
    // The main answer shows it too, and falls back to a default command.
    assert.ok((await shownPlan(page))[0].diagnostics.includes('error:kill-cmd-not-string@istio-proxy'));
    assert.match(await page.textContent('#summary'), /unsaved annotation edit/);

    await typeValue('kill -%d 1');
    await feedback.locator('[data-code="kill-cmd-not-json"]').waitFor();

    await typeValue('["sh", "-c", "kill -%d 1"]');
    await page.waitForFunction(() => !document.querySelector('#edit-feedback [data-code^="kill-cmd-"][data-severity="error"]'));
    assert.equal(await page.getAttribute('#edit-value', 'aria-invalid'), 'false');
    const stop = (await shownPlan(page))[0].stops[0];
    assert.deepEqual(stop.steps, ['await wait', 'send 15 exec sh -c kill -15 1', 'wait 30', 'send 9 exec sh -c kill -9 1']);
  });

  test('the fixed annotation and the fixed YAML are handed back; writing keeps the rest of the text', async () => {
    await typeValue('["sh", "-c", "kill -%d $(pidof pilot-agent)"]');
    await page.click('#edit-copy-annotation');
    await page.waitForFunction(() => /copied/.test(document.getElementById('edit-status').textContent));
    const line = "workflows.argoproj.io/kill-cmd-istio-proxy: '[\"sh\", \"-c\", \"kill -%d $(pidof pilot-agent)\"]'";
    assert.equal(await page.inputValue('#edit-output'), line);
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), line);

    await page.click('#edit-copy-yaml');
    const fixed = await page.inputValue('#edit-output');
    const original = example('seed-istio-quitquitquit.yaml').split('\n');
    const changed = fixed.split('\n').filter((l, i) => l !== original[i]);
    assert.deepEqual(changed, [`    ${line}`], 'only the annotation line changes; comments stay');

    await page.click('#edit-apply');
    await page.waitForFunction(() => /one line changed/.test(document.getElementById('edit-status').textContent));
    assert.equal(await page.inputValue('#input'), fixed);
    assert.doesNotMatch(await page.textContent('#summary'), /unsaved/);
    assert.equal((await shownPlan(page))[0].stops[0].steps[1], 'send 15 exec sh -c kill -15 $(pidof pilot-agent)');
  });

  test('an annotation added where there was none is written into the document anew', async () => {
    await pasteInput(page, example('istio-job.yaml'));
    assert.equal(await page.inputValue('#edit-container'), 'istio-proxy');
    assert.equal(await page.inputValue('#edit-value'), '');
    await typeValue('["pilot-agent", "request", "POST", "quitquitquit"]');
    await page.click('#edit-apply');
    await page.waitForFunction(() => /written anew/.test(document.getElementById('edit-status').textContent));
    const text = await page.inputValue('#input');
    assert.match(text, /^kind: Job$/m);
    assert.match(text, /^ {8}workflows\.argoproj\.io\/kill-cmd-istio-proxy: '\["pilot-agent", "request", "POST", "quitquitquit"\]'$/m);
    const article = page.locator('#results article.subject');
    assert.equal(await article.locator('li.stop .badge', { hasText: 'command: annotation' }).count(), 1);
  });

  test('on a Workflow, the annotation goes into the template\'s metadata', async () => {
    await pasteInput(page, example('seed-pidof-entrypoint.yaml'));
    assert.equal(await page.inputValue('#edit-container'), 'log-forwarder');
    assert.match(await page.inputValue('#edit-value'), /pidof entrypoint\.sh/);
    await typeValue('[]');
    await page.locator('#edit-feedback [data-code="kill-cmd-empty"]').waitFor();
    await typeValue('');
    // No annotation: the emissary's argoexec kill is used.
    await page.waitForFunction(() => document.querySelector('#results li.stop[data-container="log-forwarder"] .track li:nth-child(1)')?.dataset.step === 'send 15 exec /var/run/argo/argoexec kill 15 1');
    await page.click('#edit-discard');
    assert.match((await shownPlan(page))[0].stops[0].steps[0], /pidof entrypoint\.sh/);
  });

  test('the preset button fills in the module\'s preset command', async () => {
    await pasteInput(page, example('istio-job.yaml'));
    const button = page.locator('#edit-preset');
    assert.match(await button.textContent(), /pilot-agent request POST quitquitquit/);
    await button.click();
    assert.equal(await page.inputValue('#edit-value'), '["pilot-agent","request","POST","quitquitquit"]');
    assert.deepEqual(page.problems, []);
  });
});

describe('editing a JSON input', () => {
  const session = suiteSession();
  let page;
  before(() => { ({ page } = session); });

  test('the fixed input stays JSON, changed in place', async () => {
    // The seed's sh-kill case as `kubectl get pod -o json` prints it.
    const yaml = example('seed-sh-kill.yaml');
    const json = await page.evaluate(async (text) => {
      const { parseDocuments } = await import('./policy.js');
      return JSON.stringify(parseDocuments(text).ok[0], null, 4);
    }, yaml);
    await pasteInput(page, json);
    assert.equal(await page.inputValue('#edit-container'), 'vault-agent');
    assert.equal(await page.inputValue('#edit-value'), '["sh", "-c", "kill -%d 1"]');
    await page.fill('#edit-value', '["sh", "-c", "kill -%d $(pidof vault)"]');
    await page.click('#edit-apply');
    await page.waitForFunction(() => /one line changed/.test(document.getElementById('edit-status').textContent));
    const fixed = await page.inputValue('#input');
    const parsed = JSON.parse(fixed);
    assert.equal(parsed.metadata.annotations['workflows.argoproj.io/kill-cmd-vault-agent'], '["sh", "-c", "kill -%d $(pidof vault)"]');
    assert.equal(fixed.split('\n').length, json.split('\n').length);
    assert.equal((await shownPlan(page))[0].stops[0].steps[0], 'send 15 exec sh -c kill -15 $(pidof vault)');
    assert.deepEqual(page.problems, []);
  });
});
