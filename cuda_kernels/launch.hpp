#pragma once
// Internal interface between the C++20 front end (device_api.cpp, which turns spans, Type and
// Mesh into box walks) and the CUDA translation units (C++17, no reshard API headers).
// Pointers are device pointers; `stream` is a cudaStream_t. Walks are in elements, bases
// included; each launcher is at most one kernel launch and launches nothing for empty work.
#include <cstddef>
#include <cstdint>
#include <string>

#include "reshard/detail/box_batch.hpp"
#include "reshard/detail/box_walk.hpp"
#include "reshard/detail/elementwise.hpp"

namespace reshard::cuda_detail {

bool device_available(std::string* why);

// dst box = src box, moving the widest units (up to 16 bytes) the alignment allows.
void launch_copy(const void* src, void* dst, const detail::BoxWalk& w, std::size_t elem_size,
                 void* stream);
// The arrays of a batch, by the index a BatchBox names.
struct BatchArrays {
  const unsigned char* src[detail::kMaxBatchArrays] = {};
  unsigned char* dst[detail::kMaxBatchArrays] = {};
};
// Every box of a batch table (box_batch.hpp) in one launch. `first_tile` (n + 1 entries) and
// `boxes` (n) are in device memory; `tiles` = first_tile[n].
void launch_copy_batch(const BatchArrays& arrays, const std::int64_t* first_tile,
                       const detail::BatchBox* boxes, int n, std::int64_t tiles, bool index32,
                       void* stream);
// dst box = op(dst box, src box). Pre: op != none (that is launch_copy).
void launch_reduce(const void* src, void* dst, const detail::BoxWalk& w, detail::ElemCode t,
                   detail::OpCode op, void* stream);
// dst[i] = fold of op over slots 0..k-1 (slot s at src + s * n elements), i < n. Pre: k >= 1,
// op != none.
void launch_reduce_slots(const void* src, void* dst, std::int64_t n, int k, detail::ElemCode t,
                         detail::OpCode op, void* stream);
// n elements of elem_size bytes (1, 2, 4 or 8) each set to the low bytes of `pattern`.
void launch_fill_pattern(void* data, std::int64_t n, std::uint64_t pattern,
                         std::size_t elem_size, void* stream);
// local[dst offset] = fill_value(src offset, op, j, g) as type t, over the block walk.
void launch_fill_index(void* local, const detail::BoxWalk& w, detail::ElemCode t,
                       detail::OpCode op, int j, int g, void* stream);
// Number of elements of the block walk whose value is not their index (index_matches).
std::int64_t launch_check_index(const void* local, const detail::BoxWalk& w, detail::ElemCode t,
                                void* stream);

}  // namespace reshard::cuda_detail
