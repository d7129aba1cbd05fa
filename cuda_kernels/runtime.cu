// Device discovery, error reporting and launch geometry for the CUDA kernels.
#include <string>

#include "cuda_common.cuh"
#include "launch.hpp"
#include "reshard/error.hpp"

namespace reshard::cuda_detail {

bool device_available(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // No driver, too old a driver, or no device: an answer, not a failure. Clear the sticky
    // "last error" so that it does not surface in an unrelated later check.
    (void)cudaGetLastError();
    if (why) *why = std::string("no usable CUDA device: ") + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ")";
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device present";
    return false;
  }
  return true;
}

void throw_cuda_error(cudaError_t err, const char* what) {
  throw Error(std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
              ")");
}

int grid_blocks(std::int64_t work) {
  // The SM count is looked up once per thread and device: it cannot change.
  thread_local int cached_device = -1, cached_blocks = 0;
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  if (device != cached_device) {
    int sms = 0, threads_per_sm = 0;
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
               "cudaDeviceGetAttribute");
    check_cuda(cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor,
                                      device),
               "cudaDeviceGetAttribute");
    cached_blocks = sms * (threads_per_sm / kBlockThreads);
    cached_device = device;
  }
  const std::int64_t wanted = (work + kBlockThreads - 1) / kBlockThreads;
  return static_cast<int>(wanted < cached_blocks ? (wanted > 0 ? wanted : 1) : cached_blocks);
}

}  // namespace reshard::cuda_detail
