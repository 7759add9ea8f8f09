// Shared by the tests and the bench: where things are, the vectors, canonical JSON.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** $SIDEKILL_WASM, default <repo>/dist/raw/sidekill_policy.wasm. */
export const WASM = process.env.SIDEKILL_WASM || join(REPO, 'dist/raw/sidekill_policy.wasm');
/** $SIDEKILL_VECTORS_OUT, default <repo>/dist/vectors. */
export const VECTORS = process.env.SIDEKILL_VECTORS_OUT || join(REPO, 'dist/vectors');
/** $SIDEKILL_PKG_NODE, default <repo>/dist/pkg-node. */
export const PKG_NODE = process.env.SIDEKILL_PKG_NODE || join(REPO, 'dist/pkg-node');

/** The module's bytes; throws with the path and how to build it when missing. */
export function wasmBytes() {
  if (!existsSync(WASM)) throw new Error(`${WASM} not found: build it with scripts/build-wasm, or set SIDEKILL_WASM`);
  return readFileSync(WASM);
}

/** The wasm-pack `--target nodejs` package (CommonJS, loaded through its package.json);
 *  throws with the path and how to build it when missing. */
export function loadPkgNode() {
  const manifest = join(PKG_NODE, 'package.json');
  if (!existsSync(manifest)) throw new Error(`${manifest} not found: build the package with scripts/build-wasm, or set SIDEKILL_PKG_NODE`);
  try {
    return createRequire(manifest)(PKG_NODE);
  } catch (e) {
    // Seen with Debian's binaryen 108: its wasm-opt points the `__wbindgen_externrefs` export at
    // the funcref table (fixed in binaryen 110, WebAssembly/binaryen#4711).
    if (/WebAssembly\.Table/.test(e.message)) {
      e.message += ` (loading ${PKG_NODE}: was its .wasm run through wasm-opt older than binaryen 110? `
        + 'It exports the wrong table as __wbindgen_externrefs)';
    }
    throw e;
  }
}

/** Every dumped vector, sorted by name: {name, request (Buffer), answer (string | null)}.
 *  A vector without its .answer.json keeps answer null, so that its test fails. */
export function loadVectors() {
  if (!existsSync(VECTORS)) return [];
  return readdirSync(VECTORS)
    .filter((f) => f.endsWith('.request.json'))
    .sort()
    .map((f) => {
      const name = f.slice(0, -'.request.json'.length);
      const answerPath = join(VECTORS, `${name}.answer.json`);
      return {
        name,
        request: readFileSync(join(VECTORS, f)),
        answer: existsSync(answerPath) ? readFileSync(answerPath, 'utf8') : null,
      };
    });
}

export const NO_VECTORS = `no vectors in ${VECTORS}: run \`cargo run -q -p sidekill-policy --example dump_vectors -- dist/vectors\` or set SIDEKILL_VECTORS_OUT`;

/** Canonical JSON: object keys sorted (recursively, by UTF-16 code unit), no whitespace.
 *  Takes JSON text or a value; a Map counts as an object (serde-wasm-bindgen makes Maps),
 *  a BigInt as a number (with JSON.parse's precision); undefined members are left out, as JSON.stringify does. */
export function canonical(value) {
  return JSON.stringify(sortKeys(typeof value === 'string' ? JSON.parse(value) : value));
}

function sortKeys(v) {
  if (v instanceof Map) v = Object.fromEntries(v);
  if (typeof v === 'bigint') return Number(v); // as JSON.parse reads the native answer
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v === null || typeof v !== 'object') return v;
  const out = {};
  for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k]);
  return out;
}

/** Fails with the vector's name and the first place where two canonical answers part, rather
 *  than printing both whole answers. */
export function assertSameAnswer(actual, expected, what) {
  if (actual === expected) return;
  let i = 0;
  while (actual[i] === expected[i]) i++;
  const around = (s) => `…${s.slice(Math.max(0, i - 120), i + 120)}…`;
  throw new Error(`${what}: answers differ from character ${i}\n  got:    ${around(actual)}\n  native: ${around(expected)}`);
}
