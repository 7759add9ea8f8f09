// Shared by the page's tests: where things are, the page's base URL, and a Chromium from
// the system (playwright-core, no browser download).
//
// Environment:
//   SIDEKILL_WEB_URL   the page's URL (such as `sidekill web --port 8080`'s); when unset, the
//                      tests serve dist/web with tests/server.mjs on an ephemeral port
//   SIDEKILL_WEB_DIST  the folder to serve when SIDEKILL_WEB_URL is unset (default <repo>/dist/web)
//   SIDEKILL_FIXTURES  the real-world fixtures (default <repo>/../shared/fixtures/real-world)
//   CHROMIUM           the browser (default /usr/bin/chromium)
import { mkdtempSync, rmSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';
import { serveStatic } from './server.mjs';

export const WEB = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = resolve(WEB, '..');
export const DIST = process.env.SIDEKILL_WEB_DIST || join(REPO, 'dist/web');
export const FIXTURES = process.env.SIDEKILL_FIXTURES || resolve(REPO, '../shared/fixtures/real-world');
export const VECTORS = join(REPO, 'tests/vectors');
export const RAW_WASM = process.env.SIDEKILL_WASM || join(REPO, 'dist/raw/sidekill_policy.wasm');
export const SCREENSHOTS = join(REPO, 'artifacts/screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-component-update', '--disable-sync'];

/** The page's base URL: SIDEKILL_WEB_URL, or dist/web served here. {url, close()} */
export async function pageServer() {
  if (process.env.SIDEKILL_WEB_URL) {
    const url = process.env.SIDEKILL_WEB_URL.replace(/\/?$/, '/');
    return { url, close: async () => {} };
  }
  if (!existsSync(join(DIST, 'index.html'))) throw new Error(`${DIST}/index.html not found: run web/build.sh, or set SIDEKILL_WEB_URL`);
  return serveStatic(DIST);
}

/**
 * Chromium with a fresh profile. Resolves with {context, newPage(viewport?), close()}; each
 * page records console errors, page errors and requests to other origins in `page.problems`.
 */
export async function browser() {
  const profile = mkdtempSync(join(tmpdir(), 'sidekill-web-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 800 },
  });
  return {
    context,
    async newPage(viewport) {
      const page = await context.newPage();
      if (viewport) await page.setViewportSize(viewport);
      page.problems = [];
      page.on('console', (m) => { if (m.type() === 'error') page.problems.push(`console: ${m.text()}`); });
      page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
      return page;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Serves the page (or uses SIDEKILL_WEB_URL), starts Chromium and opens the page in a new tab.
 * `prepare(page, server)` runs before the page loads (permissions, listeners).
 * Returns {server, chromium, page}; close it with closeSession.
 */
export async function openSession(prepare = async () => {}) {
  const session = {};
  try {
    session.server = await pageServer();
    session.chromium = await browser();
    session.page = await session.chromium.newPage();
    await prepare(session.page, session.server);
    await openPage(session.page, session.server.url);
    return session;
  } catch (error) {
    await closeSession(session);
    throw error;
  }
}

/**
 * One session for the enclosing `describe`: opened (as openSession(prepare)) in a `before`
 * hook and closed in an `after` hook, so that no suite can forget to close its browser.
 * Returns the object that holds {server, chromium, page} once the `before` hook has run.
 */
export function suiteSession(prepare) {
  const session = {};
  before(async () => { Object.assign(session, await openSession(prepare)); });
  after(() => closeSession(session));
  return session;
}

/** Closes what openSession opened. */
export async function closeSession(session) {
  await session?.chromium?.close();
  await session?.server?.close();
}

/** Opens the page and waits until it has planned its first input. */
export async function openPage(page, base, hash = '') {
  await page.goto(base + hash);
  await page.waitForFunction(() => document.documentElement.dataset.ready === 'true', null, { timeout: 20000 });
}

/** The number of plans the page has rendered so far. */
export const runs = (page) => page.evaluate(() => Number(document.documentElement.dataset.runs || 0));

/** Replaces the input's text as a paste would, and waits until the page has read it (and
 *  planned it, or shown why it cannot). */
export async function pasteInput(page, text) {
  const before = await page.evaluate(() => Number(document.documentElement.dataset.attempts || 0));
  await page.locator('#input').fill(text);
  await page.waitForFunction((n) => Number(document.documentElement.dataset.attempts || 0) > n, before);
}

/** What the page shows for each pod: the projection the vectors' `expect` uses. */
export function shownPlan(page) {
  return page.evaluate(() => [...document.querySelectorAll('#results article.subject')].map((article) => {
    const visible = (el) => !!el && el.getClientRects().length > 0;
    const title = article.querySelector('h3').textContent;
    const template = /template (\S+)/.exec(title)?.[1];
    const roles = {};
    for (const row of article.querySelectorAll('.containers tbody tr')) {
      if (!visible(row.querySelector('[data-role]'))) throw new Error(`role of ${row.dataset.container} not shown`);
      roles[row.dataset.container] = row.querySelector('[data-role]').textContent && row.dataset.role;
    }
    const stops = [...article.querySelectorAll('.stops > li.stop')].map((li) => {
      if (!visible(li)) throw new Error(`stop ${li.dataset.container} not shown`);
      return {
        container: li.dataset.container,
        verdict: li.querySelector('.stop-head .badge').textContent,
        steps: [...li.querySelectorAll('.track > li')].map((s) => s.dataset.step),
      };
    });
    const diagnostics = [...article.querySelectorAll('.diags li.diagnostic')].map((d) => {
      const base = `${d.dataset.severity}:${d.dataset.code}`;
      return d.dataset.container ? `${base}@${d.dataset.container}` : base;
    }).sort();
    return {
      ...(template ? { template } : {}),
      ready: article.dataset.ready,
      executor: article.dataset.executor,
      roles,
      stops,
      diagnostics,
    };
  }));
}

export function ensureDir(dir) {
  mkdirSync(dir, { recursive: true });
  return dir;
}
