#pragma once
// Distributed array types (docs/design.md 2): `f32[1024{x}, 4096{y,z}] sum{w}`.
//
// Invariants of a valid Type on a Mesh (checked by validate()/parse()):
//  - every axis named is an axis of the mesh, and appears at most once across all dims and
//    the reduce clause;
//  - dims have size >= 0 (0 only when written so by the API; the parser demands >= 1);
//  - reduce_axes is non-empty iff op != ReduceOp::none.
// Blocks use ceil semantics: a dim of size N split K ways has blocks of B = ceil(N/K);
// block b covers [min(N, b*B), min(N, (b+1)*B)).
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "reshard/dtype.hpp"
#include "reshard/mesh.hpp"

namespace reshard {

enum class ReduceOp { none, sum, max, min, prod };
std::string_view name_of(ReduceOp op);

struct Dim {
  std::int64_t size = 0;
  std::vector<std::string> axes;  // major to minor
  bool operator==(const Dim&) const = default;
};

// A half-open interval [lo, hi) of global indices along one dim.
struct Interval {
  std::int64_t lo = 0, hi = 0;
  std::int64_t extent() const { return hi > lo ? hi - lo : 0; }
  bool operator==(const Interval&) const = default;
};

// A box of global indices: one interval per dim. Rank 0 boxes hold one element.
struct Box {
  std::vector<Interval> dims;
  std::int64_t volume() const;
  bool empty() const { return volume() == 0; }
  bool contains(const Box& o) const;  // pre: same rank; an empty o is contained
  bool operator==(const Box&) const = default;
};
Box intersect(const Box& a, const Box& b);
// Extents of a box, and its corner relative to an enclosing block: what the box kernels take.
std::vector<std::int64_t> extents(const Box& b);
std::vector<std::int64_t> offset_in(const Box& box, const Box& block);

struct Type {
  DType dtype = DType::f32;
  std::vector<Dim> dims;
  ReduceOp op = ReduceOp::none;
  std::vector<std::string> reduce_axes;

  // Parses and validates against `mesh`; throws ParseError (with position) on bad input.
  static Type parse(std::string_view text, const Mesh& mesh);
  // Throws Error naming the problem if the type does not fit `mesh`.
  void validate(const Mesh& mesh) const;

  int rank() const { return static_cast<int>(dims.size()); }
  std::vector<std::int64_t> global_shape() const;
  std::int64_t global_elements() const;
  bool uses(std::string_view axis) const;        // in a dim or the reduce clause
  int dim_of(std::string_view axis) const;       // dim holding the axis, or -1
  bool is_partial_over(std::string_view axis) const;
  // Number of blocks along dim d (product of its axes' sizes).
  std::int64_t num_blocks(const Mesh& mesh, int d) const;
  // Block index of `device` along dim d (mixed radix over the dim's axes, major first).
  std::int64_t block_index(const Mesh& mesh, int d, int device) const;
  Interval block_interval(const Mesh& mesh, int d, std::int64_t block) const;
  // The global box `device` holds (its local array is this box, dense and row-major).
  Box block(const Mesh& mesh, int device) const;
  std::vector<std::int64_t> local_shape(const Mesh& mesh, int device) const;
  std::int64_t local_elements(const Mesh& mesh, int device) const;
  std::int64_t local_bytes(const Mesh& mesh, int device) const;
  // Largest local array over all devices (block 0 along each dim is a largest one).
  std::int64_t max_local_bytes(const Mesh& mesh) const;

  std::string to_string() const;
  bool operator==(const Type&) const = default;
};

// Ceil-block interval of block b of a dim of size n split k ways.
Interval ceil_block(std::int64_t n, std::int64_t k, std::int64_t b);

inline std::ostream& operator<<(std::ostream& os, const Type& v) { return os << v.to_string(); }

}  // namespace reshard

template <>
struct fmt::formatter<reshard::Type> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const reshard::Type& t, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(t.to_string(), ctx);
  }
};
template <>
struct fmt::formatter<reshard::ReduceOp> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(reshard::ReduceOp op, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(reshard::name_of(op), ctx);
  }
};
template <>
struct fmt::formatter<reshard::Box> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const reshard::Box& b, Ctx& ctx) const {
    std::string s = "[";
    for (std::size_t i = 0; i < b.dims.size(); ++i)
      s += fmt::format("{}{}:{}", i ? "," : "", b.dims[i].lo, b.dims[i].hi);
    return fmt::formatter<std::string>::format(s + "]", ctx);
  }
};
