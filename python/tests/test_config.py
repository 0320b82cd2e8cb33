"""Construction as SGLang's factory does it: settings read with getattr and
defaults, the directory and eviction settings resolved as SGLang's
HiCacheFile resolves them, the library loaded lazily and version-checked."""

import os
import subprocess
import sys
import types

import pytest

import hicache_go
from conftest import slots
from hicache_go import _lib
from hicache_go._base import HiCacheStorage
from hicache_go._size import parse_size, resolve_ratio, resolve_size
from hicache_go.sglang import HiCacheGoFile, storage_dir

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(hicache_go.__file__)))


def test_is_a_hicache_storage():
    assert issubclass(HiCacheGoFile, HiCacheStorage)


@pytest.mark.parametrize(
    "value,want",
    [
        ("1k", 1000), ("1Ki", 1024), ("25.6k", 25600), ("200G", 200 * 10**9),
        ("2Mi", 2 * 2**20), ("1T", 10**12), ("3Ti", 3 * 2**40), ("0", 0), ("", 0),
        (None, 0), ("  4096 ", 4096), (4096, 4096), ("-5", 0), ("1_000", 1000),
    ],
)
def test_parse_size_follows_sglang(value, want):
    assert parse_size(value) == want


@pytest.mark.parametrize("value", ["1.5Gi", "abc", "1K", "1g", "1 k", "1kB", "k", ".5k"])
def test_parse_size_refuses_what_sglang_refuses(value):
    with pytest.raises(ValueError):
        parse_size(value)


SIZE_CASES = ["1k", "1Ki", "25.6k", "200G", "2Mi", "1T", "3Ti", "0", "", "  4096 ", "-5", "1_000",
              "1.5Gi", "abc", "1K", "1g", "1 k", "1kB", "k", ".5k", "0.5M", "1e3", "+7", "12__3",
              "9223372036854775807", "9223372036854775808", "99999999999999999999", "9000000Ti", "9999999999T"]


@pytest.mark.parametrize("value", SIZE_CASES)
def test_parse_size_agrees_with_the_go_store(value):
    try:
        want = _lib.go_parse_size(value)
    except ValueError:
        with pytest.raises(ValueError):
            parse_size(value)
        return
    assert parse_size(value) == want


def test_sizes_come_from_extra_config_then_env(monkeypatch):
    monkeypatch.setenv("SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE", "2k")
    assert resolve_size({}, "max_size", "SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE") == 2000
    assert resolve_size({"max_size": "1Ki"}, "max_size", "SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE") == 1024
    assert resolve_size({"max_size": "bogus"}, "max_size", "SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE") == 0
    assert resolve_ratio({"eviction_ratio": "0.5"}) == 0.5
    assert resolve_ratio({"eviction_ratio": 1.5}) == 0.9
    assert resolve_ratio({"eviction_ratio": "x"}) == 0.9


def test_directory_resolution(tmp_path, monkeypatch):
    env_dir = tmp_path / "env"
    monkeypatch.setenv("SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR", str(env_dir))
    extra = tmp_path / "extra"
    s = HiCacheGoFile(types.SimpleNamespace(extra_config={"file_path": str(extra)}))
    s.close()
    assert s.file_path == str(extra) and extra.is_dir()
    s = HiCacheGoFile(types.SimpleNamespace(extra_config=None))
    s.close()
    assert s.file_path == str(env_dir) and env_dir.is_dir()
    monkeypatch.delenv("SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR")
    assert storage_dir({}) == "/tmp/hicache"
    assert storage_dir({"file_path": ""}) == "/tmp/hicache"


@pytest.mark.parametrize("value", ["99999999999999999999", "9000000Ti", 1e30, 2**70])
def test_size_too_large_for_the_store_disables_not_fails(tmp_path, value):
    """A size the Go store cannot hold (beyond int64) is invalid, as the
    store's ParseSize reads it: the bound is disabled with a warning, and
    the constructor still opens the store."""
    for key in ("max_size", "min_free_space"):
        cfg = types.SimpleNamespace(extra_config={"file_path": str(tmp_path), key: value})
        s = HiCacheGoFile(cfg)
        s.close()
        assert s.config["max_bytes"] == 0 and s.config["min_free_bytes"] == 0


def test_config_read_with_defaults(tmp_path):
    """A config object missing every field SGLang added later still works,
    and extra keys of this backend reach the store."""
    cfg = types.SimpleNamespace(tp_rank=1, tp_size=2, model_name="a/b",
                                extra_config={"file_path": str(tmp_path), "io_workers": 3, "direct_io": "true"})
    s = HiCacheGoFile(cfg, {"unused": 1})
    s.close()
    assert s.config["tp_rank"] == 1 and s.config["pp_size"] == 1 and s.config["cp_size"] == 1
    assert s.config["io_workers"] == 3 and s.config["direct_io"] is True
    assert s.kwargs == {"unused": 1}


def test_split_heads_is_refused(tmp_path):
    with pytest.raises(ValueError, match="should_split_heads"):
        HiCacheGoFile(types.SimpleNamespace(should_split_heads=True, extra_config={"file_path": str(tmp_path)}))


def test_import_does_not_load_the_library():
    code = "import hicache_go.sglang, hicache_go._lib as l; print(l._lib is None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": PYTHON_DIR})
    assert out.stdout.strip() == "True", out.stderr


def test_library_version_is_the_packages(tmp_path):
    lib = _lib.load()
    import ctypes

    buf = ctypes.create_string_buffer(64)
    n = lib.hc_version(buf, 64)
    assert buf.raw[:n].decode() == hicache_go.__version__


def test_explicit_zero_size_in_extra_config_beats_the_env(open_store, monkeypatch):
    # SGLang reads extra_config first: max_size "0" there means no bound,
    # whatever the environment says.
    monkeypatch.setenv("SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE", "1k")
    store, pool = open_store(max_size="0")
    keys = [f"{i:064x}" for i in range(8)]
    assert store.batch_set_v1(keys, slots(pool, list(range(8)))) == [True] * 8
    assert store.batch_exists(keys) == 8


def test_env_size_applies_when_extra_config_has_none(open_store, monkeypatch):
    monkeypatch.setenv("SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE", "1k")
    store, pool = open_store()
    keys = [f"{i:064x}" for i in range(8)]
    store.batch_set_v1(keys, slots(pool, list(range(8))))
    assert store.batch_exists(keys) < 8
