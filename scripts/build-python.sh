#!/usr/bin/env bash
# Builds the store as a C shared library into the Python package:
# python/hicache_go/libhicache.so, which hicache_go loads with ctypes.
# Needs Go and a C compiler (cgo). Usage: scripts/build-python.sh [output]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-python/hicache_go/libhicache.so}
go build -buildmode=c-shared -o "$out" ./cmd/libhicache
# The generated C header is not needed by ctypes.
rm -f "${out%.so}.h"
echo "$out"
