// Batched box copy (reshard/detail/box_batch.hpp): every box of one side of a step in one
// launch. Blocks take contiguous runs of tiles; the tile's box is found by a binary search
// (the same answer for every thread of the block) and its table entry is staged in shared
// memory once per change of box, so the index arithmetic reads shared memory only.
#include <cstdint>

#include "cuda_common.cuh"
#include "launch.hpp"
#include "reshard/detail/box_batch.hpp"

namespace reshard::cuda_detail {
namespace {

using detail::BatchBox;
using detail::kBatchIlp;
using detail::kBatchThreads;
using detail::kBatchTileUnits;
static_assert(kBatchThreads == kBlockThreads, "grid_blocks sizes the grid for kBlockThreads");

// One tile of a box: kBatchIlp units per thread, all loads before any store.
template <typename Unit, typename I>
__device__ void copy_tile(const BatchArrays& a, const BatchBox& box, I first) {
  const auto* s = reinterpret_cast<const Unit*>(a.src[box.src] + box.src_byte);
  auto* d = reinterpret_cast<Unit*>(a.dst[box.dst] + box.dst_byte);
  Unit v[kBatchIlp];
  I to[kBatchIlp];
  bool live[kBatchIlp];
#pragma unroll
  for (int k = 0; k < kBatchIlp; ++k) {
    I from;
    live[k] = detail::batch_tile_unit(box.walk, first, static_cast<int>(threadIdx.x), k, from, to[k]);
    if (live[k]) v[k] = s[from];
  }
#pragma unroll
  for (int k = 0; k < kBatchIlp; ++k)
    if (live[k]) d[to[k]] = v[k];
}

template <typename I>
__global__ void __launch_bounds__(kBatchThreads)
    copy_batch(const __grid_constant__ BatchArrays a, const std::int64_t* __restrict__ first_tile,
               const BatchBox* __restrict__ boxes, int n, std::int64_t tiles) {
  // Raw storage: a __shared__ variable cannot have BatchBox's member initializers.
  __shared__ alignas(BatchBox) unsigned char storage[sizeof(BatchBox)];
  BatchBox& box = *reinterpret_cast<BatchBox*>(storage);
  static_assert(sizeof(BatchBox) % sizeof(std::uint32_t) == 0, "staged as 32-bit words");
  constexpr int kWords = sizeof(BatchBox) / sizeof(std::uint32_t);
  int current = -1;
  std::int64_t first_tile_of_block = 0, end = 0;
  detail::batch_block_tiles(tiles, gridDim.x, blockIdx.x, first_tile_of_block, end);
  for (std::int64_t t = first_tile_of_block; t < end; ++t) {
    const int b = detail::batch_box_of(first_tile, n, t);  // uniform across the block
    if (b != current) {
      __syncthreads();  // everyone is done with the previous box
      const auto* from = reinterpret_cast<const std::uint32_t*>(boxes + b);
      auto* to = reinterpret_cast<std::uint32_t*>(&box);
      for (int i = threadIdx.x; i < kWords; i += blockDim.x) to[i] = from[i];
      __syncthreads();
      current = b;
    }
    const I first = static_cast<I>((t - first_tile[b]) * kBatchTileUnits);
    switch (box.unit) {
      case 16: copy_tile<uint4, I>(a, box, first); break;
      case 8: copy_tile<uint2, I>(a, box, first); break;
      case 4: copy_tile<std::uint32_t, I>(a, box, first); break;
      case 2: copy_tile<std::uint16_t, I>(a, box, first); break;
      default: copy_tile<std::uint8_t, I>(a, box, first); break;
    }
  }
}

}  // namespace

void launch_copy_batch(const BatchArrays& arrays, const std::int64_t* first_tile,
                       const detail::BatchBox* boxes, int n, std::int64_t tiles, bool index32,
                       void* stream) {
  if (n == 0 || tiles == 0) return;
  const int blocks = grid_blocks(tiles * kBatchThreads);
  auto* st = static_cast<cudaStream_t>(stream);
  if (index32)
    copy_batch<std::uint32_t><<<blocks, kBatchThreads, 0, st>>>(arrays, first_tile, boxes, n, tiles);
  else
    copy_batch<std::uint64_t><<<blocks, kBatchThreads, 0, st>>>(arrays, first_tile, boxes, n, tiles);
  check_launch("device copy batch");
}

}  // namespace reshard::cuda_detail
