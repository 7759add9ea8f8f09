"""Shared fixtures: where the module and the vectors are, one compiled module per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import wasmtime

from sidekill_loader import Policy

REPO = Path(__file__).resolve().parents[3]
WASM = Path(os.environ.get("SIDEKILL_WASM") or REPO / "dist/raw/sidekill_policy.wasm")
VECTORS = Path(os.environ.get("SIDEKILL_VECTORS_OUT") or REPO / "dist/vectors")
DUMP_HINT = "cargo run -q -p sidekill-policy --example dump_vectors -- dist/vectors"

# A request every policy version plans: the follow-up call after each bad input.
GOOD_REQUEST = json.dumps({
    "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "main", "image": "busybox"}]}},
    "facts": {},
}).encode()


def canonical(data: bytes) -> str:
    """JSON with sorted keys and no insignificant whitespace: what the loaders compare."""
    return json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def vector_names() -> list[str]:
    if not VECTORS.is_dir():
        return []
    return sorted(p.name[: -len(".request.json")] for p in VECTORS.glob("*.request.json"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vector" in metafunc.fixturenames:
        names = vector_names()
        # No vectors is a broken setup, not a pass: one failing case says so.
        params = names or [pytest.param(None, id="no-vectors")]
        metafunc.parametrize("vector", params)


@pytest.fixture(scope="session")
def engine() -> wasmtime.Engine:
    return wasmtime.Engine()


@pytest.fixture(scope="session")
def module(engine: wasmtime.Engine) -> wasmtime.Module:
    assert WASM.is_file(), f"{WASM} is missing: build it (docs/ABI.md) or set SIDEKILL_WASM"
    return wasmtime.Module.from_file(engine, str(WASM))


@pytest.fixture
def policy(engine: wasmtime.Engine, module: wasmtime.Module) -> Policy:
    """A fresh instance for each test."""
    return Policy(module, engine)
