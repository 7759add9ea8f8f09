// sidekill's policy from Node, with nothing but the built-in `WebAssembly` API.
// The raw ABI (docs/ABI.md): JSON bytes in, a JSON envelope out,
// {"ok": <answer>} or {"error": {"code", "message", "path"?}}. Copy this file as it is.

const ABI_MAJOR = 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Compiles (unless given a `WebAssembly.Module`) and instantiates the module.
 *  `source` is the .wasm bytes or a compiled module. Throws if the ABI major is not 1. */
export async function loadPolicy(source) {
  const module = source instanceof WebAssembly.Module ? source : await WebAssembly.compile(source);
  const instance = await WebAssembly.instantiate(module, {}); // no imports, by contract
  const x = instance.exports;
  const major = x.sidekill_abi_major();
  if (major !== ABI_MAJOR) throw new Error(`sidekill ABI ${major}.x; this loader speaks ${ABI_MAJOR}.x`);

  // The answer lives at [ptr, ptr + sidekill_result_len()) until the next call: copy it out.
  // A fresh view on every read: a call may grow memory, which detaches the old buffer.
  const answer = (ptr) => new Uint8Array(x.memory.buffer, ptr, x.sidekill_result_len()).slice();

  // Writes the request into a buffer of the module's, calls `fn(ptr, len)`, frees the buffer.
  const call = (fn, request) => {
    const bytes = typeof request === 'string' ? encoder.encode(request) : request;
    if (!(bytes instanceof Uint8Array)) throw new TypeError('request: JSON text or its UTF-8 bytes');
    const size = Math.max(bytes.length, 1); // alloc(0) is 0: an empty request gets 1 byte
    const ptr = x.sidekill_alloc(size);
    if (ptr === 0) throw new RangeError(`sidekill_alloc(${size}) failed: over 64 MiB or out of memory`);
    try {
      new Uint8Array(x.memory.buffer, ptr, bytes.length).set(bytes); // view made after alloc
      return answer(fn(ptr, bytes.length));
    } finally {
      x.sidekill_free(ptr, size);
    }
  };
  const text = (bytes) => decoder.decode(bytes);

  return {
    /** Plans a request (string or UTF-8 bytes); the envelope as JSON text. */
    plan: (request) => text(call(x.sidekill_plan, request)),
    /** As `plan`, the envelope's bytes. */
    planBytes: (request) => call(x.sidekill_plan, request),
    /** Classifies the containers of a request; the envelope as JSON text. */
    classify: (request) => text(call(x.sidekill_classify, request)),
    /** The support matrix, as JSON text. */
    matrix: () => text(answer(x.sidekill_matrix())),
    /** {"ok":{"name","version","features","presetsHash"}}, as JSON text. */
    policyInfo: () => text(answer(x.sidekill_policy_info())),
    abi: { major, minor: x.sidekill_abi_minor() },
    /** The raw exports, for tests and for callers that manage memory themselves. */
    exports: x,
    /** The answer at `ptr` (as an export returned it), copied out as JSON text. */
    readAnswer: (ptr) => text(answer(ptr)),
  };
}
