"""batch_set_v1 / batch_get_v1 through the Go store: byte-exact round trips
in every layout, across a restart, and the pool's meta checked at
registration."""

import pytest
import torch

from conftest import LAYOUTS, fill_random, page_bytes, slots
from hicache_go.driver import storage_config
from hicache_go.hostpool import make_pool
from hicache_go.sglang import HiCacheGoFile


@pytest.mark.parametrize("kind,layout", LAYOUTS)
def test_v1_round_trip_is_byte_exact(open_store, kind, layout):
    store, pool = open_store(kind, layout)
    fill_random(pool)
    src = list(range(0, 10))
    keys = [f"{kind}-{layout}-{i}" for i in src]
    want = [page_bytes(pool, p * pool.page_size) for p in src]
    assert store.batch_set_v1(keys, slots(pool, src)) == [True] * 10
    dst = list(range(40, 50))
    assert store.batch_get_v1(keys, slots(pool, dst)) == [True] * 10
    assert [page_bytes(pool, p * pool.page_size) for p in dst] == want
    assert store.batch_exists(keys) == 10
    assert store.batch_exists(keys[:3] + ["absent"] + keys[3:]) == 3
    stats = store.get_stats()
    assert stats["Sets"] == 10 and stats["Hits"] == 10


@pytest.mark.parametrize("kind,layout", [("mha", "layer_first"), ("mla", "page_first")])
def test_v1_pages_survive_a_restart(tmp_path, kind, layout):
    pool = make_pool(kind, layout)
    fill_random(pool, 3)
    keys = [f"r{i}" for i in range(5)]
    want = [page_bytes(pool, p * pool.page_size) for p in range(5)]
    s = HiCacheGoFile(storage_config(str(tmp_path), mla=kind == "mla"))
    s.register_mem_pool_host(pool)
    assert all(s.batch_set_v1(keys, slots(pool, range(5))))
    s.close()
    pool2 = make_pool(kind, layout)
    s2 = HiCacheGoFile(storage_config(str(tmp_path), mla=kind == "mla"))
    s2.register_mem_pool_host(pool2)
    try:
        assert s2.batch_get_v1(keys, slots(pool2, range(5))) == [True] * 5
        assert [page_bytes(pool2, p * pool2.page_size) for p in range(5)] == want
    finally:
        s2.close()


def test_v1_misses_are_false_and_hits_stay_true(open_store):
    store, pool = open_store()
    fill_random(pool)
    assert all(store.batch_set_v1(["a", "c"], slots(pool, [0, 1])))
    assert store.batch_get_v1(["a", "b", "c"], slots(pool, [5, 6, 7])) == [True, False, True]


def test_host_indices_as_a_list_or_int32_tensor(open_store):
    store, pool = open_store()
    fill_random(pool)
    idx = slots(pool, [2, 3])
    assert store.batch_set_v1(["x", "y"], idx.to(torch.int32)) == [True, True]
    assert store.batch_get_v1(["x", "y"], idx.tolist()) == [True, True]


def test_a_model_sees_none_of_another_models_pages(tmp_path, open_store):
    a, pool = open_store(model="org/a", directory=tmp_path)
    b, _ = open_store(model="org/b", directory=tmp_path)
    fill_random(pool)
    assert all(a.batch_set_v1(["shared"], slots(pool, [0])))
    assert b.batch_exists(["shared"]) == 0
    assert b.batch_get_v1(["shared"], slots(pool, [1])) == [False]


def test_clear_removes_this_stores_pages(open_store):
    store, pool = open_store()
    fill_random(pool)
    assert all(store.batch_set_v1(["c1", "c2"], slots(pool, [0, 1])))
    assert store.set("c3", pool.get_data_page(8))
    assert store.clear() is True
    assert store.batch_exists(["c1"]) == 0 and not store.exists("c3")
