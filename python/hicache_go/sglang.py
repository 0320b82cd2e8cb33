"""HiCacheGoFile: the Go file store as an SGLang HiCache storage backend.

Launch SGLang with::

    --hicache-storage-backend dynamic
    --hicache-storage-backend-extra-config '{"backend_name": "hicache_go",
        "module_path": "hicache_go.sglang", "class_name": "HiCacheGoFile",
        "interface_v1": 1, "file_path": "/mnt/nvme/hicache"}'

SGLang's factory calls ``HiCacheGoFile(storage_config, kwargs)`` and then
``register_mem_pool_host(host_pool)``. The class follows SGLang's
HiCacheStorage (python/sglang/srt/mem_cache/hicache_storage.py at
sgl-project/sglang 001067f) and subclasses it when sglang is importable.

Data-path methods (batch_set_v1, batch_get_v1, batch_exists, get, set,
batch_get, batch_set, exists) never raise and never return None in place of
their list or count: a failure is logged once per kind and reported as
False or 0, since SGLang's prefetch and backup threads die on an exception
and are never restarted. ``get`` returns None for a miss, and ``batch_get``
None per missing key, as SGLang's contract says. The control path (the
constructor, register_mem_pool_host) raises a clear error for what it
cannot serve.

Fork rule: the Go library is loaded by the constructor, never at import.
A process must not fork after constructing a HiCacheGoFile and use it (or
construct another) in the child: a Go runtime does not survive fork, and
the child's first call would hang. SGLang spawns its scheduler processes
and builds the backend inside them, which is fine.
"""

from __future__ import annotations

import array
import ctypes
import logging
import os
import threading
from typing import Any, List, Optional

import torch

from hicache_go import _lib
from hicache_go._base import HAVE_SGLANG, KV_POOL, HiCacheStorage, PoolTransferResult
from hicache_go._copypath import copy_transfer
from hicache_go._pools import _KV_NAMES, _kv_pool_of, describe_component, describe_pool, pool_name
from hicache_go._size import ENV_MAX_SIZE, ENV_MIN_FREE_SPACE, resolve_ratio, resolve_size

logger = logging.getLogger(__name__)

ENV_STORAGE_DIR = "SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR"
DEFAULT_DIR = "/tmp/hicache"


def _flag(v: Any) -> bool:
    """A boolean setting that may come as a JSON bool, number or string."""
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


_ONES = b"\x01" * 1024


def _bools(res: Any, n: int) -> List[bool]:
    """The C API's uint8 results as a list of bools."""
    raw = bytes(res)
    if n <= len(_ONES) and raw == _ONES[:n]:
        return [True] * n
    return [b == 1 for b in raw]


def storage_dir(extra: dict) -> str:
    """extra["file_path"], else $SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR,
    else /tmp/hicache."""
    return str(extra.get("file_path") or os.environ.get(ENV_STORAGE_DIR) or DEFAULT_DIR)


def _int_attr(obj: Any, name: str, default: int) -> int:
    v = getattr(obj, name, default)
    return default if v is None else int(v)


class HiCacheGoFile(HiCacheStorage):
    """SGLang's HiCacheFile, served by the Go store through libhicache.

    Settings: the directory is ``extra_config["file_path"]``, else
    $SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR, else /tmp/hicache; ``max_size``,
    ``min_free_space`` and ``eviction_ratio`` come from extra_config, else
    SGLang's environment variables, in SGLang's size syntax; ``io_workers``
    (threads per large V1 call) and ``direct_io`` (O_DIRECT reads) are extra
    keys of this backend.

    Safe for concurrent use from SGLang's prefetch, prefetch I/O, backup and
    scheduler threads: ctypes releases the GIL during each call.
    """

    def __init__(self, storage_config: Any = None, kwargs: Optional[dict] = None):
        cfg = storage_config
        extra = dict(getattr(cfg, "extra_config", None) or {})
        self.kwargs = dict(kwargs or {})
        self.extra_config = extra
        if _flag(getattr(cfg, "should_split_heads", False)):
            raise ValueError("hicache_go: should_split_heads is not supported")
        self.file_path = storage_dir(extra)
        model_name = getattr(cfg, "model_name", None) or ""
        config = {
            "dir": str(self.file_path),
            "model_name": str(model_name),
            "tp_rank": _int_attr(cfg, "tp_rank", 0),
            "tp_size": _int_attr(cfg, "tp_size", 1),
            "pp_rank": _int_attr(cfg, "pp_rank", 0),
            "pp_size": _int_attr(cfg, "pp_size", 1),
            "cp_rank": _int_attr(cfg, "attn_cp_rank", 0),
            "cp_size": _int_attr(cfg, "attn_cp_size", 1),
            "is_mla": _flag(getattr(cfg, "is_mla_model", False)),
            "max_bytes": resolve_size(extra, "max_size", ENV_MAX_SIZE),
            "min_free_bytes": resolve_size(extra, "min_free_space", ENV_MIN_FREE_SPACE),
            "eviction_ratio": resolve_ratio(extra),
            "io_workers": int(extra.get("io_workers", 0) or 0),
            "direct_io": _flag(extra.get("direct_io", False)),
            # The sizes and ratio above are resolved here, extra_config
            # first, as SGLang does: the store must not read the
            # environment again (an explicit "0" would lose to it).
            "no_env": True,
        }
        self.config = config
        self._warned: set = set()
        self._warn_lock = threading.Lock()
        self._closed = False
        self._tls = threading.local()
        self.mem_pool_host = None
        # Component pools on the copy path (_copypath), by name.
        self._copy_pools: dict = {}
        self._store = _lib.Store(config)  # loads the library; raises on a bad config
        self._lib = self._store.lib
        self._h = self._store.handle

    # ----- control path -------------------------------------------------

    def register_mem_pool_host(self, mem_pool_host: Any):
        """Wraps the pool's kv_buffer on the Go side and checks the Go
        geometry against the pool's own get_page_buffer_meta; raises
        ValueError for a pool it cannot describe exactly.

        The pool is read as MLA or MHA from its attributes (kv_lora_rank,
        or head_num and head_dim); where both readings are possible, the one
        whose pages match the pool's get_page_buffer_meta is taken, the
        store's is_mla_model first. A hybrid model's HostPoolGroup stands for
        its kv entry's pool (else its anchor's)."""
        pool = _kv_pool_of(mem_pool_host)
        # A pool that fails any check below leaves no pool registered. The old
        # one is released after the Go side detached it (which waits for calls).
        old = self.mem_pool_host
        self._store.unregister_pool()
        self.mem_pool_host = None
        del old
        kv = getattr(pool, "kv_buffer", None)
        if not isinstance(kv, torch.Tensor):
            raise ValueError("hicache_go: host pool's kv_buffer is not a tensor")
        if kv.device.type != "cpu" or not kv.is_contiguous():
            raise ValueError("hicache_go: host pool's kv_buffer must be a contiguous CPU tensor")
        nbytes = kv.numel() * kv.element_size()
        readings = [None]
        if getattr(pool, "kv_lora_rank", None) is not None and getattr(pool, "head_num", None) is not None:
            readings = [self.config["is_mla"], not self.config["is_mla"]]
        errors = []
        for mla in readings:
            try:
                desc = describe_pool(pool, mla)
                try:
                    self._store.register_pool(desc, kv.data_ptr(), nbytes)
                except _lib.LibraryError as e:
                    raise ValueError(f"hicache_go: the Go store refused the host pool {desc}: {e}") from e
                try:
                    self._check_geometry(pool, desc)
                except BaseException:
                    self._store.unregister_pool()
                    raise
            except ValueError as e:
                errors.append(e)
                continue
            self.mem_pool_host = pool
            self.pool_description = desc
            return
        if len(errors) == 1:
            raise errors[0]
        raise ValueError("hicache_go: cannot describe the host pool: " + "; ".join(map(str, errors)))

    def _check_geometry(self, pool: Any, desc: dict, name: str = "kv") -> None:
        ps = desc["page_size"]
        pages = desc["size"] // ps
        sample = sorted({0, pages // 2, pages - 1})
        idx = [p * ps + s for p in sample for s in range(ps)]
        try:
            want_ptrs, want_sizes = pool.get_page_buffer_meta(torch.tensor(idx, dtype=torch.int64))
            want = ([int(x) for x in want_ptrs], [int(x) for x in want_sizes])
        except Exception as e:
            raise ValueError(f"hicache_go: the host pool's get_page_buffer_meta failed: {e!r}; refusing the pool") from e
        got = self._store.page_buffer_meta(idx, name)
        if got != want:
            raise ValueError(
                "hicache_go: the Go pool's page buffers differ from the host pool's "
                f"get_page_buffer_meta on pages {sample} ({desc}); refusing the pool"
            )

    def register_mem_host_pool_v2(self, host_pool: Any, host_pool_name):
        """Registers a pool for the v2 calls: the KV pool as
        register_mem_pool_host does; a component pool (Mamba, SWA, ...) from
        its page_size, size and get_page_buffer_meta, checked like the KV
        pool. Raises ValueError for a pool it cannot describe exactly. A
        component pool that cannot be wrapped (no get_page_buffer_meta, or
        not one region) goes on the copy path (_copypath), as SGLang's."""
        name = pool_name(host_pool_name)
        if name in _KV_NAMES:
            self.register_mem_pool_host(host_pool)
        else:
            self._store.unregister_pool(name)
            old = self._copy_pools.pop(name, None)
            try:
                desc, base, nbytes = describe_component(host_pool)
            except ValueError:
                if not all(callable(getattr(host_pool, m, None)) for m in ("get_data_page", "set_from_flat_data_page", "get_dummy_flat_data_page")):
                    raise
                self._copy_pools[name] = host_pool
                logger.info("hicache_go: component pool %r moves through flat pages (no zero-copy description)", name)
                desc = None
            del old
        if name not in _KV_NAMES and desc is not None:
            try:
                self._store.register_pool(desc, base, nbytes, name)
            except _lib.LibraryError as e:
                raise ValueError(f"hicache_go: the Go store refused component pool {name!r} {desc}: {e}") from e
            try:
                self._check_geometry(host_pool, desc, name)
            except BaseException:
                self._store.unregister_pool(name)
                raise
        if not hasattr(self, "registered_pools"):
            self.registered_pools = {}
        self.registered_pools[host_pool_name] = host_pool

    def close(self) -> None:
        """Closes the Go store; later calls return False/0."""
        if self._closed:
            return
        self._closed = True
        self._store.close()

    # ----- helpers ------------------------------------------------------

    def _warn(self, kind: str, msg: str) -> None:
        with self._warn_lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        logger.error("hicache_go: %s (further %s failures are not logged)", msg, kind)

    def _usable(self, what: str) -> bool:
        if self._closed:
            self._warn("closed", f"{what} after close")
            return False
        if _lib.FORKED:
            self._warn("forked", f"{what} in a process forked after the library was loaded")
            return False
        return True

    def _fail(self, what: str, code: int) -> None:
        kind = f"{what}:{code}"
        self._warn(kind, f"{what} failed: {_lib.last_error(self._lib)} [{_lib.CODE_NAMES.get(code, code)}]")

    def _results(self, n: int) -> Any:
        """A uint8 array of n results, reused per thread (each call fills
        every entry before it returns)."""
        tl = self._tls
        res = getattr(tl, "res", None)
        if res is None or len(res) != n:
            res = tl.res = (ctypes.c_uint8 * n)()
        return res

    @staticmethod
    def _keys(keys: Any) -> tuple:
        """Keys as the C API takes them: (bytes, lengths, count). The lengths
        are an array.array whose address goes to C; the caller keeps the
        tuple alive during the call."""
        if type(keys) is not list:
            keys = list(keys)
        try:
            joined = "".join(keys)
        except TypeError:
            joined = None
        if joined is not None and joined.isascii():
            # The common case (sha256 hex keys): one encode, lengths in C.
            lens = array.array("q", map(len, keys))
            return joined.encode(), lens, len(keys)
        enc = []
        for k in keys:
            if isinstance(k, str):
                enc.append(k.encode())
            elif isinstance(k, (bytes, bytearray)):
                enc.append(bytes(k))
            else:
                raise TypeError(f"key {k!r} is not a str")
        lens = array.array("q", map(len, enc))
        return b"".join(enc), lens, len(enc)

    @staticmethod
    def _indices(host_indices: Any) -> torch.Tensor:
        """host_indices as a contiguous CPU int64 tensor (itself, when it is
        one already: SGLang's are), whose data_ptr and numel go to C."""
        t = host_indices
        if type(t) is torch.Tensor and t.dtype is torch.int64 and t.is_cpu and t.is_contiguous():
            return t
        if not isinstance(t, torch.Tensor):
            t = torch.as_tensor(t)
        return t.to(device="cpu", dtype=torch.int64).contiguous()

    @staticmethod
    def _nkeys(keys: Any) -> int:
        try:
            return len(keys)
        except Exception:
            return 0

    # ----- zero-copy interface -----------------------------------------

    def _v1(self, what: str, fn: Any, keys: List[str], host_indices: torch.Tensor) -> List[bool]:
        n = self._nkeys(keys)
        try:
            if not self._usable(what):
                return [False] * n
            if n == 0:
                return []
            buf, lens, n = self._keys(keys)
            idx = self._indices(host_indices)
            res = self._results(n)
            r = fn(self._h, buf, lens.buffer_info()[0], n, idx.data_ptr(), idx.numel(), res)
            if r < 0:
                self._fail(what, r)
                if r == _lib.PANIC:  # the results may be half written
                    return [False] * n
            return _bools(res, n)
        except Exception as e:  # never raise on the data path
            self._warn(f"{what}:exception", f"{what} raised {e!r}")
            return [False] * n

    def batch_set_v1(self, keys: List[str], host_indices: torch.Tensor, extra_info: Optional[Any] = None) -> List[bool]:
        """Stores the pages at host_indices (page_size slots per key) under
        keys, straight from pool memory; one bool per key."""
        return self._v1("batch_set_v1", self._lib.hc_batch_set_v1, keys, host_indices)

    def batch_get_v1(self, keys: List[str], host_indices: torch.Tensor, extra_info: Optional[Any] = None) -> List[bool]:
        """Loads each key's page into the pool at host_indices, straight
        into pool memory; one bool per key."""
        return self._v1("batch_get_v1", self._lib.hc_batch_get_v1, keys, host_indices)

    def batch_exists(self, keys: List[str], extra_info: Optional[Any] = None) -> int:
        """The number of leading keys the store holds."""
        try:
            if not self._usable("batch_exists") or not self._nkeys(keys):
                return 0
            buf, lens, n = self._keys(keys)
            r = self._lib.hc_batch_exists(self._h, buf, lens.buffer_info()[0], n)
            if r < 0:
                self._fail("batch_exists", r)
                return 0
            return int(r)
        except Exception as e:
            self._warn("batch_exists:exception", f"batch_exists raised {e!r}")
            return 0

    # ----- v2 interface (component pools) -------------------------------

    def _transfers(self, transfers: Any, with_indices: bool) -> tuple:
        """The C arrays of a list of PoolTransfers, and what keeps them alive."""
        trs = list(transfers or [])
        names = [pool_name(getattr(t, "name", "")) for t in trs]
        keys = [list(getattr(t, "keys", None) or []) for t in trs]
        nbuf, nlens, _ = self._keys(names)
        counts = array.array("q", map(len, keys))
        # exists takes only key counts (SGLang passes [None] * window); get
        # and set take the keys, a transfer with a key not a string failing alone.
        bad = [with_indices and not all(isinstance(k, (str, bytes, bytearray)) for k in ks) for ks in keys]
        sent = [[""] * len(ks) if b else ks for ks, b in zip(keys, bad)] if with_indices else []
        kbuf, klens, total = self._keys([k for ks in sent for k in ks])
        policies = array.array("q", [1 if pool_name(getattr(t, "hit_policy", "all_pages")) == "trailing_pages" else 0 for t in trs])
        keep = [nbuf, nlens, counts, kbuf, klens, policies]
        ptrs = icounts = None
        if with_indices:
            idx = []
            for t, b in zip(trs, bad):
                hi = None if b else getattr(t, "host_indices", None)
                idx.append(None if hi is None else self._indices(hi))
            ptrs = (ctypes.c_void_p * max(len(trs), 1))(*[0 if i is None else i.data_ptr() for i in idx])
            icounts = array.array("q", [0 if i is None else i.numel() for i in idx])
            keep += [idx, ptrs, icounts]
        return trs, keys, total, keep

    def batch_exists_v2(self, keys: List[str], pool_transfers: Optional[list] = None, extra_info: Optional[Any] = None):
        """SGLang's batch_exists_v2: the usable KV prefix given each
        transfer's pool and hit policy, and the pages found per pool."""
        try:
            if not self._usable("batch_exists_v2"):
                return PoolTransferResult(0, {})
            trs, _, _, keep = self._transfers(pool_transfers, False)
            nbuf, nlens, counts, _, _, policies = keep
            kbuf, klens, nk = self._keys(keys)
            hits = (ctypes.c_int64 * (len(trs) + 1))()
            r = self._lib.hc_batch_exists_v2(
                self._h, kbuf, klens.buffer_info()[0], nk, len(trs), nbuf, nlens.buffer_info()[0],
                counts.buffer_info()[0], policies.buffer_info()[0], hits)
            if r < 0:
                self._fail("batch_exists_v2", r)
                return PoolTransferResult(0, {})
            found = {KV_POOL: hits[0]} if hits[0] >= 0 else {}
            for i, t in enumerate(trs):
                if hits[i + 1] >= 0:
                    found[t.name] = hits[i + 1]
            return PoolTransferResult(int(r), found)
        except Exception as e:
            self._warn("batch_exists_v2:exception", f"batch_exists_v2 raised {e!r}")
            return PoolTransferResult(0, {})

    def _v2(self, what: str, set_: bool, transfers: Any) -> dict:
        trs = []
        try:
            trs = list(transfers or [])
            if not self._usable(what):
                return {t.name: [False] * len(getattr(t, "keys", None) or []) for t in trs}
            if self._copy_pools:
                copied = [t for t in trs if pool_name(getattr(t, "name", "")) in self._copy_pools]
                if copied:
                    direct = [t for t in trs if not any(t is c for c in copied)]
                    out = self._v2(what, set_, direct) if direct else {}
                    for t in copied:
                        out[t.name] = copy_transfer(self, what, set_, self._copy_pools.get(pool_name(t.name)), t)
                    return out
            trs, keys, total, keep = self._transfers(trs, True)
            nbuf, nlens, counts, kbuf, klens, _, _, ptrs, icounts = keep
            res = (ctypes.c_uint8 * max(total, 1))()
            r = self._lib.hc_batch_v2(
                self._h, 1 if set_ else 0, len(trs), nbuf, nlens.buffer_info()[0], counts.buffer_info()[0],
                kbuf, klens.buffer_info()[0], ptrs, icounts.buffer_info()[0], res, total)
            if r < 0:
                self._fail(what, r)
            raw, out, off = bytes(res), {}, 0
            for t, ks in zip(trs, keys):
                out[t.name] = [b == 1 for b in raw[off : off + len(ks)]]
                off += len(ks)
            return out
        except Exception as e:
            self._warn(f"{what}:exception", f"{what} raised {e!r}")
            out = {}
            for t in trs:
                try:
                    out[t.name] = [False] * len(getattr(t, "keys", None) or [])
                except Exception:
                    pass
            return out

    def batch_get_v2(self, transfers: list, extra_info: Optional[Any] = None) -> dict:
        """SGLang's batch_get_v2: each transfer's pages into its pool; per
        pool name, one bool per key. A transfer whose host indices do not
        match its keys fails alone."""
        return self._v2("batch_get_v2", False, transfers)

    def batch_set_v2(self, transfers: list, extra_info: Optional[Any] = None) -> dict:
        """SGLang's batch_set_v2: each transfer's pages from its pool; per
        pool name, one bool per key."""
        return self._v2("batch_set_v2", True, transfers)

    # ----- generic (copy) interface ------------------------------------

    @staticmethod
    def _tensor_buf(t: Any) -> tuple:
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or not t.is_contiguous():
            raise TypeError("page must be a contiguous CPU tensor")
        return t.data_ptr(), t.numel() * t.element_size()

    def exists(self, key: str) -> bool:
        """Whether the store holds key, in either format."""
        try:
            if not self._usable("exists"):
                return False
            k = key.encode() if isinstance(key, str) else bytes(key)
            r = self._lib.hc_exists(self._h, k, len(k))
            if r < 0:
                self._fail("exists", r)
            return r == 1
        except Exception as e:
            self._warn("exists:exception", f"exists raised {e!r}")
            return False

    def get(self, key: str, target_location: Optional[Any] = None, target_sizes: Optional[Any] = None):
        """Reads key's page into target_location (a flat page tensor; a new
        one from the pool when None) and returns it, or None for a miss."""
        try:
            if not self._usable("get"):
                return None
            if target_location is None:
                if self.mem_pool_host is None:
                    return None
                target_location = self.mem_pool_host.get_dummy_flat_data_page()
            ptr, n = self._tensor_buf(target_location)
            k = key.encode() if isinstance(key, str) else bytes(key)
            r = self._lib.hc_get(self._h, k, len(k), ptr, n)
            if r == 0:
                return target_location
            if r != _lib.NOT_FOUND:
                self._fail("get", r)
            return None
        except Exception as e:
            self._warn("get:exception", f"get raised {e!r}")
            return None

    def batch_get(self, keys: List[str], target_locations: Optional[Any] = None, target_sizes: Optional[Any] = None) -> List[Any]:
        """Reads each key's page into its target; per key the target, or
        None for a miss."""
        n = self._nkeys(keys)
        try:
            if not self._usable("batch_get"):
                return [None] * n
            if n == 0:
                return []
            if target_locations is None:
                if self.mem_pool_host is None:
                    return [None] * n
                target_locations = [self.mem_pool_host.get_dummy_flat_data_page() for _ in range(n)]
            targets = list(target_locations)
            if len(targets) != n:
                self._warn("batch_get:length", f"batch_get: {len(targets)} targets for {n} keys")
                return [None] * n
            bufs = [self._tensor_buf(t) for t in targets]
            size = bufs[0][1]
            if any(b[1] != size for b in bufs):
                return [self.get(k, t) for k, t in zip(keys, targets)]
            buf, lens, n = self._keys(keys)
            ptrs = (ctypes.c_void_p * n)(*[b[0] for b in bufs])
            res = (ctypes.c_uint8 * n)()
            r = self._lib.hc_batch_get(self._h, buf, lens.buffer_info()[0], n, ptrs, size, res)
            if r < 0:
                self._fail("batch_get", r)
            return [t if ok == 1 else None for t, ok in zip(targets, bytes(res))]
        except Exception as e:
            self._warn("batch_get:exception", f"batch_get raised {e!r}")
            return [None] * n

    def set(self, key: str, value: Optional[Any] = None, target_location: Optional[Any] = None, target_sizes: Optional[Any] = None) -> bool:
        """Stores a flat page tensor as key's SGLang .bin file."""
        try:
            if not self._usable("set"):
                return False
            ptr, n = self._tensor_buf(value)
            k = key.encode() if isinstance(key, str) else bytes(key)
            r = self._lib.hc_set(self._h, k, len(k), ptr, n)
            if r < 0:
                self._fail("set", r)
            return r == 0
        except Exception as e:
            self._warn("set:exception", f"set raised {e!r}")
            return False

    def batch_set(self, keys: List[str], values: Optional[Any] = None, target_locations: Optional[Any] = None, target_sizes: Optional[Any] = None) -> bool:
        """Stores each flat page under its key, stopping at the first
        failure; True when all were stored."""
        try:
            if not self._usable("batch_set"):
                return False
            n = self._nkeys(keys)
            if n == 0:
                return True
            vals = list(values or [])
            if len(vals) != n:
                self._warn("batch_set:length", f"batch_set: {len(vals)} values for {n} keys")
                return False
            bufs = [self._tensor_buf(v) for v in vals]
            size = bufs[0][1]
            if any(b[1] != size for b in bufs):
                return all(self.set(k, v) for k, v in zip(keys, vals))
            buf, lens, n = self._keys(keys)
            ptrs = (ctypes.c_void_p * n)(*[b[0] for b in bufs])
            res = (ctypes.c_uint8 * n)()
            r = self._lib.hc_batch_set(self._h, buf, lens.buffer_info()[0], n, ptrs, size, res)
            if r < 0:
                self._fail("batch_set", r)
            return r == 0 and all(b == 1 for b in bytes(res))
        except Exception as e:
            self._warn("batch_set:exception", f"batch_set raised {e!r}")
            return False

    # ----- housekeeping -------------------------------------------------

    def clear(self) -> bool:
        """Removes this store's files (other ranks' and models' stay)."""
        try:
            if not self._usable("clear"):
                return False
            r = self._lib.hc_clear(self._h)
            if r < 0:
                self._fail("clear", r)
            return r == 0
        except Exception as e:
            self._warn("clear:exception", f"clear raised {e!r}")
            return False

    def stats(self) -> dict:
        """The Go store's counters (Sets, Hits, Misses, Corrupt, ...), or {}."""
        try:
            if not self._usable("stats"):
                return {}
            return self._store.stats()
        except Exception as e:
            self._warn("stats:exception", f"stats raised {e!r}")
            return {}

    def get_stats(self):
        """The store's counters. Without sglang, the dict of stats(); with
        it, SGLang's StorageMetrics (which its metrics collector requires),
        carrying that dict as its ``counters`` attribute."""
        counters = self.stats()
        if not HAVE_SGLANG:
            return counters
        try:
            from sglang.srt.metrics.collector import StorageMetrics

            m = StorageMetrics()
            m.counters = counters
            return m
        except Exception:
            return None
