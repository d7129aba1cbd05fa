#pragma once
// Batched box copies: the boxes of one side of a step (every peer's pack, or every peer's
// unpack, plus the box a device keeps) moved by a single kernel launch. C++17, header-only,
// free of other reshard headers like box_walk.hpp; the tile arithmetic is RESHARD_HD so that
// the CUDA kernel (cuda_kernels/box_batch.cu) and the host test that emulates its grid
// (tests/test_host_kernels.cpp) run the same code.
//
// Each box is a BoxWalk over units of its own width, the widest of 16/8/4/2/1 bytes that its
// start addresses, row length and strides allow, so one misaligned box does not narrow the
// others. The units of box b fill tiles [first_tile[b], first_tile[b+1]) of kBatchTileUnits
// units; a thread block takes one tile at a time, so a tile never spans two boxes, the box is
// looked up once per tile (a binary search over first_tile) and loads stay coalesced.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "reshard/detail/box_walk.hpp"

namespace reshard::detail {

inline constexpr int kBatchThreads = 256;  // threads per block of the batched kernel
inline constexpr int kBatchIlp = 4;        // units per thread per tile, loaded before storing
inline constexpr std::int64_t kBatchTileUnits = std::int64_t{kBatchThreads} * kBatchIlp;
inline constexpr int kMaxBatchArrays = 4;  // source arrays, and destination arrays, per batch

// One box of a batch as the kernel sees it. Invariant: walk.volume > 0, walk bases are 0 and
// the walk counts units of `unit` bytes starting `src_byte` / `dst_byte` bytes into arrays
// `src` / `dst` of the batch; those start addresses are multiples of `unit`.
struct BatchBox {
  BoxWalk walk;
  std::int64_t src_byte = 0, dst_byte = 0;
  std::int32_t src = 0, dst = 0;
  std::int32_t unit = 1;
};

// A box of the batch as the caller gives it: a walk in elements, bases included, between
// array `src` and array `dst`.
struct BatchInput {
  BoxWalk walk;
  int src = 0, dst = 0;
};

// The kernel's table for a batch, for arrays at the given addresses (only their alignment
// matters: the table holds byte offsets, never addresses). Boxes with no elements are left
// out. Pre: every input's src/dst index is below kMaxBatchArrays.
struct BatchTable {
  std::vector<BatchBox> boxes;
  std::vector<std::int64_t> first_tile;  // boxes.size() + 1 entries; the last is the tile count
  bool index32 = true;                   // every in-box unit offset fits 32-bit arithmetic

  std::int64_t tiles() const { return first_tile.empty() ? 0 : first_tile.back(); }
};

inline BatchTable make_batch_table(const BatchInput* in, int n, std::size_t elem_size,
                                   const std::uintptr_t* src_addr,
                                   const std::uintptr_t* dst_addr) {
  BatchTable t;
  t.first_tile.push_back(0);
  const std::int64_t limit = std::int64_t{1} << 31;
  for (int b = 0; b < n; ++b) {
    if (in[b].walk.volume == 0) continue;
    BatchBox box;
    box.walk = in[b].walk;
    box.src = in[b].src;
    box.dst = in[b].dst;
    const std::size_t unit =
        widest_unit(box.walk, elem_size, src_addr[box.src], dst_addr[box.dst]);
    box.unit = static_cast<std::int32_t>(unit);
    box.src_byte = box.walk.src_base * static_cast<std::int64_t>(elem_size);
    box.dst_byte = box.walk.dst_base * static_cast<std::int64_t>(elem_size);
    box.walk.src_base = box.walk.dst_base = 0;
    rescale_walk(box.walk, elem_size, unit);
    std::int64_t smax = 0, dmax = 0;
    walk_max_offsets(box.walk, smax, dmax);
    const std::int64_t tiles = (box.walk.volume + kBatchTileUnits - 1) / kBatchTileUnits;
    // The last tile's threads form indices up to tiles * kBatchTileUnits before the bound check.
    if (tiles * kBatchTileUnits >= limit || smax >= limit || dmax >= limit) t.index32 = false;
    t.boxes.push_back(box);
    t.first_tile.push_back(t.first_tile.back() + tiles);
  }
  return t;
}

// The tiles [first, end) that block `block` of a grid of `blocks` takes: a contiguous run, so
// that a block changes box (and restages its entry) rarely. The runs cover [0, tiles) once.
RESHARD_HD inline void batch_block_tiles(std::int64_t tiles, std::int64_t blocks, std::int64_t block,
                                         std::int64_t& first, std::int64_t& end) {
  const std::int64_t per_block = (tiles + blocks - 1) / blocks;
  first = block * per_block;
  end = first + per_block < tiles ? first + per_block : tiles;
}

// The box that tile `tile` belongs to: the last b with first_tile[b] <= tile.
// Pre: 0 <= tile < first_tile[n], n >= 1.
RESHARD_HD inline int batch_box_of(const std::int64_t* first_tile, int n, std::int64_t tile) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (first_tile[mid] <= tile) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// Unit k of thread `lane` in the tile whose first unit (within its box) is `first`: its
// offsets in the box's source and destination, in units from the box's start. False past
// the end of the box.
template <typename I>
RESHARD_HD inline bool batch_tile_unit(const BoxWalk& w, I first, int lane, int k, I& from,
                                       I& to) {
  const I u = first + static_cast<I>(lane) + static_cast<I>(k) * static_cast<I>(kBatchThreads);
  if (u >= static_cast<I>(w.volume)) return false;
  walk_offsets(w, u, from, to);
  return true;
}

}  // namespace reshard::detail
