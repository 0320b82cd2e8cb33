"""hicache_go: the Go HiCache file store (github.com/hicache-go/hicache) for
SGLang, through the C shared library libhicache.so.

``hicache_go.sglang.HiCacheGoFile`` is the storage backend; build the
library with scripts/build-python.sh. Importing the package does not load
the library (see the fork rule in hicache_go.sglang).
"""

from hicache_go._version import __version__

__all__ = ["__version__"]
