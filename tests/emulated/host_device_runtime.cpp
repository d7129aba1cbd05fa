// A host stand-in for the CUDA layer (reshard/device_memory.hpp and the device kernels of
// reshard/device_kernels.hpp), so that the executor's device path (device workspace, batched
// copies, pinned staging over MPI) runs in CI on machines without a GPU. "Device memory" is
// host memory that this file tracks, so is_device_pointer tells it from other host memory as
// the real runtime does; streams are synchronous. The kernels are the host kernels, whose
// semantics the CUDA ones match bit for bit (tests/gpu/test_device_kernels.cpp). Not part of
// the library: linked into tests only.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "reshard/device_kernels.hpp"
#include "reshard/device_memory.hpp"
#include "reshard/host_kernels.hpp"

namespace reshard {
namespace {

std::mutex& table_mutex() {
  static std::mutex m;
  return m;
}
// Start address -> size of every live "device" allocation.
std::map<std::uintptr_t, std::size_t>& table() {
  static std::map<std::uintptr_t, std::size_t> t;
  return t;
}

}  // namespace

bool cuda_device_available(std::string*) { return true; }

void device_copy_box(const void* src, std::span<const std::int64_t> ss, std::span<const std::int64_t> so, void* dst,
                     std::span<const std::int64_t> ds, std::span<const std::int64_t> dof,
                     std::span<const std::int64_t> e, std::size_t elem, void*) {
  copy_box(src, ss, so, dst, ds, dof, e, elem);
}
void device_reduce_box(const void* src, std::span<const std::int64_t> ss, std::span<const std::int64_t> so, void* dst,
                       std::span<const std::int64_t> ds, std::span<const std::int64_t> dof,
                       std::span<const std::int64_t> e, DType t, ReduceOp op, void*) {
  if (op == ReduceOp::none) copy_box(src, ss, so, dst, ds, dof, e, size_of(t));
  else reduce_box(src, ss, so, dst, ds, dof, e, t, op);
}
void device_reduce_into(void* acc, const void* in, std::int64_t n, DType t, ReduceOp op, void*) {
  if (op == ReduceOp::none) std::memmove(acc, in, static_cast<std::size_t>(n) * size_of(t));
  else reduce_into(acc, in, n, t, op);
}
void device_reduce_slots(void* dst, const void* slots, std::int64_t n, int k, DType t, ReduceOp op, void*) {
  if (k < 1 || op == ReduceOp::none) throw Error("device_reduce_slots: needs slots and an op");
  const std::size_t part = static_cast<std::size_t>(n) * size_of(t);
  const auto* s = static_cast<const std::byte*>(slots);
  if (dst != slots) std::memmove(dst, s, part);
  for (int i = 1; i < k; ++i) reduce_into(dst, s + part * static_cast<std::size_t>(i), n, t, op);
}
void device_fill_identity(void* d, std::int64_t n, DType t, ReduceOp op, void*) { fill_identity(d, n, t, op); }
void device_fill_index(void* l, const Type& t, const Mesh& m, int d, void*) { fill_index(l, t, m, d); }
std::int64_t device_check_index(const void* l, const Type& t, const Mesh& m, int d, void*, const Type* source) {
  return check_index(l, t, m, d, 0.0, source);
}

bool is_device_pointer(const void* p) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::lock_guard lock(table_mutex());
  auto it = table().upper_bound(a);
  if (it == table().begin()) return false;
  --it;
  return a < it->first + std::max<std::size_t>(it->second, 1);
}
void* device_malloc(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  // 256-byte aligned, as cudaMalloc; filled with garbage, as fresh device memory may be.
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!p) throw Error("device_malloc: out of memory");
  std::memset(p, 0xcd, bytes);
  std::lock_guard lock(table_mutex());
  table()[reinterpret_cast<std::uintptr_t>(p)] = bytes;
  return p;
}
void device_free(void* p) noexcept {
  if (!p) return;
  {
    std::lock_guard lock(table_mutex());
    table().erase(reinterpret_cast<std::uintptr_t>(p));
  }
  std::free(p);
}
void* pinned_malloc(std::size_t bytes) { return bytes ? std::aligned_alloc(256, (bytes + 255) / 256 * 256) : nullptr; }
void pinned_free(void* p) noexcept { std::free(p); }
void memcpy_async(void* dst, const void* src, std::size_t bytes, void*) {
  if (bytes && dst != src) std::memmove(dst, src, bytes);
}
void memset_async(void* dst, int value, std::size_t bytes, void*) {
  if (bytes) std::memset(dst, value, bytes);
}
void* stream_create() { return new int(0); }
void stream_destroy(void* s) noexcept { delete static_cast<int*>(s); }
void stream_synchronize(void*, const char*) {}
int cuda_device_count() { return 1; }
int cuda_current_device() { return 0; }
void cuda_set_device(int) {}
std::string cuda_device_name(int) { return "host stand-in for a CUDA device"; }

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace
EventTimer::EventTimer() : start_(new double(0)), stop_(new double(0)) {}
EventTimer::~EventTimer() {
  delete static_cast<double*>(start_);
  delete static_cast<double*>(stop_);
}
void EventTimer::start(void*) { *static_cast<double*>(start_) = now_s(); }
void EventTimer::stop(void*) { *static_cast<double*>(stop_) = now_s(); }
double EventTimer::seconds() { return *static_cast<double*>(stop_) - *static_cast<double*>(start_); }

}  // namespace reshard
