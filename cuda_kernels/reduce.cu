// dst = op(dst, src) over a box on device memory, and the fold of k equal slots into one
// array (reduce_slots): one launch each, a grid-stride loop over vectors
// of 16 bytes when the alignment of both arrays, the row length and the row strides allow it,
// over single elements otherwise. f16 and bf16 use the native CUDA types and compute in float,
// exactly as the host kernels do, so host and device agree bit for bit.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda_common.cuh"
#include "launch.hpp"
#include "reshard/error.hpp"

namespace reshard::cuda_detail {
namespace {

using detail::BoxWalk;
using detail::ElemCode;
using detail::OpCode;

// op(a, b) for one storage type; the arithmetic types share the host's definition.
template <OpCode Op, typename S>
struct Combine {
  __device__ static S apply(S a, S b) { return detail::combine<Op>(a, b); }
};
template <OpCode Op>
struct Combine<Op, __half> {
  __device__ static __half apply(__half a, __half b) {
    return __float2half_rn(detail::combine<Op>(__half2float(a), __half2float(b)));
  }
};
template <OpCode Op>
struct Combine<Op, __nv_bfloat16> {
  __device__ static __nv_bfloat16 apply(__nv_bfloat16 a, __nv_bfloat16 b) {
    return __float2bfloat16_rn(detail::combine<Op>(__bfloat162float(a), __bfloat162float(b)));
  }
};

// The walk is in units of V elements (one Vec).
template <typename S, OpCode Op, int V, typename I>
__global__ void __launch_bounds__(kBlockThreads)
    reduce_units(const Vec<S, V>* __restrict__ src, Vec<S, V>* __restrict__ dst,
                 const __grid_constant__ BoxWalk w, I total) {
  const I stride = static_cast<I>(blockDim.x) * gridDim.x;
  for (I u = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; u < total; u += stride) {
    I from, to;
    detail::walk_offsets(w, u, from, to);
    const Vec<S, V> b = src[from];
    Vec<S, V> a = dst[to];
#pragma unroll
    for (int e = 0; e < V; ++e) a.x[e] = Combine<Op, S>::apply(a.x[e], b.x[e]);
    dst[to] = a;
  }
}

template <typename S, OpCode Op, int V>
void launch_vec(const void* src, void* dst, const BoxWalk& w, cudaStream_t stream) {
  const int blocks = grid_blocks(w.volume);
  const auto* s = static_cast<const Vec<S, V>*>(src);
  auto* d = static_cast<Vec<S, V>*>(dst);
  if (fits_32bit(w))
    reduce_units<S, Op, V, std::uint32_t>
        <<<blocks, kBlockThreads, 0, stream>>>(s, d, w, static_cast<std::uint32_t>(w.volume));
  else
    reduce_units<S, Op, V, std::uint64_t>
        <<<blocks, kBlockThreads, 0, stream>>>(s, d, w, static_cast<std::uint64_t>(w.volume));
  check_launch("device_reduce_box");
}

// Chooses 16-byte vectors or single elements. Bases are folded into the pointers first
// because alignment is a property of the actual addresses.
template <typename S, OpCode Op>
void launch_typed(const void* src, void* dst, const BoxWalk& walk, cudaStream_t stream) {
  BoxWalk w = walk;
  const auto* s = static_cast<const S*>(src) + w.src_base;
  auto* d = static_cast<S*>(dst) + w.dst_base;
  w.src_base = w.dst_base = 0;
  constexpr int kVec = static_cast<int>(16 / sizeof(S));
  if (detail::walk_unit_fits(w, sizeof(S), reinterpret_cast<std::uintptr_t>(s),
                             reinterpret_cast<std::uintptr_t>(d), 16)) {
    detail::rescale_walk(w, sizeof(S), 16);
    launch_vec<S, Op, kVec>(s, d, w, stream);
  } else {
    launch_vec<S, Op, 1>(s, d, w, stream);
  }
}

// The fold of k slots, V elements at a time; slot s of unit u is src[s * slot + u].
template <typename S, OpCode Op, int V>
__global__ void __launch_bounds__(kBlockThreads)
    fold_slots(const Vec<S, V>* src, std::int64_t slot, int k, Vec<S, V>* dst,
               std::int64_t total) {
  const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * gridDim.x;
  for (std::int64_t u = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < total;
       u += stride) {
    Vec<S, V> a = src[u];
    for (int s = 1; s < k; ++s) {
      const Vec<S, V> b = src[s * slot + u];
#pragma unroll
      for (int e = 0; e < V; ++e) a.x[e] = Combine<Op, S>::apply(a.x[e], b.x[e]);
    }
    dst[u] = a;  // after every read of u: dst may be slot 0
  }
}

template <typename S, OpCode Op>
void launch_fold(const void* src, void* dst, std::int64_t n, int k, cudaStream_t stream) {
  constexpr int kVec = static_cast<int>(16 / sizeof(S));
  const bool vec = n % kVec == 0 && reinterpret_cast<std::uintptr_t>(src) % 16 == 0 &&
                   reinterpret_cast<std::uintptr_t>(dst) % 16 == 0;
  if (vec) {
    const std::int64_t units = n / kVec;
    fold_slots<S, Op, kVec><<<grid_blocks(units), kBlockThreads, 0, stream>>>(
        static_cast<const Vec<S, kVec>*>(src), units, k, static_cast<Vec<S, kVec>*>(dst), units);
  } else {
    fold_slots<S, Op, 1><<<grid_blocks(n), kBlockThreads, 0, stream>>>(
        static_cast<const Vec<S, 1>*>(src), n, k, static_cast<Vec<S, 1>*>(dst), n);
  }
  check_launch("device_reduce_slots");
}

template <typename S>
void launch_fold_op(const void* src, void* dst, std::int64_t n, int k, OpCode op, cudaStream_t stream) {
  switch (op) {
    case OpCode::sum: return launch_fold<S, OpCode::sum>(src, dst, n, k, stream);
    case OpCode::max: return launch_fold<S, OpCode::max>(src, dst, n, k, stream);
    case OpCode::min: return launch_fold<S, OpCode::min>(src, dst, n, k, stream);
    case OpCode::prod: return launch_fold<S, OpCode::prod>(src, dst, n, k, stream);
    default: throw Error("launch_reduce_slots: no reduction op");
  }
}

template <typename S>
void launch_op(const void* src, void* dst, const BoxWalk& w, OpCode op, cudaStream_t stream) {
  switch (op) {
    case OpCode::sum: return launch_typed<S, OpCode::sum>(src, dst, w, stream);
    case OpCode::max: return launch_typed<S, OpCode::max>(src, dst, w, stream);
    case OpCode::min: return launch_typed<S, OpCode::min>(src, dst, w, stream);
    case OpCode::prod: return launch_typed<S, OpCode::prod>(src, dst, w, stream);
    default: throw Error("launch_reduce: no reduction op (a plain copy is launch_copy)");
  }
}

}  // namespace

void launch_reduce(const void* src, void* dst, const BoxWalk& w, ElemCode t, OpCode op,
                   void* stream) {
  if (w.volume == 0) return;
  auto* st = static_cast<cudaStream_t>(stream);
  switch (t) {
    case ElemCode::f64: return launch_op<double>(src, dst, w, op, st);
    case ElemCode::f32: return launch_op<float>(src, dst, w, op, st);
    case ElemCode::f16: return launch_op<__half>(src, dst, w, op, st);
    case ElemCode::bf16: return launch_op<__nv_bfloat16>(src, dst, w, op, st);
    case ElemCode::i64: return launch_op<std::int64_t>(src, dst, w, op, st);
    case ElemCode::i32: return launch_op<std::int32_t>(src, dst, w, op, st);
    case ElemCode::i16: return launch_op<std::int16_t>(src, dst, w, op, st);
    case ElemCode::i8: return launch_op<std::int8_t>(src, dst, w, op, st);
    case ElemCode::u8: return launch_op<std::uint8_t>(src, dst, w, op, st);
  }
}

void launch_reduce_slots(const void* src, void* dst, std::int64_t n, int k, ElemCode t, OpCode op,
                         void* stream) {
  if (n == 0) return;
  auto* st = static_cast<cudaStream_t>(stream);
  switch (t) {
    case ElemCode::f64: return launch_fold_op<double>(src, dst, n, k, op, st);
    case ElemCode::f32: return launch_fold_op<float>(src, dst, n, k, op, st);
    case ElemCode::f16: return launch_fold_op<__half>(src, dst, n, k, op, st);
    case ElemCode::bf16: return launch_fold_op<__nv_bfloat16>(src, dst, n, k, op, st);
    case ElemCode::i64: return launch_fold_op<std::int64_t>(src, dst, n, k, op, st);
    case ElemCode::i32: return launch_fold_op<std::int32_t>(src, dst, n, k, op, st);
    case ElemCode::i16: return launch_fold_op<std::int16_t>(src, dst, n, k, op, st);
    case ElemCode::i8: return launch_fold_op<std::int8_t>(src, dst, n, k, op, st);
    case ElemCode::u8: return launch_fold_op<std::uint8_t>(src, dst, n, k, op, st);
  }
}

}  // namespace reshard::cuda_detail
