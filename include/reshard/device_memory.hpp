#pragma once
// Device memory, streams and events for code that must not include CUDA headers (the executor,
// the command-line tool, tests): a thin, checked layer over the CUDA runtime. Streams and
// events are passed as `void*` (a cudaStream_t; nullptr is the legacy default stream).
//
// The implementation lives in cuda_kernels/ (target reshard_cuda_kernels, which defines
// RESHARD_HAVE_CUDA=1 for its users). Built without CUDA, the same API compiles: nothing is
// device memory, and every call that would need a device throws reshard::Error saying so.
// Failures throw reshard::Error naming the call and the CUDA error. Thread safety: as the CUDA
// runtime (calls are thread-safe; one stream should be driven by one thread at a time).
#include <cstddef>
#include <string>
#include <utility>

#include "reshard/error.hpp"

namespace reshard {

#if defined(RESHARD_HAVE_CUDA) && RESHARD_HAVE_CUDA

// Whether `p` points into memory a kernel can address as device memory (cudaMalloc or
// managed). Host memory, pinned or not, is false, as is everything without a driver. Never
// throws; a null pointer is false.
bool is_device_pointer(const void* p) noexcept;

void* device_malloc(std::size_t bytes);    // cudaMalloc; 0 bytes gives nullptr
void device_free(void* p) noexcept;        // cudaFree (synchronizes the device)
void* pinned_malloc(std::size_t bytes);    // cudaMallocHost (page-locked host memory)
void pinned_free(void* p) noexcept;        // cudaFreeHost

// cudaMemcpyAsync with cudaMemcpyDefault (any direction; unified addressing). 0 bytes: nothing.
void memcpy_async(void* dst, const void* src, std::size_t bytes, void* stream);
void memset_async(void* dst, int value, std::size_t bytes, void* stream);

void* stream_create();  // a non-blocking stream (does not wait on the legacy default stream)
void stream_destroy(void* stream) noexcept;
// cudaStreamSynchronize; `what` names the operation in the error.
void stream_synchronize(void* stream, const char* what);

int cuda_device_count();       // 0 without a driver or device; never throws
int cuda_current_device();     // cudaGetDevice
void cuda_set_device(int device);
// "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)"; "" when unavailable. Never throws.
std::string cuda_device_name(int device);

// Times stream-ordered work with a pair of CUDA events: start() and stop() record them on the
// stream, seconds() waits for stop and returns the elapsed time between them.
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start(void* stream);
  void stop(void* stream);
  double seconds();

 private:
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

#else  // built without CUDA

namespace detail {
[[noreturn]] inline void no_cuda_runtime(const char* what) {
  throw Error(std::string(what) + ": reshard was built without CUDA");
}
}  // namespace detail

inline bool is_device_pointer(const void*) noexcept { return false; }
inline void* device_malloc(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  detail::no_cuda_runtime("device_malloc");
}
inline void device_free(void*) noexcept {}
inline void* pinned_malloc(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  detail::no_cuda_runtime("pinned_malloc");
}
inline void pinned_free(void*) noexcept {}
inline void memcpy_async(void*, const void*, std::size_t bytes, void*) {
  if (bytes) detail::no_cuda_runtime("memcpy_async");
}
inline void memset_async(void*, int, std::size_t bytes, void*) {
  if (bytes) detail::no_cuda_runtime("memset_async");
}
inline void* stream_create() { detail::no_cuda_runtime("stream_create"); }
inline void stream_destroy(void*) noexcept {}
inline void stream_synchronize(void*, const char*) {}
inline int cuda_device_count() { return 0; }
inline int cuda_current_device() { detail::no_cuda_runtime("cuda_current_device"); }
inline void cuda_set_device(int) { detail::no_cuda_runtime("cuda_set_device"); }
inline std::string cuda_device_name(int) { return {}; }

class EventTimer {
 public:
  EventTimer() { detail::no_cuda_runtime("EventTimer"); }
  void start(void*) {}
  void stop(void*) {}
  double seconds() { return 0; }
};

#endif

// An owned allocation of device memory (cudaMalloc) or page-locked host memory
// (cudaMallocHost), freed on destruction. Movable.
class DeviceBytes {
 public:
  enum class Kind { device, pinned };
  DeviceBytes() = default;
  DeviceBytes(std::size_t bytes, Kind kind)
      : p_(kind == Kind::device ? device_malloc(bytes) : pinned_malloc(bytes)), bytes_(bytes), kind_(kind) {}
  ~DeviceBytes() { reset(); }
  DeviceBytes(DeviceBytes&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), kind_(o.kind_) {}
  DeviceBytes& operator=(DeviceBytes&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
      kind_ = o.kind_;
    }
    return *this;
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;

  std::byte* get() const { return static_cast<std::byte*>(p_); }
  std::size_t size() const { return bytes_; }
  void reset() noexcept {
    if (p_) kind_ == Kind::device ? device_free(p_) : pinned_free(p_);
    p_ = nullptr;
    bytes_ = 0;
  }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
  Kind kind_ = Kind::device;
};

}  // namespace reshard
