"""SGLang's size and ratio settings for the file backend's eviction.

SGLang's LRUFileEvictor (python/sglang/srt/mem_cache/storage/file/
lru_file_evictor.py, read at sgl-project/sglang 09d1a69) takes ``max_size``,
``min_free_space`` and ``eviction_ratio`` from ``extra_config`` and falls back
to SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE, _MIN_FREE_SPACE and _EVICTION_RATIO.
Sizes are integers with an optional suffix: SI k, M, G, T (10^3 ... 10^12,
decimals allowed: "25.6k" is 25600) or IEC Ki, Mi, Gi, Ti (2^10 ... 2^40,
integers only), case-sensitive, or a plain integer. None, "", "0" and a
negative number disable the bound; an invalid value, or one beyond 2^63 - 1
bytes, disables it with a warning.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Optional

logger = logging.getLogger(__name__)

ENV_MAX_SIZE = "SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE"
ENV_MIN_FREE_SPACE = "SGLANG_HICACHE_FILE_BACKEND_MIN_FREE_SPACE"
ENV_EVICTION_RATIO = "SGLANG_HICACHE_FILE_BACKEND_EVICTION_RATIO"
DEFAULT_EVICTION_RATIO = 0.9

_SUFFIXES = (
    ("Ki", 2**10, True),
    ("Mi", 2**20, True),
    ("Gi", 2**30, True),
    ("Ti", 2**40, True),
    ("k", 10**3, False),
    ("M", 10**6, False),
    ("G", 10**9, False),
    ("T", 10**12, False),
)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")


_MAX_SIZE = 2**63 - 1


def parse_size(value: Any) -> int:
    """Bytes for an SGLang size; 0 disables. Raises ValueError when invalid,
    and for a size beyond 2^63 - 1 bytes, which the Go store cannot hold
    (its ParseSize refuses it too)."""
    n = _parse_size(value)
    if n > _MAX_SIZE:
        raise ValueError(f"size {value!r} is out of range")
    return n


def _parse_size(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"size {value!r} is not a number")
    if isinstance(value, (int, float)):
        return max(0, int(value))
    s = str(value).strip()
    if not s or s == "0":
        return 0
    for suffix, mult, iec in _SUFFIXES:
        if s.endswith(suffix):
            num = s[: -len(suffix)]
            if not _NUMBER.fullmatch(num):
                raise ValueError(f"size {value!r}: bad number before {suffix!r}")
            if iec:
                if "." in num:
                    raise ValueError(f"size {value!r}: decimals with a binary suffix")
                return int(num) * mult
            return int(float(num) * mult)
    return max(0, int(s))


def _setting(extra: dict, key: str, env: str) -> Any:
    val = extra.get(key)
    return os.environ.get(env) if val is None else val


def resolve_size(extra: dict, key: str, env: str) -> int:
    """extra[key], else $env, parsed with parse_size; invalid disables (0)."""
    raw = _setting(extra, key, env)
    try:
        return parse_size(raw)
    except (ValueError, TypeError, OverflowError):
        logger.warning("hicache_go: invalid size %r for %s; disabling", raw, key)
        return 0


def resolve_ratio(extra: dict, key: str = "eviction_ratio", env: str = ENV_EVICTION_RATIO) -> float:
    """extra[key], else $env, as a float in (0, 1]; anything else is 0.9."""
    raw: Optional[Any] = _setting(extra, key, env)
    try:
        r = float(raw)
    except (TypeError, ValueError):
        return DEFAULT_EVICTION_RATIO
    return r if 0.0 < r <= 1.0 else DEFAULT_EVICTION_RATIO
