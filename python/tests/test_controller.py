"""SGLang's cache controller, three threads at once: prefetch (batch_exists
in batches of 128 up to the first gap), prefetch I/O (batch_get_v1) and
backup (batch_set_v1), every page fetched checked byte for byte. The run
lasts $HICACHE_GO_DRIVER_SECONDS seconds (10 by default, as in CI)."""

import os

import pytest

from hicache_go.driver import run_controller, storage_config
from hicache_go.hostpool import HostPool
from hicache_go.sglang import HiCacheGoFile

SECONDS = float(os.environ.get("HICACHE_GO_DRIVER_SECONDS", "10"))


@pytest.mark.parametrize("kind,layout", [("mha", "page_first"), ("mla", "layer_first")])
def test_controller_threads_see_every_page_intact(tmp_path, kind, layout):
    if kind == "mla":
        pool = HostPool(layout, 16, 1024, 2, kv_lora_rank=16, qk_rope_head_dim=8)
    else:
        pool = HostPool(layout, 16, 1024, 2, head_num=2, head_dim=8)
    store = HiCacheGoFile(storage_config(str(tmp_path), mla=kind == "mla"))
    store.register_mem_pool_host(pool)
    try:
        out = run_controller(store, pool, SECONDS)
    finally:
        store.close()
    assert out["failures"] == []
    assert out["backed_up_pages"] > 0
    assert out["checked_pages"] > 0 and out["checked_pages"] == out["fetched_pages"]
    assert out["exists_calls"] > 0
