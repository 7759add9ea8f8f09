"""The module's shape: no imports, the documented exports, ABI 1."""

from __future__ import annotations

import wasmtime

EXPORTS = {
    "sidekill_abi_major": ([], ["i32"]),
    "sidekill_abi_minor": ([], ["i32"]),
    "sidekill_alloc": (["i32"], ["i32"]),
    "sidekill_free": (["i32", "i32"], []),
    "sidekill_reset": ([], []),
    "sidekill_result_len": ([], ["i32"]),
    "sidekill_plan": (["i32", "i32"], ["i32"]),
    "sidekill_classify": (["i32", "i32"], ["i32"]),
    "sidekill_matrix": ([], ["i32"]),
    "sidekill_policy_info": ([], ["i32"]),
}


def test_module_has_no_imports(module):
    assert list(module.imports) == []


def test_documented_exports_and_signatures(module):
    exports = {e.name: e.type for e in module.exports}
    assert isinstance(exports.get("memory"), wasmtime.MemoryType)
    for name, (params, results) in EXPORTS.items():
        assert isinstance(exports.get(name), wasmtime.FuncType), name
        assert [str(t) for t in exports[name].params] == params, name
        assert [str(t) for t in exports[name].results] == results, name


def test_abi_version(policy):
    assert policy.exports["sidekill_abi_major"](policy.store) == 1
    assert policy.exports["sidekill_abi_minor"](policy.store) >= 0
