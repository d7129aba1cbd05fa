#pragma once
// Box walks: the index arithmetic shared by the host kernels (src/kernels) and the CUDA
// kernels (cuda_kernels/). C++17, header-only and free of other reshard headers so that nvcc
// translation units can include it; functions marked RESHARD_HD run on host and device.
//
// A box copy between two dense row-major arrays is reduced to a BoxWalk: a few nested loops,
// outermost first, whose last loop is a run that is contiguous (stride 1) in both arrays.
// Dims of extent 1 are folded into the base offsets, and neighbouring dims that are laid out
// back to back in both arrays are merged, so the typical "rows of a column block" box becomes
// a two-level walk and a box that is contiguous in both arrays becomes a single run.
#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#define RESHARD_HD __host__ __device__
#else
#define RESHARD_HD
#endif

namespace reshard::detail {

// Capacity of a walk after collapsing. Boxes of higher rank are fine as long as collapsing
// brings them under it (dims of extent 1 and fully covered dims cost nothing).
inline constexpr int kMaxWalkRank = 16;

struct BoxWalk {
  int rank = 0;  // 0 only for an empty box (volume 0)
  std::int64_t extent[kMaxWalkRank] = {};      // outermost first; extent[rank-1] is the run
  std::int64_t src_stride[kMaxWalkRank] = {};  // in elements; [rank-1] is always 1
  std::int64_t dst_stride[kMaxWalkRank] = {};
  std::int64_t src_base = 0, dst_base = 0;  // offset of the box's first element
  std::int64_t volume = 0;                  // elements in the box

  RESHARD_HD std::int64_t run() const { return extent[rank - 1]; }
  RESHARD_HD std::int64_t rows() const { return volume / extent[rank - 1]; }
};

// Builds the walk of the box `extent` at `src_off` in `src_shape` and `dst_off` in
// `dst_shape` (all of length `rank`; rank 0 is one element). Returns nullptr on success, or a
// message naming the violated precondition (the walk is then unusable).
inline const char* make_box_walk(int rank, const std::int64_t* src_shape,
                                 const std::int64_t* src_off, const std::int64_t* dst_shape,
                                 const std::int64_t* dst_off, const std::int64_t* extent,
                                 BoxWalk& w) {
  w = BoxWalk{};
  std::int64_t volume = 1;
  for (int d = 0; d < rank; ++d) {
    if (extent[d] < 0) return "box extent is negative";
    if (src_shape[d] < 0 || dst_shape[d] < 0) return "array shape is negative";
    if (src_off[d] < 0 || src_off[d] > src_shape[d] - extent[d])
      return "box does not fit in the source array";
    if (dst_off[d] < 0 || dst_off[d] > dst_shape[d] - extent[d])
      return "box does not fit in the destination array";
    volume *= extent[d];
  }
  if (volume == 0) return nullptr;  // nothing to walk: rank stays 0
  w.volume = volume;

  // Collect loops innermost first into the arrays, then reverse at the end.
  int n = 0;
  std::int64_t ss = 1, ds = 1;  // row-major strides of dim d in each array
  for (int d = rank - 1; d >= 0; --d) {
    w.src_base += src_off[d] * ss;
    w.dst_base += dst_off[d] * ds;
    if (extent[d] != 1) {
      const bool merges = n > 0 && w.extent[n - 1] * w.src_stride[n - 1] == ss &&
                          w.extent[n - 1] * w.dst_stride[n - 1] == ds;
      if (merges) {
        w.extent[n - 1] *= extent[d];
      } else {
        if (n == kMaxWalkRank - 1) return "box has too many non-mergeable dims";
        w.extent[n] = extent[d];
        w.src_stride[n] = ss;
        w.dst_stride[n] = ds;
        ++n;
      }
    }
    ss *= src_shape[d];
    ds *= dst_shape[d];
  }
  // The innermost loop must be a stride-1 run; when the innermost non-trivial dim is
  // strided (its inner dims all had extent 1) the run is a single element.
  if (n == 0 || w.src_stride[0] != 1 || w.dst_stride[0] != 1) {
    for (int k = n; k > 0; --k) {
      w.extent[k] = w.extent[k - 1];
      w.src_stride[k] = w.src_stride[k - 1];
      w.dst_stride[k] = w.dst_stride[k - 1];
    }
    w.extent[0] = w.src_stride[0] = w.dst_stride[0] = 1;
    ++n;
  }
  for (int a = 0, b = n - 1; a < b; ++a, --b) {
    auto swap = [](std::int64_t& x, std::int64_t& y) {
      const std::int64_t t = x;
      x = y;
      y = t;
    };
    swap(w.extent[a], w.extent[b]);
    swap(w.src_stride[a], w.src_stride[b]);
    swap(w.dst_stride[a], w.dst_stride[b]);
  }
  w.rank = n;
  return nullptr;
}

// Largest offset (in elements, base included) the walk touches in each array.
inline void walk_max_offsets(const BoxWalk& w, std::int64_t& src_max, std::int64_t& dst_max) {
  src_max = w.src_base;
  dst_max = w.dst_base;
  for (int k = 0; k < w.rank; ++k) {
    src_max += (w.extent[k] - 1) * w.src_stride[k];
    dst_max += (w.extent[k] - 1) * w.dst_stride[k];
  }
}

// Re-expresses a walk over elements of `elem_size` bytes as a walk over units of `unit`
// bytes. Pre: the bases are 0 (fold them into the pointers first) and every byte stride and
// the run's byte length are multiples of `unit` (see walk_unit_fits).
inline void rescale_walk(BoxWalk& w, std::size_t elem_size, std::size_t unit) {
  const auto es = static_cast<std::int64_t>(elem_size), u = static_cast<std::int64_t>(unit);
  for (int k = 0; k < w.rank - 1; ++k) {
    w.src_stride[k] = w.src_stride[k] * es / u;
    w.dst_stride[k] = w.dst_stride[k] * es / u;
  }
  w.extent[w.rank - 1] = w.extent[w.rank - 1] * es / u;
  w.volume = w.volume * es / u;
}

// Whether the walk (bases 0, starting at byte addresses src_addr / dst_addr) can move whole
// `unit`-byte units: both starts aligned, the run and every outer stride a multiple of it.
inline bool walk_unit_fits(const BoxWalk& w, std::size_t elem_size, std::uintptr_t src_addr,
                           std::uintptr_t dst_addr, std::size_t unit) {
  const auto es = static_cast<std::int64_t>(elem_size), u = static_cast<std::int64_t>(unit);
  if (src_addr % unit != 0 || dst_addr % unit != 0) return false;
  if (w.extent[w.rank - 1] * es % u != 0) return false;
  for (int k = 0; k < w.rank - 1; ++k)
    if (w.src_stride[k] * es % u != 0 || w.dst_stride[k] * es % u != 0) return false;
  return true;
}

// The widest unit (16, 8, 4, 2 or 1 bytes) in which the walk `w` (elements of `elem_size`
// bytes, bases included) moves between arrays at `src_addr` and `dst_addr`.
inline std::size_t widest_unit(const BoxWalk& w, std::size_t elem_size, std::uintptr_t src_addr,
                               std::uintptr_t dst_addr) {
  const std::uintptr_t s = src_addr + static_cast<std::uintptr_t>(w.src_base) * elem_size;
  const std::uintptr_t d = dst_addr + static_cast<std::uintptr_t>(w.dst_base) * elem_size;
  std::size_t unit = 16;
  while (unit > 1 && !walk_unit_fits(w, elem_size, s, d, unit)) unit /= 2;
  return unit;
}

// Offsets (base included) of the u-th element of the walk, elements numbered row-major over
// the box. I is the index type (32-bit where the caller has checked that everything fits,
// which makes the divisions much cheaper on a GPU). Pre: 0 <= u < w.volume.
template <typename I>
RESHARD_HD inline void walk_offsets(const BoxWalk& w, I u, I& s, I& d) {
  if (w.rank == 1) {  // contiguous in both arrays: no division at all
    s = static_cast<I>(w.src_base) + u;
    d = static_cast<I>(w.dst_base) + u;
    return;
  }
  const I run = static_cast<I>(w.extent[w.rank - 1]);
  I row = u / run;
  const I col = u - row * run;
  s = static_cast<I>(w.src_base) + col;
  d = static_cast<I>(w.dst_base) + col;
  for (int k = w.rank - 2; k > 0; --k) {
    const I e = static_cast<I>(w.extent[k]);
    const I q = row / e;
    const I idx = row - q * e;
    row = q;
    s += idx * static_cast<I>(w.src_stride[k]);
    d += idx * static_cast<I>(w.dst_stride[k]);
  }
  // The outermost loop needs no division: what is left of `row` is its index.
  s += row * static_cast<I>(w.src_stride[0]);
  d += row * static_cast<I>(w.dst_stride[0]);
}

}  // namespace reshard::detail
