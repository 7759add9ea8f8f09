"""Load sidekill's policy module (raw wasm ABI v1, docs/ABI.md) with wasmtime.

Copy this file into your project; it needs only `pip install wasmtime`.

    policy = Policy("sidekill_policy.wasm")
    answer = json.loads(policy.plan(b'{"object": {...}, "facts": {}}'))
    # {"ok": {...}} or {"error": {"code": ..., "message": ..., "path"?: ...}}

With `cache_dir`, the code wasmtime compiles is kept there and reused by later processes:
compiling takes a few hundred ms, loading the kept code under 1 ms (BENCHMARKS.md, "Policy
module across runtimes"). wasmtime runs that code unchecked: the folder must be writable by
you alone, as for any cache of executables.

    policy = Policy("sidekill_policy.wasm", cache_dir=Path.home() / ".cache/sidekill")

Every call returns the module's JSON envelope as bytes; bad input comes back as an
`{"error": ...}` envelope, never an exception. `SidekillError` is raised only when the
module breaks the protocol (wrong ABI major, failed alloc, answer outside memory), and
`wasmtime.Trap` would mean a bug in the module. A `Policy` owns one wasmtime `Store`
and is not thread-safe: use one per thread.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import tempfile
from typing import Callable, Union

import wasmtime

ABI_MAJOR = 1
_U32 = 0xFFFF_FFFF

try:  # the C API under wasmtime-py, for calls without its per-call type checks (see _i32_caller)
    from wasmtime import _ffi
except ImportError:  # another wasmtime-py layout: the public, slower call path serves
    _ffi = None


class SidekillError(RuntimeError):
    """The module did not follow the ABI."""


class Policy:
    """One instance of the policy module; serves any number of calls."""

    def __init__(self, wasm: Union[str, os.PathLike, bytes, wasmtime.Module],
                 engine: wasmtime.Engine | None = None,
                 cache_dir: Union[str, os.PathLike, None] = None):
        if isinstance(wasm, wasmtime.Module):  # compile once, instantiate many times
            if engine is None:
                raise TypeError("pass the Engine the Module was compiled with")
            if cache_dir is not None:
                raise TypeError("cache_dir needs the module's bytes or path, not a compiled Module")
            module = wasm
        else:
            engine = engine or wasmtime.Engine()
            if not isinstance(wasm, (bytes, bytearray)):
                with open(wasm, "rb") as f:
                    wasm = f.read()
            module = (compile_cached(engine, wasm, cache_dir) if cache_dir is not None
                      else wasmtime.Module(engine, wasm))
        self.store = wasmtime.Store(engine)
        # The module imports nothing: an empty import list is all it needs.
        self.exports = wasmtime.Instance(self.store, module, []).exports(self.store)
        self._memory = self.exports["memory"]
        self._fn = {name: _i32_caller(self.store, self.exports[name])
                    for name in ("sidekill_abi_major", "sidekill_alloc", "sidekill_free",
                                 "sidekill_result_len", "sidekill_plan", "sidekill_classify",
                                 "sidekill_matrix", "sidekill_policy_info")}
        # One request buffer, reused by every call and grown when a request needs more.
        self._buffer, self._buffer_size = 0, 0
        major = self._fn["sidekill_abi_major"]()
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
        fn = self._fn.get(export) or _i32_caller(self.store, self.exports[export])
        ptr = fn(*args) & _U32
        length = self._fn["sidekill_result_len"]() & _U32
        # Memory may have grown during the call: ask for its size again, never cache it.
        if ptr + length > self._memory.data_len(self.store):
            raise SidekillError(f"answer [{ptr}, {ptr}+{length}) lies outside memory")
        return bytes(self._memory.read(self.store, ptr, ptr + length))

    def _with_request(self, export: str, request: bytes) -> bytes:
        n = len(request)
        # alloc(0) answers 0, so an empty request gets a 1-byte buffer and is sent as
        # zero bytes: the module then answers invalid_json instead of bad_pointer.
        if n > self._buffer_size or self._buffer == 0:
            self._grow(max(n, 1))
        if n:
            self._memory.write(self.store, request, self._buffer)
        return self.call(export, self._buffer, n)

    def _grow(self, size: int) -> None:
        if self._buffer:
            self._fn["sidekill_free"](self._buffer, self._buffer_size)
            self._buffer, self._buffer_size = 0, 0
        ptr = self._fn["sidekill_alloc"](size) & _U32
        if ptr == 0:
            raise SidekillError(f"sidekill_alloc({size}) failed (0 or over 64 MiB, or out of memory)")
        self._buffer, self._buffer_size = ptr, size


def compile_cached(engine: wasmtime.Engine, wasm: bytes,
                   cache_dir: Union[str, os.PathLike]) -> wasmtime.Module:
    """The module compiled for `engine`, from `cache_dir` when an earlier process kept it there.

    The file is named by the module's SHA-256 and the wasmtime-py version; wasmtime itself
    refuses code compiled by another version or for an engine configured otherwise, and such
    a file is then compiled again and replaced. Written to a temporary file and renamed, so
    that a concurrent reader never sees half a file.
    """
    digest = hashlib.sha256(wasm).hexdigest()
    path = os.path.join(cache_dir, f"sidekill-{digest}-wasmtime-{_wasmtime_version()}.cwasm")
    if os.path.exists(path):
        try:
            return wasmtime.Module.deserialize_file(engine, path)
        except wasmtime.WasmtimeError:
            pass  # compiled by another wasmtime or engine configuration: compile again below
    module = wasmtime.Module(engine, wasm)
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".sidekill-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(module.serialize())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return module


def _wasmtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("wasmtime")
    except PackageNotFoundError:  # vendored without its metadata: wasmtime still checks
        return "unknown"


def _i32_caller(store: wasmtime.Store, func: wasmtime.Func) -> Callable[..., int]:
    """A caller of an export whose parameters and result are i32 (all of the ABI's).

    wasmtime-py's `Func.__call__` asks the C API for the function's type and converts every
    value on each call: about 20 µs, four times per plan, against a few µs of wasm for a small
    request (BENCHMARKS.md "Policy module across runtimes"). The ABI's types are fixed, so the
    argument and result arrays are built once and `wasmtime_func_call` is called directly.
    A trap still raises `wasmtime.Trap`; a type mismatch is caught here, once.
    """
    ty = func.type(store)
    params, results = len(ty.params), len(ty.results)
    if _ffi is None or any(str(t) != "i32" for t in (*ty.params, *ty.results)) or results > 1:
        return lambda *args: func(store, *args)
    args_raw = (_ffi.wasmtime_val_t * max(params, 1))()
    for i in range(params):
        args_raw[i].kind = _ffi.WASMTIME_I32
    results_raw = (_ffi.wasmtime_val_t * max(results, 1))()
    handle = ctypes.byref(func._func)
    context = store._context()
    trap_type = ctypes.POINTER(_ffi.wasm_trap_t)
    func_call, byref = _ffi.wasmtime_func_call, ctypes.byref

    def call(*args: int) -> int:
        if len(args) != params:
            raise TypeError(f"expected {params} arguments, got {len(args)}")
        for i, value in enumerate(args):
            args_raw[i].of.i32 = value
        trap = trap_type()
        error = func_call(context, handle, args_raw, params, results_raw, results, byref(trap))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            raise wasmtime.Trap._from_ptr(trap)
        return results_raw[0].of.i32 if results else 0

    return call
