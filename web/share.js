// The shareable URL: the input and facts, deflated (CompressionStream, no library) and
// base64url-encoded into the fragment, which browsers never send to a server.
//
// A link is untrusted input, and a short one can inflate to a lot (a 328-character link held
// 100,000 nesting levels and froze the tab, issue #18). So reading one is bounded: the link's
// length (MAX_LINK_CHARS), what it inflates to (MAX_INFLATED_BYTES, the inflation stops there),
// how deep its JSON nests (MAX_DEPTH, checked before parsing), and its shape (a text and flat
// facts, nothing else is kept). The page reads links in a worker (share-worker.js) and ends it
// after READ_TIMEOUT_MS, so even a read that goes wrong cannot hold the page.

const PREFIX = '#v1=';

/** The longest fragment read (a link of the largest input the page shares is far shorter). */
export const MAX_LINK_CHARS = 4 * 1024 * 1024;
/** The most a link may inflate to: the page's largest input (8 MiB) JSON-escaped, and facts. */
export const MAX_INFLATED_BYTES = 17 * 1024 * 1024;
/** The deepest a link's JSON may nest (a state nests 3 levels). */
export const MAX_DEPTH = 16;
/** How long the page lets the worker read a link. */
export const READ_TIMEOUT_MS = 3000;

function toBase64Url(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((text.length + 3) % 4);
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

async function pipe(bytes, stream) {
  return new Uint8Array(await new Response(new Blob([bytes]).stream().pipeThrough(stream)).arrayBuffer());
}

/** Inflates `bytes`, refusing (and stopping) once the output passes `limit` bytes. */
async function inflateCapped(bytes, limit) {
  const reader = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw')).getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      throw new Error(`the link's input inflates to more than ${limit} bytes`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** How deep `json` nests (brackets outside strings), stopping as soon as it passes `limit`. */
export function nestingDepth(json, limit = MAX_DEPTH) {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > deepest) deepest = depth;
      if (deepest > limit) return deepest;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

/** Only what the page reads of the facts: each of its fields, with its type. */
function cleanFacts(facts) {
  if (facts === undefined) return {};
  if (typeof facts !== 'object' || facts === null || Array.isArray(facts)) {
    throw new Error('the link\'s facts are not an object');
  }
  const out = {};
  if (typeof facts.executor === 'string') out.executor = facts.executor;
  if (typeof facts.clusterVersion === 'string') out.clusterVersion = facts.clusterVersion;
  if (facts.podsProxy === true) out.podsProxy = true;
  if (Array.isArray(facts.mainContainers)) {
    out.mainContainers = facts.mainContainers.filter((m) => typeof m === 'string');
  }
  return out;
}

/** The fragment (`#v1=...`) for a state `{text, facts}`. */
export async function encodeState(state) {
  const json = new TextEncoder().encode(JSON.stringify(state));
  return PREFIX + toBase64Url(await pipe(json, new CompressionStream('deflate-raw')));
}

/** The state `{text, facts}` in a fragment, `null` when the fragment holds none; throws with a
 *  reason when it holds a broken one or one over the bounds above. Runs where it is called:
 *  the page calls it through readSharedState, in a worker. */
export async function decodeState(hash) {
  if (!hash || !hash.startsWith(PREFIX)) return null;
  if (hash.length > MAX_LINK_CHARS) {
    throw new Error(`the link is ${hash.length} characters; at most ${MAX_LINK_CHARS} are read`);
  }
  let bytes;
  try {
    bytes = await inflateCapped(fromBase64Url(hash.slice(PREFIX.length)), MAX_INFLATED_BYTES);
  } catch (e) {
    if (e.message.includes('inflates to more than')) throw e;
    throw new Error(`the link's input is damaged (${e.message}); was it cut short?`);
  }
  const json = new TextDecoder().decode(bytes);
  if (nestingDepth(json) > MAX_DEPTH) {
    throw new Error(`the link's data nests more than ${MAX_DEPTH} levels deep`);
  }
  let state;
  try {
    state = JSON.parse(json);
  } catch (e) {
    throw new Error(`the link's data is not JSON (${e.message})`);
  }
  if (typeof state !== 'object' || state === null || typeof state.text !== 'string') {
    throw new Error('the link holds no input text');
  }
  return { text: state.text, facts: cleanFacts(state.facts) };
}

/** decodeState in a worker, ended after `timeoutMs`: what the page calls. */
export function readSharedState(hash, timeoutMs = READ_TIMEOUT_MS) {
  if (!hash || !hash.startsWith(PREFIX)) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./share-worker.js', import.meta.url), { type: 'module' });
    const timer = setTimeout(() => {
      worker.terminate();
      reject(new Error(`reading the link took more than ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const done = (f) => {
      clearTimeout(timer);
      worker.terminate();
      f();
    };
    worker.onmessage = ({ data }) => done(() => (data.error ? reject(new Error(data.error)) : resolve(data.state)));
    worker.onerror = (e) => {
      e.preventDefault();
      done(() => reject(new Error(`the link reader failed (${e.message})`)));
    };
    worker.postMessage({ hash });
  });
}
