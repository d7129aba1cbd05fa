// A host stand-in for the batched copy kernel's launcher (kernels/box_batch.cu): replays the
// kernel's grid (blocks' tile runs, each tile's box, every lane's units) with the same
// box_batch.hpp functions on the table kernels/copy_batch.cpp uploaded, so the executor's
// device path runs its real batches in CI. Checks what the GPU would fault on: a unit address
// that is not a multiple of its width, and a table whose tile count disagrees.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "launch.hpp"
#include "reshard/error.hpp"

namespace reshard::cuda_detail {

namespace {
long launches = 0;
// RESHARD_EMULATED_REPORT=1: how many batched launches the process made, at exit.
struct Report {
  ~Report() {
    if (std::getenv("RESHARD_EMULATED_REPORT")) std::fprintf(stderr, "batched copy launches: %ld\n", launches);
  }
} report;

template <typename I>
void replay(const BatchArrays& a, const std::int64_t* first_tile, const detail::BatchBox* boxes, int n,
            std::int64_t tiles) {
  constexpr std::int64_t kBlocks = 7;  // any grid covers every tile once (batch_block_tiles)
  for (std::int64_t block = 0; block < kBlocks; ++block) {
    std::int64_t first = 0, end = 0;
    detail::batch_block_tiles(tiles, kBlocks, block, first, end);
    for (std::int64_t t = first; t < end; ++t) {
      const int b = detail::batch_box_of(first_tile, n, t);
      detail::BatchBox box;
      std::memcpy(&box, boxes + b, sizeof box);
      const unsigned char* s = a.src[box.src] + box.src_byte;
      unsigned char* d = a.dst[box.dst] + box.dst_byte;
      if (reinterpret_cast<std::uintptr_t>(s) % box.unit || reinterpret_cast<std::uintptr_t>(d) % box.unit)
        throw Error("batched copy: a misaligned unit (the GPU would fault)");
      const auto base = static_cast<I>((t - first_tile[b]) * detail::kBatchTileUnits);
      for (int lane = 0; lane < detail::kBatchThreads; ++lane)
        for (int k = 0; k < detail::kBatchIlp; ++k) {
          I from, to;
          if (detail::batch_tile_unit(box.walk, base, lane, k, from, to))
            std::memcpy(d + static_cast<std::size_t>(to) * box.unit, s + static_cast<std::size_t>(from) * box.unit,
                        static_cast<std::size_t>(box.unit));
        }
    }
  }
}

}  // namespace

void launch_copy_batch(const BatchArrays& arrays, const std::int64_t* first_tile, const detail::BatchBox* boxes,
                       int n, std::int64_t tiles, bool index32, void*) {
  if (n == 0 || tiles == 0) return;
  if (first_tile[0] != 0 || first_tile[n] != tiles) throw Error("batched copy: the table's tiles disagree");
  ++launches;
  if (index32) replay<std::uint32_t>(arrays, first_tile, boxes, n, tiles);
  else replay<std::uint64_t>(arrays, first_tile, boxes, n, tiles);
}

}  // namespace reshard::cuda_detail
