#pragma once
// The bridge from the C++20 API types (spans, Type, Mesh, DType, ReduceOp) to the C++17 kernel
// vocabulary of box_walk.hpp and elementwise.hpp, shared by the host kernels and the host side
// of the CUDA kernels: enum codes, the walk of a box given as spans, and what the index fill
// and check need to know about a device's block.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "reshard/detail/box_walk.hpp"
#include "reshard/detail/elementwise.hpp"
#include "reshard/dtype.hpp"
#include "reshard/error.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace reshard::detail {

// The C++17 codes of elementwise.hpp mirror the API enums one to one.
static_assert(static_cast<int>(ReduceOp::none) == static_cast<int>(OpCode::none) &&
              static_cast<int>(ReduceOp::sum) == static_cast<int>(OpCode::sum) &&
              static_cast<int>(ReduceOp::max) == static_cast<int>(OpCode::max) &&
              static_cast<int>(ReduceOp::min) == static_cast<int>(OpCode::min) &&
              static_cast<int>(ReduceOp::prod) == static_cast<int>(OpCode::prod));
static_assert(static_cast<int>(DType::f64) == static_cast<int>(ElemCode::f64) &&
              static_cast<int>(DType::f32) == static_cast<int>(ElemCode::f32) &&
              static_cast<int>(DType::f16) == static_cast<int>(ElemCode::f16) &&
              static_cast<int>(DType::bf16) == static_cast<int>(ElemCode::bf16) &&
              static_cast<int>(DType::i64) == static_cast<int>(ElemCode::i64) &&
              static_cast<int>(DType::i32) == static_cast<int>(ElemCode::i32) &&
              static_cast<int>(DType::i16) == static_cast<int>(ElemCode::i16) &&
              static_cast<int>(DType::i8) == static_cast<int>(ElemCode::i8) &&
              static_cast<int>(DType::u8) == static_cast<int>(ElemCode::u8));
inline OpCode code(ReduceOp op) { return static_cast<OpCode>(op); }
inline ElemCode code(DType t) { return static_cast<ElemCode>(t); }

// The walk of a box kernel's arguments (see copy_box); throws Error on a bad box.
inline BoxWalk walk_of_box(std::span<const std::int64_t> src_shape,
                           std::span<const std::int64_t> src_offset,
                           std::span<const std::int64_t> dst_shape,
                           std::span<const std::int64_t> dst_offset,
                           std::span<const std::int64_t> extent) {
  const std::size_t rank = extent.size();
  if (src_shape.size() != rank || src_offset.size() != rank || dst_shape.size() != rank ||
      dst_offset.size() != rank)
    throw Error("box kernel: shapes, offsets and extent must all have the array's rank");
  BoxWalk w;
  if (const char* err = make_box_walk(static_cast<int>(rank), src_shape.data(),
                                      src_offset.data(), dst_shape.data(), dst_offset.data(),
                                      extent.data(), w))
    throw Error(std::string("box kernel: ") + err);
  return w;
}

// The walk from the global array to `device`'s local array of `type`: its source offsets are
// global row-major linear indices, its destination offsets local ones.
inline BoxWalk block_walk(const Type& type, const Mesh& mesh, int device) {
  if (device < 0 || device >= mesh.num_devices())
    throw Error("index fill: device " + std::to_string(device) + " is not in the mesh " +
                mesh.to_string());
  const Box box = type.block(mesh, device);
  const std::vector<std::int64_t> global = type.global_shape();
  std::vector<std::int64_t> lo, ext, zero(box.dims.size(), 0);
  for (const Interval& iv : box.dims) {
    lo.push_back(iv.lo);
    ext.push_back(iv.extent());
  }
  BoxWalk w;
  if (const char* err = make_box_walk(static_cast<int>(ext.size()), global.data(), lo.data(),
                                      ext.data(), zero.data(), ext.data(), w))
    throw Error("index fill of " + type.to_string() + ": " + err);
  return w;
}

// `device`'s group-linear coordinate j over the reduce clause's axes (mixed radix, the first
// axis written most significant) and the group size g; j = 0, g = 1 without a clause.
struct ReduceCoordinate {
  int j = 0, g = 1;
};
inline ReduceCoordinate reduce_coordinate(const Type& type, const Mesh& mesh, int device) {
  ReduceCoordinate rc;
  if (type.op == ReduceOp::none) return rc;
  for (const std::string& name : type.reduce_axes) {
    const int a = mesh.axis_index(name);
    if (a < 0) throw Error("reduce axis '" + name + "' is not in the mesh " + mesh.to_string());
    const int n = mesh.axes()[a].size;
    rc.j = rc.j * n + mesh.coord(device, a);
    rc.g *= n;
  }
  return rc;
}

}  // namespace reshard::detail
