"""The seed's comparison of SGLang's two controller paths, run against this
backend from Python, with the same calls timed natively in Go beside them.

    PYTHONPATH=python python3 -m hicache_go.compare [old|new|both] [--reps N] [--dir D]

"old" is SGLang's generic path: get_data_page + batch_set to write,
get_dummy_flat_data_page + batch_get + set_from_flat_data_page to read.
"new" is batch_set_v1 / batch_get_v1. The scenarios are the seed's: 10, 50
and 100 keys, and 5 runs of 10 keys, on the seed's pages (64 tokens of 4
fp16 values: 512 bytes), MHA page_first; then the boundary row: 128 pages,
SGLang's batch. Each figure is the median of --reps calls on new keys (a
write) or the keys just written (a read). "Go" is the same path timed inside
the library (hc_timed), with no Python in it, so the last column is what the
Python boundary (ctypes, key packing, the result list) costs.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import tempfile
import time
from typing import Callable, List, Tuple

import torch

from hicache_go import _lib
from hicache_go.driver import Slots, storage_config
from hicache_go.hostpool import HostPool
from hicache_go.sglang import HiCacheGoFile

RULE = "=" * 80


class Bench:
    """One store and pool, and the four paths, in Python and natively."""

    def __init__(self, directory: str, pages: int):
        # The seed's mock page: 64 tokens x (K and V) x 2 fp16 values.
        self.pool = HostPool("page_first", 64, pages, 1, head_num=1, head_dim=2, dtype=torch.float16)
        self.pool.kv_buffer.view(-1).view(torch.int16).copy_(torch.arange(self.pool.kv_buffer.numel(), dtype=torch.int16))
        self.store = HiCacheGoFile(storage_config(directory, "compare/model"))
        self.store.register_mem_pool_host(self.pool)
        self.slots = Slots(pages, 64)
        self.serial = 0

    def keys(self, n: int) -> List[str]:
        self.serial += 1
        return [f"{self.serial:08x}{i:056x}" for i in range(n)]

    def py(self, op: int, keys: List[str], idx: torch.Tensor) -> Tuple[float, bool]:
        """Seconds of one Python call of op, and whether every key succeeded."""
        s, pool, ps = self.store, self.pool, 64
        t = time.perf_counter()
        if op == _lib.OP_SET_V1:
            ok = all(s.batch_set_v1(keys, idx))
        elif op == _lib.OP_GET_V1:
            ok = all(s.batch_get_v1(keys, idx))
        elif op == _lib.OP_SET_OLD:
            ok = s.batch_set(keys, [pool.get_data_page(int(idx[i * ps])) for i in range(len(keys))])
        else:
            pages = s.batch_get(keys, [pool.get_dummy_flat_data_page() for _ in keys])
            ok = True
            for i, page in enumerate(pages):
                if page is None:
                    ok = False
                    break
                pool.set_from_flat_data_page(int(idx[i * ps]), page)
        return time.perf_counter() - t, ok

    def go(self, op: int, keys: List[str], idx: torch.Tensor) -> Tuple[float, bool]:
        """Seconds the same path takes inside the library."""
        buf, lens, n = HiCacheGoFile._keys(keys)
        res = (ctypes.c_uint8 * n)()
        ns = self.store._lib.hc_timed(self.store._h, op, buf, lens.buffer_info()[0], n, idx.data_ptr(), idx.numel(), res)
        if ns < 0:
            raise RuntimeError(_lib.last_error(self.store._lib))
        return ns / 1e9, all(b == 1 for b in bytes(res))

    def pair(self, n: int, reps: int, old: bool) -> dict:
        """Median seconds of write and read, Python and Go, over reps rounds."""
        set_op, get_op = (_lib.OP_SET_OLD, _lib.OP_GET_OLD) if old else (_lib.OP_SET_V1, _lib.OP_GET_V1)
        src, dst = self.slots.indices(list(range(n))), self.slots.indices(list(range(n, 2 * n)))
        out: dict = {"py_set": [], "py_get": [], "go_set": [], "go_get": []}
        for _ in range(reps + 1):  # the first round warms up and is dropped
            for side, run in (("py", self.py), ("go", self.go)):
                keys = self.keys(n)
                ts, oks = run(set_op, keys, src)
                tg, okg = run(get_op, keys, dst)
                if not (oks and okg):
                    raise RuntimeError(f"{side} {'old' if old else 'new'} path failed at {n} keys")
                out[side + "_set"].append(ts)
                out[side + "_get"].append(tg)
        return {k: statistics.median(v[1:]) * 1e3 for k, v in out.items()}


def _line(label: str, py_ms: float, go_ms: float) -> str:
    return f"{label}: {py_ms:.3f} ms   [Go native {go_ms:.3f} ms, Python/Go {py_ms / go_ms:.2f}x]"


def scenario(b: Bench, title: str, n: int, mode: str, reps: int, runs: int = 1) -> None:
    print(RULE)
    print(f"Performance Comparison: {title}")
    print(RULE)
    res = {"old": [], "new": []}
    for _ in range(runs):
        if mode in ("old", "both"):
            res["old"].append(b.pair(n, reps, True))
        if mode in ("new", "both"):
            res["new"].append(b.pair(n, reps, False))
    avg = {k: {f: statistics.mean(r[f] for r in v) for f in v[0]} for k, v in res.items() if v}
    if "old" in avg:
        o = avg["old"]
        print()
        print(_line("[Old Interface] batch_set", o["py_set"], o["go_set"]))
        print(_line("[Old Interface] batch_get", o["py_get"], o["go_get"]))
    if "new" in avg:
        w = avg["new"]
        print()
        print(_line("[New Interface] batch_set_v1", w["py_set"], w["go_set"]))
        print(_line("[New Interface] batch_get_v1", w["py_get"], w["go_get"]))
    if "old" in avg and "new" in avg:
        ws, rs = avg["old"]["py_set"] / avg["new"]["py_set"], avg["old"]["py_get"] / avg["new"]["py_get"]
        print()
        print(RULE)
        print(f"Write Speedup: {ws:.2f}x ({'faster' if ws >= 1 else 'slower'})")
        print(f"Read Speedup:  {rs:.2f}x ({'faster' if rs >= 1 else 'slower'})")
        if runs > 1:
            print(f"(average of {runs} runs)")
    print(RULE)
    print()


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m hicache_go.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="both", choices=["old", "new", "both"])
    ap.add_argument("--reps", type=int, default=5, help="calls per figure (median), after one warm-up")
    ap.add_argument("--dir", default=None, help="storage directory (default: a new temp dir)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        b = Bench(d, 256)
        try:
            print(f"hicache_go {_lib.load() and 'library loaded'}: {d}, 512-byte pages, median of {args.reps}\n")
            scenario(b, "Small Batch (10 keys)", 10, args.mode, args.reps)
            scenario(b, "Medium Batch (50 keys)", 50, args.mode, args.reps)
            scenario(b, "Large Batch (100 keys)", 100, args.mode, args.reps)
            scenario(b, "Multiple Runs (10 keys, 5 runs)", 10, args.mode, args.reps, runs=5)
            scenario(b, "SGLang Batch (128 keys)", 128, args.mode, args.reps)
        finally:
            b.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
