"""The copy path of a component pool the Go side cannot wrap (SGLang's
MambaPoolHost keeps a tensor per state and has no get_page_buffer_meta):
its pages move through the pool's flat pages and the store's copy
interface, as SGLang's HiCacheFile moves them, in SGLang's
{key}.{pool}{suffix}.bin files."""

from __future__ import annotations

from typing import Any, List

from hicache_go._pools import pool_name


def copy_transfer(store: Any, what: str, set_: bool, pool: Any, t: Any) -> List[bool]:
    """One v2 transfer t of pool through store's copy interface: per key,
    get_data_page and set under {key}.{pool}, or get and
    set_from_flat_data_page. One bool per key; never raises."""
    keys = list(getattr(t, "keys", None) or [])
    res = [False] * len(keys)
    try:
        name = pool_name(t.name)
        ps = int(getattr(pool, "page_size", 1) or 1)
        hi = getattr(t, "host_indices", None)
        if pool is None or hi is None or not all(isinstance(k, str) for k in keys):
            return res
        idx = store._indices(hi)
        if idx.numel() != len(keys) * ps:
            store._warn(f"{what}:length", f"{what}: {idx.numel()} host indices for {len(keys)} keys of pool {name!r}")
            return res
        for i, k in enumerate(keys):
            slot = int(idx[i * ps])
            if set_:
                res[i] = store.set(f"{k}.{name}", pool.get_data_page(slot, flat=True))
            else:
                page = store.get(f"{k}.{name}", pool.get_dummy_flat_data_page())
                if page is not None:
                    pool.set_from_flat_data_page(slot, page)
                    res[i] = True
        return res
    except Exception as e:
        store._warn(f"{what}:exception", f"{what} raised {e!r}")
        return res
