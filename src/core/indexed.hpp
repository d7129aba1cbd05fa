#pragma once
// Index-based views of a Type on a Mesh, for the hot loops of routing and validity checks
// (names resolved once, blocks computed from device coordinates without string lookups).
#include <cstdint>
#include <vector>

#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace reshard::detail {

struct IndexedDim {
  std::int64_t n = 0;
  std::int64_t k = 1;          // number of blocks
  std::vector<int> axes;       // mesh axis indices, major first
};

struct IndexedType {
  std::vector<IndexedDim> dims;
  std::vector<int> reduce_axes;
  std::uint64_t dim_mask = 0;     // axes used by some dim
  std::uint64_t reduce_mask = 0;  // axes of the reduce clause

  IndexedType(const Type& t, const Mesh& m) {
    for (const Dim& d : t.dims) {
      IndexedDim id{d.size, 1, {}};
      for (const auto& a : d.axes) {
        int ai = m.axis_index(a);
        id.axes.push_back(ai);
        id.k *= m.axes()[ai].size;
        dim_mask |= 1ull << ai;
      }
      dims.push_back(std::move(id));
    }
    for (const auto& a : t.reduce_axes) {
      int ai = m.axis_index(a);
      reduce_axes.push_back(ai);
      reduce_mask |= 1ull << ai;
    }
  }

  // Block index along dim d for a device given by its coordinates.
  std::int64_t block_index(int d, const std::vector<int>& coords, const Mesh& m) const {
    std::int64_t b = 0;
    for (int a : dims[d].axes) b = b * m.axes()[a].size + coords[a];
    return b;
  }
  Interval interval(int d, const std::vector<int>& coords, const Mesh& m) const {
    return ceil_block(dims[d].n, dims[d].k, block_index(d, coords, m));
  }
  Box block(const std::vector<int>& coords, const Mesh& m) const {
    Box b;
    b.dims.resize(dims.size());
    for (std::size_t d = 0; d < dims.size(); ++d) b.dims[d] = interval(static_cast<int>(d), coords, m);
    return b;
  }
};

inline std::vector<int> coords_of(const Mesh& m, int device) {
  std::vector<int> c(m.num_axes());
  for (int a = 0; a < m.num_axes(); ++a) c[a] = m.coord(device, a);
  return c;
}

inline int device_of(const Mesh& m, const std::vector<int>& c) {
  int d = 0;
  for (int a = 0; a < m.num_axes(); ++a) d += c[a] * m.stride(a);
  return d;
}

// Advances coordinates over the listed axes as a mixed-radix counter (last axis fastest).
// Returns false when it wraps around.
inline bool next_coords(std::vector<int>& c, const std::vector<int>& axes, const Mesh& m) {
  for (int i = static_cast<int>(axes.size()) - 1; i >= 0; --i) {
    int a = axes[i];
    if (++c[a] < m.axes()[a].size) return true;
    c[a] = 0;
  }
  return false;
}

inline std::vector<int> axis_indices(const Mesh& m, const std::vector<std::string>& names) {
  std::vector<int> r;
  for (const auto& n : names) r.push_back(m.axis_index(n));
  return r;
}

}  // namespace reshard::detail
