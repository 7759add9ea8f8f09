// Pastes every real-world fixture that a shared vector names (tests/vectors/fixture-*.json,
// `fixture` field) into the page and checks that the plan it shows (roles, stops with
// their verdicts and steps, readiness, executor, diagnostics) is the vector's `expect`.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, pasteInput, shownPlan, suiteSession, VECTORS } from './harness.mjs';

const vectors = readdirSync(VECTORS)
  .filter((f) => f.startsWith('fixture-') && f.endsWith('.json'))
  .sort()
  .map((f) => ({ name: f.replace(/\.json$/, ''), ...JSON.parse(readFileSync(join(VECTORS, f), 'utf8')) }));

describe('real-world fixtures pasted into the page', () => {
  const session = suiteSession();
  let page;
  before(() => { ({ page } = session); });

  test('there are fixture vectors and the fixtures are there', () => {
    assert.ok(vectors.length >= 20, `expected at least 20 fixture vectors, found ${vectors.length}`);
    assert.ok(existsSync(FIXTURES), `${FIXTURES} not found: set SIDEKILL_FIXTURES`);
  });

  for (const vector of vectors) {
    test(`${vector.name}: ${vector.fixture}`, async () => {
      const text = readFileSync(join(FIXTURES, vector.fixture), 'utf8');
      await pasteInput(page, text);
      assert.equal(await page.locator('#input-error').isHidden(), true, 'the fixture reads without a YAML error');
      assert.deepEqual(await shownPlan(page), vector.expect.subjects);
      assert.deepEqual(page.problems, []);
    });
  }
});
