#pragma once
// CUDA versions of the host kernels (reshard/kernels.hpp), same semantics, on device memory.
//
// This header needs no CUDA headers: streams are passed as `void*` (a cudaStream_t; nullptr
// is the legacy default stream). All calls are stream-ordered and asynchronous except
// device_check_index, which waits for its count. Each call is at most one kernel launch;
// zero-sized work launches nothing. CUDA failures throw reshard::Error naming the call.
//
// The implementations live in kernels/ (target reshard_cuda_kernels, which defines
// RESHARD_HAVE_CUDA=1 for its users). Code built without CUDA still compiles against this
// header: cuda_device_available() then says why not, and the other calls throw.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "reshard/dtype.hpp"
#include "reshard/error.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace reshard {

#if defined(RESHARD_HAVE_CUDA) && RESHARD_HAVE_CUDA

// Whether a usable CUDA device is present. Never throws: without a driver or a device
// (e.g. cudaErrorInsufficientDriver, cudaErrorNoDevice) it returns false and, if `why` is
// given, stores the reason there.
bool cuda_device_available(std::string* why = nullptr);

// copy_box on device pointers. Moves 16-byte vectors when the rows of the box allow it.
void device_copy_box(const void* src, std::span<const std::int64_t> src_shape,
                     std::span<const std::int64_t> src_offset, void* dst,
                     std::span<const std::int64_t> dst_shape,
                     std::span<const std::int64_t> dst_offset,
                     std::span<const std::int64_t> extent, std::size_t elem_size, void* stream);

// reduce_box on device pointers: dst = op(dst, src) over the box (f16/bf16 in float).
void device_reduce_box(const void* src, std::span<const std::int64_t> src_shape,
                       std::span<const std::int64_t> src_offset, void* dst,
                       std::span<const std::int64_t> dst_shape,
                       std::span<const std::int64_t> dst_offset,
                       std::span<const std::int64_t> extent, DType t, ReduceOp op, void* stream);

// acc[i] = op(acc[i], in[i]) for n elements.
void device_reduce_into(void* acc, const void* in, std::int64_t n, DType t, ReduceOp op,
                        void* stream);

// Sets n elements to the identity of op (as fill_identity).
void device_fill_identity(void* data, std::int64_t n, DType t, ReduceOp op, void* stream);

// fill_index / check_index on `device`'s local array of `type` in device memory.
void device_fill_index(void* local, const Type& type, const Mesh& mesh, int device,
                       void* stream);
// Synchronous: returns the number of mismatching elements once the stream has run the check.
std::int64_t device_check_index(const void* local, const Type& type, const Mesh& mesh,
                                int device, void* stream);

#else  // built without CUDA: the same API, reporting that there is no device

inline bool cuda_device_available(std::string* why = nullptr) {
  if (why) *why = "reshard was built without CUDA";
  return false;
}

namespace detail {
[[noreturn]] inline void no_cuda(const char* what) {
  throw Error(std::string(what) + ": reshard was built without CUDA");
}
}  // namespace detail

inline void device_copy_box(const void*, std::span<const std::int64_t>,
                            std::span<const std::int64_t>, void*, std::span<const std::int64_t>,
                            std::span<const std::int64_t>, std::span<const std::int64_t>,
                            std::size_t, void*) {
  detail::no_cuda("device_copy_box");
}
inline void device_reduce_box(const void*, std::span<const std::int64_t>,
                              std::span<const std::int64_t>, void*,
                              std::span<const std::int64_t>, std::span<const std::int64_t>,
                              std::span<const std::int64_t>, DType, ReduceOp, void*) {
  detail::no_cuda("device_reduce_box");
}
inline void device_reduce_into(void*, const void*, std::int64_t, DType, ReduceOp, void*) {
  detail::no_cuda("device_reduce_into");
}
inline void device_fill_identity(void*, std::int64_t, DType, ReduceOp, void*) {
  detail::no_cuda("device_fill_identity");
}
inline void device_fill_index(void*, const Type&, const Mesh&, int, void*) {
  detail::no_cuda("device_fill_index");
}
inline std::int64_t device_check_index(const void*, const Type&, const Mesh&, int, void*) {
  detail::no_cuda("device_check_index");
}

#endif

}  // namespace reshard
