#pragma once
// Helpers shared by the CUDA translation units: error checks, launch geometry, the index
// type choice and vector types.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <limits>

#include "reshard/detail/box_walk.hpp"

namespace reshard::cuda_detail {

// Throws reshard::Error naming `what` and the CUDA error.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* what);

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw_cuda_error(err, what);
}
// After a launch: a bad configuration shows up here, not as a return value.
inline void check_launch(const char* what) { check_cuda(cudaGetLastError(), what); }

inline constexpr int kBlockThreads = 256;

// Blocks for a grid-stride loop over `work` items: enough to fill every SM with resident
// threads (more only adds scheduling overhead), fewer when there is less work.
int grid_blocks(std::int64_t work);

// 32-bit index arithmetic (much cheaper divisions on a GPU) is safe when every index the
// kernel forms, including the grid-stride overshoot of the last iteration, stays below 2^31.
inline bool fits_32bit(const detail::BoxWalk& w) {
  std::int64_t s = 0, d = 0;
  detail::walk_max_offsets(w, s, d);
  const std::int64_t limit = std::int64_t{1} << 31;
  return w.volume < limit && s < limit && d < limit;
}

// V elements of S moved as one aligned vector (16 bytes when V > 1).
template <typename S, int V>
struct alignas(sizeof(S) * V) Vec {
  S x[V];
};

}  // namespace reshard::cuda_detail
