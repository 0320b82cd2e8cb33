"""Drives HiCacheGoFile the way SGLang's cache controller does, and writes or
checks pages for the Go specs.

``run_controller`` runs three threads for a given time, as the controller's
prefetch, prefetch I/O and backup threads: the backup thread writes new pages
of hash-chained requests with batch_set_v1, 128 pages a call, stopping a
request at its first failed batch; the prefetch thread asks batch_exists, 128
keys a call up to the first batch not wholly present, how much of a request
the store holds; the prefetch I/O thread loads that prefix with batch_get_v1,
128 pages a call, and checks every page byte for byte.

Every page's bytes are a function of its key (``page_content``): SHA-256 of
the key, repeated. The Go specs compute the same.

Command line (PYTHONPATH=python python3 -m hicache_go.driver ...):

    controller --dir D [--seconds S]      the three threads; JSON summary
    write --dir D --prefix P --keys N     N pages via batch_set_v1 and
                                          N via set (keys P+"old"+i)
    read --dir D --prefix P --keys N      checks pages the Go side wrote the
                                          same way

The pool options (--kind, --layout, --page-size, --pages, --layers, --heads,
--head-dim, --lora, --rope) and --model apply to every command. Exit status 0
when every page matched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import sys
import threading
import time
import types
from typing import Dict, List, Optional

import torch

from hicache_go.hostpool import HostPool
from hicache_go.sglang import HiCacheGoFile

BATCH = 128  # SGLang's STORAGE_BATCH_SIZE


def page_content(key: str, nbytes: int) -> bytes:
    """The bytes of key's page: SHA-256 of the key, repeated to nbytes."""
    d = hashlib.sha256(key.encode()).digest()
    return (d * (nbytes // len(d) + 1))[:nbytes]


def page_tensor(pool: HostPool, key: str) -> torch.Tensor:
    """key's page as a flat page tensor of the pool's dtype."""
    raw = bytearray(page_content(key, pool.page_bytes()))
    return torch.frombuffer(raw, dtype=torch.uint8).view(pool.dtype)


def page_bytes_at(pool: HostPool, first_slot: int) -> bytes:
    """The bytes of the page at first_slot, in flat page order."""
    return pool.get_data_page(first_slot).contiguous().view(torch.uint8).numpy().tobytes()


def storage_config(directory: str, model: str = "driver/model", mla: bool = False, extra: Optional[dict] = None):
    """An SGLang-like HiCacheStorageConfig for one rank."""
    return types.SimpleNamespace(
        tp_rank=0, tp_size=1, pp_rank=0, pp_size=1, attn_cp_rank=0, attn_cp_size=1,
        is_mla_model=mla, enable_storage_metrics=False, is_page_first_layout=True,
        model_name=model, extra_config=dict({"file_path": directory}, **(extra or {})),
    )


class Slots:
    """A free list of the pool's pages, shared by the threads."""

    def __init__(self, pages: int, page_size: int):
        self.ps = page_size
        self.free = list(range(pages))
        self.lock = threading.Lock()

    def alloc(self, n: int) -> Optional[List[int]]:
        with self.lock:
            if len(self.free) < n:
                return None
            out, self.free = self.free[:n], self.free[n:]
            return out

    def release(self, pages: List[int]) -> None:
        with self.lock:
            self.free.extend(pages)

    def indices(self, pages: List[int]) -> torch.Tensor:
        ps = self.ps
        return torch.tensor([p * ps + s for p in pages for s in range(ps)], dtype=torch.int64)


def chain(prev: str, n: int, rng: random.Random) -> List[str]:
    """n hash-chained page keys following prev."""
    keys = []
    for _ in range(n):
        prev = hashlib.sha256((prev + str(rng.getrandbits(64))).encode()).hexdigest()
        keys.append(prev)
    return keys


def run_controller(store: HiCacheGoFile, pool: HostPool, seconds: float, seed: int = 1) -> Dict[str, object]:
    """Runs the three controller threads for seconds; returns counts and
    the failures seen (empty when every page matched)."""
    slots = Slots(pool.page_num, pool.page_size)
    done: List[List[str]] = []  # requests wholly backed up
    done_lock = threading.Lock()
    fetches: "queue.Queue[List[str]]" = queue.Queue(maxsize=64)
    failures: List[str] = []
    counts = {"backed_up_pages": 0, "exists_calls": 0, "fetched_pages": 0, "checked_pages": 0, "requests": 0}
    count_lock = threading.Lock()
    deadline = time.monotonic() + seconds
    stop = threading.Event()

    def fail(msg: str) -> None:
        with count_lock:
            if len(failures) < 20:
                failures.append(msg)

    def add(name: str, n: int) -> None:
        with count_lock:
            counts[name] += n

    def backup() -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            with done_lock:
                base = rng.choice(done) if done and rng.random() < 0.5 else []
            new = chain(base[-1] if base else str(rng.random()), rng.randint(1, 300), rng)
            ok = True
            for i in range(0, len(new), BATCH):
                keys = new[i : i + BATCH]
                pages = slots.alloc(len(keys))
                if pages is None:
                    ok = False
                    break
                try:
                    for k, p in zip(keys, pages):
                        pool.set_from_flat_data_page(p * pool.page_size, page_tensor(pool, k))
                    res = store.batch_set_v1(keys, slots.indices(pages))
                finally:
                    slots.release(pages)
                if not isinstance(res, list) or len(res) != len(keys):
                    fail(f"batch_set_v1 returned {res!r}")
                    ok = False
                    break
                if not all(res):
                    fail(f"batch_set_v1 failed {res.count(False)} of {len(keys)} pages")
                    ok = False
                    break
                add("backed_up_pages", len(keys))
            if ok:
                with done_lock:
                    done.append(base + new)
                add("requests", 1)
        stop.set()

    def prefetch() -> None:
        rng = random.Random(seed + 1)
        while not stop.is_set():
            with done_lock:
                req = rng.choice(done) if done else None
            if req is None:
                time.sleep(0.001)
                continue
            keys = req + chain("unwritten" + req[-1], rng.randint(0, 3), rng)
            hit = 0
            for i in range(0, len(keys), BATCH):
                batch = keys[i : i + BATCH]
                n = store.batch_exists(batch)
                add("exists_calls", 1)
                if not isinstance(n, int):
                    fail(f"batch_exists returned {n!r}")
                    break
                hit += n
                if n < len(batch):
                    break
            if hit != len(req):
                fail(f"batch_exists found {hit} of a request of {len(req)} pages (+{len(keys) - len(req)} unwritten)")
            try:
                fetches.put(keys[:hit], timeout=0.1)
            except queue.Full:
                pass

    def prefetch_io() -> None:
        while not (stop.is_set() and fetches.empty()):
            try:
                keys = fetches.get(timeout=0.05)
            except queue.Empty:
                continue
            for i in range(0, len(keys), BATCH):
                batch = keys[i : i + BATCH]
                pages = slots.alloc(len(batch))
                if pages is None:
                    break
                try:
                    res = store.batch_get_v1(batch, slots.indices(pages))
                    if not isinstance(res, list) or len(res) != len(batch):
                        fail(f"batch_get_v1 returned {res!r}")
                        break
                    add("fetched_pages", sum(res))
                    for k, p, ok in zip(batch, pages, res):
                        if not ok:
                            fail(f"batch_get_v1 missed stored page {k}")
                            continue
                        if page_bytes_at(pool, p * pool.page_size) != page_content(k, pool.page_bytes()):
                            fail(f"page {k} came back with wrong bytes")
                        add("checked_pages", 1)
                finally:
                    slots.release(pages)
                if not all(res):
                    break

    threads = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in (backup, prefetch, prefetch_io)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
        if t.is_alive():
            fail(f"thread {t.name} did not finish")
    return dict(counts, failures=failures)


def _pool_from(args) -> HostPool:
    if args.kind == "mla":
        return HostPool(args.layout, args.page_size, args.pages, args.layers, kv_lora_rank=args.lora, qk_rope_head_dim=args.rope)
    return HostPool(args.layout, args.page_size, args.pages, args.layers, head_num=args.heads, head_dim=args.head_dim)


def _write(store: HiCacheGoFile, pool: HostPool, prefix: str, n: int) -> List[str]:
    failures = []
    keys = [f"{prefix}{i:04d}" for i in range(n)]
    pages = list(range(n))
    for k, p in zip(keys, pages):
        pool.set_from_flat_data_page(p * pool.page_size, page_tensor(pool, k))
    res = store.batch_set_v1(keys, Slots(pool.page_num, pool.page_size).indices(pages))
    if not all(res):
        failures.append(f"batch_set_v1: {res}")
    for i in range(n):
        k = f"{prefix}old{i:04d}"
        if not store.set(k, page_tensor(pool, k)):
            failures.append(f"set {k} failed")
    return failures


def _read(store: HiCacheGoFile, pool: HostPool, prefix: str, n: int) -> List[str]:
    failures = []
    keys = [f"{prefix}{i:04d}" for i in range(n)]
    if store.batch_exists(keys) != n:
        failures.append(f"batch_exists {store.batch_exists(keys)} of {n}")
    pages = list(range(n))
    res = store.batch_get_v1(keys, Slots(pool.page_num, pool.page_size).indices(pages))
    for k, p, ok in zip(keys, pages, res):
        if not ok or page_bytes_at(pool, p * pool.page_size) != page_content(k, pool.page_bytes()):
            failures.append(f"v1 page {k}: ok={ok}, bytes differ or missing")
    for i in range(n):
        k = f"{prefix}old{i:04d}"
        got = store.get(k, pool.get_dummy_flat_data_page())
        if got is None or got.view(torch.uint8).numpy().tobytes() != page_content(k, pool.page_bytes()):
            failures.append(f".bin page {k} missing or wrong")
    return failures


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m hicache_go.driver")
    ap.add_argument("command", choices=["controller", "write", "read"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--model", default="driver/model")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("HICACHE_GO_DRIVER_SECONDS", "10")))
    ap.add_argument("--prefix", default="k")
    ap.add_argument("--keys", type=int, default=16)
    ap.add_argument("--kind", choices=["mha", "mla"], default="mha")
    ap.add_argument("--layout", default="page_first")
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--pages", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=8)
    ap.add_argument("--lora", type=int, default=8)
    ap.add_argument("--rope", type=int, default=4)
    args = ap.parse_args(argv)
    pool = _pool_from(args)
    store = HiCacheGoFile(storage_config(args.dir, args.model, args.kind == "mla"))
    try:
        store.register_mem_pool_host(pool)
        if args.command == "controller":
            out = run_controller(store, pool, args.seconds)
            failures = out["failures"]
        elif args.command == "write":
            failures = _write(store, pool, args.prefix, args.keys)
            out = {"failures": failures}
        else:
            failures = _read(store, pool, args.prefix, args.keys)
            out = {"failures": failures}
        out["page_bytes"] = pool.page_bytes()
        print(json.dumps(out))
        return 1 if failures else 0
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
