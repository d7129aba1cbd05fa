// The public device kernel API (reshard/device_kernels.hpp): validates the arguments, turns
// spans, Type and Mesh into box walks on the host, and hands them to the CUDA launchers.
// Compiled as C++20 with the host compiler; the CUDA sources stay C++17 behind launch.hpp.
#include "reshard/device_kernels.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

#include "launch.hpp"
#include "reshard/detail/api_walks.hpp"
#include "reshard/detail/box_walk.hpp"
#include "reshard/detail/elementwise.hpp"
#include "reshard/device_memory.hpp"
#include "reshard/host_kernels.hpp"

namespace reshard {
namespace {

using detail::code;

// The walk of n contiguous elements.
detail::BoxWalk linear_walk(std::int64_t n) {
  if (n < 0) throw Error("device kernel: negative element count");
  const std::int64_t zero = 0;
  detail::BoxWalk w;
  detail::make_box_walk(1, &n, &zero, &n, &zero, &n, w);  // cannot fail for n >= 0
  return w;
}

}  // namespace

bool cuda_device_available(std::string* why) {
  try {
    return cuda_detail::device_available(why);
  } catch (const std::exception& e) {  // e.g. std::bad_alloc building the message
    if (why) *why = e.what();
    return false;
  }
}

void device_copy_box(const void* src, std::span<const std::int64_t> src_shape,
                     std::span<const std::int64_t> src_offset, void* dst,
                     std::span<const std::int64_t> dst_shape,
                     std::span<const std::int64_t> dst_offset,
                     std::span<const std::int64_t> extent, std::size_t elem_size, void* stream) {
  if (elem_size == 0) throw Error("device_copy_box: element size 0");
  const detail::BoxWalk w =
      detail::walk_of_box(src_shape, src_offset, dst_shape, dst_offset, extent);
  cuda_detail::launch_copy(src, dst, w, elem_size, stream);
}

void device_reduce_box(const void* src, std::span<const std::int64_t> src_shape,
                       std::span<const std::int64_t> src_offset, void* dst,
                       std::span<const std::int64_t> dst_shape,
                       std::span<const std::int64_t> dst_offset,
                       std::span<const std::int64_t> extent, DType t, ReduceOp op,
                       void* stream) {
  const detail::BoxWalk w =
      detail::walk_of_box(src_shape, src_offset, dst_shape, dst_offset, extent);
  if (op == ReduceOp::none)  // "reduce" with no op is a copy
    cuda_detail::launch_copy(src, dst, w, size_of(t), stream);
  else
    cuda_detail::launch_reduce(src, dst, w, code(t), code(op), stream);
}

void device_reduce_into(void* acc, const void* in, std::int64_t n, DType t, ReduceOp op,
                        void* stream) {
  const detail::BoxWalk w = linear_walk(n);
  if (op == ReduceOp::none)
    cuda_detail::launch_copy(in, acc, w, size_of(t), stream);
  else
    cuda_detail::launch_reduce(in, acc, w, code(t), code(op), stream);
}

void device_reduce_slots(void* dst, const void* slots, std::int64_t n, int k, DType t, ReduceOp op,
                         void* stream) {
  if (n < 0) throw Error("device_reduce_slots: negative element count");
  if (k < 1) throw Error("device_reduce_slots: no slots");
  if (op == ReduceOp::none) throw Error("device_reduce_slots: a reduction needs an op");
  cuda_detail::launch_reduce_slots(slots, dst, n, k, code(t), code(op), stream);
}

void device_fill_identity(void* data, std::int64_t n, DType t, ReduceOp op, void* stream) {
  if (n < 0) throw Error("device_fill_identity: negative element count");
  // The identity's bits come from the host kernel, so both sides agree by construction.
  std::uint64_t pattern = 0;
  fill_identity(&pattern, 1, t, op);
  cuda_detail::launch_fill_pattern(data, n, pattern, size_of(t), stream);
}

void device_fill_index(void* local, const Type& type, const Mesh& mesh, int device,
                       void* stream) {
  const detail::BoxWalk w = detail::block_walk(type, mesh, device);
  const detail::ReduceCoordinate rc = detail::reduce_coordinate(type, mesh, device);
  cuda_detail::launch_fill_index(local, w, code(type.dtype), code(type.op), rc.j, rc.g, stream);
}

std::int64_t device_check_index(const void* local, const Type& type, const Mesh& mesh,
                                int device, void* stream, const Type* source) {
  if (source && index_fill_needs_source(*source)) {  // the kernel expects the index itself
    std::vector<std::byte> host(static_cast<std::size_t>(type.local_bytes(mesh, device)));
    memcpy_async(host.data(), local, host.size(), stream);
    stream_synchronize(stream, "device_check_index");
    return check_index(host.data(), type, mesh, device, 0.0, source);
  }
  const detail::BoxWalk w = detail::block_walk(type, mesh, device);
  return cuda_detail::launch_check_index(local, w, code(type.dtype), stream);
}

}  // namespace reshard
