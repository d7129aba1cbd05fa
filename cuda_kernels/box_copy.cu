// Strided box copy (pack/unpack/slice) on device memory: one launch, a grid-stride loop over
// the units of the box. The unit is the widest of 16/8/4/2/1 bytes that the alignment of both
// arrays, the row length and the row strides allow, so the usual case (rows of a column
// block, whole rows) moves 16-byte vectors.
#include <cstdint>

#include "cuda_common.cuh"
#include "launch.hpp"

namespace reshard::cuda_detail {
namespace {

using detail::BoxWalk;

// Loads are issued kIlp at a time before any store, so that each thread keeps several
// memory requests in flight (what hides DRAM latency in a copy).
constexpr int kIlp = 4;

template <typename Unit, typename I>
__global__ void __launch_bounds__(kBlockThreads)
    copy_units(const Unit* __restrict__ src, Unit* __restrict__ dst,
               const __grid_constant__ BoxWalk w, I total) {
  const I stride = static_cast<I>(blockDim.x) * gridDim.x;
  for (I u = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; u < total;
       u += kIlp * stride) {
    Unit v[kIlp];
    I to[kIlp];
#pragma unroll
    for (int k = 0; k < kIlp; ++k) {
      const I uk = u + k * stride;
      if (uk < total) {
        I from;
        detail::walk_offsets(w, uk, from, to[k]);
        v[k] = src[from];
      }
    }
#pragma unroll
    for (int k = 0; k < kIlp; ++k)
      if (u + k * stride < total) dst[to[k]] = v[k];
  }
}

template <typename Unit>
void launch_units(const void* src, void* dst, const BoxWalk& w, cudaStream_t stream) {
  const int blocks = grid_blocks(w.volume);
  const auto* s = static_cast<const Unit*>(src);
  auto* d = static_cast<Unit*>(dst);
  if (fits_32bit(w))
    copy_units<Unit, std::uint32_t>
        <<<blocks, kBlockThreads, 0, stream>>>(s, d, w, static_cast<std::uint32_t>(w.volume));
  else
    copy_units<Unit, std::uint64_t>
        <<<blocks, kBlockThreads, 0, stream>>>(s, d, w, static_cast<std::uint64_t>(w.volume));
  check_launch("device_copy_box");
}

}  // namespace

void launch_copy(const void* src, void* dst, const BoxWalk& walk, std::size_t elem_size,
                 void* stream) {
  if (walk.volume == 0) return;
  // Fold the bases into the pointers: alignment is a property of the actual addresses.
  BoxWalk w = walk;
  const auto* s = static_cast<const unsigned char*>(src) + w.src_base * elem_size;
  auto* d = static_cast<unsigned char*>(dst) + w.dst_base * elem_size;
  w.src_base = w.dst_base = 0;
  const std::size_t unit = detail::widest_unit(w, elem_size, reinterpret_cast<std::uintptr_t>(s),
                                               reinterpret_cast<std::uintptr_t>(d));
  detail::rescale_walk(w, elem_size, unit);
  auto* st = static_cast<cudaStream_t>(stream);
  switch (unit) {
    case 16: launch_units<uint4>(s, d, w, st); break;
    case 8: launch_units<uint2>(s, d, w, st); break;
    case 4: launch_units<std::uint32_t>(s, d, w, st); break;
    case 2: launch_units<std::uint16_t>(s, d, w, st); break;
    default: launch_units<std::uint8_t>(s, d, w, st); break;
  }
}

}  // namespace reshard::cuda_detail
