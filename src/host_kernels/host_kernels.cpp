// Host kernels (include/reshard/host_kernels.hpp): strided box copies and reductions, half
// conversions, and the index fill/check. The index arithmetic and the element semantics are
// shared with the CUDA kernels through reshard/detail/, so host and device agree bit for bit.
#include "reshard/host_kernels.hpp"

#include <bit>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "reshard/detail/api_walks.hpp"
#include "reshard/detail/box_walk.hpp"
#include "reshard/detail/elementwise.hpp"
#include "reshard/error.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !(defined(__clang__) && __clang_major__ < 15)
#include <immintrin.h>
#define RESHARD_X86_F16C 1
#else
#define RESHARD_X86_F16C 0
#endif

namespace reshard {
namespace {

using detail::BoxWalk;
using detail::OpCode;
using detail::walk_of_box;

// Tags for the two 16-bit float formats, which are stored as uint16_t bits.
struct F16 {};
struct BF16 {};

// Calls f(tag) with a value whose type names the dtype: the storage type for the arithmetic
// types, F16/BF16 for the half formats. Dispatching once per call keeps the loops typed.
template <typename F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f64: return f(double{});
    case DType::f32: return f(float{});
    case DType::f16: return f(F16{});
    case DType::bf16: return f(BF16{});
    case DType::i64: return f(std::int64_t{});
    case DType::i32: return f(std::int32_t{});
    case DType::i16: return f(std::int16_t{});
    case DType::i8: return f(std::int8_t{});
    case DType::u8: return f(std::uint8_t{});
  }
  throw Error("unknown dtype");
}

template <typename F>
decltype(auto) visit_op(ReduceOp op, F&& f) {
  switch (op) {
    case ReduceOp::none: return f(std::integral_constant<OpCode, OpCode::none>{});
    case ReduceOp::sum: return f(std::integral_constant<OpCode, OpCode::sum>{});
    case ReduceOp::max: return f(std::integral_constant<OpCode, OpCode::max>{});
    case ReduceOp::min: return f(std::integral_constant<OpCode, OpCode::min>{});
    case ReduceOp::prod: return f(std::integral_constant<OpCode, OpCode::prod>{});
  }
  throw Error("unknown reduce op");
}

// Storage type of a dtype tag.
template <typename Tag>
using storage_t = std::conditional_t<std::is_same_v<Tag, F16> || std::is_same_v<Tag, BF16>,
                                     std::uint16_t, Tag>;

// Half-precision conversions, defined here so that the element loops inline them.
// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
inline std::uint16_t f16_bits(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // inf, or NaN: keep it a (quiet) NaN with the top payload bits
    if (ax == 0x7f800000u) return sign | 0x7c00u;
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  }
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to infinity
  if (ax >= 0x38800000u) {                      // normal in f16 (>= 2^-14)
    // Round to nearest even at bit 13; a carry into the exponent is the right answer.
    const std::uint32_t rounded = ax + 0xfffu + ((ax >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | ((rounded - (112u << 23)) >> 13));
  }
  if (ax <= 0x33000000u) return sign;  // <= 2^-25 (the tie goes to even: zero)
  // Subnormal in f16: value / 2^-24 rounded to nearest even.
  const std::uint32_t e = ax >> 23;                       // 102..112
  const std::uint32_t m = (ax & 0x7fffffu) | 0x800000u;  // value = m * 2^(e-150)
  const std::uint32_t shift = 126u - e;                   // 14..24
  std::uint32_t q = m >> shift;
  const std::uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal
  return static_cast<std::uint16_t>(sign | q);
}

inline float f16_value(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
    const float mag = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -mag : mag;
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

// bfloat16 is the top half of a float.
inline std::uint16_t bf16_bits(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u)  // NaN: truncate, forcing quiet so it stays a NaN
    return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float bf16_value(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

// Element codecs: value <-> storage, through float for the half formats.
template <typename Tag>
double to_double(storage_t<Tag> s) {
  if constexpr (std::is_same_v<Tag, F16>) return f16_value(s);
  else if constexpr (std::is_same_v<Tag, BF16>) return bf16_value(s);
  else return static_cast<double>(s);
}

// C++ cast semantics; integers narrower than 64 bits take the low bits of the int64 value.
template <typename Tag>
storage_t<Tag> from_double(double v) {
  if constexpr (std::is_same_v<Tag, F16>) return f16_bits(static_cast<float>(v));
  else if constexpr (std::is_same_v<Tag, BF16>) return bf16_bits(static_cast<float>(v));
  else if constexpr (std::is_floating_point_v<Tag>) return static_cast<Tag>(v);
  else return static_cast<Tag>(static_cast<std::uint64_t>(detail::wrap_to_int64(v)));
}

#if RESHARD_X86_F16C
// The scalar f16 conversions cost a few ns per element; x86's F16C converts 8 at a time with
// the same IEEE round-to-nearest-even (and the same quiet NaNs). The baseline x86-64 target
// lacks it, so it is compiled per function and chosen at run time.
bool cpu_has_f16c() {
  static const bool has = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return has;
}

// acc[k] = op(acc[k], in[k]) for the first n - n % 8 elements; returns how many it did.
template <OpCode Op>
__attribute__((target("avx,f16c"))) std::int64_t reduce_f16_f16c(std::uint16_t* acc,
                                                                 const std::uint16_t* in,
                                                                 std::int64_t n) {
  std::int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    alignas(32) float a[8], b[8];
    _mm256_store_ps(a, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(acc + k))));
    _mm256_store_ps(b, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + k))));
    for (int e = 0; e < 8; ++e) a[e] = detail::combine<Op>(a[e], b[e]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(acc + k),
                     _mm256_cvtps_ph(_mm256_load_ps(a), _MM_FROUND_TO_NEAREST_INT));
  }
  return k;
}
#endif

// acc[k] = op(acc[k], in[k]) for k < n, for one dtype tag and op.
template <typename Tag, OpCode Op>
void reduce_run(storage_t<Tag>* acc, const storage_t<Tag>* in, std::int64_t n) {
  if constexpr (Op == OpCode::none) {
    std::memcpy(acc, in, static_cast<std::size_t>(n) * sizeof(storage_t<Tag>));
  } else if constexpr (std::is_same_v<Tag, F16>) {
    std::int64_t done = 0;
#if RESHARD_X86_F16C
    if (n >= 8 && cpu_has_f16c()) done = reduce_f16_f16c<Op>(acc, in, n);
#endif
    for (std::int64_t k = done; k < n; ++k)
      acc[k] = f16_bits(detail::combine<Op>(f16_value(acc[k]), f16_value(in[k])));
  } else if constexpr (std::is_same_v<Tag, BF16>) {
    for (std::int64_t k = 0; k < n; ++k)
      acc[k] = bf16_bits(detail::combine<Op>(bf16_value(acc[k]), bf16_value(in[k])));
  } else {
    for (std::int64_t k = 0; k < n; ++k) acc[k] = detail::combine<Op>(acc[k], in[k]);
  }
}

// Calls run(src_offset, dst_offset, length) once per contiguous run of the walk, in order,
// advancing the outer loops with an odometer (no divisions).
template <typename Run>
void for_each_run(const BoxWalk& w, Run&& run) {
  if (w.volume == 0) return;
  const int outer = w.rank - 1;
  const std::int64_t len = w.run();
  std::int64_t idx[detail::kMaxWalkRank] = {};
  std::int64_t s = w.src_base, d = w.dst_base;
  for (;;) {
    run(s, d, len);
    int k = outer - 1;
    for (; k >= 0; --k) {
      s += w.src_stride[k];
      d += w.dst_stride[k];
      if (++idx[k] < w.extent[k]) break;
      s -= w.src_stride[k] * w.extent[k];
      d -= w.dst_stride[k] * w.extent[k];
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

// Copies a walk whose runs are single elements of type E. Through memcpy of sizeof(E) (one
// load and store once compiled): batched messages pack arrays of several dtypes back to back,
// so a buffer need not be aligned to E.
template <typename E>
void copy_elements(const BoxWalk& w, const void* src, void* dst) {
  const auto* s = static_cast<const unsigned char*>(src);
  auto* d = static_cast<unsigned char*>(dst);
  for_each_run(w, [&](std::int64_t so, std::int64_t dof, std::int64_t) {
    std::memcpy(d + dof * static_cast<std::int64_t>(sizeof(E)), s + so * static_cast<std::int64_t>(sizeof(E)), sizeof(E));
  });
}

}  // namespace

void copy_box(const void* src, std::span<const std::int64_t> src_shape,
              std::span<const std::int64_t> src_offset, void* dst,
              std::span<const std::int64_t> dst_shape, std::span<const std::int64_t> dst_offset,
              std::span<const std::int64_t> extent, std::size_t elem_size) {
  const BoxWalk w = walk_of_box(src_shape, src_offset, dst_shape, dst_offset, extent);
  if (w.volume == 0) return;
  if (w.run() == 1) {  // a strided gather/scatter: typed moves, no memcpy call per element
    switch (elem_size) {
      case 1: return copy_elements<std::uint8_t>(w, src, dst);
      case 2: return copy_elements<std::uint16_t>(w, src, dst);
      case 4: return copy_elements<std::uint32_t>(w, src, dst);
      case 8: return copy_elements<std::uint64_t>(w, src, dst);
      default: break;
    }
  }
  const auto* s = static_cast<const unsigned char*>(src);
  auto* d = static_cast<unsigned char*>(dst);
  const auto es = static_cast<std::int64_t>(elem_size);
  for_each_run(w, [&](std::int64_t so, std::int64_t dof, std::int64_t len) {
    std::memcpy(d + dof * es, s + so * es, static_cast<std::size_t>(len * es));
  });
}

void reduce_box(const void* src, std::span<const std::int64_t> src_shape,
                std::span<const std::int64_t> src_offset, void* dst,
                std::span<const std::int64_t> dst_shape, std::span<const std::int64_t> dst_offset,
                std::span<const std::int64_t> extent, DType t, ReduceOp op) {
  const BoxWalk w = walk_of_box(src_shape, src_offset, dst_shape, dst_offset, extent);
  visit_dtype(t, [&](auto tag) {
    using Tag = decltype(tag);
    using S = storage_t<Tag>;
    visit_op(op, [&](auto opc) {
      const auto* s = static_cast<const S*>(src);
      auto* d = static_cast<S*>(dst);
      for_each_run(w, [&](std::int64_t so, std::int64_t dof, std::int64_t len) {
        reduce_run<Tag, decltype(opc)::value>(d + dof, s + so, len);
      });
    });
  });
}

void reduce_into(void* acc, const void* in, std::int64_t n, DType t, ReduceOp op) {
  if (n <= 0) return;
  visit_dtype(t, [&](auto tag) {
    using Tag = decltype(tag);
    using S = storage_t<Tag>;
    visit_op(op, [&](auto opc) {
      reduce_run<Tag, decltype(opc)::value>(static_cast<S*>(acc), static_cast<const S*>(in), n);
    });
  });
}

void fill_identity(void* data, std::int64_t n, DType t, ReduceOp op) {
  if (n <= 0) return;
  visit_dtype(t, [&](auto tag) {
    using Tag = decltype(tag);
    using S = storage_t<Tag>;
    S v{};
    if constexpr (std::is_same_v<Tag, F16> || std::is_same_v<Tag, BF16>) {
      const float inf = std::numeric_limits<float>::infinity();
      const float f = op == ReduceOp::prod  ? 1.0f
                      : op == ReduceOp::max ? -inf
                      : op == ReduceOp::min ? inf
                                            : 0.0f;
      v = from_double<Tag>(f);
    } else {
      using L = std::numeric_limits<S>;
      // Floats have infinities, so "lowest" for max is -inf (the true identity).
      const S lowest = L::has_infinity ? -L::infinity() : L::lowest();
      const S highest = L::has_infinity ? L::infinity() : L::max();
      v = op == ReduceOp::prod  ? S(1)
          : op == ReduceOp::max ? lowest
          : op == ReduceOp::min ? highest
                                : S(0);
    }
    S* p = static_cast<S*>(data);
    for (std::int64_t k = 0; k < n; ++k) p[k] = v;
  });
}

std::uint16_t float_to_f16(float f) { return f16_bits(f); }
float f16_to_float(std::uint16_t h) { return f16_value(h); }
std::uint16_t float_to_bf16(float f) { return bf16_bits(f); }
float bf16_to_float(std::uint16_t h) { return bf16_value(h); }

double index_fill_value(std::int64_t i, ReduceOp op, int j, int g) {
  return detail::fill_value(i, detail::code(op), j, g);
}

void store_as(void* data, std::int64_t k, DType t, double v) {
  visit_dtype(t, [&](auto tag) {
    using Tag = decltype(tag);
    static_cast<storage_t<Tag>*>(data)[k] = from_double<Tag>(v);
  });
}

double load_as(const void* data, std::int64_t k, DType t) {
  return visit_dtype(t, [&](auto tag) -> double {
    using Tag = decltype(tag);
    return to_double<Tag>(static_cast<const storage_t<Tag>*>(data)[k]);
  });
}

void fill_index(void* local, const Type& type, const Mesh& mesh, int device) {
  const BoxWalk w = detail::block_walk(type, mesh, device);
  const auto rc = detail::reduce_coordinate(type, mesh, device);
  const auto j = rc.j, g = rc.g;  // not a structured binding: clang 14 cannot capture those
  const auto op = detail::code(type.op);
  visit_dtype(type.dtype, [&](auto tag) {
    using Tag = decltype(tag);
    auto* out = static_cast<storage_t<Tag>*>(local);
    // The walk's source offsets are the global linear indices.
    for_each_run(w, [&](std::int64_t i, std::int64_t k, std::int64_t len) {
      for (std::int64_t e = 0; e < len; ++e)
        out[k + e] = from_double<Tag>(detail::fill_value(i + e, op, j, g));
    });
  });
}

double index_fill_tolerance(const Type& src, const Mesh& mesh) {
  if ((src.dtype != DType::f16 && src.dtype != DType::bf16) || src.op != ReduceOp::sum) return 0.0;
  double g = 1;
  for (const auto& a : src.reduce_axes) g *= mesh.axis_size(a);
  // Largest partial magnitude: the index or the offset 2+...+g taken from it.
  double big = std::max(static_cast<double>(src.global_elements()), g * (g + 1) / 2);
  double ulp = std::ldexp(1.0, static_cast<int>(std::floor(std::log2(std::max(big, 1.0)))) -
                                   (src.dtype == DType::f16 ? 10 : 7));
  return (g + 1) * ulp;
}

bool index_fill_needs_source(const Type& source) {
  return !is_float(source.dtype) && (source.op == ReduceOp::max || source.op == ReduceOp::min);
}

namespace {

// The logical value of element i of an index-filled source with a pending `op` over g devices:
// the partials as the dtype holds them, reduced in the dtype's arithmetic.
double reduced_fill(std::int64_t i, DType t, ReduceOp op, int g) {
  std::uint64_t acc = 0, part = 0;  // one element of any dtype
  store_as(&acc, 0, t, index_fill_value(i, op, 0, g));
  for (int j = 1; j < g; ++j) {
    store_as(&part, 0, t, index_fill_value(i, op, j, g));
    reduce_into(&acc, &part, 1, t, op);
  }
  return load_as(&acc, 0, t);
}

}  // namespace

std::int64_t check_index(const void* local, const Type& type, const Mesh& mesh, int device, double abs_tolerance,
                         const Type* source) {
  const BoxWalk w = detail::block_walk(type, mesh, device);
  const bool folded = source && index_fill_needs_source(*source);
  const int g = folded ? detail::reduce_coordinate(*source, mesh, device).g : 1;
  std::int64_t bad = 0;
  visit_dtype(type.dtype, [&](auto tag) {
    using Tag = decltype(tag);
    constexpr bool half = std::is_same_v<Tag, F16> || std::is_same_v<Tag, BF16>;
    const auto* in = static_cast<const storage_t<Tag>*>(local);
    for_each_run(w, [&](std::int64_t i, std::int64_t k, std::int64_t len) {
      for (std::int64_t e = 0; e < len; ++e) {
        // The expected value is i as the dtype holds it (cast, then read back), or the
        // reduction of the source's partials where those can wrap.
        const double expected = folded ? reduced_fill(i + e, type.dtype, source->op, g)
                                       : to_double<Tag>(from_double<Tag>(static_cast<double>(i + e)));
        if (!detail::index_matches(to_double<Tag>(in[k + e]), expected, half, abs_tolerance)) ++bad;
      }
    });
  });
  return bad;
}

}  // namespace reshard
