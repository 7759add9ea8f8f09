#!/usr/bin/env node
// Time to the first plan of the debugger page in Chromium, for two or more builds of the page
// measured side by side: each round loads every build once, in a rotating order, each load in
// a new browser context (an empty HTTP cache, so nothing is reused between loads). Prints,
// per build, the medians of the page's marks (navigation start to `sidekill:policy-ready` and
// to `sidekill:first-plan`, see app.js) and of where the load waited (the document, the
// policy module's response, the first example's response), and the ratio of each build's
// first-plan median to the first build's, with the load average before and after.
// A bench, not a test: it asserts nothing and fails only when a page does not load.
//
// Usage: node web/bench/first-plan.mjs [--loads N] [--json FILE] LABEL=PAGE...
//   PAGE      a folder to serve (web/build.sh's output; tests/server.mjs serves it on
//             localhost, no-store) or the URL of a page already served (`sidekill web`)
//   --loads   loads of each page (default 15)
//   --json    also write every sample there
// Environment: CHROMIUM (default /usr/bin/chromium).
// Example: node web/bench/first-plan.mjs old=/tmp/old-web new=dist/web
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { serveStatic } from '../tests/server.mjs';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-component-update', '--disable-sync'];

function usage(message) {
  console.error(`first-plan: ${message}\nusage: node web/bench/first-plan.mjs [--loads N] [--json FILE] LABEL=PAGE...`);
  process.exit(2);
}

let loads = 15;
let jsonOut = null;
const pages = [];
const argv = process.argv.slice(2);
while (argv.length) {
  const arg = argv.shift();
  if (arg === '--loads') {
    loads = Number(argv.shift());
    if (!Number.isInteger(loads) || loads < 1) usage('--loads needs a positive whole number');
  } else if (arg === '--json') {
    jsonOut = argv.shift();
    if (!jsonOut) usage('--json needs a file');
  } else {
    const at = arg.indexOf('=');
    if (at < 1) usage(`${arg}: expected LABEL=FOLDER or LABEL=URL`);
    const target = arg.slice(at + 1);
    if (!/^https?:\/\//.test(target) && !(existsSync(target) && statSync(target).isDirectory() && existsSync(join(target, 'index.html')))) {
      usage(`${target}: neither a URL nor a folder with an index.html`);
    }
    pages.push({ label: arg.slice(0, at), target, samples: [] });
  }
}
if (pages.length === 0) usage('no page to load');

/** One load: navigation start to each mark, and when the waited-for responses ended. */
async function measure(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForFunction(() => document.documentElement.dataset.ready === 'true', null, { timeout: 30000 });
    if (errors.length) throw new Error(`${url}: ${errors.join('; ')}`);
    return await page.evaluate(() => {
      const mark = (name) => performance.getEntriesByName(name)[0]?.startTime;
      const ended = (test) => performance.getEntriesByType('resource').filter((r) => test(new URL(r.name).pathname))
        .reduce((latest, r) => Math.max(latest, r.responseEnd), -Infinity);
      const navigation = performance.getEntriesByType('navigation')[0];
      return {
        document: navigation.responseEnd,
        module: ended((p) => p.endsWith('.wasm')),
        scripts: ended((p) => p.endsWith('.js')),
        example: ended((p) => p.endsWith('.yaml')),
        policyReady: mark('sidekill:policy-ready'),
        firstPlan: mark('sidekill:first-plan'),
      };
    });
  } finally {
    await context.close();
  }
}

const median = (xs) => {
  const sorted = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : NaN;
};

const servers = [];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS });
try {
  for (const page of pages) {
    if (/^https?:\/\//.test(page.target)) {
      page.url = page.target.replace(/\/?$/, '/');
    } else {
      const server = await serveStatic(page.target);
      servers.push(server);
      page.url = server.url;
    }
  }
  const loadBefore = loadavg()[0];
  const started = new Date();
  // A load of each first, not counted: the browser's own first start-up costs.
  for (const page of pages) await measure(browser, page.url);
  for (let round = 0; round < loads; round++) {
    for (let i = 0; i < pages.length; i++) {
      const page = pages[(round + i) % pages.length];
      page.samples.push(await measure(browser, page.url));
    }
  }
  const loadAfter = loadavg()[0];
  const fields = ['document', 'scripts', 'module', 'example', 'policyReady', 'firstPlan'];
  console.log(`${started.toISOString()}  Chromium ${browser.version()}, ${loads} loads of each page, load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after`);
  console.log('medians, ms from navigation start (document, scripts, module and example: when the response ended)');
  console.log(['page', ...fields, 'first plan / first page'].join('\t'));
  const base = median(pages[0].samples.map((s) => s.firstPlan));
  for (const page of pages) {
    const medians = fields.map((f) => median(page.samples.map((s) => s[f])));
    const ratio = medians[fields.length - 1] / base;
    console.log([page.label, ...medians.map((m) => (Number.isFinite(m) ? m.toFixed(0) : '-')), `${ratio.toFixed(2)}x`].join('\t'));
  }
  if (jsonOut) {
    writeFileSync(jsonOut, `${JSON.stringify({ started, chromium: browser.version(), loadBefore, loadAfter, pages: pages.map(({ label, target, samples }) => ({ label, target, samples })) }, null, 2)}\n`);
  }
} finally {
  await browser.close();
  for (const server of servers) await server.close();
}
