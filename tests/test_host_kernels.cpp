// Host kernels against naive references: box copies and reductions over thousands of random
// boxes, half-precision conversions over their whole domain, identities, integer wrapping,
// and the index fill/check on real types. Also the box-walk arithmetic the CUDA kernels use
// (unit rescaling, per-unit offsets), which can be checked here without a GPU.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "batch_replay.hpp"
#include "reshard/detail/box_batch.hpp"
#include "reshard/detail/box_walk.hpp"
#include "reshard/detail/elementwise.hpp"
#include "reshard/error.hpp"
#include "reshard/host_kernels.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

using namespace reshard;
using Shape = std::vector<std::int64_t>;

namespace {

std::int64_t volume(const Shape& s) {
  std::int64_t v = 1;
  for (auto x : s) v *= x;
  return v;
}

// Row-major linear offset of index `idx` in an array of shape `shape`.
std::int64_t linear(const Shape& shape, const Shape& idx) {
  std::int64_t off = 0;
  for (std::size_t d = 0; d < shape.size(); ++d) off = off * shape[d] + idx[d];
  return off;
}

// Calls f(src_linear, dst_linear) for every element of the box, row-major: the naive
// reference the kernels are compared with.
template <typename F>
void naive_box(const Shape& ss, const Shape& so, const Shape& ds, const Shape& dso,
               const Shape& ext, F&& f) {
  const std::size_t r = ext.size();
  if (volume(ext) == 0) return;
  Shape idx(r, 0), si(r), di(r);
  for (;;) {
    for (std::size_t d = 0; d < r; ++d) {
      si[d] = so[d] + idx[d];
      di[d] = dso[d] + idx[d];
    }
    f(linear(ss, si), linear(ds, di));
    std::size_t d = r;
    while (d > 0) {
      --d;
      if (++idx[d] < ext[d]) break;
      idx[d] = 0;
      if (d == 0) return;
    }
    if (r == 0) return;
  }
}

// A random box problem: rank 0..5; dims often 1 or "full" so that the collapsing paths
// (extent-1 folding, merging of full trailing dims) are exercised, sometimes empty.
struct BoxCase {
  Shape src_shape, src_off, dst_shape, dst_off, ext;
};

BoxCase random_box(std::mt19937_64& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  BoxCase c;
  const int rank = pick(0, 5);
  for (int d = 0; d < rank; ++d) {
    std::int64_t e;
    switch (pick(0, 9)) {
      case 0: e = 1; break;
      case 1: e = pick(0, 20) == 0 ? 0 : pick(1, 3); break;
      default: e = pick(1, 7);
    }
    // Each array is the box plus some margin; margin 0 makes the dim "full" in that array.
    auto grow = [&]() -> std::int64_t { return pick(0, 2) == 0 ? 0 : pick(1, 4); };
    const std::int64_t sm = grow(), dm = grow();
    c.ext.push_back(e);
    c.src_shape.push_back(e + sm);
    c.dst_shape.push_back(e + dm);
    c.src_off.push_back(pick(0, static_cast<int>(sm)));
    c.dst_off.push_back(pick(0, static_cast<int>(dm)));
  }
  return c;
}

std::vector<unsigned char> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

// ---- typed reduction reference ---------------------------------------------------------

std::size_t bytes_of(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::f16: case DType::bf16: case DType::i16: return 2;
    default: return 1;
  }
}

bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }
bool is_floating(DType t) { return t == DType::f64 || t == DType::f32 || is_half(t); }

// Sign-extends the low `bits` bits of x.
std::int64_t sext(std::uint64_t x, int bits) {
  if (bits == 64) return static_cast<std::int64_t>(x);
  const std::uint64_t m = 1ull << (bits - 1);
  x &= (1ull << bits) - 1;
  return static_cast<std::int64_t>((x ^ m) - m);
}

// Raw bits of element k, zero-extended.
std::uint64_t raw(const unsigned char* p, std::size_t es, std::int64_t k) {
  std::uint64_t v = 0;
  std::memcpy(&v, p + k * es, es);  // little-endian
  return v;
}
void put_raw(unsigned char* p, std::size_t es, std::int64_t k, std::uint64_t v) {
  std::memcpy(p + k * es, &v, es);
}

// Reference of one element of acc = op(acc, in), written independently of the kernels:
// integers in 64-bit unsigned arithmetic truncated to the width; floats in their type.
std::uint64_t ref_combine(DType t, ReduceOp op, std::uint64_t a, std::uint64_t b) {
  if (op == ReduceOp::none) return b;
  const int bits = static_cast<int>(bytes_of(t) * 8);
  if (t == DType::u8 || t == DType::i8 || t == DType::i16 || t == DType::i32 ||
      t == DType::i64) {
    const bool is_signed = t != DType::u8;
    auto val = [&](std::uint64_t x) -> long double {  // for comparisons only
      return is_signed ? static_cast<long double>(sext(x, bits)) : static_cast<long double>(x);
    };
    const std::uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
    switch (op) {
      case ReduceOp::sum: return (a + b) & mask;
      case ReduceOp::prod: return (a * b) & mask;
      case ReduceOp::max: return val(a) >= val(b) ? a : b;
      case ReduceOp::min: return val(a) <= val(b) ? a : b;
      default: break;
    }
  }
  auto fop = [&](auto x, auto y) {
    switch (op) {
      case ReduceOp::sum: return x + y;
      case ReduceOp::prod: return x * y;
      case ReduceOp::max: return x < y ? y : x;  // data has no NaNs
      default: return y < x ? y : x;
    }
  };
  switch (t) {
    case DType::f64: {
      double x, y;
      std::memcpy(&x, &a, 8);
      std::memcpy(&y, &b, 8);
      const double r = fop(x, y);
      std::uint64_t o = 0;
      std::memcpy(&o, &r, 8);
      return o;
    }
    case DType::f32: {
      const float r = fop(std::bit_cast<float>(static_cast<std::uint32_t>(a)),
                          std::bit_cast<float>(static_cast<std::uint32_t>(b)));
      return std::bit_cast<std::uint32_t>(r);
    }
    case DType::f16:
      return float_to_f16(fop(f16_to_float(static_cast<std::uint16_t>(a)),
                              f16_to_float(static_cast<std::uint16_t>(b))));
    default:
      return float_to_bf16(fop(bf16_to_float(static_cast<std::uint16_t>(a)),
                               bf16_to_float(static_cast<std::uint16_t>(b))));
  }
}

// n random elements of type t: integers over their whole range (so sums and products wrap),
// floats small signed values (some integers, some fractions), never NaN.
std::vector<unsigned char> random_values(std::mt19937_64& rng, DType t, std::int64_t n) {
  const std::size_t es = bytes_of(t);
  std::vector<unsigned char> v(static_cast<std::size_t>(n) * es);
  std::uniform_real_distribution<double> real(-8.0, 8.0);
  for (std::int64_t k = 0; k < n; ++k) {
    if (is_floating(t)) {
      double x = rng() % 3 == 0 ? std::round(real(rng)) : real(rng);
      if (x == 0) x = 0.0;  // no -0: which zero max/min return is not specified
      store_as(v.data(), k, t, x);
    } else {
      put_raw(v.data(), es, k, rng());
    }
  }
  return v;
}

constexpr ReduceOp kOps[] = {ReduceOp::none, ReduceOp::sum, ReduceOp::max, ReduceOp::min,
                             ReduceOp::prod};

}  // namespace

// ---- copy_box ------------------------------------------------------------------------------

TEST_CASE("copy_box matches a per-element reference on random boxes", "[kernels][copy]") {
  std::mt19937_64 rng(12345);
  const std::size_t sizes[] = {1, 2, 4, 8, 3, 16};
  int checked = 0;
  for (int it = 0; it < 6000; ++it) {
    const BoxCase c = random_box(rng);
    const std::size_t es = sizes[it % 6];
    const auto src = random_bytes(rng, static_cast<std::size_t>(volume(c.src_shape)) * es);
    auto dst = random_bytes(rng, static_cast<std::size_t>(volume(c.dst_shape)) * es);
    auto expect = dst;
    naive_box(c.src_shape, c.src_off, c.dst_shape, c.dst_off, c.ext,
              [&](std::int64_t s, std::int64_t d) {
                std::memcpy(expect.data() + d * es, src.data() + s * es, es);
              });
    copy_box(src.data(), c.src_shape, c.src_off, dst.data(), c.dst_shape, c.dst_off, c.ext, es);
    INFO("iteration " << it << " rank " << c.ext.size() << " elem " << es);
    REQUIRE(dst == expect);  // the box copied, everything outside it untouched
    ++checked;
  }
  CHECK(checked == 6000);
}

TEST_CASE("copy_box edge cases", "[kernels][copy]") {
  SECTION("rank 0 copies one element") {
    const double a = 3.5;
    double b = 0;
    copy_box(&a, {}, {}, &b, {}, {}, {}, sizeof(double));
    CHECK(b == 3.5);
  }
  SECTION("zero-volume box is a no-op, even with null pointers") {
    const Shape shape{4, 0}, off{0, 0}, ext{4, 0};
    copy_box(nullptr, shape, off, nullptr, shape, off, ext, 4);
    SUCCEED();
  }
  SECTION("a column block of a matrix (the dim-1 pack)") {
    std::vector<std::int32_t> a(6 * 8), packed(6 * 2, -1);
    for (std::size_t k = 0; k < a.size(); ++k) a[k] = static_cast<std::int32_t>(k);
    copy_box(a.data(), Shape{6, 8}, Shape{0, 4}, packed.data(), Shape{6, 2}, Shape{0, 0},
             Shape{6, 2}, 4);
    for (int r = 0; r < 6; ++r)
      for (int c = 0; c < 2; ++c) CHECK(packed[r * 2 + c] == r * 8 + 4 + c);
  }
  SECTION("bad boxes are errors, not crashes") {
    std::vector<float> a(16), b(16);
    auto copy = [&](Shape so, Shape dso, Shape ext) {
      copy_box(a.data(), Shape{4, 4}, so, b.data(), Shape{4, 4}, dso, ext, 4);
    };
    CHECK_THROWS_AS(copy(Shape{1, 0}, Shape{0, 0}, Shape{4, 4}), Error);  // past the end
    CHECK_THROWS_AS(copy(Shape{0, 0}, Shape{0, -1}, Shape{4, 1}), Error);  // negative offset
    CHECK_THROWS_AS(copy(Shape{0}, Shape{0, 0}, Shape{4, 4}), Error);  // rank mismatch
    CHECK_THROWS_AS(copy(Shape{0, 0}, Shape{0, 0}, Shape{4, -1}), Error);  // negative extent
  }
}

// ---- box walks (the arithmetic of the CUDA kernels, checked on the host) -------------------

TEST_CASE("box walks collapse to the fewest loops", "[kernels][walk]") {
  detail::BoxWalk w;
  auto make = [&](const Shape& ss, const Shape& so, const Shape& ds, const Shape& dso,
                  const Shape& e) {
    REQUIRE(detail::make_box_walk(static_cast<int>(e.size()), ss.data(), so.data(), ds.data(),
                                  dso.data(), e.data(), w) == nullptr);
  };
  make({8, 16, 32}, {0, 0, 0}, {8, 16, 32}, {0, 0, 0}, {8, 16, 32});
  CHECK(w.rank == 1);
  CHECK(w.run() == 8 * 16 * 32);
  make({8, 16, 32}, {2, 0, 0}, {4, 16, 32}, {0, 0, 0}, {4, 16, 32});  // dim-0 slice: contiguous
  CHECK(w.rank == 1);
  CHECK(w.src_base == 2 * 16 * 32);
  make({64, 128}, {0, 32}, {64, 32}, {0, 0}, {64, 32});  // dim-1 pack: rows of a column block
  CHECK(w.rank == 2);
  CHECK(w.run() == 32);
  CHECK(w.src_stride[0] == 128);
  CHECK(w.dst_stride[0] == 32);
  make({64, 128}, {0, 5}, {64, 1}, {0, 0}, {64, 1});  // one column: runs of one element
  CHECK(w.rank == 2);
  CHECK(w.run() == 1);
  CHECK(w.src_stride[1] == 1);
  make({1, 1, 1}, {0, 0, 0}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1});
  CHECK(w.rank == 1);
  CHECK(w.volume == 1);
  make({4, 0}, {0, 0}, {4, 0}, {0, 0}, {4, 0});
  CHECK(w.rank == 0);
  CHECK(w.volume == 0);
}

TEST_CASE("walk_offsets enumerates the box like the reference, in units too", "[kernels][walk]") {
  std::mt19937_64 rng(777);
  const std::size_t sizes[] = {1, 2, 4, 8};
  for (int it = 0; it < 3000; ++it) {
    const BoxCase c = random_box(rng);
    const std::size_t es = sizes[it % 4];
    detail::BoxWalk w;
    REQUIRE(detail::make_box_walk(static_cast<int>(c.ext.size()), c.src_shape.data(),
                                  c.src_off.data(), c.dst_shape.data(), c.dst_off.data(),
                                  c.ext.data(), w) == nullptr);
    std::vector<std::pair<std::int64_t, std::int64_t>> ref;
    naive_box(c.src_shape, c.src_off, c.dst_shape, c.dst_off, c.ext,
              [&](std::int64_t s, std::int64_t d) { ref.emplace_back(s, d); });
    REQUIRE(w.volume == static_cast<std::int64_t>(ref.size()));
    for (std::int64_t u = 0; u < w.volume; ++u) {  // 64-bit and 32-bit index paths
      std::int64_t s, d;
      std::uint32_t s32, d32;
      detail::walk_offsets(w, u, s, d);
      detail::walk_offsets(w, static_cast<std::uint32_t>(u), s32, d32);
      REQUIRE(s == ref[u].first);
      REQUIRE(d == ref[u].second);
      REQUIRE(s32 == s);
      REQUIRE(d32 == d);
    }
    if (w.volume == 0) continue;
    // The device copy folds the bases into the pointers and moves the widest unit that fits;
    // moving units through the rescaled walk must copy exactly the box's bytes.
    const auto src = random_bytes(rng, static_cast<std::size_t>(volume(c.src_shape)) * es);
    auto dst = random_bytes(rng, static_cast<std::size_t>(volume(c.dst_shape)) * es);
    auto expect = dst;
    copy_box(src.data(), c.src_shape, c.src_off, expect.data(), c.dst_shape, c.dst_off, c.ext,
             es);
    const std::uintptr_t sa = static_cast<std::uintptr_t>(w.src_base) * es;
    const std::uintptr_t da = static_cast<std::uintptr_t>(w.dst_base) * es;
    detail::BoxWalk uw = w;
    uw.src_base = uw.dst_base = 0;
    const std::size_t unit = detail::widest_unit(uw, es, sa, da);
    detail::rescale_walk(uw, es, unit);
    for (std::int64_t u = 0; u < uw.volume; ++u) {
      std::int64_t s, d;
      detail::walk_offsets(uw, u, s, d);
      std::memcpy(dst.data() + da + d * unit, src.data() + sa + s * unit, unit);
    }
    INFO("iteration " << it << " unit " << unit);
    REQUIRE(dst == expect);
  }
}

TEST_CASE("walk_unit_fits picks 16-byte units for aligned column blocks", "[kernels][walk]") {
  const Shape ss{64, 128}, so{0, 32}, ds{64, 32}, dso{0, 0}, e{64, 32};
  detail::BoxWalk w;
  REQUIRE(detail::make_box_walk(2, ss.data(), so.data(), ds.data(), dso.data(), e.data(), w) ==
          nullptr);
  w.src_base = w.dst_base = 0;
  CHECK(detail::walk_unit_fits(w, 4, 4096 + 32 * 4, 8192, 16));
  CHECK_FALSE(detail::walk_unit_fits(w, 4, 4096 + 4, 8192, 16));  // misaligned start
  detail::rescale_walk(w, 4, 16);
  CHECK(w.run() == 8);
  CHECK(w.src_stride[0] == 32);
  CHECK(w.dst_stride[0] == 8);
  CHECK(w.volume == 64 * 8);
}

// ---- batched copies (the CUDA kernel's tile grid, emulated) --------------------------------

// Runs a batch table the way cuda_kernels/box_batch.cu does: every tile, every lane, every unit of
// the lane, through the same RESHARD_HD functions; counts the writes to each destination byte.
template <typename I>
void emulate_batch(const detail::BatchTable& t, const unsigned char* const* src,
                   unsigned char* const* dst, std::vector<std::vector<int>>& writes,
                   unsigned char* const* dst_base, std::int64_t blocks) {
  const int n = static_cast<int>(t.boxes.size());
  std::int64_t last_tile = -1;
  const std::int64_t covered = test::replay_batch_grid<I>(
      t.first_tile.data(), t.boxes.data(), n, blocks,
      [&](std::int64_t tile, int b, const detail::BatchBox& box, I from, I to) {
        const unsigned char* s = src[box.src] + box.src_byte;
        unsigned char* d = dst[box.dst] + box.dst_byte;
        if (tile != last_tile) {  // once per tile
          REQUIRE(t.first_tile[b] <= tile);
          REQUIRE(tile < t.first_tile[b + 1]);
          REQUIRE(reinterpret_cast<std::uintptr_t>(s) % box.unit == 0);  // the kernel's Unit* casts
          REQUIRE(reinterpret_cast<std::uintptr_t>(d) % box.unit == 0);
          last_tile = tile;
        }
        std::memcpy(d + static_cast<std::size_t>(to) * box.unit, s + static_cast<std::size_t>(from) * box.unit,
                    static_cast<std::size_t>(box.unit));
        const std::size_t at = static_cast<std::size_t>(d - dst_base[box.dst]) + static_cast<std::size_t>(to) * box.unit;
        for (int byte = 0; byte < box.unit; ++byte) ++writes[box.dst][at + byte];
      });
  REQUIRE(covered == t.tiles());  // the blocks' runs cover every tile once
}

TEST_CASE("batched copies: one tile grid moves every box of a step exactly once", "[kernels][batch]") {
  std::mt19937_64 rng(4242);
  auto pick = [&](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  const std::size_t sizes[] = {1, 2, 4, 8};
  int wide_units = 0, multi_tile = 0;
  for (int it = 0; it < 400; ++it) {
    const std::size_t es = sizes[it % 4];
    // The in-block of a step: rank 1..3, sometimes long rows so that boxes span many tiles.
    const int rank = static_cast<int>(pick(1, 3));
    Shape in_shape;
    for (int d = 0; d < rank; ++d) in_shape.push_back(d == rank - 1 && pick(0, 3) == 0 ? pick(200, 3000) : pick(1, 12));
    // Peers' boxes packed back to back into staging (buffer 0), one kept box to the out-block
    // (buffer 1), as StepExec::before lists them.
    std::vector<detail::BatchInput> inputs;
    std::vector<Shape> ext_of, off_of;
    std::vector<std::int64_t> at_of;
    std::int64_t stage = 0;
    const int peers = static_cast<int>(pick(0, 9));
    for (int p = 0; p <= peers; ++p) {
      Shape off, ext;
      for (int d = 0; d < rank; ++d) {
        const std::int64_t lo = pick(0, in_shape[d] - 1);
        off.push_back(lo);
        ext.push_back(pick(0, 12) == 0 ? 0 : pick(1, in_shape[d] - lo));
      }
      const bool self = p == peers;
      const Shape zero(rank, 0);
      detail::BatchInput in;
      REQUIRE(detail::make_box_walk(rank, in_shape.data(), off.data(), self ? in_shape.data() : ext.data(),
                                    self ? off.data() : zero.data(), ext.data(), in.walk) == nullptr);
      in.src = 0;
      in.dst = self ? 1 : 0;
      if (!self) in.walk.dst_base += stage;
      at_of.push_back(self ? 0 : stage);
      if (!self) stage += volume(ext);
      ext_of.push_back(ext);
      off_of.push_back(off);
      inputs.push_back(in);
    }
    // Buffers at random offsets from 16-byte alignment (but element-aligned), as the
    // executor's staging places can be.
    auto make_buffer = [&](std::int64_t elems, std::vector<unsigned char>& storage) {
      storage = random_bytes(rng, static_cast<std::size_t>(elems) * es + 32);
      const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(storage.data());
      const std::size_t shift = (16 - a % 16) % 16 + (pick(0, 3) == 0 ? es * static_cast<std::size_t>(pick(1, 3)) % 16 : 0);
      return storage.data() + shift;
    };
    std::vector<unsigned char> in_store, stage_store, out_store;
    unsigned char* in_buf = make_buffer(volume(in_shape), in_store);
    unsigned char* stage_buf = make_buffer(stage, stage_store);
    unsigned char* out_buf = make_buffer(volume(in_shape), out_store);
    const std::uintptr_t src_addr[detail::kMaxBatchArrays] = {reinterpret_cast<std::uintptr_t>(in_buf)};
    const std::uintptr_t dst_addr[detail::kMaxBatchArrays] = {reinterpret_cast<std::uintptr_t>(stage_buf),
                                                              reinterpret_cast<std::uintptr_t>(out_buf)};
    const detail::BatchTable t =
        detail::make_batch_table(inputs.data(), static_cast<int>(inputs.size()), es, src_addr, dst_addr);
    REQUIRE(t.first_tile.size() == t.boxes.size() + 1);

    // Reference: copy_box per box.
    std::vector<unsigned char> want_stage(stage_buf, stage_buf + stage * es);
    std::vector<unsigned char> want_out(out_buf, out_buf + volume(in_shape) * es);
    for (std::size_t b = 0; b < inputs.size(); ++b) {
      const bool self = inputs[b].dst == 1;
      const Shape zero(rank, 0);
      if (self) copy_box(in_buf, in_shape, off_of[b], want_out.data(), in_shape, off_of[b], ext_of[b], es);
      else copy_box(in_buf, in_shape, off_of[b], want_stage.data() + at_of[b] * es, ext_of[b], zero, ext_of[b], es);
    }
    const unsigned char* srcs[] = {in_buf, nullptr, nullptr, nullptr};
    unsigned char* dsts[] = {stage_buf, out_buf, nullptr, nullptr};
    std::vector<std::vector<int>> writes{std::vector<int>(stage * es), std::vector<int>(volume(in_shape) * es), {}, {}};
    // Grids smaller and larger than the tile count, as grid_blocks gives on small and big work.
    const std::int64_t blocks = pick(1, 2 * t.tiles() + 2);
    if (it % 2) emulate_batch<std::uint32_t>(t, srcs, dsts, writes, dsts, blocks);
    else emulate_batch<std::uint64_t>(t, srcs, dsts, writes, dsts, blocks);
    INFO("iteration " << it << ", " << t.boxes.size() << " boxes, " << t.tiles() << " tiles");
    REQUIRE(std::vector<unsigned char>(stage_buf, stage_buf + stage * es) == want_stage);
    REQUIRE(std::vector<unsigned char>(out_buf, out_buf + volume(in_shape) * es) == want_out);
    // Staging is exactly the packed boxes, each byte written once; the out-block at most once.
    REQUIRE(std::count(writes[0].begin(), writes[0].end(), 1) == static_cast<std::ptrdiff_t>(writes[0].size()));
    REQUIRE(std::count_if(writes[1].begin(), writes[1].end(), [](int v) { return v > 1; }) == 0);
    for (const detail::BatchBox& box : t.boxes) {
      wide_units += box.unit == 16;
      REQUIRE(box.walk.volume * box.unit % static_cast<std::int64_t>(es) == 0);
    }
    for (std::size_t b = 0; b + 1 < t.first_tile.size(); ++b) multi_tile += t.first_tile[b + 1] - t.first_tile[b] > 1;
  }
  CHECK(wide_units > 50);  // the sweep reached the 16-byte path
  CHECK(multi_tile > 50);  // and boxes of many tiles
}

TEST_CASE("batched copies: box lookup, empty boxes and the 64-bit index choice", "[kernels][batch]") {
  // Boxes of 1, 3 and 2 tiles, and an empty one in between that takes none.
  detail::BatchInput in[4];
  const std::int64_t lens[4] = {100, 3 * detail::kBatchTileUnits, 0, detail::kBatchTileUnits + 1};
  for (int b = 0; b < 4; ++b) {
    const std::int64_t zero = 0, n = lens[b];
    REQUIRE(detail::make_box_walk(1, &n, &zero, &n, &zero, &n, in[b].walk) == nullptr);
  }
  // Odd addresses: one-byte units, so tiles count elements.
  const std::uintptr_t odd[detail::kMaxBatchArrays] = {257}, aligned[detail::kMaxBatchArrays] = {256};
  detail::BatchTable t = detail::make_batch_table(in, 4, 1, odd, odd);
  REQUIRE(t.boxes.size() == 3);
  CHECK(t.first_tile == std::vector<std::int64_t>{0, 1, 4, 6});
  CHECK(t.index32);
  const int expect[6] = {0, 1, 1, 1, 2, 2};
  for (int tile = 0; tile < 6; ++tile) CHECK(detail::batch_box_of(t.first_tile.data(), 3, tile) == expect[tile]);
  for (const detail::BatchBox& box : t.boxes) CHECK(box.unit == 1);
  // Aligned: each box takes the widest unit its length allows.
  t = detail::make_batch_table(in, 4, 1, aligned, aligned);
  REQUIRE(t.boxes.size() == 3);
  CHECK(t.boxes[0].unit == 4);   // 100 bytes
  CHECK(t.boxes[1].unit == 16);  // 3072 bytes
  CHECK(t.boxes[2].unit == 1);   // 1025 bytes
  CHECK(t.first_tile == std::vector<std::int64_t>{0, 1, 2, 4});
  // A box of 2^31 units (walked, never allocated) needs 64-bit offsets.
  const std::int64_t big = std::int64_t{1} << 31, zero = 0;
  REQUIRE(detail::make_box_walk(1, &big, &zero, &big, &zero, &big, in[0].walk) == nullptr);
  t = detail::make_batch_table(in, 1, 1, odd, odd);
  CHECK_FALSE(t.index32);
}

// ---- reductions ----------------------------------------------------------------------------

TEST_CASE("reduce_box matches the reference for every dtype and op", "[kernels][reduce]") {
  std::mt19937_64 rng(4242);
  for (DType t : kAllDTypes) {
    for (ReduceOp op : kOps) {
      const std::size_t es = bytes_of(t);
      REQUIRE(size_of(t) == es);
      for (int it = 0; it < 150; ++it) {
        const BoxCase c = random_box(rng);
        const auto src = random_values(rng, t, volume(c.src_shape));
        auto dst = random_values(rng, t, volume(c.dst_shape));
        auto expect = dst;
        naive_box(c.src_shape, c.src_off, c.dst_shape, c.dst_off, c.ext,
                  [&](std::int64_t s, std::int64_t d) {
                    put_raw(expect.data(), es, d,
                            ref_combine(t, op, raw(expect.data(), es, d), raw(src.data(), es, s)));
                  });
        reduce_box(src.data(), c.src_shape, c.src_off, dst.data(), c.dst_shape, c.dst_off, c.ext,
                   t, op);
        INFO(name_of(t) << " " << name_of(op) << " iteration " << it);
        REQUIRE(dst == expect);
      }
    }
  }
}

TEST_CASE("reduce_into matches the reference for every dtype and op", "[kernels][reduce]") {
  std::mt19937_64 rng(99);
  for (DType t : kAllDTypes) {
    for (ReduceOp op : kOps) {
      const std::size_t es = bytes_of(t);
      const std::int64_t n = 1000 + static_cast<std::int64_t>(rng() % 100);
      const auto in = random_values(rng, t, n);
      auto acc = random_values(rng, t, n);
      auto expect = acc;
      for (std::int64_t k = 0; k < n; ++k)
        put_raw(expect.data(), es, k,
                ref_combine(t, op, raw(expect.data(), es, k), raw(in.data(), es, k)));
      reduce_into(acc.data(), in.data(), n, t, op);
      INFO(name_of(t) << " " << name_of(op));
      REQUIRE(acc == expect);
    }
  }
}

TEST_CASE("integer reductions wrap", "[kernels][reduce]") {
  std::uint8_t a = 250, b = 10;
  reduce_into(&a, &b, 1, DType::u8, ReduceOp::sum);
  CHECK(a == 4);
  std::int8_t c = 127, d = 1;
  reduce_into(&c, &d, 1, DType::i8, ReduceOp::sum);
  CHECK(c == -128);
  std::int16_t e = -32768, f = -1;
  reduce_into(&e, &f, 1, DType::i16, ReduceOp::prod);  // 32768 wraps to -32768
  CHECK(e == -32768);
  std::int16_t g = 300, h = 300;
  reduce_into(&g, &h, 1, DType::i16, ReduceOp::prod);  // 90000 mod 65536
  CHECK(g == 90000 - 65536);
  std::int64_t i = std::numeric_limits<std::int64_t>::max(), j = 1;
  reduce_into(&i, &j, 1, DType::i64, ReduceOp::sum);
  CHECK(i == std::numeric_limits<std::int64_t>::min());
  std::int32_t k = -5, l = 3;
  reduce_into(&k, &l, 1, DType::i32, ReduceOp::max);
  CHECK(k == 3);
  reduce_into(&k, &l, 1, DType::i32, ReduceOp::min);
  CHECK(k == 3);
}

TEST_CASE("fill_identity gives each op's identity", "[kernels][reduce]") {
  const double inf = std::numeric_limits<double>::infinity();
  for (DType t : kAllDTypes) {
    std::vector<unsigned char> buf(5 * bytes_of(t));
    auto all = [&](double v) {
      for (int k = 0; k < 5; ++k)
        if (load_as(buf.data(), k, t) != v) return false;
      return true;
    };
    INFO(name_of(t));
    fill_identity(buf.data(), 5, t, ReduceOp::sum);
    CHECK(all(0.0));
    fill_identity(buf.data(), 5, t, ReduceOp::prod);
    CHECK(all(1.0));
    double lo = -inf, hi = inf;
    switch (t) {
      case DType::i64: lo = -0x1p63; hi = 0x1p63 - 1; break;
      case DType::i32: lo = -2147483648.0; hi = 2147483647.0; break;
      case DType::i16: lo = -32768; hi = 32767; break;
      case DType::i8: lo = -128; hi = 127; break;
      case DType::u8: lo = 0; hi = 255; break;
      default: break;
    }
    fill_identity(buf.data(), 5, t, ReduceOp::max);
    CHECK(all(lo));
    fill_identity(buf.data(), 5, t, ReduceOp::min);
    CHECK(all(hi));
  }
  std::int64_t big = 0;
  fill_identity(&big, 1, DType::i64, ReduceOp::min);
  CHECK(big == std::numeric_limits<std::int64_t>::max());

  // op(identity, x) == x for every op and dtype.
  std::mt19937_64 rng(5);
  for (DType t : kAllDTypes) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::prod}) {
      const auto x = random_values(rng, t, 64);
      std::vector<unsigned char> acc(x.size());
      fill_identity(acc.data(), 64, t, op);
      reduce_into(acc.data(), x.data(), 64, t, op);
      for (int k = 0; k < 64; ++k) REQUIRE(load_as(acc.data(), k, t) == load_as(x.data(), k, t));
    }
  }
}

// ---- half precision ------------------------------------------------------------------------

namespace {
bool f16_is_nan(std::uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(std::uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }
}  // namespace

TEST_CASE("f16 round-trips every non-NaN bit pattern", "[kernels][half]") {
  int nans = 0;
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<std::uint16_t>(b);
    const float f = f16_to_float(h);
    if (f16_is_nan(h)) {
      ++nans;
      REQUIRE(std::isnan(f));
      REQUIRE(f16_is_nan(float_to_f16(f)));
      continue;
    }
    REQUIRE(float_to_f16(f) == h);
  }
  CHECK(nans == 2 * 1023);
}

TEST_CASE("f16 known values", "[kernels][half]") {
  CHECK(float_to_f16(1.0f) == 0x3c00);
  CHECK(float_to_f16(-2.0f) == 0xc000);
  CHECK(float_to_f16(0.0f) == 0x0000);
  CHECK(float_to_f16(-0.0f) == 0x8000);
  CHECK(float_to_f16(65504.0f) == 0x7bff);           // largest finite
  CHECK(float_to_f16(65519.99f) == 0x7bff);          // just under the tie
  CHECK(float_to_f16(65520.0f) == 0x7c00);           // tie goes to even: infinity
  CHECK(float_to_f16(1e10f) == 0x7c00);
  CHECK(float_to_f16(-1e10f) == 0xfc00);
  CHECK(float_to_f16(std::numeric_limits<float>::infinity()) == 0x7c00);
  CHECK(f16_is_nan(float_to_f16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(float_to_f16(0x1p-14f) == 0x0400);           // smallest normal
  CHECK(float_to_f16(0x1p-24f) == 0x0001);           // smallest subnormal
  CHECK(float_to_f16(0x1p-25f) == 0x0000);           // tie between 0 and 2^-24: even (0)
  CHECK(float_to_f16(0x1.000002p-25f) == 0x0001);    // just above the tie
  CHECK(float_to_f16(0x3p-25f) == 0x0002);           // tie between 1 and 2 ulps: even (2)
  CHECK(float_to_f16(0x1.ff8p-15f) == 0x03ff);       // largest subnormal
  CHECK(float_to_f16(0x1.ffcp-15f) == 0x0400);       // tie with the smallest normal: even
  CHECK(float_to_f16(0x1.ffap-15f) == 0x03ff);       // below the tie
  CHECK(float_to_f16(0.1f) == 0x2e66);
  CHECK(float_to_f16(1.0f / 3.0f) == 0x3555);
  CHECK(float_to_f16(1.0f + 0x1p-11f) == 0x3c00);    // tie: even (down)
  CHECK(float_to_f16(1.0f + 0x3p-11f) == 0x3c02);    // tie: even (up)
  CHECK(float_to_f16(2049.0f) == 0x6800);            // 2048 (tie, even)
  CHECK(float_to_f16(2051.0f) == 0x6802);            // 2052 (tie, even)
  CHECK(f16_to_float(0x3c00) == 1.0f);
  CHECK(f16_to_float(0x0001) == 0x1p-24f);
  CHECK(f16_to_float(0x83ff) == -0x1.ff8p-15f);
  CHECK(f16_to_float(0x7c00) == std::numeric_limits<float>::infinity());
  CHECK(std::signbit(f16_to_float(0x8000)));
}

TEST_CASE("f16 rounds to nearest, ties to even, between every pair of neighbours",
          "[kernels][half]") {
  // For each pair of adjacent finite f16 values the midpoint (exact in float) goes to the even
  // one, and the floats just either side of it go to the nearer one.
  for (std::uint32_t b = 0; b < 0x7bff; ++b) {
    for (std::uint32_t sign : {0u, 0x8000u}) {
      const auto lo = static_cast<std::uint16_t>(b | sign);
      const auto hi = static_cast<std::uint16_t>((b + 1) | sign);
      const float a = f16_to_float(lo), c = f16_to_float(hi);
      const float mid = (a + c) / 2;
      REQUIRE(mid != a);
      REQUIRE(mid != c);
      REQUIRE(float_to_f16(mid) == ((b & 1u) ? hi : lo));
      REQUIRE(float_to_f16(std::nextafter(mid, a)) == lo);
      REQUIRE(float_to_f16(std::nextafter(mid, c)) == hi);
    }
  }
}

#if defined(__FLT16_MAX__) && (defined(__x86_64__) || defined(__aarch64__))
TEST_CASE("f16 conversion agrees with the compiler's _Float16", "[kernels][half]") {
  std::mt19937 rng(2024);
  for (int it = 0; it < 2000000; ++it) {
    // Random bits cover every exponent; NaNs only need to stay NaN.
    const std::uint32_t bits = static_cast<std::uint32_t>(rng());
    const float f = std::bit_cast<float>(bits);
    if (std::isnan(f)) continue;
    const auto ref = std::bit_cast<std::uint16_t>(static_cast<_Float16>(f));
    REQUIRE(float_to_f16(f) == ref);
  }
}
#endif

TEST_CASE("bf16 conversions", "[kernels][half]") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<std::uint16_t>(b);
    const float f = bf16_to_float(h);
    if (bf16_is_nan(h)) {
      REQUIRE(std::isnan(f));
      REQUIRE(bf16_is_nan(float_to_bf16(f)));
    } else {
      REQUIRE(float_to_bf16(f) == h);
    }
  }
  // Midpoints between neighbours go to the even one; one float ulp off goes to the nearer.
  for (std::uint32_t b = 0; b < 0x7f7f; ++b) {
    const std::uint32_t mid = (b << 16) | 0x8000u;
    const auto even = static_cast<std::uint16_t>((b & 1u) ? b + 1 : b);
    REQUIRE(float_to_bf16(std::bit_cast<float>(mid)) == even);
    REQUIRE(float_to_bf16(std::bit_cast<float>(mid - 1)) == b);
    REQUIRE(float_to_bf16(std::bit_cast<float>(mid + 1)) == b + 1);
  }
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  CHECK(float_to_bf16(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie: even (down)
  CHECK(float_to_bf16(std::bit_cast<float>(0x3f818000u)) == 0x3f82);  // tie: even (up)
  CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // rounds to infinity
  CHECK(float_to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80);
  CHECK(bf16_is_nan(float_to_bf16(std::bit_cast<float>(0x7f800001u))));  // NaN stays NaN
  CHECK(bf16_to_float(0xc040) == -3.0f);
}

// ---- store_as / load_as -------------------------------------------------------------------

TEST_CASE("store_as follows C++ casts and wraps integers", "[kernels][store]") {
  unsigned char buf[8];
  auto round = [&](DType t, double v) {
    store_as(buf, 0, t, v);
    return load_as(buf, 0, t);
  };
  CHECK(round(DType::u8, -3) == 253);
  CHECK(round(DType::u8, 256) == 0);
  CHECK(round(DType::u8, 300) == 44);
  CHECK(round(DType::i8, 128) == -128);
  CHECK(round(DType::i8, -129) == 127);
  CHECK(round(DType::i16, 40000) == 40000 - 65536);
  CHECK(round(DType::i32, 0x1p32 + 5) == 5);
  CHECK(round(DType::i32, -2.7) == -2);  // truncation toward zero
  CHECK(round(DType::i64, 0x1p62) == 0x1p62);
  CHECK(round(DType::i64, 0x1p63) == -0x1p63);  // out of range wraps modulo 2^64
  CHECK(round(DType::i64, 0x1p64 + 0x1p12) == 0x1p12);
  CHECK(round(DType::i64, -0x1p64 - 0x1p12) == -0x1p12);
  CHECK(round(DType::i64, std::numeric_limits<double>::quiet_NaN()) == 0);
  CHECK(round(DType::f32, 0.1) == static_cast<double>(0.1f));
  CHECK(round(DType::f64, 0.1) == 0.1);
  CHECK(round(DType::f16, 3.0) == 3.0);
  CHECK(round(DType::f16, 2049) == 2048);
  CHECK(round(DType::bf16, 257) == 256);
  store_as(buf, 0, DType::f16, 1.0);
  CHECK(buf[0] == 0x00);
  CHECK(buf[1] == 0x3c);
  // Element k of an array, not byte k.
  std::int32_t arr[4] = {};
  store_as(arr, 2, DType::i32, -7);
  CHECK(arr[2] == -7);
  CHECK(load_as(arr, 2, DType::i32) == -7);
  CHECK(arr[1] == 0);
}

// ---- index fill ----------------------------------------------------------------------------

TEST_CASE("index_fill_value reduces to i over the group", "[kernels][index]") {
  CHECK(index_fill_value(41, ReduceOp::none, 0, 1) == 41);
  CHECK(index_fill_value(41, ReduceOp::sum, 0, 1) == 41);
  CHECK(index_fill_value(41, ReduceOp::sum, 0, 4) == 41 - (2 + 3 + 4));
  CHECK(index_fill_value(41, ReduceOp::sum, 2, 4) == 3);
  CHECK(index_fill_value(41, ReduceOp::max, 3, 4) == 38);
  CHECK(index_fill_value(41, ReduceOp::min, 3, 4) == 44);
  CHECK(index_fill_value(41, ReduceOp::prod, 0, 4) == 41);
  CHECK(index_fill_value(41, ReduceOp::prod, 1, 4) == 1);
  for (int g = 1; g <= 12; ++g) {
    for (std::int64_t i : {0LL, 1LL, 7LL, 1000003LL}) {
      double s = 0, mx = -1e300, mn = 1e300, p = 1;
      for (int j = 0; j < g; ++j) {
        s += index_fill_value(i, ReduceOp::sum, j, g);
        mx = std::max(mx, index_fill_value(i, ReduceOp::max, j, g));
        mn = std::min(mn, index_fill_value(i, ReduceOp::min, j, g));
        p *= index_fill_value(i, ReduceOp::prod, j, g);
      }
      CHECK(s == i);
      CHECK(mx == i);
      CHECK(mn == i);
      CHECK(p == i);
    }
  }
}

namespace {

// Assembles the global array from every device's local array of `type` (replicas must agree).
std::vector<double> assemble(const Type& type, const Mesh& mesh,
                             const std::vector<std::vector<unsigned char>>& locals) {
  const Shape global = type.global_shape();
  std::vector<double> out(static_cast<std::size_t>(volume(global)), -1e300);
  for (int dev = 0; dev < mesh.num_devices(); ++dev) {
    const Box box = type.block(mesh, dev);
    Shape lo, ext, zero(box.dims.size(), 0);
    for (const Interval& iv : box.dims) {
      lo.push_back(iv.lo);
      ext.push_back(iv.extent());
    }
    naive_box(global, lo, ext, zero, ext, [&](std::int64_t g, std::int64_t l) {
      const double v = load_as(locals[dev].data(), l, type.dtype);
      if (out[g] != -1e300) REQUIRE(out[g] == v);
      out[g] = v;
    });
  }
  return out;
}

double cast_index(DType t, std::int64_t i) {
  unsigned char buf[8];
  store_as(buf, 0, t, static_cast<double>(i));
  return load_as(buf, 0, t);
}

}  // namespace

TEST_CASE("fill_index and check_index on real types", "[kernels][index]") {
  const Mesh mesh = Mesh::parse("x=2,y=3");
  const char* types[] = {
      "f32[10{x,y},7]", "f32[12{y},5{x}]", "i64[3,4,5]",   "u8[40{x},9{y}]",   "i8[300{y}]",
      "f16[17{x},3{y}]", "bf16[9,8{y,x}]", "i16[5{x},2,3{y}]", "f64[]",        "i32[2{y},1{x}]",
  };
  for (const char* text : types) {
    const Type type = Type::parse(text, mesh);
    INFO(text);
    std::vector<std::vector<unsigned char>> locals;
    for (int dev = 0; dev < mesh.num_devices(); ++dev) {
      std::vector<unsigned char> local(
          static_cast<std::size_t>(type.local_elements(mesh, dev)) * size_of(type.dtype), 0xAB);
      fill_index(local.data(), type, mesh, dev);
      CHECK(check_index(local.data(), type, mesh, dev) == 0);
      locals.push_back(std::move(local));
    }
    const std::vector<double> global = assemble(type, mesh, locals);
    for (std::size_t i = 0; i < global.size(); ++i)
      REQUIRE(global[i] == cast_index(type.dtype, static_cast<std::int64_t>(i)));
    // A corrupted element is counted.
    for (int dev = 0; dev < mesh.num_devices(); ++dev) {
      if (type.local_elements(mesh, dev) == 0) continue;
      const std::int64_t k = type.local_elements(mesh, dev) - 1;
      store_as(locals[dev].data(), k, type.dtype, load_as(locals[dev].data(), k, type.dtype) + 3);
      CHECK(check_index(locals[dev].data(), type, mesh, dev) == 1);
    }
  }
}

TEST_CASE("fill_index with a reduce clause sums back to the index", "[kernels][index]") {
  const Mesh mesh = Mesh::parse("x=2,y=3,z=2");
  struct Case {
    const char* partial;
    const char* reduced;
  };
  const Case cases[] = {
      {"f32[6{x},5] sum{y,z}", "f32[6{x},5]"},  {"i32[7,4{z}] sum{x,y}", "i32[7,4{z}]"},
      {"u8[300{y}] sum{z,x}", "u8[300{y}]"},     {"f64[5{z},3] max{y,x}", "f64[5{z},3]"},
      {"i64[8{x}] min{z,y}", "i64[8{x}]"},       {"i16[9,2] prod{y}", "i16[9,2]"},
      {"f16[20{x},6] sum{y}", "f16[20{x},6]"},   {"bf16[12{z}] max{x}", "bf16[12{z}]"},
  };
  for (const Case& c : cases) {
    INFO(c.partial);
    const Type partial = Type::parse(c.partial, mesh);
    const Type reduced = Type::parse(c.reduced, mesh);
    const std::size_t es = size_of(partial.dtype);
    // Reduce every group into its first member by brute force over the devices.
    std::vector<std::vector<unsigned char>> acc(mesh.num_devices());
    for (int dev = 0; dev < mesh.num_devices(); ++dev) {
      const std::int64_t n = partial.local_elements(mesh, dev);
      REQUIRE(n == reduced.local_elements(mesh, dev));
      acc[dev].resize(static_cast<std::size_t>(n) * es);
      fill_identity(acc[dev].data(), n, partial.dtype, partial.op);
    }
    for (int src = 0; src < mesh.num_devices(); ++src) {
      const std::int64_t n = partial.local_elements(mesh, src);
      std::vector<unsigned char> local(static_cast<std::size_t>(n) * es);
      fill_index(local.data(), partial, mesh, src);
      // Every device whose coordinates outside the reduce axes match src accumulates it.
      for (int dst = 0; dst < mesh.num_devices(); ++dst) {
        bool same_group = true;
        for (int a = 0; a < mesh.num_axes(); ++a)
          if (!partial.is_partial_over(mesh.axes()[a].name) &&
              mesh.coord(src, a) != mesh.coord(dst, a))
            same_group = false;
        if (same_group) reduce_into(acc[dst].data(), local.data(), n, partial.dtype, partial.op);
      }
    }
    for (int dev = 0; dev < mesh.num_devices(); ++dev)
      CHECK(check_index(acc[dev].data(), reduced, mesh, dev) == 0);
  }
}

TEST_CASE("check_index tolerates half-precision rounding only", "[kernels][index]") {
  const Mesh mesh = Mesh::parse("x=1");
  const Type h = Type::parse("f16[1000]", mesh);
  std::vector<std::uint16_t> a(1000);
  fill_index(a.data(), h, mesh, 0);
  a[900] = float_to_f16(f16_to_float(a[900]) + 8.0f);  // 8 off at 900: within 2^-6 relative
  CHECK(check_index(a.data(), h, mesh, 0) == 0);
  a[10] = float_to_f16(11.5f);  // 1.5 off at 10: beyond 2^-6 * 10
  CHECK(check_index(a.data(), h, mesh, 0) == 1);
  const Type f = Type::parse("f32[100]", mesh);
  std::vector<float> b(100);
  fill_index(b.data(), f, mesh, 0);
  b[50] = std::nextafter(b[50], 100.0f);
  CHECK(check_index(b.data(), f, mesh, 0) == 1);
}
