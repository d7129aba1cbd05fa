#pragma once
// Host kernels: the local work of every step (pack, unpack, slice, reduce) and the index fill
// and check of `reshard run --fill index --check`. The CUDA versions live in cuda_kernels/.
#include <cstddef>
#include <cstdint>
#include <span>

#include "reshard/dtype.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace reshard {

// Copies the box of `extent` at `src_offset` in the dense row-major array `src` (shape
// `src_shape`) to `dst_offset` in `dst` (shape `dst_shape`). All spans have the array's rank
// (rank 0 copies one element). Pre: the box fits in both arrays; src and dst do not overlap.
void copy_box(const void* src, std::span<const std::int64_t> src_shape,
              std::span<const std::int64_t> src_offset, void* dst,
              std::span<const std::int64_t> dst_shape, std::span<const std::int64_t> dst_offset,
              std::span<const std::int64_t> extent, std::size_t elem_size);

// Same box walk, but dst[i] = op(dst[i], src[i]) for element type t (f16/bf16 in float).
void reduce_box(const void* src, std::span<const std::int64_t> src_shape,
                std::span<const std::int64_t> src_offset, void* dst,
                std::span<const std::int64_t> dst_shape, std::span<const std::int64_t> dst_offset,
                std::span<const std::int64_t> extent, DType t, ReduceOp op);

// acc[i] = op(acc[i], in[i]) for n elements.
void reduce_into(void* acc, const void* in, std::int64_t n, DType t, ReduceOp op);
// Sets n elements to the identity of op (0 for sum, 1 for prod, lowest for max, highest for min).
void fill_identity(void* data, std::int64_t n, DType t, ReduceOp op);

// Half-precision conversions, round to nearest even.
std::uint16_t float_to_f16(float f);
float f16_to_float(std::uint16_t h);
std::uint16_t float_to_bf16(float f);
float bf16_to_float(std::uint16_t h);

// The value the index fill gives global element i, for a device at group-linear coordinate j
// of a reduce clause over g devices (g = 1, j = 0 when there is none). docs/design.md 5.
double index_fill_value(std::int64_t i, ReduceOp op, int j, int g);
// Writes `v` into element `k` of `data` as dtype t (C++ cast semantics; integers wrap).
void store_as(void* data, std::int64_t k, DType t, double v);
double load_as(const void* data, std::int64_t k, DType t);

// Fills `device`'s local array of `type` per the index fill (docs/design.md 5).
void fill_index(void* local, const Type& type, const Mesh& mesh, int device);
// Counts elements of a *reduced* local array (the logical value of `device`'s block of
// `type`, reduce clause ignored) that differ from the index fill's logical values. f16 and
// bf16 compare within a relative tolerance of 2^-7 (rounding of partial sums); others exactly.
// `source` is the index-filled type the data came from (nullptr: `type`): its reduce clause
// decides the logical values. For an integer source with a pending max or min they are the
// reduction of the partials (i - j or i + j, as the dtype holds them), which is not the index
// where the partials wrap (8- and 16-bit integers); otherwise they are the index as the dtype
// holds it.
std::int64_t check_index(const void* local, const Type& type, const Mesh& mesh, int device,
                         double abs_tolerance = 0.0, const Type* source = nullptr);
// Whether `source`'s index fill has logical values that can differ from the index as the dtype
// holds it (an integer dtype with a pending max or min): check_index needs the source then.
bool index_fill_needs_source(const Type& source);
// Absolute tolerance for checking data that came from an index-filled `src`: for f16/bf16
// sources with a pending sum over g devices, the partials (i - (2+...+g), j+1) are rounded
// before they are added, so sums may be off by about g ulps of the largest partial. 0 otherwise.
double index_fill_tolerance(const Type& src, const Mesh& mesh);

}  // namespace reshard
