// Builds small WebAssembly modules byte by byte for the comparison tests: a fake policy
// that speaks the raw ABI (docs/ABI.md) and answers fixed JSON, and hostile variants (an
// import, another ABI major version, a trap, an endless loop). No toolchain needed.

const I32 = 0x7f;
const OP = { end: 0x0b, i32const: 0x41, globalGet: 0x23, globalSet: 0x24, unreachable: 0x00, loop: 0x03, br: 0x0c, void: 0x40 };

function uleb(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
}
function sleb(n) {
  const out = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(byte & 0x40)) || (n === -1 && byte & 0x40)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}
const str = (s) => {
  const b = [...new TextEncoder().encode(s)];
  return [...uleb(b.length), ...b];
};
const vec = (items) => [...uleb(items.length), ...items.flat()];
const section = (id, body) => [id, ...uleb(body.length), ...body];
const i32 = (n) => [OP.i32const, ...sleb(n | 0)];

/**
 * A raw-ABI module. `answers`: {plan, classify, matrix, policyInfo} JSON strings (plan is
 * required). `abiMajor` (default 1). `planBody`: 'answer' | 'trap' | 'loop'. `importFn`: add
 * an imported function `env.<name>`. Memory: enough pages for the answers and a 1 MiB
 * request buffer at 64 KiB.
 */
export function rawAbiModule({ answers, abiMajor = 1, abiMinor = 0, planBody = 'answer', importFn = null, omit = [] }) {
  const calls = ['plan', 'classify', 'matrix', 'policyInfo'];
  const data = [];
  let at = 2 * 1024 * 1024; // answers live after the request buffer
  const place = {};
  for (const call of calls) {
    const text = answers[call] ?? answers.plan;
    const bytes = [...new TextEncoder().encode(text)];
    place[call] = { at, len: bytes.length, bytes };
    at += bytes.length + 8;
  }
  const pages = Math.ceil(at / 65536) + 1;
  // Types: 0 () -> i32, 1 (i32) -> i32, 2 (i32 i32) -> i32, 3 (i32 i32) -> (), 4 () -> ()
  const types = [
    [0x60, 0, 1, I32],
    [0x60, 1, I32, 1, I32],
    [0x60, 2, I32, I32, 1, I32],
    [0x60, 2, I32, I32, 0],
    [0x60, 0, 0],
  ];
  const answer = (call) => [...i32(place[call].len), OP.globalSet, 0, ...i32(place[call].at)];
  const planCode = planBody === 'trap' ? [OP.unreachable]
    : planBody === 'loop' ? [OP.loop, OP.void, OP.br, 0, OP.end, ...i32(0)]
      : answer('plan');
  const funcs = [
    ['sidekill_abi_major', 0, i32(abiMajor)],
    ['sidekill_abi_minor', 0, i32(abiMinor)],
    ['sidekill_alloc', 1, i32(65536)],
    ['sidekill_free', 3, []],
    ['sidekill_reset', 4, []],
    ['sidekill_result_len', 0, [OP.globalGet, 0]],
    ['sidekill_plan', 2, planCode],
    ['sidekill_classify', 2, answer('classify')],
    ['sidekill_matrix', 0, answer('matrix')],
    ['sidekill_policy_info', 0, answer('policyInfo')],
  ].filter(([name]) => !omit.includes(name));
  const imports = importFn ? 1 : 0;
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...(importFn ? section(2, vec([[...str('env'), ...str(importFn), 0x00, ...uleb(4)]])) : []),
    ...section(3, vec(funcs.map(([, type]) => uleb(type)))),
    ...section(5, vec([[0x00, ...uleb(pages)]])),
    ...section(6, vec([[I32, 0x01, ...i32(0), OP.end]])),
    ...section(7, vec([
      [...str('memory'), 0x02, 0],
      ...funcs.map(([name], i) => [...str(name), 0x00, ...uleb(i + imports)]),
    ])),
    ...section(10, vec(funcs.map(([, , code]) => {
      const body = [0, ...code, OP.end]; // no locals
      return [...uleb(body.length), ...body];
    }))),
    ...section(11, vec(calls.map((call) => [0x00, ...i32(place[call].at), OP.end, ...uleb(place[call].len), ...place[call].bytes]))),
  ];
  return new Uint8Array(bytes);
}

/** `module` with a custom section appended: the same code, different bytes. */
export function withCustomSection(module, name, payload) {
  const body = [...str(name), ...new TextEncoder().encode(payload)];
  return new Uint8Array([...module, ...section(0, body)]);
}
