// The page as a whole: it loads the policy offline, plans the bundled examples, shows YAML
// errors inline, restores a shared link, is usable from the keyboard, and writes YAML that
// reads back the same.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, openPage, pasteInput, runs, shownPlan, suiteSession, WEB } from './harness.mjs';

const examples = JSON.parse(readFileSync(join(WEB, 'examples/index.json'), 'utf8'));

describe('the page', () => {
  const requests = [];
  const session = suiteSession(async (tab) => {
    tab.on('request', (r) => requests.push(r.url()));
  });
  let page;
  before(() => { ({ page } = session); });

  test('loads the policy and plans the first example without any request elsewhere', async () => {
    assert.match(await page.textContent('#policy-info'), /^Policy sidekill-policy \d+\.\d+\.\d+/);
    const plan = await shownPlan(page);
    assert.equal(plan.length, 1);
    assert.equal(plan[0].stops[0].container, 'istio-proxy');
    // The annotation makes the preset's request, so it is judged as the preset (issue 19).
    assert.equal(plan[0].stops[0].verdict, 'stops');
    assert.deepEqual(plan[0].stops[0].steps, [
      'await wait',
      'send 15 exec pilot-agent request POST quitquitquit',
      'wait 30',
      'send 9 exec pilot-agent request POST quitquitquit',
    ]);
    // The matrix row the answer names is highlighted, with the column that applies.
    const row = page.locator('#matrix tr.current');
    assert.equal(await row.count(), 1);
    assert.equal(await row.getAttribute('data-executor'), 'emissary');
    assert.equal(await row.locator('td.applies').count(), 1);
    const origin = new URL(session.server.url).origin;
    const elsewhere = requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:'));
    assert.deepEqual(elsewhere, []);
    assert.deepEqual(page.problems, []);
  });

  test('every bundled example is one click away and plans', async () => {
    assert.equal(await page.locator('#examples button').count(), examples.length);
    for (const ex of examples) {
      const before = await runs(page);
      await page.locator(`#examples button[data-example="${ex.file}"]`).click();
      await page.waitForFunction((n) => Number(document.documentElement.dataset.runs) > n, before);
      const plan = await shownPlan(page);
      assert.ok(plan.length >= 1, `${ex.file}: at least one pod`);
      assert.equal(await page.locator('#results .doc-error').count(), 0, `${ex.file}: no document error`);
    }
    assert.deepEqual(page.problems, []);
  });

  test('the seed cases are among the examples', () => {
    const all = examples.map((e) => readFileSync(join(WEB, 'examples', e.file), 'utf8')).join('\n');
    assert.match(all, /kill-cmd-istio-proxy: '\["pilot-agent", "request", "POST", "quitquitquit"\]'/);
    assert.match(all, /\["sh", "-c", "kill -%d 1"\]/);
    assert.match(all, /pidof entrypoint\.sh/);
  });

  test('several documents: one plan each, with a list of pods', async () => {
    await page.locator('#examples button[data-example="multi-document.yaml"]').click();
    await page.waitForFunction(() => document.querySelectorAll('#results article.subject').length === 2);
    assert.equal(await page.locator('#subject-nav a').count(), 2);
    assert.match(await page.textContent('#summary'), /^2 documents, 2 pods/);
    const plan = await shownPlan(page);
    assert.deepEqual(plan.map((p) => p.stops.map((s) => `${s.container}:${s.verdict}`)), [['kuma-sidecar:stops'], ['cloud-sql-proxy:cannot-stop']]);
  });

  test('a YAML error is shown inline with its line and column, and the page recovers', async () => {
    await pasteInput(page, 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: [oops\nspec: {}\n');
    const error = page.locator('#input-error');
    await error.waitFor({ state: 'visible' });
    const p = error.locator('p').first();
    assert.match(await p.textContent(), /^Line \d+, column \d+: /);
    assert.ok(Number(await p.getAttribute('data-line')) >= 4);
    assert.equal(await page.getAttribute('#input', 'aria-invalid'), 'true');
    assert.match(await page.textContent('#summary'), /cannot be read: Line/);
    // "Go to line" puts the caret on that line.
    await error.locator('button').click();
    const caretLine = await page.evaluate(() => {
      const t = document.getElementById('input');
      return t.value.slice(0, t.selectionStart).split('\n').length;
    });
    assert.equal(caretLine, Number(await p.getAttribute('data-line')));
    // A JSON input with a syntax error, too.
    await pasteInput(page, '{"kind": "Pod",\n "spec": {"containers": [}\n}');
    assert.match(await error.locator('p').first().textContent(), /^Line 2, column \d+/);
    await pasteInput(page, readFileSync(join(WEB, 'examples/istio-job.yaml'), 'utf8'));
    assert.equal(await error.isHidden(), true);
    assert.equal((await shownPlan(page))[0].stops[0].container, 'istio-proxy');
  });

  test('an object the policy cannot plan is answered with the field', async () => {
    await pasteInput(page, 'kind: Secret\nmetadata: {name: s}\n');
    assert.match(await page.textContent('#results .doc-error'), /unsupported_kind/);
    await pasteInput(page, 'kind: Pod\nmetadata: {name: p}\nspec: {containers: [{image: x}]}\n');
    assert.match(await page.textContent('#results .doc-error'), /object\.spec\.containers\[0\]/);
    // A bad fact is pointed at its field.
    await pasteInput(page, readFileSync(join(WEB, 'examples/istio-job.yaml'), 'utf8'));
    await page.fill('#fact-cluster', 'one-point-thirty');
    await page.waitForFunction(() => !document.getElementById('facts-error').hidden);
    assert.equal(await page.getAttribute('#fact-cluster', 'aria-invalid'), 'true');
    await page.fill('#fact-cluster', '');
    await page.waitForFunction(() => document.getElementById('facts-error').hidden);
  });

  test('a shared link restores the input and the facts', async () => {
    const text = readFileSync(join(WEB, 'examples/linkerd-native-job.yaml'), 'utf8');
    await pasteInput(page, text);
    await page.fill('#fact-cluster', '1.28');
    await page.waitForFunction(() => document.querySelector('#results [data-code="native-sidecar-unsupported"]'));
    await page.waitForFunction(() => location.hash.startsWith('#v1=') && location.hash.length > 100);
    await page.waitForTimeout(500); // the link follows the last change after 400 ms
    const link = page.url();
    const other = await session.chromium.newPage();
    await openPage(other, '', link);
    assert.equal(await other.inputValue('#input'), text);
    assert.equal(await other.inputValue('#fact-cluster'), '1.28');
    assert.deepEqual(await shownPlan(other), await shownPlan(page));
    assert.deepEqual(other.problems, []);
    await other.close();
    await page.fill('#fact-cluster', '');
  });

  test('every control has a label, and the examples work from the keyboard', async () => {
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
      .filter((el) => !el.closest('[hidden]'))
      .filter((el) => !(el.labels?.length) && !el.getAttribute('aria-label') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
      .map((el) => el.id || el.outerHTML.slice(0, 60)));
    assert.deepEqual(unlabelled, []);
    assert.equal(await page.getAttribute('#summary', 'aria-live'), 'polite');
    // From the skip link, Tab reaches the first example; Enter loads it.
    await page.focus('a.skip');
    assert.ok((await page.locator('a.skip').boundingBox()).x >= 0, 'the skip link shows when focused');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.dataset.example), examples[0].file);
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none', 'a focused button shows a focus ring');
    const before = await runs(page);
    await page.keyboard.press('Enter');
    await page.waitForFunction((n) => Number(document.documentElement.dataset.runs) > n, before);
    assert.match(await page.inputValue('#input'), /kill-cmd-istio-proxy/);
  });

  test('a dropped file becomes the input', async () => {
    const text = readFileSync(join(WEB, 'examples/istio-job.yaml'), 'utf8');
    const before = await runs(page);
    await page.evaluate((content) => {
      const data = new DataTransfer();
      data.items.add(new File([content], 'job.yaml', { type: 'text/yaml' }));
      document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    }, text);
    await page.waitForFunction((n) => Number(document.documentElement.dataset.runs) > n, before);
    assert.equal(await page.inputValue('#input'), text);
  });

  test('the YAML emitter writes every real-world fixture so that it reads back the same', async () => {
    const files = [];
    for (const dir of readdirSync(FIXTURES)) {
      if (!statSync(join(FIXTURES, dir)).isDirectory()) continue;
      for (const f of readdirSync(join(FIXTURES, dir))) if (!f.endsWith('.md')) files.push(join(FIXTURES, dir, f));
    }
    for (const f of readdirSync(join(WEB, 'examples'))) if (f.endsWith('.yaml')) files.push(join(WEB, 'examples', f));
    assert.ok(files.length > 25);
    const texts = files.map((f) => readFileSync(f, 'utf8'));
    const failures = await page.evaluate(async (all) => {
      const { toYamlDocuments } = await import('./yaml-emit.js');
      const { parseDocuments } = await import('./policy.js');
      const out = [];
      all.forEach((text, i) => {
        const docs = parseDocuments(text).ok;
        const again = parseDocuments(toYamlDocuments(docs));
        if (JSON.stringify(again.ok) !== JSON.stringify(docs)) out.push(i);
      });
      return out;
    }, texts);
    assert.deepEqual(failures.map((i) => files[i]), []);
  });
});
