"""SGLang's generic path (get, set, batch_get, batch_set, exists,
batch_exists) and byte compatibility with SGLang's HiCacheFile .bin files."""

import os

import pytest
import torch

from conftest import LAYOUTS, fill_random, page_bytes, slots


def sglang_name(key, model="test/model", mla=False):
    suffix = "_" + model.replace("/", "-")
    if not mla:
        suffix += "_0_1"
    return key + suffix + ".bin"


@pytest.mark.parametrize("kind,layout", LAYOUTS)
def test_generic_path_round_trip(open_store, kind, layout):
    """The controller's old path: get_data_page + batch_set; batch_get into
    dummy pages + set_from_flat_data_page."""
    store, pool = open_store(kind, layout)
    fill_random(pool, 7)
    src = range(0, 6)
    keys = [f"g{i}" for i in src]
    want = [page_bytes(pool, p * pool.page_size) for p in src]
    assert store.batch_set(keys, [pool.get_data_page(p * pool.page_size) for p in src]) is True
    pages = store.batch_get(keys, [pool.get_dummy_flat_data_page() for _ in keys])
    assert all(p is not None for p in pages)
    for i, page in enumerate(pages):
        pool.set_from_flat_data_page((20 + i) * pool.page_size, page)
    assert [page_bytes(pool, (20 + i) * pool.page_size) for i in range(6)] == want
    assert store.exists("g0") and not store.exists("nope")
    assert store.batch_exists(keys + ["nope"]) == 6


def test_get_miss_is_none_and_batch_get_none_per_miss(open_store):
    store, pool = open_store()
    assert store.get("absent", pool.get_dummy_flat_data_page()) is None
    fill_random(pool)
    assert store.set("here", pool.get_data_page(0))
    got = store.batch_get(["here", "absent"], [pool.get_dummy_flat_data_page() for _ in range(2)])
    assert got[0] is not None and got[1] is None
    assert store.get("here") is not None  # target from the registered pool


@pytest.mark.parametrize("mla", [False, True])
def test_set_writes_sglangs_bin_file(open_store, tmp_path, mla):
    store, pool = open_store("mla" if mla else "mha", "page_first")
    fill_random(pool, 11)
    page = pool.get_data_page(0)
    assert store.set("abc123", page)
    path = tmp_path / sglang_name("abc123", mla=mla)
    assert path.read_bytes() == page.contiguous().view(torch.uint8).numpy().tobytes()


@pytest.mark.parametrize("kind,layout", [("mha", "page_first"), ("mha", "layer_first"), ("mla", "page_first_direct")])
def test_reads_sglangs_bin_file(open_store, tmp_path, kind, layout):
    """A page SGLang's HiCacheFile wrote (the flat page's raw bytes) loads
    through the generic path and through batch_get_v1."""
    store, pool = open_store(kind, layout)
    fill_random(pool, 5)
    raw = page_bytes(pool, 3 * pool.page_size)
    (tmp_path / sglang_name("deadbeef", mla=kind == "mla")).write_bytes(raw)
    got = store.get("deadbeef", pool.get_dummy_flat_data_page())
    assert got is not None and got.view(torch.uint8).numpy().tobytes() == raw
    assert store.batch_get_v1(["deadbeef"], slots(pool, [9])) == [True]
    assert page_bytes(pool, 9 * pool.page_size) == raw


def test_short_bin_file_is_a_miss(open_store, tmp_path):
    store, pool = open_store()
    (tmp_path / sglang_name("short")).write_bytes(b"x" * 10)
    assert store.get("short", pool.get_dummy_flat_data_page()) is None
    assert store.batch_get_v1(["short"], slots(pool, [0])) == [False]
    assert store.batch_exists(["short"]) == 0


def test_batch_set_stops_at_first_failure(open_store):
    store, pool = open_store()
    fill_random(pool)
    pages = [pool.get_data_page(i * pool.page_size) for i in range(3)]
    assert store.batch_set(["ok1", "bad/key", "ok3"], pages) is False
    assert store.exists("ok1") and not store.exists("ok3")


def test_cp_ranks_write_files_of_their_own(tmp_path):
    """SGLang's suffix gains _cp{rank}_{size} when attn_cp_size > 1."""
    from hicache_go.sglang import HiCacheGoFile
    from hicache_go.driver import storage_config
    from hicache_go.hostpool import make_pool

    pool = make_pool("mha", "page_first")
    fill_random(pool)
    for rank in (0, 1):
        cfg = storage_config(str(tmp_path))
        cfg.attn_cp_rank, cfg.attn_cp_size = rank, 2
        s = HiCacheGoFile(cfg)
        try:
            assert s.set("cpkey", pool.get_data_page(rank * pool.page_size))
        finally:
            s.close()
        name = f"cpkey_driver-model_0_1_cp{rank}_2.bin"
        assert (tmp_path / name).read_bytes() == page_bytes(pool, rank * pool.page_size)


def test_max_size_evicts_down_to_the_cap(open_store, tmp_path):
    store, pool = open_store(max_size="4k", eviction_ratio=0.5)
    fill_random(pool)
    page = pool.page_bytes()
    for i in range(20):
        assert store.set(f"ev{i}", pool.get_data_page(i * pool.page_size))
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("ev*.bin"))
    assert 0 < on_disk <= 4000
    assert store.stats()["Evicted"] > 0
    assert store.exists("ev19") and not store.exists("ev0")
    assert store.set("toolarge", torch.zeros(5000, dtype=torch.uint8)) is False
    assert page < 4000
