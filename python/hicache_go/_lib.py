"""Loading libhicache.so and calling it through ctypes.

The library is loaded on first use, never at import: it starts a Go runtime,
and a process that forks after that must not call it in the child (the
child's first call would hang). ``load()`` records the process that loaded
it; a forked child that tries to use it gets a clear error instead.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import subprocess
import threading
from typing import Any, List, Optional, Sequence

from hicache_go._version import __version__

# ABI is the C API's version: the signatures of the hc_ functions. The
# library's hc_abi must return it.
ABI = 1

# Result codes of the C API (cmd/libhicache/errors.go).
OK = 0
ERROR = -1
ARGUMENT = -2
HANDLE = -3
NO_POOL = -4
INVALID_KEY = -5
LENGTH = -6
NOT_FOUND = -7
CORRUPT = -8
PANIC = -9
CONFIG = -10
INDICES = -11
MEMORY = -12
BUFFER_SMALL = -13

CODE_NAMES = {
    ERROR: "error",
    ARGUMENT: "invalid argument",
    HANDLE: "unknown or closed handle",
    NO_POOL: "no pool registered",
    INVALID_KEY: "invalid key",
    LENGTH: "length mismatch",
    NOT_FOUND: "not found",
    CORRUPT: "corrupt page",
    PANIC: "panic",
    CONFIG: "invalid config",
    INDICES: "bad host indices",
    MEMORY: "pool memory does not fit",
    BUFFER_SMALL: "buffer too small",
}

# The native timing ops of hc_timed.
OP_SET_V1, OP_GET_V1, OP_SET_OLD, OP_GET_OLD = 0, 1, 2, 3

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_loaded_pid: Optional[int] = None


class LibraryError(RuntimeError):
    """A failure of a control-path call into libhicache (open, register)."""

    def __init__(self, code: int, message: str):
        self.code = code
        super().__init__(f"{message} [{CODE_NAMES.get(code, code)}]")


def library_path() -> str:
    """The library to load: $HICACHE_GO_LIB, else libhicache.so beside this file."""
    return os.environ.get("HICACHE_GO_LIB") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "libhicache.so"
    )


def _declare(lib: ctypes.CDLL) -> None:
    i64, p, cp = ctypes.c_int64, ctypes.c_void_p, ctypes.c_char_p
    sig = {
        "hc_abi": [],
        "hc_version": [p, i64],
        "hc_last_error": [p, i64],
        "hc_open": [cp, i64],
        "hc_close": [i64],
        "hc_register_pool": [i64, cp, i64, cp, i64, p, i64],
        "hc_unregister_pool": [i64, cp, i64],
        "hc_page_buffer_meta": [i64, cp, i64, p, i64, p, p, i64],
        "hc_batch_set_v1": [i64, p, p, i64, p, i64, p],
        "hc_batch_get_v1": [i64, p, p, i64, p, i64, p],
        "hc_timed": [i64, i64, p, p, i64, p, i64, p],
        "hc_set": [i64, p, i64, p, i64],
        "hc_get": [i64, p, i64, p, i64],
        "hc_batch_set": [i64, p, p, i64, p, i64, p],
        "hc_batch_get": [i64, p, p, i64, p, i64, p],
        "hc_exists": [i64, p, i64],
        "hc_batch_exists": [i64, p, p, i64],
        "hc_clear": [i64],
        "hc_stats": [i64, p, i64],
        "hc_batch_exists_v2": [i64, p, p, i64, i64, p, p, p, p, p],
        "hc_batch_v2": [i64, i64, i64, p, p, p, p, p, p, p, p, i64],
        "hc_parse_size": [cp, i64, p],
    }
    for name, args in sig.items():
        f = getattr(lib, name)
        f.argtypes = args
        f.restype = i64


# FORKED turns True in a child forked after the library was loaded (set by
# the fork hook below), so that the data path checks a flag, not getpid.
FORKED = False


def _after_fork_in_child() -> None:
    global FORKED
    if _lib is not None:
        FORKED = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def forked() -> bool:
    """True in a child forked after the library was loaded."""
    return FORKED or (_loaded_pid is not None and _loaded_pid != os.getpid())


def _build(path: str) -> None:
    """Builds the library at path when the package sits in its source tree
    (python/hicache_go under the Go module) and go is installed, as
    scripts/build-python.sh does; a file lock keeps processes from building
    it at once. Does nothing otherwise."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(pkg))
    go = shutil.which("go")
    if go is None or not os.path.exists(os.path.join(root, "go.mod")) or not os.path.isdir(os.path.join(root, "cmd", "libhicache")):
        return
    with open(os.path.join(os.path.dirname(path), ".libhicache.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            return
        tmp = os.path.join(os.path.dirname(path), f".libhicache.{os.getpid()}.so")
        out = subprocess.run(
            [go, "build", "-buildmode=c-shared", "-o", tmp, "./cmd/libhicache"],
            cwd=root, capture_output=True, text=True,
        )
        header = os.path.splitext(tmp)[0] + ".h"  # cgo's C header, not needed
        if os.path.exists(header):
            os.remove(header)
        if out.returncode != 0:
            raise RuntimeError(f"hicache_go: building {path} failed:\n{out.stderr}")
        os.replace(tmp, path)


def load() -> ctypes.CDLL:
    """Loads the library once per process and checks its version."""
    global _lib, _loaded_pid
    with _lock:
        if _lib is not None:
            if forked():
                raise RuntimeError(
                    "hicache_go: libhicache was loaded before this process forked; "
                    "a Go runtime does not survive fork. Load it after the fork "
                    "(construct HiCacheGoFile in the child) or use spawn."
                )
            return _lib
        path = library_path()
        if not os.path.exists(path) and not os.environ.get("HICACHE_GO_LIB"):
            _build(path)
        if not os.path.exists(path):
            raise RuntimeError(
                f"hicache_go: {path} not found; build it with scripts/build-python.sh "
                "(or point HICACHE_GO_LIB at it)"
            )
        lib = ctypes.CDLL(path)
        try:
            abi = lib.hc_abi()
        except AttributeError:
            abi = None
        if abi != ABI:
            raise RuntimeError(
                f"hicache_go: {path} speaks C ABI {abi}, the package {ABI}; "
                "rebuild it with scripts/build-python.sh"
            )
        _declare(lib)
        buf = ctypes.create_string_buffer(64)
        n = lib.hc_version(buf, len(buf))
        version = buf.raw[: max(n, 0)].decode()
        if version != __version__:
            raise RuntimeError(
                f"hicache_go: {path} is version {version!r}, the package is "
                f"{__version__!r}; rebuild it with scripts/build-python.sh"
            )
        _lib, _loaded_pid = lib, os.getpid()
        return lib


def last_error(lib: ctypes.CDLL) -> str:
    """The calling thread's last error message from the library."""
    buf = ctypes.create_string_buffer(4096)
    n = lib.hc_last_error(buf, len(buf))
    return buf.raw[: max(n, 0)].decode(errors="replace")


def go_parse_size(s: str) -> int:
    """The Go store's ParseSize of s; raises ValueError where it refuses."""
    lib = load()
    b = s.encode()
    out = ctypes.c_int64()
    r = lib.hc_parse_size(b, len(b), ctypes.byref(out))
    if r < 0:
        raise ValueError(last_error(lib))
    return out.value


class Store:
    """A handle on a Go store. Methods return the C API's codes; the
    control-path ones (open, register_pool) raise LibraryError."""

    def __init__(self, config: dict):
        self.lib = load()
        js = json.dumps(config).encode()
        h = self.lib.hc_open(js, len(js))
        if h <= 0:
            raise LibraryError(h, last_error(self.lib))
        self.handle = h

    def error(self) -> str:
        return last_error(self.lib)

    def close(self) -> int:
        return self.lib.hc_close(self.handle)

    def register_pool(self, desc: dict, base: int, nbytes: int, name: str = "kv") -> None:
        js, nm = json.dumps(desc).encode(), name.encode()
        r = self.lib.hc_register_pool(self.handle, nm, len(nm), js, len(js), base, nbytes)
        if r < 0:
            raise LibraryError(r, last_error(self.lib))

    def unregister_pool(self, name: str = "kv") -> int:
        nm = name.encode()
        return self.lib.hc_unregister_pool(self.handle, nm, len(nm))

    def page_buffer_meta(self, indices: Sequence[int], name: str = "kv") -> tuple[List[int], List[int]]:
        nm = name.encode()
        n = len(indices)
        idx = (ctypes.c_int64 * max(n, 1))(*indices)
        cap = max(n * 256, 16)
        while True:
            ptrs = (ctypes.c_uint64 * cap)()
            sizes = (ctypes.c_int64 * cap)()
            r = self.lib.hc_page_buffer_meta(self.handle, nm, len(nm), idx, n, ptrs, sizes, cap)
            if r == BUFFER_SMALL and cap < 1 << 24:
                cap *= 16
                continue
            if r < 0:
                raise LibraryError(r, last_error(self.lib))
            return list(ptrs[:r]), list(sizes[:r])

    def stats(self) -> dict[str, Any]:
        size = 4096
        while True:
            buf = ctypes.create_string_buffer(size)
            r = self.lib.hc_stats(self.handle, buf, size)
            if r == BUFFER_SMALL and size < 1 << 20:
                size *= 4
                continue
            if r < 0:
                raise LibraryError(r, last_error(self.lib))
            return json.loads(buf.raw[:r])
