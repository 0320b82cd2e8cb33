"""An SGLang-shaped host KV pool over an anonymous mmap, for tests and the
comparison: the attributes and page methods SGLang's MHATokenToKVPoolHost and
MLATokenToKVPoolHost give a storage backend, written from their documented
shapes (not copied).

With L layers, H heads, D head dim, ps tokens a page, size slots and
R = kv_lora_rank + qk_rope_head_dim, kv_buffer is shaped

    layout             MHA                       MLA
    layer_first        (2, L, size, H, D)        (L, size, 1, R)
    page_first         (2, size, L, H, D)        (size, L, 1, R)
    page_first_direct  (2, pages, L, ps, H, D)   (pages, L, ps, 1, R)
    page_head          (2, pages, H, ps, L, D)   -

and its base is the mmap's first byte (``kv_buffer.data_ptr()``).
"""

from __future__ import annotations

import math
import mmap
from typing import List, Optional, Tuple

import torch

MHA_LAYOUTS = ("layer_first", "page_first", "page_first_direct", "page_head")
MLA_LAYOUTS = ("layer_first", "page_first", "page_first_direct")


class HostPool:
    """A host pool of ``pages`` pages; MLA when kv_lora_rank is given."""

    def __init__(
        self,
        layout: str,
        page_size: int,
        pages: int,
        layer_num: int,
        head_num: int = 0,
        head_dim: int = 0,
        kv_lora_rank: Optional[int] = None,
        qk_rope_head_dim: Optional[int] = None,
        dtype: torch.dtype = torch.bfloat16,
    ):
        self.layout = layout
        self.dtype = dtype
        self.page_size = page_size
        self.page_num = pages
        self.size = pages * page_size
        self.layer_num = layer_num
        self.is_mla = kv_lora_rank is not None
        L, ps, size = layer_num, page_size, self.size
        if self.is_mla:
            self.kv_lora_rank = kv_lora_rank
            self.qk_rope_head_dim = qk_rope_head_dim or 0
            R = kv_lora_rank + self.qk_rope_head_dim
            dims = {
                "layer_first": (L, size, 1, R),
                "page_first": (size, L, 1, R),
                "page_first_direct": (pages, L, ps, 1, R),
            }[layout]
        else:
            self.head_num, self.head_dim = head_num, head_dim
            H, D = head_num, head_dim
            dims = {
                "layer_first": (2, L, size, H, D),
                "page_first": (2, size, L, H, D),
                "page_first_direct": (2, pages, L, ps, H, D),
                "page_head": (2, pages, H, ps, L, D),
            }[layout]
        self.dims = dims
        it = torch.tensor([], dtype=dtype).element_size()
        self.itemsize = it
        nbytes = math.prod(dims) * it
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
        self._mmap = mmap.mmap(-1, nbytes, flags=flags)
        self.kv_buffer = torch.frombuffer(self._mmap, dtype=dtype).view(dims)

    # SGLang's accessors ------------------------------------------------

    def get_size_per_token(self) -> int:
        if self.is_mla:
            return self.layer_num * (self.kv_lora_rank + self.qk_rope_head_dim) * self.itemsize
        return 2 * self.layer_num * self.head_num * self.head_dim * self.itemsize

    def page_bytes(self) -> int:
        return self.page_size * self.get_size_per_token()

    def _page_view(self, index: int) -> torch.Tensor:
        i, ps = int(index), self.page_size
        p = i // ps
        b = self.kv_buffer
        if self.is_mla:
            if self.layout == "layer_first":
                return b[:, i : i + ps]
            if self.layout == "page_first":
                return b[i : i + ps]
            return b[p : p + 1]
        if self.layout == "layer_first":
            return b[:, :, i : i + ps]
        if self.layout == "page_first":
            return b[:, i : i + ps]
        return b[:, p : p + 1]

    def get_data_page(self, index, flat: bool = True) -> torch.Tensor:
        page = self._page_view(index)
        return page.flatten() if flat else page

    def get_dummy_flat_data_page(self) -> torch.Tensor:
        return torch.zeros(self.page_bytes() // self.itemsize, dtype=self.dtype)

    def set_from_flat_data_page(self, index, data_page: torch.Tensor) -> None:
        page = self._page_view(index)
        page.copy_(data_page.reshape(page.shape))

    def get_page_buffer_meta(self, indices) -> Tuple[List[int], List[int]]:
        idx = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
        ps = self.page_size
        assert len(idx) % ps == 0
        base, it, L, size = self.kv_buffer.data_ptr(), self.itemsize, self.layer_num, self.size
        ptrs: List[int] = []
        sizes: List[int] = []
        if self.is_mla:
            row = (self.kv_lora_rank + self.qk_rope_head_dim) * it
            for i in range(0, len(idx), ps):
                first = idx[i]
                if self.layout == "layer_first":
                    for l in range(L):
                        ptrs.append(base + first * row + l * size * row)
                        sizes.append(ps * row)
                else:
                    ptrs.append(base + first * L * row)
                    sizes.append(L * ps * row)
            return ptrs, sizes
        row = self.head_num * self.head_dim * it
        v_offset = L * size * row
        for i in range(0, len(idx), ps):
            first = idx[i]
            if self.layout == "layer_first":
                for l in range(L):
                    k = base + first * row + l * size * row
                    ptrs += [k, k + v_offset]
                    sizes += [ps * row, ps * row]
            else:
                k = base + first * L * row
                ptrs += [k, k + v_offset]
                sizes += [L * ps * row, L * ps * row]
        return ptrs, sizes


def make_pool(kind: str, layout: str, page_size: int = 4, pages: int = 64, dtype: torch.dtype = torch.bfloat16) -> HostPool:
    """A small pool of each kind for tests: MHA L=3 H=2 D=8; MLA L=3, R=8+4."""
    if kind == "mla":
        return HostPool(layout, page_size, pages, 3, kv_lora_rank=8, qk_rope_head_dim=4, dtype=dtype)
    return HostPool(layout, page_size, pages, 3, head_num=2, head_dim=8, dtype=dtype)


class StatePool:
    """An SGLang-shaped component pool (Mamba or SWA states, say): one region
    per state buffer, back to back in one anonymous mmap, each holding
    ``size`` slots of ``buffer_bytes[b]`` bytes in order. A page is
    ``page_size`` slots (1 for Mamba); get_page_buffer_meta lists, per page,
    each buffer's part of it."""

    def __init__(self, buffer_bytes: List[int], size: int, page_size: int = 1):
        self.buffer_bytes = list(buffer_bytes)
        self.page_size = page_size
        self.size = size
        self.page_num = size // page_size
        nbytes = size * sum(buffer_bytes)
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        self._mmap = mmap.mmap(-1, nbytes, flags=flags)
        self.buffer = torch.frombuffer(self._mmap, dtype=torch.uint8)
        self.offsets = []
        off = 0
        for b in buffer_bytes:
            self.offsets.append(off)
            off += size * b

    def get_page_buffer_meta(self, indices) -> Tuple[List[int], List[int]]:
        idx = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
        ps = self.page_size
        assert len(idx) % ps == 0
        base = self.buffer.data_ptr()
        ptrs: List[int] = []
        sizes: List[int] = []
        for i in range(0, len(idx), ps):
            for off, b in zip(self.offsets, self.buffer_bytes):
                ptrs.append(base + off + idx[i] * b)
                sizes.append(ps * b)
        return ptrs, sizes

    def page(self, first_slot: int) -> bytes:
        """The page's bytes, its buffers in order."""
        out = b""
        for off, b in zip(self.offsets, self.buffer_bytes):
            start = off + first_slot * b
            out += self._mmap[start : start + self.page_size * b]
        return out

    def fill(self, first_slot: int, data: bytes) -> None:
        """Writes a page's bytes, its buffers in order."""
        pos = 0
        for off, b in zip(self.offsets, self.buffer_bytes):
            n = self.page_size * b
            start = off + first_slot * b
            self._mmap[start : start + n] = data[pos : pos + n]
            pos += n
