// DistArrays across meshes and in batches (dist_batch.hpp) over real ranks: random batches on
// equal, overlapping and disjoint rank sets, uneven sizes, pending reductions, every dtype,
// synchronous, asynchronous and into caller-kept arrays, every element checked against the
// index fill of the global array; the errors of the API on every rank, nothing written.
#include <cstdlib>
#include <utility>

#include <catch2/catch.hpp>

#include "mpi_test.hpp"
#include "random_xmesh.hpp"
#include "reshard/dist_batch.hpp"
#include "reshard/error.hpp"

using namespace reshard;

namespace {

template <class T>
std::vector<DistArray<T>> index_filled(XContext& x, const std::vector<XArray>& arrays) {
  std::vector<DistArray<T>> in;
  for (const XArray& a : arrays) {
    in.emplace_back(x.src_context(), a.src);
    x.src_context().fill_index(a.src, in.back().local().data());
  }
  return in;
}

// Elements, over all world ranks and arrays, that differ from the index fill of the source.
template <class T>
std::int64_t mismatches(XContext& x, const std::vector<XArray>& arrays, const std::vector<DistArray<T>>& out) {
  REQUIRE(out.size() == arrays.size());
  std::int64_t bad = 0;
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    CHECK(out[i].type() == arrays[i].dst);
    CHECK(&out[i].context() == &x.dst_context());
    const auto s = out[i].local();
    bad += x.count_index_mismatches(arrays[i], s.data(), s.size_bytes());
  }
  return bad;
}

template <class T>
std::vector<std::vector<T>> shards(const std::vector<DistArray<T>>& v) {
  std::vector<std::vector<T>> s;
  for (const auto& a : v) s.emplace_back(a.local().begin(), a.local().end());
  return s;
}

// One random batch, all arrays of T, through every entry point.
template <class T>
void run_batch(XContext& x, const std::vector<XArray>& arrays, test::XGen& gen) {
  std::vector<Type> dst;
  std::vector<std::string> names;
  for (const XArray& a : arrays) dst.push_back(a.dst), names.push_back(a.name);
  std::vector<DistArray<T>> in = index_filled<T>(x, arrays);
  const auto before = shards(in);

  std::vector<DistArray<T>> out = reshard_batch(x, in, dst, names);
  CHECK(mismatches(x, arrays, out) == 0);
  CHECK(shards(in) == before);

  // Asynchronous, computing meanwhile; the inputs may be read, not written, until wait().
  DistHandle<T> h = reshard_batch_async(x, in, dst, names);
  volatile double work = 0;
  for (int k = 0; !h.test(); ++k) work = work + k;
  CHECK(h.done());
  CHECK(std::as_const(in[0]).local().size() == before[0].size());
  CHECK(in[0].in_flight());
  CHECK_THROWS_WITH(in[0].local(), Catch::Contains("read by an asynchronous reshard in flight"));
  std::vector<DistArray<T>> out2 = h.wait();
  CHECK(!in[0].in_flight());
  CHECK(mismatches(x, arrays, out2) == 0);
  CHECK_THROWS_AS(h.wait(), Error);  // the outputs were given

  // Into arrays the caller keeps, after scribbling over them.
  for (auto& o : out2) std::fill(o.local().begin(), o.local().end(), T(1));
  reshard_batch_into(x, in, out2);
  CHECK(mismatches(x, arrays, out2) == 0);
  CHECK(shards(in) == before);

  // One array at a time, cross-mesh.
  const std::size_t i = static_cast<std::size_t>(gen.uniform(0, static_cast<int>(arrays.size()) - 1));
  DistArray<T> one = reshard_to(x, in[i], arrays[i].dst);
  const auto s = std::as_const(one).local();
  CHECK(x.count_index_mismatches(arrays[i], s.data(), s.size_bytes()) == 0);
}

}  // namespace

TEST_CASE("DistArray batches across meshes match the global array element by element", "[distbatch]") {
  const int np = test::world_size();
  test::XGen gen(std::getenv("RESHARD_SEED") ? std::strtoull(std::getenv("RESHARD_SEED"), nullptr, 10) : 1313);
  for (int c = 0; c < 12; ++c) {
    test::RandomXCase rc = gen.next(np, 4);
    // One dtype per batch (DistArray<T>): the first array's.
    const DType dt = rc.arrays[0].src.dtype;
    for (XArray& a : rc.arrays) a.src.dtype = a.dst.dtype = dt;
    XOptions o;
    if (gen.uniform(0, 2) == 0) o.memory_cap = gen.uniform(256, 4096);
    INFO(fmt::format("case {} ({}): {} -> {}, {}, cap {}", c, rc.placement, rc.src_mesh, rc.dst_mesh, dt, o.memory_cap));
    for (const XArray& a : rc.arrays) INFO(fmt::format("{}: {} -> {}", a.name, a.src, a.dst));
    XContext x(rc.src_mesh, rc.dst_mesh, MPI_COMM_WORLD, o);
    switch (dt) {
      case DType::f64: run_batch<double>(x, rc.arrays, gen); break;
      case DType::f32: run_batch<float>(x, rc.arrays, gen); break;
      case DType::f16:
      case DType::bf16: run_batch<std::uint16_t>(x, rc.arrays, gen); break;
      case DType::i64: run_batch<std::int64_t>(x, rc.arrays, gen); break;
      case DType::i32: run_batch<std::int32_t>(x, rc.arrays, gen); break;
      case DType::i16: run_batch<std::int16_t>(x, rc.arrays, gen); break;
      case DType::i8: run_batch<std::int8_t>(x, rc.arrays, gen); break;
      case DType::u8: run_batch<std::uint8_t>(x, rc.arrays, gen); break;
    }
  }
}

namespace {
// Source on every rank, target on the ranks in reverse order with other axes (so the meshes
// differ at every rank count).
XContext reversed(int np) {
  std::vector<int> rev(np);
  for (int i = 0; i < np; ++i) rev[i] = np - 1 - i;
  return XContext(Mesh({{"x", np}}), Mesh({{"y", np}}, rev));
}
}  // namespace

TEST_CASE("DistArray batches: several in flight, inputs kept alive and guarded", "[distbatch]") {
  const int np = test::world_size();
  XContext x = reversed(np);
  const Mesh& a = x.src_mesh();
  const Mesh& b = x.dst_mesh();
  // Uneven: 97 and 13 split over np.
  std::vector<XArray> w = {{"w1", Type::parse("f32[97{x},13]", a), Type::parse("f32[97,13{y}]", b)},
                           {"w2", Type::parse("f32[13,97] sum{x}", a), Type::parse("f32[13{y},97]", b)},
                           {"w3", Type::parse("f32[5]", a), Type::parse("f32[5{y}]", b)}};
  std::vector<Type> dst = {w[0].dst, w[1].dst, w[2].dst};
  std::vector<DistArray<float>> in = index_filled<float>(x, w);
  auto h1 = reshard_batch_async(x, in, dst);
  auto h2 = reshard_batch_async(x, in, dst);  // the same inputs read twice at once
  // Writes are refused while either is in flight, on every rank alike; nothing changed.
  CHECK_THROWS_AS(in[1] = in[0], MismatchError);
  CHECK_THROWS_AS(in[2].reshard(Type::parse("f32[5{x}]", a)), MismatchError);
  CHECK_THROWS_AS(std::move(in[0]).release(), MismatchError);
  DistArray<float> copy = in[0];  // reading is fine; the copy is free
  CHECK(!copy.in_flight());
  copy.local()[0] = 0;
  auto o1 = h1.wait();
  CHECK(in[0].in_flight());  // h2 still reads
  auto o2 = h2.wait();
  CHECK(!in[0].in_flight());
  CHECK(mismatches(x, w, o1) == 0);
  CHECK(mismatches(x, w, o2) == 0);

  // Moving an input keeps the guard with the storage; destroying an input mid-flight finishes
  // the reshard first (the outputs stay correct).
  {
    auto h3 = reshard_batch_async(x, in, dst);
    std::vector<DistArray<float>> moved = std::move(in);
    CHECK(moved[0].in_flight());
    moved.clear();  // waits for h3
    auto o3 = h3.wait();
    CHECK(mismatches(x, w, o3) == 0);
  }
  // Dropping an unfinished handle finishes it.
  in = index_filled<float>(x, w);
  { auto h4 = reshard_batch_async(x, in, dst); }
  CHECK(!in[0].in_flight());
  in[0].local()[0] = 1;
}

TEST_CASE("DistArray batches: bad input is an error on every rank, nothing written", "[distbatch]") {
  const int np = test::world_size();
  XContext x = reversed(np);
  const Mesh& a = x.src_mesh();
  const Mesh& b = x.dst_mesh();
  DistArray<float> w(x.src_context(), Type::parse("f32[31{x},7]", a));
  x.src_context().fill_index(w.type(), w.local().data());
  const auto before = std::vector<float>(w.local().begin(), w.local().end());
  // Global shape or dtype differ.
  CHECK_THROWS_WITH(reshard_to(x, w, Type::parse("f32[31,8{y}]", b)), Catch::Contains("shape"));
  CHECK_THROWS_WITH(reshard_to(x, w, Type::parse("f64[31,7{y}]", b)), Catch::Contains("is not f32"));
  // An axis of the source mesh in the target type.
  CHECK_THROWS_AS(reshard_to(x, w, Type::parse("f32[31{x},7]", a)), MismatchError);
  // The input on the target mesh.
  DistArray<float> on_b(x.dst_context(), Type::parse("f32[31,7{y}]", b));
  CHECK_THROWS_WITH(reshard_to(x, on_b, Type::parse("f32[31,7{y}]", b)), Catch::Contains("not on the source mesh"));
  // As many inputs as targets, as many names.
  std::vector<DistArray<float>> ins = {w};
  CHECK_THROWS_WITH(reshard_batch(x, ins, std::vector<Type>{}), Catch::Contains("1 input arrays and 0 target types"));
  CHECK_THROWS_WITH(reshard_batch(x, ins, {Type::parse("f32[31,7{y}]", b)}, {"a", "b"}),
                    Catch::Contains("with 2 names"));
  // Into: an output on the wrong mesh, or of another shape; the outputs untouched.
  std::vector<DistArray<float>> outs;
  outs.emplace_back(x.dst_context(), Type::parse("f32[31{y},7]", b));
  std::fill(outs[0].local().begin(), outs[0].local().end(), 7.0f);
  std::vector<DistArray<float>> wrong_mesh = {w};
  CHECK_THROWS_WITH(reshard_batch_into(x, ins, wrong_mesh), Catch::Contains("not on the target mesh"));
  std::vector<DistArray<float>> wrong_shape;
  wrong_shape.emplace_back(x.dst_context(), Type::parse("f32[30{y},7]", b));
  CHECK_THROWS_AS(reshard_batch_into(x, ins, wrong_shape), MismatchError);
  CHECK(std::all_of(outs[0].local().begin(), outs[0].local().end(), [](float v) { return v == 7.0f; }));
  // An output that an asynchronous reshard (back to the source mesh, on another XContext over
  // the same meshes) reads is refused; after its wait() it is written.
  XContext back(b, a);
  auto h = reshard_batch_async(back, outs, {Type::parse("f32[31,7{x}]", a)});
  CHECK_THROWS_WITH(reshard_batch_into(x, ins, outs), Catch::Contains("in flight"));
  const auto kept = std::as_const(outs[0]).local();
  CHECK(std::all_of(kept.begin(), kept.end(), [](float v) { return v == 7.0f; }));
  auto sevens = h.wait();
  const auto sv = std::as_const(sevens[0]).local();
  CHECK(std::all_of(sv.begin(), sv.end(), [](float v) { return v == 7.0f; }));
  reshard_batch_into(x, ins, outs);
  CHECK(mismatches(x, {{"w", w.type(), outs[0].type()}}, outs) == 0);
  CHECK(std::vector<float>(w.local().begin(), w.local().end()) == before);
}
