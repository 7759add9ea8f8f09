// Screenshots at desktop (1280x800) and phone (390x844) widths, and the two numbers the
// lead reports: the page's weight (the wasm and JavaScript it loads) and the time from
// navigation start to the first plan on screen (performance mark `sidekill:first-plan`).
// Screenshots go to artifacts/screenshots/, the numbers to artifacts/web-metrics.json and
// the test output.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, ensureDir, openPage, pageServer, pasteInput, REPO, SCREENSHOTS, WEB } from './harness.mjs';

const VIEWPORTS = { desktop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } };

describe('screenshots and measurements', () => {
  let server;
  let chromium;
  before(async () => {
    server = await pageServer();
    chromium = await browser();
    ensureDir(SCREENSHOTS);
  });
  after(async () => {
    await chromium?.close();
    await server?.close();
  });

  test('page weight and time to first plan', async () => {
    const samples = [];
    let weight;
    for (let i = 0; i < 5; i++) {
      // A fresh page each time; the test server sends no-store, so nothing is cached.
      const page = await chromium.newPage();
      const loaded = [];
      page.on('response', async (response) => {
        const url = new URL(response.url());
        if (url.protocol === 'data:') return;
        try {
          loaded.push({ path: url.pathname, type: response.headers()['content-type'] || '', bytes: (await response.body()).length });
        } catch { /* redirects have no body */ }
      });
      await openPage(page, server.url);
      const mark = await page.evaluate(() => ({
        firstPlan: performance.getEntriesByName('sidekill:first-plan')[0]?.startTime,
        policyReady: performance.getEntriesByName('sidekill:policy-ready')[0]?.startTime,
      }));
      assert.ok(mark.firstPlan > 0, 'the page marks its first plan');
      samples.push(mark);
      if (i === 0) {
        await page.waitForTimeout(300);
        const sum = (f) => loaded.filter(f).reduce((n, r) => n + r.bytes, 0);
        weight = {
          wasm: sum((r) => r.path.endsWith('.wasm')),
          js: sum((r) => r.path.endsWith('.js')),
          other: sum((r) => !r.path.endsWith('.wasm') && !r.path.endsWith('.js')),
          files: loaded.map((r) => `${r.path} ${r.bytes}`),
        };
        weight.wasmPlusJs = weight.wasm + weight.js;
        weight.total = weight.wasmPlusJs + weight.other;
      }
      await page.close();
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const metrics = {
      browser: chromium.context.browser()?.version() ?? 'chromium',
      pageWeightBytes: weight,
      timeToFirstPlanMs: { median: Math.round(median(samples.map((s) => s.firstPlan))), samples: samples.map((s) => Math.round(s.firstPlan)) },
      timeToPolicyReadyMs: { median: Math.round(median(samples.map((s) => s.policyReady))) },
      served: process.env.SIDEKILL_WEB_URL ? 'SIDEKILL_WEB_URL' : 'tests/server.mjs (localhost, no cache)',
    };
    writeFileSync(join(ensureDir(join(REPO, 'artifacts')), 'web-metrics.json'), `${JSON.stringify(metrics, null, 2)}\n`);
    console.log(`page weight: ${weight.wasmPlusJs} bytes of wasm + JS (wasm ${weight.wasm}, JS ${weight.js}); ${weight.total} bytes in all with HTML, CSS and the first example`);
    console.log(`time to first plan: median ${metrics.timeToFirstPlanMs.median} ms from navigation start (samples ${metrics.timeToFirstPlanMs.samples.join(', ')} ms); policy ready at ${metrics.timeToPolicyReadyMs.median} ms`);
    assert.ok(weight.wasm > 100000, 'the policy module was loaded');
  });

  for (const [name, viewport] of Object.entries(VIEWPORTS)) {
    test(`screenshots at ${name} width (${viewport.width}x${viewport.height})`, async () => {
      const page = await chromium.newPage(viewport);
      await openPage(page, server.url);
      await page.screenshot({ path: join(SCREENSHOTS, `${name}-first-plan.png`) });
      await page.screenshot({ path: join(SCREENSHOTS, `${name}-first-plan-full.png`), fullPage: true });
      // The annotation editor with an invalid value.
      await page.fill('#edit-value', '["kill", 15]');
      await page.locator('#edit-feedback [data-code="kill-cmd-not-string"]').waitFor();
      await page.locator('#edit').scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(SCREENSHOTS, `${name}-annotation-error.png`) });
      // An Argo Workflow with the injection simulation.
      await pasteInput(page, readFileSync(join(WEB, 'examples/argo-workflow-sidecars.yaml'), 'utf8'));
      await page.click('#sim-run');
      await page.locator('#sim-result tbody tr').nth(5).waitFor();
      await page.locator('#simulate').scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(SCREENSHOTS, `${name}-simulation.png`) });
      // A YAML error.
      await pasteInput(page, 'kind: Pod\nspec:\n  containers: [\n');
      await page.locator('#input-error').scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(SCREENSHOTS, `${name}-yaml-error.png`) });
      // The page never scrolls sideways at this width.
      await pasteInput(page, readFileSync(join(WEB, 'examples/multi-document.yaml'), 'utf8'));
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `the page is ${overflow}px wider than the ${viewport.width}px window`);
      assert.deepEqual(page.problems, []);
      await page.close();
    });
  }
});
