"""Load sidekill's policy module (raw wasm ABI v1, docs/ABI.md) with wasmtime.

Copy this file into your project; it needs only `pip install wasmtime`.

    policy = Policy("sidekill_policy.wasm")
    answer = json.loads(policy.plan(b'{"object": {...}, "facts": {}}'))
    # {"ok": {...}} or {"error": {"code": ..., "message": ..., "path"?: ...}}

Every call returns the module's JSON envelope as bytes; bad input comes back as an
`{"error": ...}` envelope, never an exception. `SidekillError` is raised only when the
module breaks the protocol (wrong ABI major, failed alloc, answer outside memory), and
`wasmtime.Trap` would mean a bug in the module. A `Policy` owns one wasmtime `Store`
and is not thread-safe: use one per thread.
"""

from __future__ import annotations

import os
from typing import Union

import wasmtime

ABI_MAJOR = 1
_U32 = 0xFFFF_FFFF


class SidekillError(RuntimeError):
    """The module did not follow the ABI."""


class Policy:
    """One instance of the policy module; serves any number of calls."""

    def __init__(self, wasm: Union[str, os.PathLike, bytes, wasmtime.Module],
                 engine: wasmtime.Engine | None = None):
        if isinstance(wasm, wasmtime.Module):  # compile once, instantiate many times
            if engine is None:
                raise TypeError("pass the Engine the Module was compiled with")
            module = wasm
        else:
            engine = engine or wasmtime.Engine()
            if isinstance(wasm, (bytes, bytearray)):
                module = wasmtime.Module(engine, wasm)
            else:
                module = wasmtime.Module.from_file(engine, os.fspath(wasm))
        self.store = wasmtime.Store(engine)
        # The module imports nothing: an empty import list is all it needs.
        self.exports = wasmtime.Instance(self.store, module, []).exports(self.store)
        self._memory = self.exports["memory"]
        major = self.exports["sidekill_abi_major"](self.store)
        if major != ABI_MAJOR:
            raise SidekillError(f"module speaks ABI {major}.x; this loader speaks {ABI_MAJOR}.x")

    def plan(self, request: bytes) -> bytes:
        """The termination plan for a request `{"object": ..., "facts": {...}}`."""
        return self._with_request("sidekill_plan", request)

    def classify(self, request: bytes) -> bytes:
        """The containers' roles for a request, without a plan."""
        return self._with_request("sidekill_classify", request)

    def matrix(self) -> bytes:
        """The support matrix."""
        return self.call("sidekill_matrix")

    def policy_info(self) -> bytes:
        """`{"ok": {"name", "version", "features", "presetsHash"}}`."""
        return self.call("sidekill_policy_info")

    def call(self, export: str, *args: int) -> bytes:
        """Calls an export that returns an answer's address; returns a copy of the answer."""
        ptr = self.exports[export](self.store, *args) & _U32
        length = self.exports["sidekill_result_len"](self.store) & _U32
        # Memory may have grown during the call: ask for its size again, never cache it.
        if ptr + length > self._memory.data_len(self.store):
            raise SidekillError(f"answer [{ptr}, {ptr}+{length}) lies outside memory")
        return bytes(self._memory.read(self.store, ptr, ptr + length))

    def _with_request(self, export: str, request: bytes) -> bytes:
        n = len(request)
        # alloc(0) answers 0, so an empty request gets a 1-byte buffer and is sent as
        # zero bytes: the module then answers invalid_json instead of bad_pointer.
        size = max(n, 1)
        ptr = self.exports["sidekill_alloc"](self.store, size) & _U32
        if ptr == 0:
            raise SidekillError(f"sidekill_alloc({size}) failed (0 or over 64 MiB, or out of memory)")
        try:
            self._memory.write(self.store, request, ptr)
            return self.call(export, ptr, n)
        finally:
            self.exports["sidekill_free"](self.store, ptr, size)
