// Fills and checks on device memory: the reduction identity (a repeated bit pattern), and the
// index fill/check of `reshard run --fill index --check` over a device's block. The values
// and conversions are those of the host kernels (reshard/detail/elementwise.hpp).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_common.cuh"
#include "launch.hpp"

namespace reshard::cuda_detail {
namespace {

using detail::BoxWalk;
using detail::ElemCode;
using detail::OpCode;

// ---- identity fill ----------------------------------------------------------------------

// The 16-byte-aligned head of the array is written as uint4 vectors, the rest (or all of it,
// when the array is not 16-byte aligned) element by element.
template <typename E>
__global__ void __launch_bounds__(kBlockThreads)
    fill_pattern(E* data, std::int64_t n, E value, uint4 vec, std::int64_t nvec) {
  const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * gridDim.x;
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  auto* v = reinterpret_cast<uint4*>(data);
  for (std::int64_t u = tid; u < nvec; u += stride) v[u] = vec;
  for (std::int64_t k = nvec * static_cast<std::int64_t>(16 / sizeof(E)) + tid; k < n;
       k += stride)
    data[k] = value;
}

template <typename E>
void launch_pattern(void* data, std::int64_t n, std::uint64_t pattern, cudaStream_t stream) {
  E value;
  std::memcpy(&value, &pattern, sizeof(E));  // the low bytes (little-endian)
  uint4 vec;
  auto* bytes = reinterpret_cast<unsigned char*>(&vec);
  for (std::size_t k = 0; k < 16; k += sizeof(E)) std::memcpy(bytes + k, &value, sizeof(E));
  const bool aligned = reinterpret_cast<std::uintptr_t>(data) % 16 == 0;
  const std::int64_t nvec = aligned ? n * static_cast<std::int64_t>(sizeof(E)) / 16 : 0;
  const std::int64_t work = nvec > 0 ? nvec : n;
  fill_pattern<E><<<grid_blocks(work), kBlockThreads, 0, stream>>>(static_cast<E*>(data), n,
                                                                    value, vec, nvec);
  check_launch("device_fill_identity");
}

// ---- index fill and check -----------------------------------------------------------------

// double -> storage with C++ cast semantics (integers wrap), as store_as on the host.
template <typename S>
__device__ S from_double(double v) {
  if constexpr (std::is_same_v<S, __half>) return __float2half_rn(static_cast<float>(v));
  else if constexpr (std::is_same_v<S, __nv_bfloat16>)
    return __float2bfloat16_rn(static_cast<float>(v));
  else if constexpr (std::is_floating_point_v<S>) return static_cast<S>(v);
  else return static_cast<S>(static_cast<std::uint64_t>(detail::wrap_to_int64(v)));
}

template <typename S>
__device__ double to_double(S s) {
  if constexpr (std::is_same_v<S, __half>) return __half2float(s);
  else if constexpr (std::is_same_v<S, __nv_bfloat16>) return __bfloat162float(s);
  else return static_cast<double>(s);
}

// The walk's source offsets are global linear indices, its destination offsets local ones.
template <typename S, typename I>
__global__ void __launch_bounds__(kBlockThreads)
    fill_index(S* __restrict__ local, const __grid_constant__ BoxWalk w, I total, OpCode op,
               int j, int g) {
  const I stride = static_cast<I>(blockDim.x) * gridDim.x;
  for (I u = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; u < total; u += stride) {
    I i, k;
    detail::walk_offsets(w, u, i, k);
    local[k] = from_double<S>(detail::fill_value(static_cast<std::int64_t>(i), op, j, g));
  }
}

template <typename S, typename I>
__global__ void __launch_bounds__(kBlockThreads)
    check_index(const S* __restrict__ local, const __grid_constant__ BoxWalk w, I total,
                unsigned long long* bad) {
  constexpr bool kHalf = std::is_same_v<S, __half> || std::is_same_v<S, __nv_bfloat16>;
  const I stride = static_cast<I>(blockDim.x) * gridDim.x;
  unsigned long long mine = 0;
  for (I u = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; u < total; u += stride) {
    I i, k;
    detail::walk_offsets(w, u, i, k);
    // Expected: the index as the dtype holds it (cast, then read back).
    const double expected = to_double(from_double<S>(static_cast<double>(i)));
    if (!detail::index_matches(to_double(local[k]), expected, kHalf)) ++mine;
  }
  // One atomic per warp rather than per mismatch. Every lane gets here (the block size is a
  // multiple of 32), so the full-mask shuffles are safe.
  for (int offset = 16; offset > 0; offset /= 2) mine += __shfl_down_sync(0xffffffffu, mine, offset);
  if ((threadIdx.x & 31u) == 0 && mine != 0) atomicAdd(bad, mine);
}

template <typename S>
void launch_fill_typed(void* local, const BoxWalk& w, OpCode op, int j, int g,
                       cudaStream_t stream) {
  const int blocks = grid_blocks(w.volume);
  auto* p = static_cast<S*>(local);
  if (fits_32bit(w))
    fill_index<S, std::uint32_t><<<blocks, kBlockThreads, 0, stream>>>(
        p, w, static_cast<std::uint32_t>(w.volume), op, j, g);
  else
    fill_index<S, std::uint64_t><<<blocks, kBlockThreads, 0, stream>>>(
        p, w, static_cast<std::uint64_t>(w.volume), op, j, g);
  check_launch("device_fill_index");
}

template <typename S>
cudaError_t launch_check_typed(const void* local, const BoxWalk& w, unsigned long long* bad,
                               cudaStream_t stream) {
  const int blocks = grid_blocks(w.volume);
  const auto* p = static_cast<const S*>(local);
  if (fits_32bit(w))
    check_index<S, std::uint32_t><<<blocks, kBlockThreads, 0, stream>>>(
        p, w, static_cast<std::uint32_t>(w.volume), bad);
  else
    check_index<S, std::uint64_t><<<blocks, kBlockThreads, 0, stream>>>(
        p, w, static_cast<std::uint64_t>(w.volume), bad);
  return cudaGetLastError();
}

// Calls f(S{}) with the device storage type of t.
template <typename F>
auto visit_storage(ElemCode t, F&& f) {
  switch (t) {
    case ElemCode::f64: return f(double{});
    case ElemCode::f32: return f(float{});
    case ElemCode::f16: return f(__half{});
    case ElemCode::bf16: return f(__nv_bfloat16{});
    case ElemCode::i64: return f(std::int64_t{});
    case ElemCode::i32: return f(std::int32_t{});
    case ElemCode::i16: return f(std::int16_t{});
    case ElemCode::i8: return f(std::int8_t{});
    default: return f(std::uint8_t{});
  }
}

}  // namespace

void launch_fill_pattern(void* data, std::int64_t n, std::uint64_t pattern,
                         std::size_t elem_size, void* stream) {
  if (n <= 0) return;
  auto* st = static_cast<cudaStream_t>(stream);
  switch (elem_size) {
    case 1: return launch_pattern<std::uint8_t>(data, n, pattern, st);
    case 2: return launch_pattern<std::uint16_t>(data, n, pattern, st);
    case 4: return launch_pattern<std::uint32_t>(data, n, pattern, st);
    default: return launch_pattern<std::uint64_t>(data, n, pattern, st);
  }
}

void launch_fill_index(void* local, const BoxWalk& w, ElemCode t, OpCode op, int j, int g,
                       void* stream) {
  if (w.volume == 0) return;
  auto* st = static_cast<cudaStream_t>(stream);
  visit_storage(t, [&](auto tag) {
    launch_fill_typed<decltype(tag)>(local, w, op, j, g, st);
  });
}

std::int64_t launch_check_index(const void* local, const BoxWalk& w, ElemCode t, void* stream) {
  if (w.volume == 0) return 0;
  auto* st = static_cast<cudaStream_t>(stream);
  unsigned long long* bad = nullptr;
  check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&bad), sizeof(*bad), st),
             "device_check_index: cudaMallocAsync");
  // Run everything, then free the counter, then report the first error: no leak on failure.
  unsigned long long count = 0;
  cudaError_t err = cudaMemsetAsync(bad, 0, sizeof(*bad), st);
  if (err == cudaSuccess)
    err = visit_storage(t, [&](auto tag) {
      return launch_check_typed<decltype(tag)>(local, w, bad, st);
    });
  if (err == cudaSuccess)
    err = cudaMemcpyAsync(&count, bad, sizeof(count), cudaMemcpyDeviceToHost, st);
  const cudaError_t free_err = cudaFreeAsync(bad, st);
  if (err == cudaSuccess) err = free_err;
  if (err == cudaSuccess) err = cudaStreamSynchronize(st);
  check_cuda(err, "device_check_index");
  return static_cast<std::int64_t>(count);
}

}  // namespace reshard::cuda_detail
