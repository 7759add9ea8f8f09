"""The compiled-code cache (`Policy(..., cache_dir=...)`): kept, reused without a compile, and
replaced when it cannot be loaded."""

from __future__ import annotations

import pytest
import wasmtime

from conftest import GOOD_REQUEST, WASM, canonical
from sidekill_loader import Policy


def cached_files(folder):
    return sorted(p for p in folder.iterdir() if p.suffix == ".cwasm")


def test_the_first_load_keeps_the_compiled_code(tmp_path):
    expected = Policy(WASM).plan(GOOD_REQUEST)
    assert canonical(Policy(WASM, cache_dir=tmp_path).plan(GOOD_REQUEST)) == canonical(expected)
    files = cached_files(tmp_path)
    assert len(files) == 1 and files[0].stat().st_size > 0
    # No temporary file is left behind.
    assert [p.name for p in tmp_path.iterdir()] == [files[0].name]


def test_a_later_load_does_not_compile(tmp_path, monkeypatch):
    expected = Policy(WASM, cache_dir=tmp_path).plan(GOOD_REQUEST)

    def no_compile(*_args, **_kwargs):
        raise AssertionError("compiled although the cache holds the module")

    monkeypatch.setattr(wasmtime.Module, "__init__", no_compile)
    assert canonical(Policy(WASM, cache_dir=tmp_path).plan(GOOD_REQUEST)) == canonical(expected)


def test_an_unloadable_file_is_compiled_again_and_replaced(tmp_path):
    expected = Policy(WASM).plan(GOOD_REQUEST)
    Policy(WASM, cache_dir=tmp_path)
    (path,) = cached_files(tmp_path)
    path.write_bytes(b"not compiled code")
    assert canonical(Policy(WASM, cache_dir=tmp_path).plan(GOOD_REQUEST)) == canonical(expected)
    assert path.read_bytes() != b"not compiled code"
    assert cached_files(tmp_path) == [path]


def test_another_module_gets_its_own_file(tmp_path):
    Policy(WASM, cache_dir=tmp_path)
    # The same code with one more custom section: other bytes, so another key.
    Policy(WASM.read_bytes() + b"\x00\x04\x03abc", cache_dir=tmp_path)
    assert len(cached_files(tmp_path)) == 2


def test_a_compiled_module_with_a_cache_dir_is_refused(tmp_path, engine, module):
    with pytest.raises(TypeError, match="cache_dir"):
        Policy(module, engine, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
