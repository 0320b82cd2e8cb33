"""The v2 interface: component pools (a Mamba-style state pool beside the KV
pool), SGLang's hit policies, and a transfer that fails alone."""

import os
import types

import pytest
import torch

from conftest import fill_random, page_bytes, slots
from hicache_go.driver import storage_config
from hicache_go.hostpool import StatePool, make_pool
from hicache_go.sglang import HiCacheGoFile


def transfer(name, keys, host_indices, hit_policy="all_pages"):
    return types.SimpleNamespace(name=name, keys=keys, host_indices=host_indices, hit_policy=hit_policy)


@pytest.fixture
def v2(tmp_path):
    kv = make_pool("mha", "page_first")
    fill_random(kv, 1)
    mamba = StatePool([24, 40], size=32)
    mamba.buffer.copy_(torch.randint(0, 256, mamba.buffer.shape, dtype=torch.uint8))
    s = HiCacheGoFile(storage_config(str(tmp_path)))
    s.register_mem_host_pool_v2(kv, "kv")
    s.register_mem_host_pool_v2(mamba, "mamba")
    yield s, kv, mamba
    s.close()


def test_v2_round_trip_of_kv_and_state_pages(v2):
    s, kv, mamba = v2
    keys = [f"v2-{i}" for i in range(5)]
    want_kv = [page_bytes(kv, p * kv.page_size) for p in range(5)]
    want_state = mamba.page(3)
    res = s.batch_set_v2([transfer("kv", keys, slots(kv, range(5))), transfer("mamba", keys[-1:], torch.tensor([3]))])
    assert res == {"kv": [True] * 5, "mamba": [True]}

    found = s.batch_exists_v2(keys, [transfer("mamba", keys[-1:], None, "trailing_pages")])
    assert found.kv_hit_pages == 5
    assert found.extra_pool_hit_pages == {"kv": 5, "mamba": 5}
    found = s.batch_exists_v2(keys, [transfer("mamba", keys, None, "all_pages")])
    assert found.kv_hit_pages == 0 and "mamba" not in found.extra_pool_hit_pages

    res = s.batch_get_v2([transfer("kv", keys, slots(kv, range(20, 25))), transfer("mamba", keys[-1:], torch.tensor([9]))])
    assert res == {"kv": [True] * 5, "mamba": [True]}
    assert [page_bytes(kv, p * kv.page_size) for p in range(20, 25)] == want_kv
    assert mamba.page(9) == want_state


def test_v2_transfer_with_wrong_indices_fails_alone(v2):
    s, kv, mamba = v2
    keys = ["a1", "a2"]
    res = s.batch_set_v2([transfer("kv", keys, slots(kv, [0, 1])), transfer("mamba", keys, torch.tensor([1]))])
    assert res == {"kv": [True, True], "mamba": [False, False]}
    res = s.batch_get_v2([transfer("kv", keys, None)])
    assert res == {"kv": [False, False]}


def test_v2_unregistered_pool_and_bad_input_are_false(v2):
    s, kv, _ = v2
    assert s.batch_set_v2([transfer("swa", ["x"], torch.tensor([0]))]) == {"swa": [False]}
    assert s.batch_get_v2([transfer("kv", [None], slots(kv, [0]))]) == {"kv": [False]}
    assert s.batch_get_v2([]) == {}
    r = s.batch_exists_v2(["nope"], [])
    assert r.kv_hit_pages == 0 and r.extra_pool_hit_pages == {}


def test_v2_after_close_is_false(v2):
    s, kv, _ = v2
    s.close()
    assert s.batch_set_v2([transfer("kv", ["k"], slots(kv, [0]))]) == {"kv": [False]}
    r = s.batch_exists_v2(["k"], [transfer("mamba", ["k"], None)])
    assert r.kv_hit_pages == 0


class ScatteredStatePool(StatePool):
    """Buffers not back to back: a layout the Go pool cannot describe."""

    def get_page_buffer_meta(self, indices):
        ptrs, sizes = super().get_page_buffer_meta(indices)
        return [p + 64 * (i % 2) for i, p in enumerate(ptrs)], sizes


def test_component_pool_it_cannot_describe_is_refused(tmp_path):
    s = HiCacheGoFile(storage_config(str(tmp_path)))
    try:
        with pytest.raises(ValueError, match="back to back"):
            s.register_mem_host_pool_v2(ScatteredStatePool([24, 40], size=32), "mamba")
        assert s.batch_set_v2([transfer("mamba", ["k"], torch.tensor([0]))]) == {"mamba": [False]}
    finally:
        s.close()


def test_exists_v2_takes_only_the_count_of_a_transfers_keys(v2):
    """SGLang's hybrid controller asks batch_exists_v2 with
    PoolTransfer(keys=[None] * window, hit_policy=trailing_pages): only
    len(keys) counts, so placeholder keys must not fail the lookup."""
    s, kv, mamba = v2
    keys = [f"n-{i}" for i in range(4)]
    res = s.batch_set_v2([transfer("kv", keys, slots(kv, range(4))), transfer("mamba", keys[-2:], torch.tensor([4, 5]))])
    assert res == {"kv": [True] * 4, "mamba": [True, True]}
    found = s.batch_exists_v2(keys, [transfer("mamba", [None, None], None, "trailing_pages")])
    assert found.kv_hit_pages == 4
    assert found.extra_pool_hit_pages == {"kv": 4, "mamba": 4}
    found = s.batch_exists_v2(keys, [transfer("mamba", [None] * 3, None, "trailing_pages")])
    assert found.kv_hit_pages == 0
    found = s.batch_exists_v2(keys, [transfer("mamba", None, None, "trailing_pages")])
    assert found.kv_hit_pages == 4


def test_v2_transfer_with_keys_that_are_not_strings_fails_alone(v2):
    s, kv, mamba = v2
    keys = ["s1", "s2"]
    res = s.batch_set_v2([transfer("kv", keys, slots(kv, [0, 1])), transfer("mamba", [None, 5], torch.tensor([1, 2]))])
    assert res == {"kv": [True, True], "mamba": [False, False]}
    res = s.batch_get_v2([transfer("kv", keys, slots(kv, [2, 3])), transfer("mamba", [object()], torch.tensor([1]))])
    assert res == {"kv": [True, True], "mamba": [False]}


def test_a_host_pool_group_registers_its_kv_pool(tmp_path):
    """SGLang's hybrid controller holds a HostPoolGroup (pools by name, no
    kv_buffer of its own): registering it registers its KV entry's pool."""
    kv = make_pool("mha", "page_first")
    fill_random(kv, 2)
    mamba = StatePool([24, 40], size=32)
    entry = lambda pool: types.SimpleNamespace(host_pool=pool)
    group = types.SimpleNamespace(entry_map={"mamba": entry(mamba), "kv": entry(kv)}, anchor_entry=entry(kv),
                                  layout=kv.layout, page_size=kv.page_size, size=kv.size)
    s = HiCacheGoFile(storage_config(str(tmp_path)))
    try:
        s.register_mem_pool_host(group)
        assert s.mem_pool_host is kv
        want = page_bytes(kv, 0)
        assert s.batch_set_v1(["g"], slots(kv, [0])) == [True]
        assert s.batch_get_v1(["g"], slots(kv, [5])) == [True]
        assert page_bytes(kv, 5 * kv.page_size) == want
    finally:
        s.close()


class TensorPerStatePool:
    """A Mamba-style state pool as SGLang's MambaPoolHost keeps one: a
    tensor per state, no get_page_buffer_meta, flat pages only."""

    def __init__(self, size=16):
        self.page_size = 1
        self.size = size
        g = torch.Generator().manual_seed(7)
        self.temporal = torch.randint(0, 256, (size, 2, 12), dtype=torch.uint8, generator=g)
        self.conv = [torch.randint(0, 256, (size, 2, 5), dtype=torch.uint8, generator=g)]

    def _tensors(self, index):
        return [self.temporal[index]] + [c[index] for c in self.conv]

    def get_data_page(self, index, flat=True):
        return torch.cat([t.contiguous().view(torch.uint8).reshape(-1) for t in self._tensors(index)])

    def get_dummy_flat_data_page(self):
        return torch.zeros(2 * 12 + 2 * 5, dtype=torch.uint8)

    def set_from_flat_data_page(self, index, page):
        flat, start = page.contiguous().view(torch.uint8).reshape(-1), 0
        for t in self._tensors(index):
            n = t.numel() * t.element_size()
            t.copy_(flat[start : start + n].view(t.dtype).reshape(t.shape))
            start += n


def test_state_pool_without_page_meta_moves_through_flat_pages(tmp_path):
    """A component pool the Go side cannot wrap (a tensor per state, no
    get_page_buffer_meta) is registered, and its pages round-trip through
    SGLang's {key}.{pool}{suffix}.bin files, which batch_exists_v2 counts."""
    kv = make_pool("mha", "page_first")
    fill_random(kv, 3)
    mamba = TensorPerStatePool()
    s = HiCacheGoFile(storage_config(str(tmp_path)))
    try:
        s.register_mem_host_pool_v2(kv, "kv")
        s.register_mem_host_pool_v2(mamba, "mamba")
        keys = ["t0", "t1", "t2"]
        want = mamba.get_data_page(4).clone()
        res = s.batch_set_v2([transfer("kv", keys, slots(kv, range(3))), transfer("mamba", keys[-1:], torch.tensor([4]))])
        assert res == {"kv": [True] * 3, "mamba": [True]}
        names = os.listdir(tmp_path)
        assert any(n.startswith("t2.mamba_") and n.endswith(".bin") for n in names), names
        found = s.batch_exists_v2(keys, [transfer("mamba", keys[-1:], None, "trailing_pages")])
        assert found.kv_hit_pages == 3 and found.extra_pool_hit_pages == {"kv": 3, "mamba": 3}
        res = s.batch_get_v2([transfer("kv", keys, slots(kv, range(8, 11))), transfer("mamba", keys[-1:], torch.tensor([9]))])
        assert res == {"kv": [True] * 3, "mamba": [True]}
        assert torch.equal(mamba.get_data_page(9), want)
        assert s.batch_get_v2([transfer("mamba", ["t0"], torch.tensor([10]))]) == {"mamba": [False]}
        assert s.batch_set_v2([transfer("mamba", ["t5"], torch.tensor([1, 2]))]) == {"mamba": [False]}
    finally:
        s.close()
