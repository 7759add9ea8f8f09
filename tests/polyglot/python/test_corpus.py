"""Issue 17: every module of the hostile corpus (host/tests/modules/corpus.json) loaded by this
loader: each gives a clean Python error, an answer, or is stopped by this test's bounds, and
never takes the test process down.

The loader's own bounds: none for time (it sets no epoch deadline and no fuel: a module that
loops, in its start function or in a call, loops for ever) and none for memory (wasmtime's
default: a memory may grow to 4 GiB). So each module runs in a child process that this test
bounds: 10 s of wall-clock time, and a 256 MiB memory limit set on the loader's `store` after
it is built (`Store.set_limits`). A child stopped by the time bound is reported as `timeout`,
which is what this loader does with a module that never returns.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOOD_REQUEST, REPO

CORPUS = REPO / "host/tests/modules"
SECONDS = 10

CHILD = r"""
import sys, json
sys.path.insert(0, sys.argv[2])
from sidekill_loader import Policy, SidekillError
import wasmtime
try:
    policy = Policy(open(sys.argv[1], "rb").read())
except (SidekillError, wasmtime.WasmtimeError, wasmtime.Trap, KeyError, ValueError, TypeError) as e:
    print(json.dumps({"outcome": "refused-at-load", "error": type(e).__name__}))
    sys.exit(0)
policy.store.set_limits(memory_size=256 << 20)
try:
    answer = policy.plan(sys.stdin.buffer.read())
except (SidekillError, wasmtime.WasmtimeError, wasmtime.Trap, KeyError, ValueError, TypeError) as e:
    print(json.dumps({"outcome": "call-fails", "error": type(e).__name__}))
    sys.exit(0)
print(json.dumps({"outcome": "answers", "bytes": len(answer)}))
"""

# What this loader does with each module, checked below: the corpus's outcome classes as this
# loader can tell them (it has no guard and no answer checks: an answer is an answer).
HANGS = {"loop_plan.wasm", "grow_plan.wasm", "start_loop.wasm"}


def modules() -> list[str]:
    manifest = json.loads((CORPUS / "corpus.json").read_text())
    return [m["file"] for m in manifest["modules"] if m["file"] != "embedded"]


@pytest.mark.parametrize("name", modules())
def test_a_corpus_module_never_takes_the_loader_down(name: str) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(CORPUS / name), str(Path(__file__).parent)],
            input=GOOD_REQUEST, capture_output=True, timeout=SECONDS, check=False)
    except subprocess.TimeoutExpired:
        assert name in HANGS, f"{name} ran past {SECONDS} s: the loader has no deadline"
        return
    assert name not in HANGS, f"{name} returned: {done.stdout!r} {done.stderr!r}"
    # A clean exit with one JSON line: no crash, no uncaught exception.
    assert done.returncode == 0, (done.returncode, done.stderr.decode()[-2000:])
    outcome = json.loads(done.stdout)
    assert outcome["outcome"] in {"refused-at-load", "call-fails", "answers"}, outcome
