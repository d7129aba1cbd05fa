#!/usr/bin/env bash
# The unit, property and MPI tests once more under AddressSanitizer and UndefinedBehaviorSanitizer,
# in their own build folder (build-asan). CUDA is left out: its host code is checked by the main build.
set -euo pipefail
cd "$(dirname "$0")/.."
# -O1 without debug info keeps the build short on CI's two cores; -g1 still names functions in reports.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g1" \
  -DRESHARD_SANITIZE=ON -DRESHARD_WITH_CUDA=OFF -DRESHARD_BUILD_BENCHMARKS=OFF -DRESHARD_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-asan -j "$(nproc)"
source scripts/env.sh
# Open MPI keeps allocations alive until exit by design: leaks are not reported for MPI runs.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Fault injection (ranks killed or hung on purpose) runs in the main build only.
ctest --test-dir build-asan -j "$(nproc)" --output-on-failure -L "core|mpi|cli" -LE faults ${CTEST_ARGS:-}
