#pragma once
// CUDA versions of the host kernels (reshard/host_kernels.hpp), same semantics, on device memory.
//
// This header needs no CUDA headers: streams are passed as `void*` (a cudaStream_t; nullptr
// is the legacy default stream). All calls are stream-ordered and asynchronous except
// device_check_index, which waits for its count. Each call is at most one kernel launch;
// zero-sized work launches nothing. CUDA failures throw reshard::Error naming the call.
//
// The implementations live in cuda_kernels/ (target reshard_cuda_kernels, which defines
// RESHARD_HAVE_CUDA=1 for its users). Code built without CUDA still compiles against this
// header: cuda_device_available() then says why not, and the other calls throw.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "reshard/dtype.hpp"
#include "reshard/error.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace reshard {

// One box of a batched copy (DeviceCopyBatch): the box `extent` at `src_offset` in an array of
// `src_shape` that starts `src_at` elements into source buffer `src`, copied to `dst_offset` in
// an array of `dst_shape` that starts `dst_at` elements into destination buffer `dst`.
struct BoxCopy {
  int src = 0, dst = 0;
  std::vector<std::int64_t> src_shape, src_offset;
  std::int64_t src_at = 0;
  std::vector<std::int64_t> dst_shape, dst_offset;
  std::int64_t dst_at = 0;
  std::vector<std::int64_t> extent;
};

// Box copies done together by one kernel launch: what a step packs for all of its peers (and
// the box it keeps), or what it unpacks from all of them. The boxes are checked and their walks
// computed once, at construction; the kernel's table (unit width per box, tiles) depends on the
// alignment of the buffers and is uploaded on the first run for each alignment seen (usually
// one). The boxes run concurrently: no two may write the same bytes. run() is stream-ordered.
// Movable; one thread at a time per object.
class DeviceCopyBatch {
 public:
  static constexpr int kMaxBuffers = 4;  // source buffers, and destination buffers

  DeviceCopyBatch();
  // Throws Error naming the box when one does not fit its arrays or names a buffer past
  // kMaxBuffers.
  DeviceCopyBatch(const std::vector<BoxCopy>& boxes, std::size_t elem_size);
  ~DeviceCopyBatch();
  DeviceCopyBatch(DeviceCopyBatch&&) noexcept;
  DeviceCopyBatch& operator=(DeviceCopyBatch&&) noexcept;

  bool empty() const;          // nothing to move: run() launches nothing
  std::int64_t bytes() const;  // payload of one run

  // Copies every box from srcs[box.src] to dsts[box.dst] in one launch. Pre: device pointers;
  // every buffer a non-empty box names is given and non-null (checked: throws Error).
  void run(std::span<const void* const> srcs, std::span<void* const> dsts, void* stream) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

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

// dst[i] = op(...op(op(slot 0[i], slot 1[i]), slot 2[i])..., slot k-1[i]) for n elements, where
// slot s starts s * n elements into `slots`: what k reduce_into calls in slot order give, bit for
// bit, in one launch. Pre: k >= 1, op != none; dst may be slot 0 but no other slot.
void device_reduce_slots(void* dst, const void* slots, std::int64_t n, int k, DType t, ReduceOp op,
                         void* stream);

// Sets n elements to the identity of op (as fill_identity).
void device_fill_identity(void* data, std::int64_t n, DType t, ReduceOp op, void* stream);

// fill_index / check_index on `device`'s local array of `type` in device memory.
void device_fill_index(void* local, const Type& type, const Mesh& mesh, int device,
                       void* stream);
// Synchronous: returns the number of mismatching elements once the stream has run the check.
// `source` as for check_index: where its logical values are not the index
// (index_fill_needs_source), the shard is copied to the host and checked there.
std::int64_t device_check_index(const void* local, const Type& type, const Mesh& mesh,
                                int device, void* stream, const Type* source = nullptr);

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
inline void device_reduce_slots(void*, const void*, std::int64_t, int, DType, ReduceOp, void*) {
  detail::no_cuda("device_reduce_slots");
}
inline void device_fill_identity(void*, std::int64_t, DType, ReduceOp, void*) {
  detail::no_cuda("device_fill_identity");
}
inline void device_fill_index(void*, const Type&, const Mesh&, int, void*) {
  detail::no_cuda("device_fill_index");
}
inline std::int64_t device_check_index(const void*, const Type&, const Mesh&, int, void*,
                                       const Type* = nullptr) {
  detail::no_cuda("device_check_index");
}

// Without CUDA a batch can be empty (and run, doing nothing) but holds no boxes.
struct DeviceCopyBatch::Impl {};
inline DeviceCopyBatch::DeviceCopyBatch() = default;
inline DeviceCopyBatch::DeviceCopyBatch(const std::vector<BoxCopy>& boxes, std::size_t) {
  if (!boxes.empty()) detail::no_cuda("DeviceCopyBatch");
}
inline DeviceCopyBatch::~DeviceCopyBatch() = default;
inline DeviceCopyBatch::DeviceCopyBatch(DeviceCopyBatch&&) noexcept = default;
inline DeviceCopyBatch& DeviceCopyBatch::operator=(DeviceCopyBatch&&) noexcept = default;
inline bool DeviceCopyBatch::empty() const { return true; }
inline std::int64_t DeviceCopyBatch::bytes() const { return 0; }
inline void DeviceCopyBatch::run(std::span<const void* const>, std::span<void* const>, void*) const {}

#endif

}  // namespace reshard
