"""Bad input gets an error envelope, never a trap, and the instance keeps working."""

from __future__ import annotations

import json

import pytest

from conftest import GOOD_REQUEST, canonical
from sidekill_loader import Policy

U32 = 0xFFFF_FFFF


@pytest.fixture(scope="module")
def good_answer(engine, module) -> str:
    answer = Policy(module, engine).plan(GOOD_REQUEST)
    assert "ok" in json.loads(answer), answer
    return canonical(answer)


def assert_error(answer: bytes, code: str) -> None:
    envelope = json.loads(answer)
    assert set(envelope) == {"error"}, envelope
    error = envelope["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert set(error) <= {"code", "message", "path"}, error


def assert_still_usable(policy: Policy, good_answer: str) -> None:
    assert canonical(policy.plan(GOOD_REQUEST)) == good_answer


@pytest.mark.parametrize("method", ["plan", "classify"])
@pytest.mark.parametrize(("request_bytes", "code"), [
    pytest.param(b'{"object":{"kind":"Pod","metadata":{"name":"\xff\xfe"}}}', "invalid_utf8", id="invalid_utf8"),
    pytest.param(b"\xc3", "invalid_utf8", id="lone-lead-byte"),
    pytest.param(GOOD_REQUEST[: len(GOOD_REQUEST) // 2], "invalid_json", id="truncated_json"),
    pytest.param(b"", "invalid_json", id="empty"),
])
def test_bad_request_bytes(policy, good_answer, method, request_bytes, code):
    assert_error(getattr(policy, method)(request_bytes), code)
    assert_still_usable(policy, good_answer)


def test_50_mb_request_is_too_large(policy, good_answer):
    # Valid JSON padded with whitespace: only its size is wrong.
    request = GOOD_REQUEST + b" " * (50_000_000 - len(GOOD_REQUEST))
    assert_error(policy.plan(request), "request_too_large")
    assert_still_usable(policy, good_answer)


def memory_size(policy: Policy) -> int:
    return policy.exports["memory"].data_len(policy.store)


@pytest.mark.parametrize("method", ["sidekill_plan", "sidekill_classify"])
@pytest.mark.parametrize("where", ["end-of-memory", "past-memory", "wraps-u32", "max-u32"])
def test_pointer_outside_memory(policy, good_answer, method, where):
    policy.plan(GOOD_REQUEST)  # buffers have lived and died: the module is not fresh
    size = memory_size(policy)
    ptr, length = {
        "end-of-memory": (size - 4, 1000),
        "past-memory": (size + 64, 16),
        "wraps-u32": (U32 - 15, 100),
        "max-u32": (U32, U32 >> 24),
    }[where]
    assert_error(policy.call(method, ptr, length), "bad_pointer")
    assert_still_usable(policy, good_answer)


def test_range_must_lie_inside_a_live_buffer(policy, good_answer):
    ptr = policy.exports["sidekill_alloc"](policy.store, 16) & U32
    assert ptr
    policy.exports["memory"].write(policy.store, b"{}" + b" " * 14, ptr)
    assert_error(policy.call("sidekill_plan", ptr, 17), "bad_pointer")  # one byte past the end
    assert_error(policy.call("sidekill_plan", ptr + 8, 9), "bad_pointer")
    assert_error(policy.call("sidekill_plan", ptr - 1, 2), "bad_pointer")
    policy.exports["sidekill_free"](policy.store, ptr, 16)
    assert_error(policy.call("sidekill_plan", ptr, 16), "bad_pointer")  # freed
    assert_still_usable(policy, good_answer)


@pytest.mark.parametrize(("ptr", "length"), [(0, 0), (0, 16), (1024, 16), (1 << 16, 1)])
def test_call_before_any_alloc_on_a_fresh_instance(engine, module, good_answer, ptr, length):
    policy = Policy(module, engine)
    assert_error(policy.call("sidekill_plan", ptr, length), "bad_pointer")
    assert_still_usable(policy, good_answer)


def test_every_bad_input_in_turn_on_one_instance(policy, good_answer):
    size = memory_size(policy)
    assert_error(policy.call("sidekill_plan", 1024, 16), "bad_pointer")
    assert_error(policy.plan(b"\xff"), "invalid_utf8")
    assert_error(policy.plan(b'{"object":'), "invalid_json")
    assert_error(policy.plan(b" " * 50_000_000), "request_too_large")
    assert_error(policy.call("sidekill_plan", size + 64, 16), "bad_pointer")
    for _ in range(3):
        assert_still_usable(policy, good_answer)


def test_buffers_are_freed(policy, good_answer):
    for _ in range(20):
        policy.plan(GOOD_REQUEST)
    before = memory_size(policy)
    for _ in range(500):
        policy.plan(GOOD_REQUEST)
    assert memory_size(policy) == before
    assert_still_usable(policy, good_answer)


TRAPPING_MODULE = """
(module
  (memory (export "memory") 1)
  (func (export "sidekill_abi_major") (result i32) i32.const 1)
  (func (export "sidekill_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "sidekill_free") (param i32 i32))
  (func (export "sidekill_result_len") (result i32) i32.const 0)
  (func (export "sidekill_plan") (param i32 i32) (result i32) unreachable)
  (func (export "sidekill_classify") (param i32 i32) (result i32) i32.const 0)
  (func (export "sidekill_matrix") (result i32) i32.const 0)
  (func (export "sidekill_policy_info") (result i32) i32.const 0))
"""


def test_a_trap_raises_wasmtime_trap_and_the_next_call_still_runs(engine):
    """The loader calls the C API directly (sidekill_loader._i32_caller): a trap must still
    surface as wasmtime.Trap, as through wasmtime-py's own call path, not pass silently."""
    import wasmtime

    policy = Policy(wasmtime.Module(engine, wasmtime.wat2wasm(TRAPPING_MODULE)), engine)
    for _ in range(2):
        with pytest.raises(wasmtime.Trap, match="unreachable"):
            policy.plan(GOOD_REQUEST)
    assert policy.classify(GOOD_REQUEST) == b""
