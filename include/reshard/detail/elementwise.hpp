#pragma once
// Element-wise semantics shared by the host kernels and the CUDA kernels, so that both give
// bit-identical results: reduction operators, the index fill's values and integer wrapping,
// and the index check's tolerance. C++17 and header-only (see box_walk.hpp for why).
#include <math.h>  // fmod in the global namespace, host and device

#include <cstdint>
#include <type_traits>

#include "reshard/detail/box_walk.hpp"  // RESHARD_HD

namespace reshard::detail {

// Mirrors reshard::ReduceOp and reshard::DType (same order; the C++20 callers static_assert
// it) for code that cannot include type.hpp.
enum class OpCode : int { none, sum, max, min, prod };
enum class ElemCode : int { f64, f32, f16, bf16, i64, i32, i16, i8, u8 };

// An integer as an unsigned value at least as wide as unsigned int, so that wrapping sums and
// products have defined behaviour (uint16 * uint16 would otherwise promote to int and overflow).
template <typename T>
RESHARD_HD inline auto widen(T x) {
  using U = std::make_unsigned_t<T>;
  using W = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, U>;
  return static_cast<W>(static_cast<U>(x));
}

// op(a, b) for an arithmetic type. Integers wrap; floating-point max and min ignore a NaN
// operand, as fmax/fmin do. `none` returns b (the reduction "copy").
template <OpCode Op, typename T>
RESHARD_HD inline T combine(T a, T b) {
  if constexpr (Op == OpCode::none) {
    return b;
  } else if constexpr (Op == OpCode::sum) {
    if constexpr (std::is_floating_point_v<T>) return a + b;
    else return static_cast<T>(static_cast<std::make_unsigned_t<T>>(widen(a) + widen(b)));
  } else if constexpr (Op == OpCode::prod) {
    if constexpr (std::is_floating_point_v<T>) return a * b;
    else return static_cast<T>(static_cast<std::make_unsigned_t<T>>(widen(a) * widen(b)));
  } else if constexpr (Op == OpCode::max) {
    // Spelled out rather than fmax: inlined and vectorised on the host, and the same result
    // on host and device for every input (fmax leaves the sign of a zero result open). A
    // NaN in a loses to b; a NaN in b loses to a.
    if constexpr (std::is_floating_point_v<T>) return (b > a || a != a) ? b : a;
    else return b > a ? b : a;
  } else {
    if constexpr (std::is_floating_point_v<T>) return (b < a || a != a) ? b : a;
    else return b < a ? b : a;
  }
}

// The index fill's value of global element i on the device at group-linear coordinate j of a
// reduce clause over g devices (docs/design.md 5). Computed in int64 and converted once, so it is
// exact wherever a double can hold it.
RESHARD_HD inline double fill_value(std::int64_t i, OpCode op, int j, int g) {
  if (g <= 1 || op == OpCode::none) return static_cast<double>(i);
  switch (op) {
    case OpCode::sum: {
      if (j >= 1) return static_cast<double>(j + 1);
      const std::int64_t others = static_cast<std::int64_t>(g) * (g + 1) / 2 - 1;  // 2+...+g
      return static_cast<double>(i - others);
    }
    case OpCode::max: return static_cast<double>(i - j);
    case OpCode::min: return static_cast<double>(i + j);
    case OpCode::prod: return j == 0 ? static_cast<double>(i) : 1.0;
    default: return static_cast<double>(i);
  }
}

// double -> int64 as a C++ cast does where that is defined (truncation toward zero), and
// wrapping modulo 2^64 where the cast would be undefined (out of range). NaN and infinities
// give 0. The narrower integer types then take the low bits (two's complement truncation).
RESHARD_HD inline std::int64_t wrap_to_int64(double v) {
  constexpr double kTwo63 = 9223372036854775808.0;
  constexpr double kTwo64 = 18446744073709551616.0;
  if (!(v - v == 0.0)) return 0;  // NaN or infinite
  if (v >= -kTwo63 && v < kTwo63) return static_cast<std::int64_t>(v);
  // |v| >= 2^63: v is an integer, and fmod is exact.
  double r = fmod(v, kTwo64);
  if (r < 0) r += kTwo64;
  if (r >= kTwo64) r -= kTwo64;
  const std::uint64_t bits = r >= kTwo63 ? static_cast<std::uint64_t>(r - kTwo63) + (1ull << 63)
                                         : static_cast<std::uint64_t>(r);
  return static_cast<std::int64_t>(bits);
}

// Whether a checked element matches: exact, except for f16/bf16 where partial sums were
// rounded, which may be off by 2^-7 relative (doubled: the value was rounded twice).
// `abs_tol` widens it for sums of many rounded partials (see index_fill_tolerance()).
RESHARD_HD inline bool index_matches(double got, double expected, bool half_precision, double abs_tol = 0.0) {
  if (got == expected) return true;
  if (!half_precision) return false;
  if (!(got - got == 0.0) || !(expected - expected == 0.0)) return false;  // non-finite
  const double mag = expected < 0 ? -expected : expected;
  const double diff = got > expected ? got - expected : expected - got;
  const double rel = 0.0078125 * (mag > 1.0 ? mag : 1.0) * 2.0;
  return diff <= (rel > abs_tol ? rel : abs_tol);
}

}  // namespace reshard::detail
