#pragma once
// The batched copy kernel's grid (cuda_kernels/box_batch.cu) replayed on the host: each block's run
// of tiles, each tile's box, each lane's units, through the same box_batch.hpp functions. Used
// by the CPU test of the tile arithmetic (test_host_kernels.cpp) and by the host stand-in launcher
// (emulated/host_batch_launch.cpp).
#include <cstdint>

#include "reshard/detail/box_batch.hpp"

namespace reshard::test {

// Calls unit(tile, b, box, from, to) for every unit of the batch table (first_tile: n + 1
// entries; boxes: n) as a grid of `blocks` blocks would move it, in units of box.unit bytes
// from the box's starts. Returns the number of tiles the blocks took (first_tile[n] when the
// runs cover every tile once).
template <typename I, typename F>
std::int64_t replay_batch_grid(const std::int64_t* first_tile, const detail::BatchBox* boxes, int n,
                               std::int64_t blocks, F&& unit) {
  std::int64_t covered = 0;
  for (std::int64_t block = 0; block < blocks; ++block) {
    std::int64_t first = 0, end = 0;
    detail::batch_block_tiles(first_tile[n], blocks, block, first, end);
    covered += end > first ? end - first : 0;
    for (std::int64_t tile = first; tile < end; ++tile) {
      const int b = detail::batch_box_of(first_tile, n, tile);
      const detail::BatchBox& box = boxes[b];
      const auto base = static_cast<I>((tile - first_tile[b]) * detail::kBatchTileUnits);
      for (int lane = 0; lane < detail::kBatchThreads; ++lane)
        for (int k = 0; k < detail::kBatchIlp; ++k) {
          I from, to;
          if (detail::batch_tile_unit(box.walk, base, lane, k, from, to)) unit(tile, b, box, from, to);
        }
    }
  }
  return covered;
}

}  // namespace reshard::test
