"""Bad input returns False, 0 or None on the data path (never an exception,
never None in place of a list), and a clear error on the control path."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hicache_go
from conftest import fill_random, slots
from hicache_go.driver import storage_config
from hicache_go.hostpool import HostPool, make_pool
from hicache_go.sglang import HiCacheGoFile

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(hicache_go.__file__)))


def test_wrong_index_counts_fail_the_call(open_store):
    store, pool = open_store()
    fill_random(pool)
    idx = slots(pool, [0])
    assert store.batch_set_v1(["a", "b"], idx) == [False, False]
    assert store.batch_get_v1(["a", "b"], idx) == [False, False]
    assert store.batch_set_v1(["a"], idx[:-1]) == [False]
    assert store.batch_set_v1(["a"], torch.arange(1, 5)) == [False]  # not on a page boundary
    assert store.batch_set_v1(["a"], torch.tensor([0, 1, 3, 2])) == [False]  # not consecutive
    assert store.batch_set_v1(["a"], torch.arange(10_000, 10_004)) == [False]  # outside the pool
    assert store.batch_set_v1(["a"], torch.arange(-4, 0)) == [False]
    assert store.batch_set_v1(["a"], None) == [False]
    assert store.batch_get_v1(["a", "b"], slots(pool, [1, 1])) == [False, False]  # one page twice
    assert store.batch_set_v1([], torch.tensor([], dtype=torch.int64)) == []
    assert store.batch_exists(["a"]) == 0


BAD_KEYS = ["", "a/b", "a\x00b", ".", "..", "k" * 300]


def test_bad_keys_are_false_and_good_neighbours_stand(open_store):
    store, pool = open_store()
    fill_random(pool)
    keys = ["good1"] + BAD_KEYS + ["good2"]
    res = store.batch_set_v1(keys, slots(pool, range(len(keys))))
    assert res[0] is True and res[-1] is True
    assert res[1:-1] == [False] * len(BAD_KEYS)
    for k in BAD_KEYS:
        assert store.set(k, pool.get_data_page(0)) is False
        assert store.exists(k) is False
        assert store.get(k, pool.get_dummy_flat_data_page()) is None


@pytest.mark.parametrize("key", [None, 5, object(), "\ud800"])
def test_keys_that_are_not_strings_fail_without_raising(open_store, key):
    store, pool = open_store()
    keys = ["fine", key]
    assert store.batch_set_v1(keys, slots(pool, [0, 1])) == [False, False]
    assert store.batch_get_v1(keys, slots(pool, [0, 1])) == [False, False]
    assert store.batch_exists(keys) == 0
    assert store.exists(key) is False
    assert store.set(key, pool.get_data_page(0)) is False
    assert store.get(key, pool.get_dummy_flat_data_page()) is None
    assert store.batch_get(keys, [pool.get_dummy_flat_data_page()] * 2) == [None, None]
    assert store.batch_set(keys, [pool.get_data_page(0)] * 2) is False


def test_bad_values_fail_without_raising(open_store):
    store, pool = open_store()
    assert store.set("v", None) is False
    assert store.set("v", pool.kv_buffer[:, 0:4]) is False  # not contiguous
    assert store.batch_set(["v"], None) is False
    assert store.batch_set(["v", "w"], [pool.get_data_page(0)]) is False
    assert store.batch_get(["v"], [pool.get_dummy_flat_data_page()] * 2) == [None]


def test_every_call_after_close_is_false_or_zero(open_store):
    store, pool = open_store()
    fill_random(pool)
    assert all(store.batch_set_v1(["k"], slots(pool, [0])))
    store.close()
    store.close()  # twice is fine
    assert store.batch_set_v1(["k"], slots(pool, [0])) == [False]
    assert store.batch_get_v1(["k"], slots(pool, [0])) == [False]
    assert store.batch_exists(["k"]) == 0
    assert store.exists("k") is False
    assert store.get("k", pool.get_dummy_flat_data_page()) is None
    assert store.batch_get(["k"], [pool.get_dummy_flat_data_page()]) == [None]
    assert store.set("k2", pool.get_data_page(0)) is False
    assert store.batch_set(["k2"], [pool.get_data_page(0)]) is False
    assert store.clear() is False
    assert store.stats() == {}


def test_v1_before_a_pool_is_registered_is_false(tmp_path):
    s = HiCacheGoFile(storage_config(str(tmp_path)))
    try:
        assert s.batch_set_v1(["a"], torch.arange(4)) == [False]
        assert s.batch_get_v1(["a"], torch.arange(4)) == [False]
    finally:
        s.close()


class LyingPool(HostPool):
    """A pool whose meta does not match its attributes."""

    def get_page_buffer_meta(self, indices):
        ptrs, sizes = super().get_page_buffer_meta(indices)
        return [p + 2 for p in ptrs], sizes


def refuse(tmp_path, pool, match):
    s = HiCacheGoFile(storage_config(str(tmp_path)))
    try:
        with pytest.raises(ValueError, match=match):
            s.register_mem_pool_host(pool)
        assert s.batch_set_v1(["a"], torch.arange(pool.page_size)) == [False]
    finally:
        s.close()


def test_pool_whose_meta_differs_is_refused(tmp_path):
    refuse(tmp_path, LyingPool("page_first", 4, 8, 2, head_num=1, head_dim=4), "differ")


class NoMetaPool(HostPool):
    """A pool that keeps its pages outside kv_buffer, as SGLang's FP4 pool
    does: its get_page_buffer_meta raises."""

    def get_page_buffer_meta(self, indices):
        raise NotImplementedError("no flat storage pages")


def test_pool_whose_meta_raises_is_refused(tmp_path):
    refuse(tmp_path, NoMetaPool("page_first", 4, 8, 2, head_num=1, head_dim=4), "get_page_buffer_meta failed")


def test_pool_it_cannot_describe_is_refused(tmp_path):
    p = make_pool("mha", "page_first")
    p.layout = "weird"
    refuse(tmp_path, p, "layout")
    p = make_pool("mha", "page_first")
    p.dtype = torch.float64
    refuse(tmp_path, p, "dtype")
    p = make_pool("mha", "page_first")
    del p.head_num
    refuse(tmp_path, p, "head_num")
    p = make_pool("mha", "page_first")
    p.kv_buffer = p.kv_buffer.transpose(0, 1)
    refuse(tmp_path, p, "contiguous")
    p = make_pool("mha", "page_first")
    p.size *= 2  # claims more memory than kv_buffer has
    refuse(tmp_path, p, "refused")


def test_pages_of_another_pool_shape_are_misses(tmp_path):
    a = make_pool("mha", "page_first")
    fill_random(a)
    s = HiCacheGoFile(storage_config(str(tmp_path)))
    s.register_mem_pool_host(a)
    assert all(s.batch_set_v1(["shape"], slots(a, [0])))
    s.close()
    b = HostPool("page_first", 4, 64, 3, head_num=1, head_dim=16)  # same page bytes, other shape
    s = HiCacheGoFile(storage_config(str(tmp_path)))
    s.register_mem_pool_host(b)
    try:
        assert s.batch_exists(["shape"]) == 0
        assert s.batch_get_v1(["shape"], slots(b, [1])) == [False]
    finally:
        s.close()


def test_a_forked_child_gets_false_not_a_hang(tmp_path):
    code = textwrap.dedent(
        f"""
        import os, sys
        from hicache_go.driver import storage_config
        from hicache_go.sglang import HiCacheGoFile
        s = HiCacheGoFile(storage_config({str(tmp_path)!r}))
        pid = os.fork()
        if pid == 0:
            os._exit(0 if s.batch_exists(["k"]) == 0 and s.batch_set_v1(["k"], [0]) == [False] else 1)
        _, status = os.waitpid(pid, 0)
        s.close()
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": PYTHON_DIR}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_pool_with_both_kinds_of_attributes_is_read_by_its_meta(tmp_path):
    """A pool that carries MHA and MLA attributes alike is described the way
    its own get_page_buffer_meta lays pages out, whatever the config says."""
    for mla in (False, True):
        p = make_pool("mha", "page_first")
        p.kv_lora_rank, p.qk_rope_head_dim = 8, 4  # bogus MLA attributes
        s = HiCacheGoFile(storage_config(str(tmp_path), mla=mla))
        try:
            s.register_mem_pool_host(p)
            assert s.pool_description["kind"] == "mha"
            fill_random(p)
            assert s.batch_set_v1(["both"], slots(p, [0])) == [True]
        finally:
            s.close()


def test_close_while_threads_call_is_false_not_a_crash(open_store):
    """close() from the scheduler thread while the prefetch and backup
    threads are mid-call: every call returns its list or count, never
    raises, and calls after close are False/0."""
    import threading
    import time

    store, pool = open_store(pages=256)
    fill_random(pool)
    errors, results = [], []
    stop = time.monotonic() + 1.0

    def worker(i):
        n = 0
        try:
            while time.monotonic() < stop:
                keys = [f"t{i}-{n}-{j}" for j in range(8)]
                idx = slots(pool, range(i * 64, i * 64 + 8))
                for r in (store.batch_set_v1(keys, idx), store.batch_get_v1(keys, idx)):
                    results.append(isinstance(r, list) and len(r) == 8 and all(type(x) is bool for x in r))
                results.append(isinstance(store.batch_exists(keys), int))
                n += 1
        except Exception as e:  # the test fails on any exception
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    store.close()
    for t in threads:
        t.join()
    assert errors == []
    assert results and all(results)
    assert store.batch_get_v1(["t0-0-0"], slots(pool, [0])) == [False]


def test_registering_a_new_pool_while_reads_run_never_faults(tmp_path):
    """The store holds the pool it replaces until the Go side has detached
    it (which waits for the calls using it): a caller that keeps no
    reference of its own to the old pool must not have it unmapped under a
    read in flight."""
    code = textwrap.dedent(
        f"""
        import threading, time, torch
        from hicache_go.driver import storage_config
        from hicache_go.hostpool import make_pool
        from hicache_go.sglang import HiCacheGoFile
        s = HiCacheGoFile(storage_config({str(tmp_path)!r}))
        s.register_mem_pool_host(make_pool("mha", "page_first", page_size=4, pages=1024))
        keys = [f"k{{i}}" for i in range(256)]
        idx = torch.arange(0, 256 * 4, dtype=torch.int64)
        assert all(s.batch_set_v1(keys, idx))
        stop = False
        def read():
            while not stop:
                s.batch_get_v1(keys, idx)
        ts = [threading.Thread(target=read) for _ in range(2)]
        for t in ts:
            t.start()
        end = time.time() + 1.5
        while time.time() < end:
            s.register_mem_pool_host(make_pool("mha", "page_first", page_size=4, pages=1024))
        stop = True
        for t in ts:
            t.join()
        s.close()
        """
    )
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": PYTHON_DIR}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
