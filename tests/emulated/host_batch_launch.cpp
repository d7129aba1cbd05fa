// A host stand-in for the batched copy kernel's launcher (cuda_kernels/box_batch.cu): replays the
// kernel's grid (tests/batch_replay.hpp) on the table cuda_kernels/copy_batch.cpp uploaded, so the
// executor's device path runs its real batches in CI. Checks what the GPU would fault on: a unit address
// that is not a multiple of its width, and a table whose tile count disagrees.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../batch_replay.hpp"
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
void replay(const BatchArrays& a, const std::int64_t* first_tile, const detail::BatchBox* boxes, int n) {
  constexpr std::int64_t kBlocks = 7;  // any grid covers every tile once (batch_block_tiles)
  test::replay_batch_grid<I>(first_tile, boxes, n, kBlocks,
                             [&](std::int64_t, int, const detail::BatchBox& box, I from, I to) {
                               const unsigned char* s = a.src[box.src] + box.src_byte;
                               unsigned char* d = a.dst[box.dst] + box.dst_byte;
                               if (reinterpret_cast<std::uintptr_t>(s) % box.unit ||
                                   reinterpret_cast<std::uintptr_t>(d) % box.unit)
                                 throw Error("batched copy: a misaligned unit (the GPU would fault)");
                               std::memcpy(d + static_cast<std::size_t>(to) * box.unit,
                                           s + static_cast<std::size_t>(from) * box.unit,
                                           static_cast<std::size_t>(box.unit));
                             });
}

}  // namespace

void launch_copy_batch(const BatchArrays& arrays, const std::int64_t* first_tile, const detail::BatchBox* boxes,
                       int n, std::int64_t tiles, bool index32, void*) {
  if (n == 0 || tiles == 0) return;
  if (first_tile[0] != 0 || first_tile[n] != tiles) throw Error("batched copy: the table's tiles disagree");
  ++launches;
  if (index32) replay<std::uint32_t>(arrays, first_tile, boxes, n);
  else replay<std::uint64_t>(arrays, first_tile, boxes, n);
}

}  // namespace reshard::cuda_detail
