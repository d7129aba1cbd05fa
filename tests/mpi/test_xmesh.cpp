// Cross-mesh and batched resharding across real ranks (XContext): random batches on equal,
// overlapping and disjoint rank sets of the world, uneven sizes, pending reductions in source
// and target, every dtype; asynchronous handles, several in flight; bad input on every rank.
#include <cstdlib>

#include <catch2/catch.hpp>

#include "mpi_test.hpp"
#include "random_xmesh.hpp"
#include "reshard/error.hpp"
#include "reshard/xcontext.hpp"

using namespace reshard;

namespace {

struct Buffers {
  std::vector<std::vector<std::byte>> in, out;
  std::vector<ConstBuffer> cin;
  std::vector<MutBuffer> mout;
};

// Index-filled inputs and zeroed outputs of every array, for this rank.
Buffers buffers_for(XContext& x, const XPlan& p) {
  Buffers b;
  for (const XArray& a : p.arrays) {
    b.in.emplace_back(static_cast<std::size_t>(x.src_context().local_bytes(a.src)));
    x.src_context().fill_index(a.src, b.in.back().data());
    b.out.emplace_back(static_cast<std::size_t>(x.dst_context().local_bytes(a.dst)));
  }
  for (std::size_t i = 0; i < p.arrays.size(); ++i) {
    b.cin.push_back({b.in[i].data(), b.in[i].size()});
    b.mout.push_back({b.out[i].data(), b.out[i].size()});
  }
  return b;
}

std::int64_t mismatches(XContext& x, const XPlan& p, const Buffers& b) {
  std::int64_t bad = 0;
  for (std::size_t i = 0; i < p.arrays.size(); ++i)
    bad += x.count_index_mismatches(p.arrays[i], b.out[i].data(), b.out[i].size());
  return bad;
}

}  // namespace

TEST_CASE("random cross-mesh batches match the index fill on every target rank", "[xmesh]") {
  const int np = test::world_size();
  test::XGen gen(std::getenv("RESHARD_SEED") ? std::strtoull(std::getenv("RESHARD_SEED"), nullptr, 10) : 4242);
  const int n = 24;
  for (int i = 0; i < n; ++i) {
    test::RandomXCase c = gen.next(np, 4);
    XOptions o;
    if (gen.uniform(0, 2) == 0) o.memory_cap = gen.uniform(64, 2048);
    if (gen.uniform(0, 1)) o.link = {10.0, 1e-8};  // trees
    // Small pieces alone too: in-place messages, strided ones as derived datatypes.
    if (gen.uniform(0, 1)) o.direct_min_bytes = gen.uniform(1, 64);
    INFO(fmt::format("case {} ({}): {} -> {}, cap {}, alone from {} B", i, c.placement, c.src_mesh, c.dst_mesh,
                     o.memory_cap, o.direct_min_bytes));
    ExecOptions e;
    e.check_every_call = i % 2 == 0;  // odd cases: the agreement on a plan's first call only
    XContext x(c.src_mesh, c.dst_mesh, MPI_COMM_WORLD, o, e);
    std::shared_ptr<const XPlan> p = x.plan(c.arrays);
    INFO(to_string(*p));
    Buffers b = buffers_for(x, *p);
    const auto before = b.in;
    x.reshard(*p, b.cin, b.mout);
    CHECK(b.in == before);
    CHECK(mismatches(x, *p, b) == 0);
    if (o.memory_cap > 0) CHECK(x.workspace_peak_bytes() <= o.memory_cap);
    // Exactly the staging the plan says (ranks beyond both meshes hold none).
    CHECK(x.workspace_peak_bytes() == (x.rank() < p->world ? p->stats.workspace[x.rank()] : 0));
    // A second call reuses what the first prepared, and gives the same result.
    for (auto& v : b.out) std::fill(v.begin(), v.end(), std::byte{0});
    x.reshard(*p, b.cin, b.mout);
    CHECK(mismatches(x, *p, b) == 0);
    // A copy of the plan (not from plan(): found by comparing its moves) runs the same messages.
    const XPlan copy = *p;
    for (auto& v : b.out) std::fill(v.begin(), v.end(), std::byte{0});
    x.reshard(copy, b.cin, b.mout);
    CHECK(mismatches(x, *p, b) == 0);
    CHECK(x.workspace_peak_bytes() == (x.rank() < p->world ? p->stats.workspace[x.rank()] : 0));
  }
}

TEST_CASE("asynchronous reshards: several in flight on one XContext", "[xmesh]") {
  const int np = test::world_size();
  // Source on the first half of the ranks, target on the rest (one rank: both on rank 0).
  const int half = std::max(1, np / 2);
  std::vector<int> lo(half), hi(std::max(1, np - half));
  for (int i = 0; i < half; ++i) lo[i] = i;
  for (std::size_t i = 0; i < hi.size(); ++i) hi[i] = np >= 2 ? half + static_cast<int>(i) : 0;
  Mesh a({{"x", half}}, lo), b({{"y", static_cast<int>(hi.size())}}, hi);
  XContext x(a, b);
  auto p1 = x.plan({{"w", Type::parse("f32[96{x},5]", a), Type::parse("f32[96,5{y}]", b)}});
  auto p2 = x.plan({{"g", Type::parse("i32[7,33] sum{x}", a), Type::parse("i32[7{y},33]", b)},
                    {"h", Type::parse("f64[40{x}]", a), Type::parse("f64[40] max{y}", b)}});
  Buffers b1 = buffers_for(x, *p1), b2 = buffers_for(x, *p2), b3 = buffers_for(x, *p1);
  XHandle h1 = x.reshard_async(*p1, b1.cin, b1.mout);
  XHandle h2 = x.reshard_async(*p2, b2.cin, b2.mout);
  XHandle h3 = x.reshard_async(*p1, b3.cin, b3.mout);  // the same plan twice: its own buffers
  volatile double work = 0;
  for (int k = 0; !(h1.test() & h2.test() & h3.test()); ++k) work = work + k;  // compute meanwhile
  CHECK(h1.done());
  h2.wait();
  h3.wait();
  CHECK(mismatches(x, *p1, b1) == 0);
  CHECK(mismatches(x, *p2, b2) == 0);
  CHECK(mismatches(x, *p1, b3) == 0);
}

TEST_CASE("cross-mesh bad input: an error on every rank, nothing written", "[xmesh]") {
  const int np = test::world_size();
  // A rank beyond the world.
  std::vector<int> beyond(1, np);
  CHECK_THROWS_AS(XContext(Mesh::parse("x=1"), Mesh({{"y", 1}}, beyond)), MismatchError);
  XContext x(Mesh::parse(fmt::format("x={}", np)), Mesh::parse(fmt::format("y={}@{}", np, np == 1 ? "0" : fmt::format("1-{},0", np - 1))));
  auto p = x.plan({{"w", Type::parse("f32[12{x},3]", x.src_mesh()), Type::parse("f32[12,3{y}]", x.dst_mesh())}});
  Buffers b = buffers_for(x, *p);
  for (auto& v : b.out) std::fill(v.begin(), v.end(), std::byte{7});
  const auto before = b.out;
  // Rank 0 passes a short output; every rank throws and no rank's output is written.
  std::vector<MutBuffer> bad = b.mout;
  if (test::world_rank() == 0) bad[0].bytes -= 1;
  CHECK_THROWS_AS(x.reshard(*p, b.cin, bad), MismatchError);
  CHECK(b.out == before);
  // Too few buffers.
  CHECK_THROWS_WITH(x.reshard(*p, {}, {}), Catch::Contains("1 arrays but 0 inputs"));
  // Ranks disagree on the plan (rank 0 plans another array).
  auto other = x.plan({{"w", Type::parse("f32[12,3{x}]", x.src_mesh()), Type::parse("f32[12,3{y}]", x.dst_mesh())}});
  const XPlan& mine = test::world_rank() == 0 && np > 1 ? *other : *p;
  if (np > 1) CHECK_THROWS_AS(x.reshard(mine, b.cin, b.mout), MismatchError);  // "disagree" or "cannot run it"
  CHECK(b.out == before);
  // And then it still works.
  x.reshard(*p, b.cin, b.mout);
  CHECK(mismatches(x, *p, b) == 0);
}
