#!/usr/bin/env bash
# Installs what reshard needs on Debian 12 (as root) and builds it into ./build.
# CUDA and NCCL are used when their toolkit is installed (CUDA_HOME or /usr/local/cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends build-essential cmake ninja-build python3 \
    libopenmpi-dev openmpi-bin libfmt-dev catch2 nlohmann-json3-dev libcli11-dev >/dev/null
  # zlib: the checkpoint example's CRC-32; pkg-config: the installed-package test (tests/package)
  apt-get install -y -qq --no-install-recommends zlib1g-dev pkg-config >/dev/null
  # iproute2: ip and tc, which make the hosts of the multi-host tests (tests/multihost); nftables:
  # nft, which drops their packets where the kernel has no sch_netem for `tc ... netem loss`;
  # iputils-ping: ping, which measures the delay their user-space delay line adds
  apt-get install -y -qq --no-install-recommends iproute2 nftables iputils-ping >/dev/null
fi
# Python package (docs/python.md): nanobind and scikit-build-core build it, numpy, mpi4py and pytest
# test it, jax (CPU, small) runs the PartitionSpec object tests; torch (~5 GB) is not installed here:
# its tests and examples skip without it.
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] && ! python3 -m pip --version >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends python3-dev python3-pip >/dev/null
fi
python3 -m pip install -q numpy mpi4py pytest nanobind scikit-build-core jax 2>/dev/null ||
  python3 -m pip install -q --break-system-packages numpy mpi4py pytest nanobind scikit-build-core jax
if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ]; then export CUDA_HOME=/usr/local/cuda; fi
if [ -n "${CUDA_HOME:-}" ]; then export PATH="$CUDA_HOME/bin:$PATH"; fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${RESHARD_CMAKE_ARGS:-}
cmake --build build -j "$(nproc)"
