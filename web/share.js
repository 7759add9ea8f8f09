// The shareable URL: the input and facts, deflated (CompressionStream, no library) and
// base64url-encoded into the fragment, which browsers never send to a server.

const PREFIX = '#v1=';

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

/** The fragment (`#v1=...`) for a state `{text, facts}`. */
export async function encodeState(state) {
  const json = new TextEncoder().encode(JSON.stringify(state));
  return PREFIX + toBase64Url(await pipe(json, new CompressionStream('deflate-raw')));
}

/** The state in a fragment, `null` when the fragment holds none; throws with a reason when
 *  it holds a broken one. */
export async function decodeState(hash) {
  if (!hash || !hash.startsWith(PREFIX)) return null;
  let bytes;
  try {
    bytes = await pipe(fromBase64Url(hash.slice(PREFIX.length)), new DecompressionStream('deflate-raw'));
  } catch (e) {
    throw new Error(`the link's input is damaged (${e.message}); was it cut short?`);
  }
  const state = JSON.parse(new TextDecoder().decode(bytes));
  if (typeof state !== 'object' || state === null || typeof state.text !== 'string') {
    throw new Error('the link holds no input text');
  }
  return state;
}
