"""Benchmark (not a test): plan latency per vector, and cold compile + instantiate time.

Run: ~/.cache/sidekill/venv-python/bin/python tests/polyglot/python/bench.py [--iterations N]
Uses SIDEKILL_WASM and SIDEKILL_VECTORS_OUT like the tests. Prints figures; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from importlib.metadata import version

import wasmtime

from conftest import GOOD_REQUEST, VECTORS, WASM, vector_names
from sidekill_loader import Policy


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.3f}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f}"


def cold_start(wasm: bytes, rounds: int) -> None:
    compile_s, instantiate_s = [], []
    for _ in range(rounds):
        engine = wasmtime.Engine()  # a new engine each round: no compiled code to reuse
        t0 = time.perf_counter()
        module = wasmtime.Module(engine, wasm)
        t1 = time.perf_counter()
        Policy(module, engine)  # Store + Instance + ABI major check
        t2 = time.perf_counter()
        compile_s.append(t1 - t0)
        instantiate_s.append(t2 - t1)
    print(f"{f'cold start over {rounds} rounds (ms)':44}{'median':>8} {'min':>8} {'max':>8}")
    for label, xs in (("compile (Module)", compile_s), ("instantiate (Store+Instance)", instantiate_s),
                      ("total", [a + b for a, b in zip(compile_s, instantiate_s)])):
        print(f"  {label:42}{ms(statistics.median(xs))} {ms(min(xs))} {ms(max(xs))}")


def plan_latency(policy: Policy, name: str, request: bytes, iterations: int) -> None:
    for _ in range(min(50, iterations)):  # warm-up
        policy.plan(request)
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        policy.plan(request)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"  {name[:42]:42}{len(request):9d} {us(statistics.median(samples))} "
          f"{us(statistics.mean(samples))} {us(p99)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000, help="plan calls per vector")
    parser.add_argument("--cold-rounds", type=int, default=10, help="compile+instantiate rounds")
    args = parser.parse_args()

    wasm = WASM.read_bytes()
    print(f"module {WASM} ({len(wasm)} bytes); wasmtime-py {version('wasmtime')}; "
          f"Python {platform.python_version()} on {platform.machine()}")
    cold_start(wasm, args.cold_rounds)

    engine = wasmtime.Engine()
    policy = Policy(wasmtime.Module(engine, wasm), engine)
    names = vector_names()
    print(f"{f'plan latency, {args.iterations} calls each (us)':44}{'request B':>9} "
          f"{'median':>9} {'mean':>9} {'p99':>9}")
    for name in names:
        plan_latency(policy, name, (VECTORS / f"{name}.request.json").read_bytes(), args.iterations)
    plan_latency(policy, "(small pod, not a vector)", GOOD_REQUEST, args.iterations)
    abi_major = policy.exports["sidekill_abi_major"]
    t0 = time.perf_counter()
    for _ in range(args.iterations):
        abi_major(policy.store)
    print(f"  {'(one empty export call: FFI floor)':42}{'':9} {us((time.perf_counter() - t0) / args.iterations)}")
    info = json.loads(policy.policy_info())["ok"]
    print(f"policy {info.get('name')} {info.get('version')}; {len(names)} vectors from {VECTORS}")


if __name__ == "__main__":
    main()
