#!/usr/bin/env bash
# Runs every test (builds first if needed). GPU tests report as skipped without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || bash scripts/setup.sh
cmake --build build -j "$(nproc)"
source scripts/env.sh
ctest --test-dir build -j "$(nproc)" --output-on-failure ${CTEST_ARGS:-}
