"""Describing SGLang's host pools to the Go side: the JSON that
hc_register_pool takes, from a pool's attributes and its
get_page_buffer_meta."""

from __future__ import annotations

from typing import Any, Optional

import torch

# torch dtypes the Go pool knows, by torch's name.
_DTYPES = {
    "float16": "float16",
    "bfloat16": "bfloat16",
    "float32": "float32",
    "float8_e4m3fn": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2",
    "uint8": "uint8",
}
_MHA_LAYOUTS = ("layer_first", "page_first", "page_first_direct", "page_head")
_MLA_LAYOUTS = ("layer_first", "page_first", "page_first_direct")


def describe_pool(pool: Any, mla: Optional[bool] = None) -> dict:
    """The Go description of an SGLang host pool, from its attributes: MLA
    when mla is True, MHA when False, and when None MLA exactly when the pool
    has a kv_lora_rank.

    Raises ValueError for a pool it cannot describe exactly.
    """
    def need(name: str) -> Any:
        v = getattr(pool, name, None)
        if v is None:
            raise ValueError(f"hicache_go: host pool has no attribute {name!r}")
        return v

    layout = str(need("layout"))
    dt = getattr(pool, "dtype", None)
    if dt is None:
        dt = getattr(getattr(pool, "kv_buffer", None), "dtype", None)
    dtype = str(dt).removeprefix("torch.")
    if dtype not in _DTYPES:
        raise ValueError(f"hicache_go: host pool dtype {dtype!r} is not supported")
    if mla is None:
        mla = getattr(pool, "kv_lora_rank", None) is not None
    desc = {
        "kind": "mla" if mla else "mha",
        "layout": layout,
        "dtype": _DTYPES[dtype],
        "page_size": int(need("page_size")),
        "size": int(need("size")),
        "layer_num": int(need("layer_num")),
    }
    if mla:
        if layout not in _MLA_LAYOUTS:
            raise ValueError(f"hicache_go: MLA layout {layout!r} is not supported")
        desc["kv_lora_rank"] = int(need("kv_lora_rank"))
        desc["qk_rope_head_dim"] = int(getattr(pool, "qk_rope_head_dim", 0) or 0)
    else:
        if layout not in _MHA_LAYOUTS:
            raise ValueError(f"hicache_go: MHA layout {layout!r} is not supported")
        desc["head_num"] = int(need("head_num"))
        desc["head_dim"] = int(need("head_dim"))
    return desc


_KV_NAMES = ("kv", "__default__", "")


def pool_name(name: Any) -> str:
    """A pool name as a string: an Enum's value (SGLang's PoolName), else str."""
    v = getattr(name, "value", name)
    return str(v)


def describe_component(pool: Any) -> tuple:
    """(description, base, nbytes) of a component pool (Mamba or SWA states,
    say) from its page_size, size and get_page_buffer_meta: one region per
    buffer, one after another, slots in order. Raises ValueError for a pool
    laid out otherwise."""
    ps = int(getattr(pool, "page_size", 1) or 1)
    size = getattr(pool, "size", None)
    if size is None:
        raise ValueError("hicache_go: component pool has no attribute 'size'")
    size = int(size)
    try:
        ptrs, sizes = pool.get_page_buffer_meta(torch.arange(ps, dtype=torch.int64))
        ptrs, sizes = [int(p) for p in ptrs], [int(x) for x in sizes]
    except Exception as e:
        raise ValueError(f"hicache_go: component pool's get_page_buffer_meta failed: {e!r}") from e
    if not ptrs or any(x <= 0 or x % ps for x in sizes):
        raise ValueError(f"hicache_go: component pool's buffers {sizes} are not whole slots of a {ps}-slot page")
    per_slot = [x // ps for x in sizes]
    base, off = ptrs[0], 0
    for p, b in zip(ptrs, per_slot):
        if p != base + off:
            raise ValueError("hicache_go: component pool's buffers are not one region per buffer, back to back; not supported")
        off += size * b
    desc = {"kind": "component", "layout": "page_first", "dtype": "uint8", "page_size": ps, "size": size, "buffer_bytes": per_slot}
    return desc, base, off


def _kv_pool_of(pool: Any) -> Any:
    """The KV pool of SGLang's HostPoolGroup (its "kv" entry, else its
    anchor entry), or pool itself when it is not a group."""
    entries = getattr(pool, "entry_map", None)
    if not isinstance(entries, dict) or isinstance(getattr(pool, "kv_buffer", None), torch.Tensor):
        return pool
    for name, entry in entries.items():
        if pool_name(name) in _KV_NAMES and getattr(entry, "host_pool", None) is not None:
            return entry.host_pool
    anchor = getattr(getattr(pool, "anchor_entry", None), "host_pool", None)
    return pool if anchor is None else anchor
