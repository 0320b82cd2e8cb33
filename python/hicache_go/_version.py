"""The package version; the library's (cmd/libhicache Version) must match."""

__version__ = "0.1.0"
