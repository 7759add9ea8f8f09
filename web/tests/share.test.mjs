// Shared links are untrusted input (issue #18): reading one is bounded in length, in what it
// inflates to, in nesting depth and in shape, and the page reads it in a worker it ends after
// a timeout. The first tests run share.js in Node (no browser needed); the last opens the page
// on a hostile link.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { decodeState, encodeState, MAX_DEPTH, MAX_INFLATED_BYTES, nestingDepth } from '../share.js';
import { closeSession, openPage, openSession } from './harness.mjs';

const link = (text) => '#v1=' + deflateRawSync(Buffer.from(text)).toString('base64url');

describe('reading a shared link', () => {
  test('a link round-trips its text and facts, and keeps only the facts the page reads', async () => {
    const hash = await encodeState({ text: 'kind: Pod\n', facts: { clusterVersion: '1.28', podsProxy: true, extra: { deep: [1] } } });
    assert.deepEqual(await decodeState(hash), { text: 'kind: Pod\n', facts: { clusterVersion: '1.28', podsProxy: true } });
    assert.equal(await decodeState('#other'), null);
  });

  test('the 100,000-level link of issue #18 is refused before it is parsed', async () => {
    const bomb = link('['.repeat(100000));
    assert.ok(bomb.length < 400, `the hostile link is short (${bomb.length} characters)`);
    await assert.rejects(decodeState(bomb), new RegExp(`nests more than ${MAX_DEPTH} levels`));
    // Brackets inside strings do not count.
    assert.equal(nestingDepth(JSON.stringify({ text: '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[' })), 1);
  });

  test('a link that inflates past the cap is stopped there', async () => {
    const big = link(' '.repeat(MAX_INFLATED_BYTES + 1024));
    await assert.rejects(decodeState(big), /inflates to more than/);
  });

  test('damaged or shapeless links are refused with a reason', async () => {
    await assert.rejects(decodeState('#v1=AAAA'), /damaged/);
    await assert.rejects(decodeState(link('{"text": 3}')), /no input text/);
    await assert.rejects(decodeState(link('{"text": "x", "facts": [1]}')), /facts are not an object/);
    await assert.rejects(decodeState(link('{"text": ')), /not JSON/);
  });
});

describe('the page on a hostile link', () => {
  let session;
  before(async () => {
    session = await openSession();
  });
  after(() => closeSession(session));

  test('the page refuses the link, says why and stays usable', async () => {
    const tab = await session.chromium.newPage();
    await openPage(tab, session.server.url, link('['.repeat(100000)));
    await tab.waitForFunction(() => /Could not read the link/.test(document.getElementById('share-status').textContent));
    assert.match(await tab.textContent('#share-status'), /nests more than/);
    assert.equal(await tab.evaluate(() => 1 + 1), 2);
    await tab.close();
  });
});
