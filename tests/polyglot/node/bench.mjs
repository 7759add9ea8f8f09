// Not a test: plan latency per vector and cold compile + instantiate time, printed as tables.
// Run: node tests/polyglot/node/bench.mjs [--seconds N]   (same environment variables as the tests)
// or: node tests/polyglot/node/bench.mjs --jsonl FILE ...  (scripts/bench-runtimes; see below)
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

import { PKG_NODE, VECTORS, WASM, loadPkgNode, loadVectors, wasmBytes } from './common.mjs';
import { loadPolicy } from './loader.mjs';

const now = () => process.hrtime.bigint();
const ms = (a, b) => Number(b - a) / 1e6;

// Child mode: one cold compile + instantiate + first plan in a fresh process (V8 shares compiled
// modules within a process, so only a new process is cold). Prints JSON.
if (process.argv[2] === '--cold-once') {
  const t0 = now();
  const bytes = readFileSync(WASM);
  const t1 = now();
  const module = await WebAssembly.compile(bytes);
  const t2 = now();
  const policy = await loadPolicy(module);
  const t3 = now();
  const v = loadVectors()[0];
  const t4 = now();
  if (v) policy.plan(v.request);
  const t5 = now();
  console.log(JSON.stringify({ read: ms(t0, t1), compile: ms(t1, t2), instantiate: ms(t2, t3), firstPlan: v ? ms(t4, t5) : null }));
  process.exit(0);
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, min: s[0], median: q(0.5), p95: q(0.95), mean: s.reduce((a, b) => a + b, 0) / s.length };
};

// scripts/bench-runtimes mode: node bench.mjs --jsonl FILE [--warmup-ms N] [--measure-ms N]
// [--global-warmup-ms N] [--cold-runs N] appends its JSON lines to FILE and prints nothing else:
// per vector the median of single plan calls on one instance (after a warm-up pass over all
// vectors, so that V8 has tiered the hot functions up), and the median cold compile + instantiate
// (+ ABI check) over fresh processes.
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
if (process.argv.includes('--jsonl')) {
  const { appendFileSync } = await import('node:fs');
  const file = arg('--jsonl');
  const warmupMs = Number(arg('--warmup-ms', 100));
  const measureMs = Number(arg('--measure-ms', 200));
  const globalWarmupMs = Number(arg('--global-warmup-ms', 1000));
  const coldRuns = Number(arg('--cold-runs', 10));
  const emit = (record) => appendFileSync(file, `${JSON.stringify({ runtime: 'node', ...record })}\n`);
  emit({ kind: 'meta', version: `node ${process.version} (V8 ${process.versions.v8})` });
  const cold = [], first = [];
  for (let i = 0; i < coldRuns; i++) {
    const c = JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--cold-once'], { env: process.env }).toString());
    cold.push((c.compile + c.instantiate) * 1e6);
    if (c.firstPlan != null) first.push(c.firstPlan * 1e6);
  }
  if (cold.length) {
    const s = stats(cold);
    // V8 compiles wasm functions lazily (--wasm-lazy-compilation): compile only decodes and
    // validates, and the first plan pays for Liftoff-compiling the functions it runs.
    emit({ kind: 'cold', median_ns: s.median, min_ns: s.min, runs: s.n,
      first_plan_ns: first.length ? stats(first).median : null, first_plan_vector: loadVectors()[0]?.name ?? null,
      how: 'WebAssembly.compile + instantiate + sidekill_abi_major(), each in a fresh process (V8 reuses compiled modules within one)' });
  }
  const policy = await loadPolicy(wasmBytes());
  const vectors = loadVectors();
  const until = (ms) => now() + BigInt(Math.round(ms * 1e6));
  for (const end = until(globalWarmupMs); now() < end;) vectors.forEach((v) => policy.planBytes(v.request));
  for (const v of vectors) {
    const same = Buffer.from(policy.planBytes(v.request)).equals(Buffer.from(v.answer ?? ''));
    for (const end = until(warmupMs); now() < end;) policy.planBytes(v.request);
    const xs = [];
    for (const end = until(measureMs); xs.length < 20 || now() < end;) {
      const t0 = now();
      policy.planBytes(v.request);
      xs.push(Number(now() - t0));
    }
    const s = stats(xs);
    emit({ kind: 'plan', vector: v.name, median_ns: s.median, calls: s.n, same });
  }
  process.exit(0);
}

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 1;
const f = (x, d = 3) => (x == null ? '-' : x.toFixed(d));

console.log(`node ${process.version} (V8 ${process.versions.v8}), ${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}`);
console.log(`module ${WASM} (${readFileSync(WASM).length} bytes); vectors ${VECTORS}\n`);

// Cold: fresh processes.
const COLD_RUNS = 10;
const cold = [];
for (let i = 0; i < COLD_RUNS; i++) {
  cold.push(JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--cold-once'], { env: process.env }).toString()));
}
console.log(`cold start, ${COLD_RUNS} fresh processes (ms):`);
console.log('  step          min     median  max');
for (const k of ['read', 'compile', 'instantiate', 'firstPlan']) {
  const s = stats(cold.map((c) => c[k]).filter((x) => x != null));
  if (s.n) console.log(`  ${k.padEnd(12)} ${f(s.min).padStart(7)} ${f(s.median).padStart(8)} ${f(Math.max(...cold.map((c) => c[k])))}`);
}
const both = stats(cold.map((c) => c.compile + c.instantiate));
console.log(`  compile+instantiate median ${f(both.median)} ms\n`);

// Warm: one instance, each vector repeated for `seconds` after a warm-up.
async function planLatency(label, plan, only = () => true) {
  const vectors = loadVectors().filter(only);
  if (!vectors.length) { console.log(`${label}: no vectors in ${VECTORS}`); return; }
  console.log(`${label}: plan latency per vector, one instance, ${seconds}s each after 200 warm-up calls (µs):`);
  console.log(`  ${'vector'.padEnd(40)} ${'req B'.padStart(8)} ${'n'.padStart(7)} ${'median'.padStart(9)} ${'p95'.padStart(9)} ${'mean'.padStart(9)}`);
  const medians = [];
  for (const v of vectors) {
    for (let i = 0; i < 200; i++) plan(v.request);
    const xs = [];
    const end = now() + BigInt(seconds * 1e9);
    while (now() < end) {
      const t0 = now();
      plan(v.request);
      xs.push(Number(now() - t0) / 1e3);
    }
    const s = stats(xs);
    medians.push(s.median);
    console.log(`  ${v.name.padEnd(40)} ${String(v.request.length).padStart(8)} ${String(s.n).padStart(7)} ${f(s.median, 1).padStart(9)} ${f(s.p95, 1).padStart(9)} ${f(s.mean, 1).padStart(9)}`);
  }
  const m = stats(medians);
  console.log(`  ${vectors.length} vectors: median of medians ${f(m.median, 1)} µs (fastest ${f(m.min, 1)}, slowest ${f(Math.max(...medians), 1)})\n`);
}

const policy = await loadPolicy(wasmBytes());
await planLatency('raw module (loader.mjs)', policy.plan);

// The wasm-pack package, when built: its typed API (object in, object out) and callJson (text).
if (existsSync(`${PKG_NODE}/package.json`)) {
  const t0 = now();
  let pkg;
  try {
    pkg = loadPkgNode();
  } catch (e) {
    console.log(`wasm-pack package: does not load: ${e.message}`);
    process.exit(1);
  }
  const loaded = ms(t0, now());
  // The typed API takes objects: parse each request once, outside the timing; a request that is
  // not JSON (a bad-input vector) cannot be given as an object and is left out.
  const parsed = new Map();
  const asObject = (bytes) => {
    if (!parsed.has(bytes)) parsed.set(bytes, (() => { try { return JSON.parse(bytes.toString()); } catch { return undefined; } })());
    return parsed.get(bytes);
  };
  await planLatency(`wasm-pack package, plan(object) -> object (package loaded in ${f(loaded)} ms)`,
    (b) => pkg.plan(asObject(b)), (v) => asObject(v.request) !== undefined);
  await planLatency('wasm-pack package, callJson("plan", text) -> text', (b) => pkg.callJson('plan', b.toString()));
} else {
  console.log(`wasm-pack package: ${PKG_NODE} not built, skipped`);
}
