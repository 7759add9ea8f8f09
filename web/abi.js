// The raw ABI of docs/ABI.md, from JavaScript: one loader for the page's own policy module
// (policy.js) and for a second module the user loads to compare (compare-worker.js). A module
// gets an empty import object; one that wants imports, lacks the ABI's exports or has another
// ABI major version is refused with the reason, and an answer is checked to be a JSON
// envelope inside the module's memory before it is used.

// The exports every sidekill module has (REQUIRED) are docs/ABI.md's "Exports" table, generated
// into abi-exports.js from the list the host checks (host/src/abi.rs): the page refuses what the
// host refuses.
import { REQUIRED } from './abi-exports.js';

export { REQUIRED };
export const ABI_MAJOR = 1;
const MAX_ANSWER = 64 * 1024 * 1024;

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/**
 * Compiles and instantiates `bytes` as a sidekill module; `bytes` may also be a
 * `WebAssembly.Module` already compiled (the page compiles its own while it downloads).
 * @returns {Promise<{exports: object, names: Map<string, string>, major: number, minor: number}>}
 */
export async function instantiate(bytes) {
  let module;
  try {
    module = bytes instanceof WebAssembly.Module ? bytes : await WebAssembly.compile(bytes);
  } catch (e) {
    throw new Error(`not a WebAssembly module this browser can compile: ${e.message}`);
  }
  const imports = WebAssembly.Module.imports(module);
  if (imports.length > 0) {
    const names = imports.slice(0, 3).map((i) => `${i.module}.${i.name} (${i.kind})`).join(', ');
    throw new Error(`the module imports ${names}${imports.length > 3 ? ` and ${imports.length - 3} more` : ''}; sidekill's raw ABI imports nothing, so it is not run`);
  }
  const names = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
  const missing = Object.entries(REQUIRED).filter(([name, kind]) => names.get(name) !== kind).map(([name, kind]) => `${name} (${kind})`);
  if (missing.length) throw new Error(`not sidekill's raw ABI: missing export ${missing.join(', ')} (docs/ABI.md lists them)`);
  const instance = await WebAssembly.instantiate(module, {});
  const exports = instance.exports;
  const major = exports.sidekill_abi_major();
  const minor = exports.sidekill_abi_minor();
  if (major !== ABI_MAJOR) {
    throw new Error(`ABI version ${major}.${minor}: this page speaks major version ${ABI_MAJOR}`);
  }
  return { exports, names, major, minor };
}

/** The answer of the last call, which returned `at`, copied out and checked to be a JSON envelope. */
export function readAnswer(abi, at, call) {
  const len = abi.sidekill_result_len() >>> 0;
  const start = at >>> 0;
  const memory = abi.memory.buffer; // afresh: the call may have grown memory
  if (len > MAX_ANSWER || start + len > memory.byteLength) {
    throw new Error(`${call} answered [${start}, ${start + len}), outside the module's ${memory.byteLength}-byte memory`);
  }
  let text;
  try {
    text = decoder.decode(new Uint8Array(memory, start, len).slice());
  } catch {
    throw new Error(`${call}'s answer is not UTF-8`);
  }
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`${call}'s answer is not JSON (${e.message}): ${JSON.stringify(text.slice(0, 80))}`);
  }
  if (value === null || typeof value !== 'object' || (!('ok' in value) && !('error' in value))) {
    throw new Error(`${call}'s answer is not an {ok} or {error} envelope: ${JSON.stringify(text.slice(0, 80))}`);
  }
  return { text, value };
}

/** Calls the export `name` of `abi` with `request` (a string) by the buffer protocol; the answer's text. */
export function call(abi, name, request) {
  const input = encoder.encode(request);
  // An empty request still needs a buffer: ask for one byte and pass a length of 0.
  const ptr = abi.sidekill_alloc(Math.max(input.length, 1)) >>> 0;
  if (ptr === 0) throw new Error(`sidekill_alloc(${input.length}) gave 0: the module cannot take the request`);
  const memory = abi.memory.buffer;
  if (ptr + input.length > memory.byteLength) throw new Error(`sidekill_alloc gave a buffer outside memory (${ptr})`);
  new Uint8Array(memory, ptr, input.length).set(input);
  try {
    return readAnswer(abi, abi[name](ptr, input.length), name).text;
  } finally {
    abi.sidekill_free(ptr, input.length);
  }
}
