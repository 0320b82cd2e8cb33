"""Shared fixtures. The library must load (scripts/build-python.sh builds
it; so does the package itself, in this source tree, when go is installed);
where it cannot, every test is skipped with the reason."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hicache_go import _lib  # noqa: E402
from hicache_go.driver import storage_config  # noqa: E402
from hicache_go.hostpool import MHA_LAYOUTS, MLA_LAYOUTS, make_pool  # noqa: E402
from hicache_go.sglang import HiCacheGoFile  # noqa: E402

LAYOUTS = [("mha", l) for l in MHA_LAYOUTS] + [("mla", l) for l in MLA_LAYOUTS]


def pytest_collection_modifyitems(config, items):
    try:
        _lib.load()  # builds the library when it is missing and go is installed
    except Exception as e:
        skip = pytest.mark.skip(reason=f"libhicache cannot be loaded ({e}): run scripts/build-python.sh")
        for item in items:
            item.add_marker(skip)


@pytest.fixture
def open_store(tmp_path):
    """open_store(kind="mha", layout="page_first", **extra) -> (store, pool);
    every store is closed at teardown."""
    stores = []

    def make(kind="mha", layout="page_first", directory=None, model="test/model", pages=64, page_size=4, **extra):
        pool = make_pool(kind, layout, page_size=page_size, pages=pages)
        store = HiCacheGoFile(storage_config(str(directory or tmp_path), model, kind == "mla", extra))
        store.register_mem_pool_host(pool)
        stores.append(store)
        return store, pool

    yield make
    for s in stores:
        s.close()


def fill_random(pool, seed=0):
    """Fills the whole pool with random bytes."""
    import torch

    g = torch.Generator().manual_seed(seed)
    u = pool.kv_buffer.view(-1).view(torch.uint8)
    u.copy_(torch.randint(0, 256, u.shape, dtype=torch.uint8, generator=g))


def page_bytes(pool, first_slot):
    import torch

    return pool.get_data_page(first_slot).contiguous().view(torch.uint8).numpy().tobytes()


def slots(pool, pages):
    import torch

    ps = pool.page_size
    return torch.tensor([p * ps + s for p in pages for s in range(ps)], dtype=torch.int64)
