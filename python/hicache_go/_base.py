"""The storage base class: SGLang's HiCacheStorage when sglang is importable,
else a local class with its method names and signatures.

The local class follows python/sglang/srt/mem_cache/hicache_storage.py at
sgl-project/sglang 001067f: the abstract get, batch_get, set, batch_set and
exists; batch_exists, the v1 and v2 calls, clear and get_stats with defaults.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, List, Optional

import torch

from dataclasses import dataclass, field

try:  # pragma: no cover - exercised only where sglang is installed
    from sglang.srt.mem_cache.hicache_storage import HiCacheStorage as _SGLangBase
    from sglang.srt.mem_cache.hicache_storage import PoolName as _PoolName
    from sglang.srt.mem_cache.hicache_storage import PoolTransferResult as _SGLangResult

    HAVE_SGLANG = True
except Exception:  # ImportError, or sglang failing to import its own deps
    _SGLangBase = _PoolName = _SGLangResult = None
    HAVE_SGLANG = False


@dataclass
class _LocalPoolTransferResult:
    """SGLang's PoolTransferResult: the usable KV prefix, and the pages
    found per pool."""

    kv_hit_pages: int
    extra_pool_hit_pages: dict = field(default_factory=dict)


PoolTransferResult = _SGLangResult if HAVE_SGLANG else _LocalPoolTransferResult

# The KV pool's key in a PoolTransferResult's counts, as SGLang's
# HiCacheFile writes it.
KV_POOL = _PoolName.KV if HAVE_SGLANG else "kv"


class _LocalHiCacheStorage(ABC):
    """SGLang's HiCacheStorage interface, for use without sglang."""

    def register_mem_pool_host(self, mem_pool_host: Any):
        self.mem_pool_host = mem_pool_host

    def register_mem_host_pool_v2(self, host_pool: Any, host_pool_name):
        if not hasattr(self, "registered_pools"):
            self.registered_pools = {}
        self.registered_pools[host_pool_name] = host_pool

    def batch_exists_v2(self, keys: List[str], pool_transfers: Optional[list] = None, extra_info: Optional[Any] = None):
        raise NotImplementedError()

    def batch_get_v2(self, transfers: list, extra_info: Optional[Any] = None) -> dict:
        raise NotImplementedError()

    def batch_set_v2(self, transfers: list, extra_info: Optional[Any] = None) -> dict:
        raise NotImplementedError()

    def batch_get_v1(self, keys: List[str], host_indices: torch.Tensor, extra_info: Optional[Any] = None) -> List[bool]:
        raise NotImplementedError()

    def batch_set_v1(self, keys: List[str], host_indices: torch.Tensor, extra_info: Optional[Any] = None) -> List[bool]:
        raise NotImplementedError()

    @abstractmethod
    def get(self, key: str, target_location: Optional[Any] = None, target_sizes: Optional[Any] = None):
        pass

    @abstractmethod
    def batch_get(self, keys: List[str], target_locations: Optional[Any] = None, target_sizes: Optional[Any] = None):
        pass

    @abstractmethod
    def set(self, key: str, value: Optional[Any] = None, target_location: Optional[Any] = None, target_sizes: Optional[Any] = None) -> bool:
        pass

    @abstractmethod
    def batch_set(self, keys: List[str], values: Optional[Any] = None, target_locations: Optional[Any] = None, target_sizes: Optional[Any] = None) -> bool:
        pass

    @abstractmethod
    def exists(self, key: str) -> bool:
        pass

    def batch_exists(self, keys: List[str], extra_info: Optional[Any] = None) -> int:
        for i in range(len(keys)):
            if not self.exists(keys[i]):
                return i
        return len(keys)

    def clear(self) -> None:
        pass

    def get_stats(self):
        return None


HiCacheStorage = _SGLangBase if HAVE_SGLANG else _LocalHiCacheStorage
