"""Benchmark (not a test): plan latency per vector, and cold compile + instantiate time.

Run: ~/.cache/sidekill/venv-python/bin/python tests/polyglot/python/bench.py [--iterations N]
Uses SIDEKILL_WASM and SIDEKILL_VECTORS_OUT like the tests. Prints figures; writes nothing.

With --jsonl FILE it instead appends scripts/bench-runtimes' JSON lines to FILE: per vector the
median of single plan calls after --warmup-ms, over --measure-ms (at least 20 calls), and the
median cold compile + instantiate over --cold-rounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
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


def jsonl(path: str, wasm: bytes, warmup_ms: float, measure_ms: float, cold_rounds: int) -> None:
    """scripts/bench-runtimes' figures, one JSON object per line appended to `path`."""
    runtime = "wasmtime-py"
    with open(path, "a", encoding="utf-8") as out:
        def emit(**record) -> None:
            out.write(json.dumps({"runtime": runtime, **record}) + "\n")

        emit(kind="meta", version=f"wasmtime-py {version('wasmtime')}, Python {platform.python_version()}")
        names = vector_names()
        first_request = (VECTORS / f"{names[0]}.request.json").read_bytes()
        cold, first = [], []
        for _ in range(cold_rounds):
            engine = wasmtime.Engine()  # a new engine each round, not timed: no compiled code to reuse
            t0 = time.perf_counter_ns()
            policy = Policy(wasmtime.Module(engine, wasm), engine)  # compile + Store + Instance + ABI check
            t1 = time.perf_counter_ns()
            policy.plan(first_request)  # then the first plan on that new instance, timed apart
            first.append(time.perf_counter_ns() - t1)
            cold.append(t1 - t0)
        if cold:
            emit(kind="cold", median_ns=statistics.median(cold), min_ns=min(cold), runs=len(cold),
                 first_plan_ns=statistics.median(first), first_plan_vector=names[0],
                 how="new Engine (untimed), then Module + Store + Instance + sidekill_abi_major(), in-process")

        # Cold with the compiled-code cache (`cache_dir`): filled once, untimed, as a first
        # process would; then each round a new engine loads the kept code instead of compiling.
        with tempfile.TemporaryDirectory() as cache_dir:
            Policy(wasm, cache_dir=cache_dir)
            cold, first = [], []
            for _ in range(cold_rounds):
                engine = wasmtime.Engine()
                t0 = time.perf_counter_ns()
                policy = Policy(wasm, engine, cache_dir=cache_dir)  # hash + load + Store + Instance + ABI check
                t1 = time.perf_counter_ns()
                policy.plan(first_request)
                first.append(time.perf_counter_ns() - t1)
                cold.append(t1 - t0)
        if cold:
            emit(kind="cold-cached", median_ns=statistics.median(cold), min_ns=min(cold), runs=len(cold),
                 first_plan_ns=statistics.median(first), first_plan_vector=names[0],
                 how="Policy(wasm, cache_dir=...): SHA-256 of the module, Module.deserialize_file + Store "
                     "+ Instance + sidekill_abi_major(), in-process, new Engine each round")

        engine = wasmtime.Engine()
        policy = Policy(wasmtime.Module(engine, wasm), engine)
        clock = time.perf_counter_ns
        for name in names:
            request = (VECTORS / f"{name}.request.json").read_bytes()
            answer = (VECTORS / f"{name}.answer.json").read_bytes()
            same = policy.plan(request) == answer
            end = clock() + int(warmup_ms * 1e6)
            while clock() < end:
                policy.plan(request)
            samples = []
            end = clock() + int(measure_ms * 1e6)
            while len(samples) < 20 or clock() < end:
                t0 = clock()
                policy.plan(request)
                samples.append(clock() - t0)
            emit(kind="plan", vector=name, median_ns=statistics.median(samples), calls=len(samples), same=same)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000, help="plan calls per vector")
    parser.add_argument("--cold-rounds", type=int, default=10, help="compile+instantiate rounds")
    parser.add_argument("--jsonl", metavar="FILE", help="append scripts/bench-runtimes' JSON lines to FILE")
    parser.add_argument("--warmup-ms", type=float, default=100, help="with --jsonl: warm-up per vector")
    parser.add_argument("--measure-ms", type=float, default=200, help="with --jsonl: timing window per vector")
    args = parser.parse_args()

    wasm = WASM.read_bytes()
    if args.jsonl:
        jsonl(args.jsonl, wasm, args.warmup_ms, args.measure_ms, args.cold_rounds)
        return
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
