// Runs a second policy module, loaded by the user, through the raw ABI of docs/ABI.md, in
// a worker: the page stays responsive whatever the module does, and the page ends this
// worker when a call takes too long (an infinite loop). The module gets an empty import
// object; a module that wants imports, lacks the ABI's exports, has another ABI major
// version, traps or answers something other than a JSON envelope is refused with a reason.
//
// Messages in:  {type: 'load', bytes}  then  {type: 'plan', id, requests: [string]}
// Messages out: {type: 'loaded', info} | {type: 'refused', message}
//               {type: 'answers', id, answers: [string]} | {type: 'failed', id, message}

const ABI_MAJOR = 1;
const REQUIRED = {
  memory: 'memory',
  sidekill_abi_major: 'function',
  sidekill_abi_minor: 'function',
  sidekill_alloc: 'function',
  sidekill_free: 'function',
  sidekill_result_len: 'function',
  sidekill_plan: 'function',
};
const MAX_ANSWER = 64 * 1024 * 1024;

let abi = null;
const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** The answer of the last call at `at`, copied out, checked to be a JSON envelope. */
function readAnswer(at, call) {
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

function callWith(fn, name, request) {
  const input = encoder.encode(request);
  const ptr = abi.sidekill_alloc(input.length) >>> 0;
  if (ptr === 0) throw new Error(`sidekill_alloc(${input.length}) gave 0: the module cannot take the request`);
  const memory = abi.memory.buffer;
  if (ptr + input.length > memory.byteLength) throw new Error(`sidekill_alloc gave a buffer outside memory (${ptr})`);
  new Uint8Array(memory, ptr, input.length).set(input);
  const at = fn(ptr, input.length);
  const answer = readAnswer(at, name);
  abi.sidekill_free(ptr, input.length);
  return answer.text;
}

async function load(bytes) {
  let module;
  try {
    module = await WebAssembly.compile(bytes);
  } catch (e) {
    throw new Error(`not a WebAssembly module this browser can compile: ${e.message}`);
  }
  const imports = WebAssembly.Module.imports(module);
  if (imports.length > 0) {
    const names = imports.slice(0, 3).map((i) => `${i.module}.${i.name} (${i.kind})`).join(', ');
    throw new Error(`the module imports ${names}${imports.length > 3 ? ` and ${imports.length - 3} more` : ''}; sidekill's raw ABI imports nothing, so it is not run`);
  }
  const exports = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
  const missing = Object.entries(REQUIRED).filter(([name, kind]) => exports.get(name) !== kind).map(([name, kind]) => `${name} (${kind})`);
  if (missing.length) throw new Error(`not sidekill's raw ABI: missing export ${missing.join(', ')} (docs/ABI.md lists them)`);
  const instance = await WebAssembly.instantiate(module, {});
  abi = instance.exports;
  const major = abi.sidekill_abi_major();
  const minor = abi.sidekill_abi_minor();
  if (major !== ABI_MAJOR) {
    abi = null;
    throw new Error(`ABI version ${major}.${minor}: this page speaks major version ${ABI_MAJOR}`);
  }
  let policy = null;
  if (exports.get('sidekill_policy_info') === 'function') {
    const info = readAnswer(abi.sidekill_policy_info(), 'sidekill_policy_info').value;
    policy = info.ok ?? null;
  }
  return { abi: { major, minor }, policy, size: bytes.byteLength };
}

self.onmessage = async ({ data }) => {
  if (data.type === 'load') {
    try {
      self.postMessage({ type: 'loaded', info: await load(data.bytes) });
    } catch (e) {
      abi = null;
      self.postMessage({ type: 'refused', message: e.message });
    }
  } else if (data.type === 'plan') {
    try {
      if (!abi) throw new Error('no module loaded');
      const answers = data.requests.map((r) => callWith(abi.sidekill_plan, 'sidekill_plan', r));
      self.postMessage({ type: 'answers', id: data.id, answers });
    } catch (e) {
      // A trap leaves the instance unusable (docs/ABI.md): drop it.
      abi = null;
      const trap = e instanceof WebAssembly.RuntimeError ? `the module trapped (${e.message})` : e.message;
      self.postMessage({ type: 'failed', id: data.id, message: trap });
    }
  }
};
